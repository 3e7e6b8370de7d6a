// Package llama2 is a pure-Go inference engine for Llama 2 architecture models in the
// llama2.c formats: it loads a legacy checkpoint and its tokenizer, runs the transformer
// one token at a time with a KV cache, and samples the next token. Each step computes
// what llama2.c's run.c computes (RMSNorm, RoPE, grouped-query attention, SwiGLU), in
// float32 and in the same order of operations, so the logits equal run.c's to the bit
// except where Go's exp, sin and cos round differently from C's (by one ulp, rarely) or
// where the compiler fuses multiply-adds (arm64); greedy generation reproduces run.c's
// output.
//
// A Model holds the weights and is read-only once loaded: any number of goroutines may
// share it, each with its own State (activations and KV cache) and Sampler. A step
// costs about 2·parameters floating-point operations plus attention over the positions
// so far, on one CPU: concurrent generations are what use the others.
package llama2

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// Config is the header of a llama2.c checkpoint: seven little-endian int32 values.
type Config struct {
	Dim       int // width of the residual stream
	HiddenDim int // width of the feed-forward layer
	Layers    int
	Heads     int // query heads
	KVHeads   int // key/value heads; fewer than Heads means grouped-query attention
	VocabSize int
	SeqLen    int // context window in tokens
	// SharedClassifier says the output classifier reuses the token embedding table.
	// The file marks an unshared classifier with a negative vocabulary size.
	SharedClassifier bool
}

// HeaderSize is the size in bytes of a checkpoint's header.
const HeaderSize = 7 * 4

// Bounds on header values. They are far above any model in the llama2.c format, and
// they keep every size computed from a header well inside an int64; the real bound on
// what a load allocates is the file size, which must match the header exactly.
const (
	maxDim    = 1 << 16
	maxLayers = 1 << 10
	maxHeads  = 1 << 10
	maxVocab  = 1 << 21
	maxSeqLen = 1 << 20
)

// Model is a loaded checkpoint. It is immutable and safe for concurrent use.
type Model struct {
	Config Config

	embed     []float32 // VocabSize × Dim
	layers    []layer
	finalNorm []float32 // Dim
	cls       []float32 // VocabSize × Dim; embed when the classifier is shared

	// ropeCos and ropeSin hold RoPE's rotation for each position and each pair of
	// dimensions in a head (SeqLen × HeadSize/2): run.c recomputes them every step.
	ropeCos, ropeSin []float32
}

// layer is one transformer block's weights. Matrices are row-major, out × in.
type layer struct {
	attNorm []float32 // Dim
	wq      []float32 // Dim × Dim
	wk, wv  []float32 // KVDim × Dim
	wo      []float32 // Dim × Dim
	ffnNorm []float32 // Dim
	w1, w3  []float32 // HiddenDim × Dim
	w2      []float32 // Dim × HiddenDim
}

// HeadSize is the width of one attention head.
func (c Config) HeadSize() int { return c.Dim / c.Heads }

// KVDim is the width of the keys (and values) of one position in one layer.
func (c Config) KVDim() int { return c.HeadSize() * c.KVHeads }

// FileSize returns the exact size in bytes of a checkpoint with this header. It
// assumes a Config that passed validation.
func (c Config) FileSize() int64 {
	return HeaderSize + 4*c.fileFloats()
}

// fileFloats counts the float32 values after the header, in run.c's order.
func (c Config) fileFloats() int64 {
	dim, hidden, layers := int64(c.Dim), int64(c.HiddenDim), int64(c.Layers)
	kvDim, headSize := int64(c.KVDim()), int64(c.HeadSize())
	n := int64(c.VocabSize) * dim // token embedding table
	n += layers * (dim +          // rms_att_weight
		dim*dim + 2*dim*kvDim + dim*dim + // wq, wk, wv, wo
		dim + // rms_ffn_weight
		3*dim*hidden) // w1, w2, w3
	n += dim                        // rms_final_weight
	n += int64(c.SeqLen) * headSize // freq_cis_real and freq_cis_imag, unused
	if !c.SharedClassifier {
		n += int64(c.VocabSize) * dim // wcls
	}
	return n
}

func (c Config) validate() error {
	checks := []struct {
		name     string
		val, max int
	}{
		{"dim", c.Dim, maxDim},
		{"hidden_dim", c.HiddenDim, 4 * maxDim},
		{"n_layers", c.Layers, maxLayers},
		{"n_heads", c.Heads, maxHeads},
		{"n_kv_heads", c.KVHeads, maxHeads},
		{"vocab_size", c.VocabSize, maxVocab},
		{"seq_len", c.SeqLen, maxSeqLen},
	}
	for _, ch := range checks {
		if ch.val < 1 || ch.val > ch.max {
			return fmt.Errorf("%s %d is outside 1..%d", ch.name, ch.val, ch.max)
		}
	}
	switch {
	case c.Dim%c.Heads != 0:
		return fmt.Errorf("dim %d is not a multiple of n_heads %d", c.Dim, c.Heads)
	case c.HeadSize()%2 != 0:
		return fmt.Errorf("head size %d is odd; RoPE rotates pairs", c.HeadSize())
	case c.KVHeads > c.Heads || c.Heads%c.KVHeads != 0:
		return fmt.Errorf("n_heads %d is not a multiple of n_kv_heads %d", c.Heads, c.KVHeads)
	}
	return nil
}

