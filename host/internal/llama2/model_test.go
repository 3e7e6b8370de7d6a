package llama2

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// checkpoint builds a llama2.c checkpoint for c with random weights.
func checkpoint(c Config, seed uint64) []byte {
	vocab := int32(c.VocabSize)
	if !c.SharedClassifier {
		vocab = -vocab
	}
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, []int32{int32(c.Dim), int32(c.HiddenDim), int32(c.Layers),
		int32(c.Heads), int32(c.KVHeads), vocab, int32(c.SeqLen)})
	rng := rand.New(rand.NewPCG(seed, 0))
	for range c.fileFloats() {
		binary.Write(&buf, binary.LittleEndian, rng.Float32()*2-1)
	}
	return buf.Bytes()
}

// forwardRunC is run.c's forward pass, transliterated from its C with the weights in
// file order and a full-length KV cache. State.Forward must give the same logits to
// the bit.
type runC struct {
	c                                                              Config
	w                                                              []float32 // the file's floats
	tokEmb, rmsAtt, wq, wk, wv, wo, rmsFfn, w1, w2, w3, rmsF, wcls []float32
	keyCache, valueCache                                           []float32
}

func newRunC(c Config, file []byte) *runC {
	w := make([]float32, c.fileFloats())
	binary.Read(bytes.NewReader(file[HeaderSize:]), binary.LittleEndian, w)
	r := &runC{c: c, w: w}
	dim, hidden, layers, kvDim := c.Dim, c.HiddenDim, c.Layers, c.KVDim()
	p := w
	take := func(n int) []float32 { s := p[:n]; p = p[n:]; return s }
	r.tokEmb = take(c.VocabSize * dim)
	r.rmsAtt = take(layers * dim)
	r.wq = take(layers * dim * dim)
	r.wk = take(layers * dim * kvDim)
	r.wv = take(layers * dim * kvDim)
	r.wo = take(layers * dim * dim)
	r.rmsFfn = take(layers * dim)
	r.w1 = take(layers * dim * hidden)
	r.w2 = take(layers * hidden * dim)
	r.w3 = take(layers * dim * hidden)
	r.rmsF = take(dim)
	take(c.SeqLen * c.HeadSize())
	r.wcls = r.tokEmb
	if !c.SharedClassifier {
		r.wcls = take(c.VocabSize * dim)
	}
	r.keyCache = make([]float32, layers*c.SeqLen*kvDim)
	r.valueCache = make([]float32, layers*c.SeqLen*kvDim)
	return r
}

func refRmsnorm(o, x, weight []float32, size int) {
	var ss float32
	for j := 0; j < size; j++ {
		ss += x[j] * x[j]
	}
	ss /= float32(size)
	ss += 1e-5
	ss = 1 / float32(math.Sqrt(float64(ss)))
	for j := 0; j < size; j++ {
		o[j] = weight[j] * (ss * x[j])
	}
}

func refSoftmax(x []float32, size int) {
	maxVal := x[0]
	for i := 1; i < size; i++ {
		if x[i] > maxVal {
			maxVal = x[i]
		}
	}
	var sum float32
	for i := 0; i < size; i++ {
		x[i] = float32(math.Exp(float64(x[i] - maxVal)))
		sum += x[i]
	}
	for i := 0; i < size; i++ {
		x[i] /= sum
	}
}

func refMatmul(xout, x, w []float32, n, d int) {
	for i := 0; i < d; i++ {
		var val float32
		for j := 0; j < n; j++ {
			val += w[i*n+j] * x[j]
		}
		xout[i] = val
	}
}

