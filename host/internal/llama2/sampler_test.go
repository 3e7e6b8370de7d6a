package llama2

import (
	"slices"
	"testing"
)

func TestSamplerRandomMatchesRunC(t *testing.T) {
	// run.c's random_f32 with rng_state 42, computed independently.
	s := NewSampler(1, 1, 42)
	for i, want := range []float32{0.3390852212905884, 0.7822558283805847, 0.790136992931366} {
		if got := s.float32(); got != want {
			t.Errorf("draw %d = %v, want %v", i, got, want)
		}
	}
	if z := NewSampler(1, 1, 0); z.float32() == 0 && z.float32() == 0 {
		t.Error("seed 0 left xorshift stuck at zero")
	}
}

func TestGreedy(t *testing.T) {
	s := NewSampler(0, 0.9, 1)
	logits := []float32{1, 5, -2, 5, 3}
	if got := s.Sample(slices.Clone(logits)); got != 1 {
		t.Errorf("greedy picked %d, want 1 (the first of the largest)", got)
	}
}

func TestSampleMult(t *testing.T) {
	probs := []float32{0.1, 0.2, 0.3, 0.4}
	for _, tt := range []struct {
		coin float32
		want int
	}{{0, 0}, {0.09, 0}, {0.1, 1}, {0.35, 2}, {0.61, 3}, {0.999, 3}, {1.5, 3}} {
		if got := sampleMult(probs, tt.coin); got != tt.want {
			t.Errorf("sampleMult(coin %v) = %d, want %d", tt.coin, got, tt.want)
		}
	}
}

func TestSampleTopP(t *testing.T) {
	// Sorted: 3 (0.4), 2 (0.3), 1 (0.2), 0 (0.1). With top-p 0.6 the nucleus is {3, 2}
	// (0.4+0.3 passes 0.6) and the coin scales to its mass, 0.7: token 3 up to 0.4/0.7.
	probs := []float32{0.1, 0.2, 0.3, 0.4}
	s := &Sampler{topP: 0.6}
	for _, tt := range []struct {
		coin float32
		want int
	}{{0, 3}, {0.5, 3}, {0.57, 3}, {0.572, 2}, {0.999, 2}} {
		if got := s.sampleTopP(probs, tt.coin); got != tt.want {
			t.Errorf("sampleTopP(coin %v) = %d, want %d", tt.coin, got, tt.want)
		}
	}
	// Equal probabilities keep token order.
	if got := (&Sampler{topP: 0.3}).sampleTopP([]float32{0.25, 0.25, 0.25, 0.25}, 0); got != 0 {
		t.Errorf("tie: picked %d, want 0", got)
	}
	// A nucleus so small that every token is under the cutoff is the top token.
	flat := make([]float32, 512)
	for i := range flat {
		flat[i] = 1.0 / 512
	}
	flat[7] += 1e-6
	if got := (&Sampler{topP: 1e-4}).sampleTopP(flat, 0.5); got != 7 {
		t.Errorf("tiny top-p: picked %d, want 7", got)
	}
}

func TestSeededSamplingIsReproducible(t *testing.T) {
	m, tok := loadModel(t)
	gen := func(seed uint64, topP float32) string {
		return generate(m, tok, "Once upon a time", 120, NewSampler(1, topP, seed))
	}
	for _, topP := range []float32{1, 0.9} {
		a, b, c := gen(7, topP), gen(7, topP), gen(8, topP)
		if a != b {
			t.Errorf("top-p %v: seed 7 gave two texts:\n%q\n%q", topP, a, b)
		}
		if a == c {
			t.Errorf("top-p %v: seeds 7 and 8 gave the same text %q", topP, a)
		}
	}
}
