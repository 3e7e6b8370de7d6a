package llama2

import (
	"fmt"
	"math"
)

// State is one generation's working memory: activations and the KV cache. A State is
// not safe for concurrent use; give each generation its own.
type State struct {
	m         *Model
	positions int

	x, xb, xb2 []float32 // Dim
	q          []float32 // Dim
	hb, hb2    []float32 // HiddenDim
	att        []float32 // Heads × positions
	logits     []float32 // VocabSize
	// keys and values cache each layer's keys and values for every position so far:
	// Layers × positions × KVDim.
	keys, values []float32
}

// NewState returns a State for a sequence of at most positions tokens (capped at the
// model's SeqLen). It allocates 4·positions·(2·Layers·KVDim + Heads) bytes for the KV
// cache and attention scores, so size it to the longest sequence the generation needs.
func (m *Model) NewState(positions int) *State {
	c := m.Config
	positions = max(1, min(positions, c.SeqLen))
	cache := c.Layers * positions * c.KVDim()
	return &State{
		m:         m,
		positions: positions,
		x:         make([]float32, c.Dim),
		xb:        make([]float32, c.Dim),
		xb2:       make([]float32, c.Dim),
		q:         make([]float32, c.Dim),
		hb:        make([]float32, c.HiddenDim),
		hb2:       make([]float32, c.HiddenDim),
		att:       make([]float32, c.Heads*positions),
		logits:    make([]float32, c.VocabSize),
		keys:      make([]float32, cache),
		values:    make([]float32, cache),
	}
}

// Forward runs token at position pos through the model and returns the logits of the
// next token. Positions 0..pos-1 must have been run before, in order, on this State.
// The logits belong to the State and are overwritten by the next call; the caller may
// modify them. Forward panics if token or pos is out of range.
func (s *State) Forward(token, pos int) []float32 {
	m, c := s.m, s.m.Config
	if token < 0 || token >= c.VocabSize || pos < 0 || pos >= s.positions {
		panic(fmt.Sprintf("llama2: Forward(token %d, pos %d) outside vocabulary %d or %d positions", token, pos, c.VocabSize, s.positions))
	}
	dim, kvDim := c.Dim, c.KVDim()
	x := s.x
	copy(x, m.embed[token*dim:(token+1)*dim])
	for l := range m.layers {
		w := &m.layers[l]
		// Attention: project to q, k, v; k and v go straight into the cache.
		rmsnorm(s.xb, x, w.attNorm)
		layerOff := l * s.positions * kvDim
		keys := s.keys[layerOff : layerOff+(pos+1)*kvDim]
		values := s.values[layerOff : layerOff+(pos+1)*kvDim]
		k, v := keys[pos*kvDim:], values[pos*kvDim:] // this position's slots
		matmul(s.q, s.xb, w.wq)
		matmul(k, s.xb, w.wk)
		matmul(v, s.xb, w.wv)
		s.rope(s.q, k, pos)
		s.attention(keys, values, pos)
		matmul(s.xb2, s.xb, w.wo)
		add(x, s.xb2)

		// Feed-forward: w2(silu(w1·x) * w3·x).
		rmsnorm(s.xb, x, w.ffnNorm)
		matmul(s.hb, s.xb, w.w1)
		matmul(s.hb2, s.xb, w.w3)
		swiglu(s.hb, s.hb2)
		matmul(s.xb, s.hb, w.w2)
		add(x, s.xb)
	}
	rmsnorm(x, x, m.finalNorm)
	matmul(s.logits, x, m.cls)
	return s.logits
}

// rope rotates each pair of dimensions of q and k by its position's angle. k is
// narrower than q under grouped-query attention.
func (s *State) rope(q, k []float32, pos int) {
	half := s.m.Config.HeadSize() / 2
	cos := s.m.ropeCos[pos*half : (pos+1)*half]
	sin := s.m.ropeSin[pos*half : (pos+1)*half]
	rotate := func(vec []float32) {
		for i := 0; i+1 < len(vec); i += 2 {
			j := (i / 2) % half
			fcr, fci := cos[j], sin[j]
			v0, v1 := vec[i], vec[i+1]
			vec[i] = v0*fcr - v1*fci
			vec[i+1] = v0*fci + v1*fcr
		}
	}
	rotate(q)
	rotate(k)
}

// attention computes each head's attention over positions 0..pos into s.xb. keys and
// values hold this layer's cache for those positions.
func (s *State) attention(keys, values []float32, pos int) {
	c := s.m.Config
	hs, kvDim := c.HeadSize(), c.KVDim()
	kvMul := c.Heads / c.KVHeads // query heads per key/value head
	scale := float32(math.Sqrt(float64(hs)))
	for h := range c.Heads {
		q := s.q[h*hs : (h+1)*hs]
		att := s.att[h*s.positions : h*s.positions+pos+1]
		kvOff := (h / kvMul) * hs
		matmulStride(att, q, keys[kvOff:], kvDim)
		for t := range att {
			att[t] /= scale
		}
		softmax(att)
		out := s.xb[h*hs : (h+1)*hs]
		clear(out)
		for t, a := range att {
			off := t*kvDim + kvOff
			axpy(out, a, values[off:off+hs])
		}
	}
}
