package llama2

import (
	"cmp"
	"slices"
)

// Sampler picks each next token from the logits, as run.c does: greedily at
// temperature 0; otherwise from the softmax of logits/temperature, restricted to the
// smallest set of most likely tokens whose probabilities sum past topP (nucleus
// sampling) when 0 < topP < 1.
//
// Its random numbers come from run.c's generator, xorshift64* (shifts 12, 25, 27,
// multiplier 0x2545F4914F6CDD1D, top 32 bits, then the top 24 of those as a float32 in
// [0, 1)), so a seed gives the same tokens on every machine and the same tokens as run.c
// with that seed (run.c's qsort breaks ties between equal probabilities in its own way;
// Sampler keeps them in token order). A Sampler is not safe for concurrent use.
type Sampler struct {
	temperature, topP float32
	rng               uint64
	candidates        []candidate // scratch for top-p
}

type candidate struct {
	prob float32
	id   int
}

// zeroSeed replaces a zero seed: xorshift's state must not be zero.
const zeroSeed = 0x9E3779B97F4A7C15

// NewSampler returns a Sampler. temperature must not be negative.
func NewSampler(temperature, topP float32, seed uint64) *Sampler {
	if seed == 0 {
		seed = zeroSeed
	}
	return &Sampler{temperature: temperature, topP: topP, rng: seed}
}

// Sample returns the next token. It overwrites logits with probabilities unless the
// temperature is 0.
func (s *Sampler) Sample(logits []float32) int {
	if s.temperature == 0 {
		return argmax(logits)
	}
	for i := range logits {
		logits[i] /= s.temperature
	}
	softmax(logits)
	coin := s.float32()
	if s.topP <= 0 || s.topP >= 1 {
		return sampleMult(logits, coin)
	}
	return s.sampleTopP(logits, coin)
}

// argmax returns the index of the largest value, the first one on a tie.
func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// sampleMult returns the index where the cumulative probability passes coin.
func sampleMult(probs []float32, coin float32) int {
	var cdf float32
	for i, p := range probs {
		cdf += p
		if coin < cdf {
			return i
		}
	}
	return len(probs) - 1 // rounding left the total below coin
}

// sampleTopP samples from the nucleus. Tokens below (1-topP)/(n-1) cannot be in it
// and are dropped before sorting, which is what makes this cheap.
func (s *Sampler) sampleTopP(probs []float32, coin float32) int {
	cutoff := (1 - s.topP) / float32(len(probs)-1)
	c := s.candidates[:0]
	for i, p := range probs {
		if p >= cutoff {
			c = append(c, candidate{p, i})
		}
	}
	s.candidates = c
	if len(c) == 0 {
		// Only when topP is tiny and the distribution flat (or not finite): every
		// probability is below the cutoff, so the nucleus is the most likely token.
		return argmax(probs)
	}
	slices.SortStableFunc(c, func(a, b candidate) int { return cmp.Compare(b.prob, a.prob) })
	var cum float32
	last := len(c) - 1
	for i := range c {
		cum += c[i].prob
		if cum > s.topP {
			last = i
			break
		}
	}
	r := coin * cum
	var cdf float32
	for _, cand := range c[:last+1] {
		cdf += cand.prob
		if r < cdf {
			return cand.id
		}
	}
	return c[last].id
}

// float32 returns the next random number in [0, 1).
func (s *Sampler) float32() float32 {
	s.rng ^= s.rng >> 12
	s.rng ^= s.rng << 25
	s.rng ^= s.rng >> 27
	u := uint32((s.rng * 0x2545F4914F6CDD1D) >> 32)
	return float32(u>>8) / 16777216
}