func (r *runC) forward(token, pos int) []float32 {
	c := r.c
	dim, kvDim, hidden, headSize := c.Dim, c.KVDim(), c.HiddenDim, c.HeadSize()
	kvMul := c.Heads / c.KVHeads
	x := slices.Clone(r.tokEmb[token*dim : (token+1)*dim])
	xb, xb2, q := make([]float32, dim), make([]float32, dim), make([]float32, dim)
	hb, hb2 := make([]float32, hidden), make([]float32, hidden)
	att := make([]float32, c.Heads*c.SeqLen)
	for l := 0; l < c.Layers; l++ {
		refRmsnorm(xb, x, r.rmsAtt[l*dim:], dim)
		loff := l * c.SeqLen * kvDim
		k := r.keyCache[loff+pos*kvDim:]
		v := r.valueCache[loff+pos*kvDim:]
		refMatmul(q, xb, r.wq[l*dim*dim:], dim, dim)
		refMatmul(k, xb, r.wk[l*dim*kvDim:], dim, kvDim)
		refMatmul(v, xb, r.wv[l*dim*kvDim:], dim, kvDim)
		for i := 0; i < dim; i += 2 {
			headDim := i % headSize
			freq := 1 / float32(math.Pow(10000, float64(float32(headDim)/float32(headSize))))
			val := float32(pos) * freq
			fcr, fci := float32(math.Cos(float64(val))), float32(math.Sin(float64(val)))
			rotn := 1
			if i < kvDim {
				rotn = 2
			}
			for vi := 0; vi < rotn; vi++ {
				vec := q
				if vi == 1 {
					vec = k
				}
				v0, v1 := vec[i], vec[i+1]
				vec[i] = v0*fcr - v1*fci
				vec[i+1] = v0*fci + v1*fcr
			}
		}
		for h := 0; h < c.Heads; h++ {
			qh := q[h*headSize:]
			a := att[h*c.SeqLen:]
			for t := 0; t <= pos; t++ {
				kt := r.keyCache[loff+t*kvDim+(h/kvMul)*headSize:]
				var score float32
				for i := 0; i < headSize; i++ {
					score += qh[i] * kt[i]
				}
				score /= float32(math.Sqrt(float64(headSize)))
				a[t] = score
			}
			refSoftmax(a, pos+1)
			xbh := xb[h*headSize:]
			clear(xbh[:headSize])
			for t := 0; t <= pos; t++ {
				vt := r.valueCache[loff+t*kvDim+(h/kvMul)*headSize:]
				for i := 0; i < headSize; i++ {
					xbh[i] += a[t] * vt[i]
				}
			}
		}
		refMatmul(xb2, xb, r.wo[l*dim*dim:], dim, dim)
		for i := 0; i < dim; i++ {
			x[i] += xb2[i]
		}
		refRmsnorm(xb, x, r.rmsFfn[l*dim:], dim)
		refMatmul(hb, xb, r.w1[l*dim*hidden:], dim, hidden)
		refMatmul(hb2, xb, r.w3[l*dim*hidden:], dim, hidden)
		for i := 0; i < hidden; i++ {
			val := hb[i]
			val *= 1 / (1 + float32(math.Exp(float64(-val))))
			val *= hb2[i]
			hb[i] = val
		}
		refMatmul(xb, hb, r.w2[l*dim*hidden:], hidden, dim)
		for i := 0; i < dim; i++ {
			x[i] += xb[i]
		}
	}
	refRmsnorm(x, x, r.rmsF, dim)
	logits := make([]float32, c.VocabSize)
	refMatmul(logits, x, r.wcls, dim, c.VocabSize)
	return logits
}

func TestForwardMatchesRunC(t *testing.T) {
	configs := []Config{
		// Widths that are not multiples of four exercise the kernels' tails.
		{Dim: 24, HiddenDim: 37, Layers: 2, Heads: 6, KVHeads: 3, VocabSize: 45, SeqLen: 19, SharedClassifier: true},
		{Dim: 32, HiddenDim: 70, Layers: 3, Heads: 4, KVHeads: 4, VocabSize: 33, SeqLen: 16, SharedClassifier: false},
		{Dim: 16, HiddenDim: 16, Layers: 1, Heads: 8, KVHeads: 1, VocabSize: 7, SeqLen: 9, SharedClassifier: false},
	}
	for i, c := range configs {
		t.Run(fmt.Sprintf("config %d", i), func(t *testing.T) {
			file := checkpoint(c, uint64(i))
			m, err := ReadModel(bytes.NewReader(file), int64(len(file)))
			if err != nil {
				t.Fatal(err)
			}
			if m.Config != c {
				t.Fatalf("config %+v, want %+v", m.Config, c)
			}
			ref, st := newRunC(c, file), m.NewState(c.SeqLen)
			for pos := range c.SeqLen {
				token := (pos*7 + 3) % c.VocabSize
				if got, want := st.Forward(token, pos), ref.forward(token, pos); !slices.Equal(got, want) {
					t.Fatalf("position %d: logits differ from run.c's:\n got %v\nwant %v", pos, got, want)
				}
			}
		})
	}
}