// ReadModel reads a llama2.c legacy checkpoint (the format of run.c and of the
// tinyllamas files) of size bytes from r. It checks the header's values and that size
// is exactly what the header implies before it allocates anything, so a corrupt or
// hostile file costs at most its own size in memory. Loading costs one pass over the
// file; the model takes its size in memory.
func ReadModel(r io.Reader, size int64) (*Model, error) {
	var hdr [7]int32
	if size < HeaderSize {
		return nil, fmt.Errorf("llama2: checkpoint is %d bytes, shorter than its %d-byte header", size, HeaderSize)
	}
	if err := binary.Read(r, binary.LittleEndian, &hdr); err != nil {
		return nil, fmt.Errorf("llama2: reading checkpoint header: %w", noEOF(err))
	}
	c := Config{
		Dim: int(hdr[0]), HiddenDim: int(hdr[1]), Layers: int(hdr[2]), Heads: int(hdr[3]),
		KVHeads: int(hdr[4]), VocabSize: int(hdr[5]), SeqLen: int(hdr[6]),
		SharedClassifier: hdr[5] > 0,
	}
	if c.VocabSize < 0 {
		c.VocabSize = -c.VocabSize
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("llama2: not a llama2.c checkpoint: header: %v", err)
	}
	if want := c.FileSize(); size != want {
		return nil, fmt.Errorf("llama2: checkpoint is %d bytes, its header (dim %d, %d layers, vocab %d, seq_len %d) needs exactly %d: truncated or not a llama2.c legacy checkpoint",
			size, c.Dim, c.Layers, c.VocabSize, c.SeqLen, want)
	}
	data := make([]float32, c.fileFloats())
	if err := readFloats(r, data); err != nil {
		return nil, fmt.Errorf("llama2: reading checkpoint weights: %w", noEOF(err))
	}
	return newModel(c, data), nil
}

// newModel slices data, laid out in run.c's order, into the model's tensors.
func newModel(c Config, data []float32) *Model {
	take := func(n int) []float32 {
		s := data[:n:n]
		data = data[n:]
		return s
	}
	dim, hidden, kvDim := c.Dim, c.HiddenDim, c.KVDim()
	m := &Model{Config: c, layers: make([]layer, c.Layers)}
	m.embed = take(c.VocabSize * dim)
	// The file stores each kind of tensor for all layers together.
	for i := range m.layers {
		m.layers[i].attNorm = take(dim)
	}
	for i := range m.layers {
		m.layers[i].wq = take(dim * dim)
	}
	for i := range m.layers {
		m.layers[i].wk = take(kvDim * dim)
	}
	for i := range m.layers {
		m.layers[i].wv = take(kvDim * dim)
	}
	for i := range m.layers {
		m.layers[i].wo = take(dim * dim)
	}
	for i := range m.layers {
		m.layers[i].ffnNorm = take(dim)
	}
	for i := range m.layers {
		m.layers[i].w1 = take(hidden * dim)
	}
	for i := range m.layers {
		m.layers[i].w2 = take(dim * hidden)
	}
	for i := range m.layers {
		m.layers[i].w3 = take(hidden * dim)
	}
	m.finalNorm = take(dim)
	take(c.SeqLen * c.HeadSize()) // freq_cis_real, freq_cis_imag: recomputed below
	m.cls = m.embed
	if !c.SharedClassifier {
		m.cls = take(c.VocabSize * dim)
	}
	m.ropeCos, m.ropeSin = ropeTables(c.SeqLen, c.HeadSize())
	return m
}

// ropeTables computes, as run.c does in float32, the rotation angle of each position
// and each even dimension i of a head: pos / 10000^(i/headSize).
func ropeTables(seqLen, headSize int) (cos, sin []float32) {
	half := headSize / 2
	cos = make([]float32, seqLen*half)
	sin = make([]float32, seqLen*half)
	for pos := range seqLen {
		for j := range half {
			freq := 1 / float32(math.Pow(10000, float64(float32(2*j)/float32(headSize))))
			val := float64(float32(pos) * freq)
			cos[pos*half+j] = float32(math.Cos(val))
			sin[pos*half+j] = float32(math.Sin(val))
		}
	}
	return cos, sin
}

// readFloats fills dst with little-endian float32 values from r, through a small
// buffer so that loading needs no second copy of the weights.
func readFloats(r io.Reader, dst []float32) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf [4 << 10]byte
	for len(dst) > 0 {
		n := min(len(dst), len(buf)/4)
		if _, err := io.ReadFull(br, buf[:4*n]); err != nil {
			return err
		}
		for i := range n {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
		}
		dst = dst[n:]
	}
	return nil
}

// noEOF reports a file that ends early as truncated rather than as a bare EOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("file is truncated")
	}
	return err
}