func TestForwardPanicsOutOfRange(t *testing.T) {
	c := Config{Dim: 8, HiddenDim: 8, Layers: 1, Heads: 2, KVHeads: 2, VocabSize: 5, SeqLen: 8, SharedClassifier: true}
	file := checkpoint(c, 1)
	m, err := ReadModel(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ token, pos int }{{5, 0}, {-1, 0}, {0, 4}, {0, -1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Forward(%d, %d) on 4 positions did not panic", tt.token, tt.pos)
				}
			}()
			m.NewState(4).Forward(tt.token, tt.pos)
		}()
	}
}

func TestReadModelErrors(t *testing.T) {
	c := Config{Dim: 8, HiddenDim: 12, Layers: 2, Heads: 2, KVHeads: 1, VocabSize: 10, SeqLen: 4, SharedClassifier: true}
	good := checkpoint(c, 1)
	header := func(vals ...int32) []byte {
		var buf bytes.Buffer
		binary.Write(&buf, binary.LittleEndian, vals)
		return append(buf.Bytes(), make([]byte, 100)...)
	}
	tests := []struct {
		name string
		data []byte
		size int64 // 0: len(data)
		want string
	}{
		{"empty", nil, 0, "shorter than its 28-byte header"},
		{"truncated header", good[:20], 0, "shorter than its 28-byte header"},
		{"truncated weights", good[:len(good)-1], 0, "is 4411 bytes, its header (dim 8, 2 layers, vocab 10, seq_len 4) needs exactly 4412: truncated or not a llama2.c legacy checkpoint"},
		{"trailing bytes", append(slices.Clone(good), 1, 2, 3, 4), 0, "is 4416 bytes"},
		{"shorter than claimed", good[:100], int64(len(good)), "file is truncated"},
		{"zero dim", header(0, 12, 2, 2, 1, 10, 4), 0, "dim 0 is outside"},
		{"negative layers", header(8, 12, -2, 2, 1, 10, 4), 0, "n_layers -2 is outside"},
		{"heads do not divide dim", header(8, 12, 2, 3, 1, 10, 4), 0, "dim 8 is not a multiple of n_heads 3"},
		{"kv heads do not divide heads", header(8, 12, 2, 4, 3, 10, 4), 0, "n_heads 4 is not a multiple of n_kv_heads 3"},
		{"more kv heads than heads", header(8, 12, 2, 2, 4, 10, 4), 0, "not a multiple of n_kv_heads 4"},
		{"odd head size", header(6, 12, 2, 2, 1, 10, 4), 0, "head size 3 is odd"},
		{"absurd seq_len", header(8, 12, 2, 2, 1, 10, math.MaxInt32), 0, "seq_len 2147483647 is outside"},
		{"absurd vocabulary", header(8, 12, 2, 2, 1, math.MinInt32+1, 4), 0, "vocab_size 2147483647 is outside"},
		{"text file", []byte(strings.Repeat("not a model, just some text\n", 4)), 0, "not a llama2.c checkpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := tt.size
			if size == 0 {
				size = int64(len(tt.data))
			}
			_, err := ReadModel(bytes.NewReader(tt.data), size)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// A hostile header describing a huge model must cost nothing: the size check comes
// before any allocation.
func TestReadModelHugeHeaderAllocatesNothing(t *testing.T) {
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, []int32{maxDim, 4 * maxDim, maxLayers, maxHeads, maxHeads, maxVocab, maxSeqLen})
	data := append(buf.Bytes(), make([]byte, 1<<10)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := ReadModel(bytes.NewReader(data), int64(len(data)))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "truncated or not a llama2.c legacy checkpoint") {
		t.Fatalf("error %v, want a size mismatch", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("rejecting the header allocated %d bytes", n)
	}
}

func TestNewStateCapsPositions(t *testing.T) {
	m, _ := loadModel(t)
	if got := m.NewState(1 << 20).positions; got != m.Config.SeqLen {
		t.Errorf("NewState(1<<20) has %d positions, want the window %d", got, m.Config.SeqLen)
	}
	if got := m.NewState(10).positions; got != 10 {
		t.Errorf("NewState(10) has %d positions", got)
	}
}

func BenchmarkForward(b *testing.B) {
	m, _ := loadModel(b)
	for _, pos := range []int{0, 255, 511} {
		b.Run(fmt.Sprintf("pos%d", pos), func(b *testing.B) {
			st := m.NewState(pos + 1)
			for p := range pos {
				st.Forward(BOS, p)
			}
			for b.Loop() {
				st.Forward(BOS, pos)
			}
		})
	}
}
