package llama2

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestMatmul checks the kernel, four rows at a time and the rest one by one, against
// run.c's loop, to the bit.
func TestMatmul(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, size := range []struct{ rows, cols int }{{1, 1}, {1, 9}, {3, 5}, {4, 4}, {5, 8}, {13, 7}, {64, 64}, {172, 64}} {
		t.Run(fmt.Sprintf("%dx%d", size.rows, size.cols), func(t *testing.T) {
			w, x := make([]float32, size.rows*size.cols), make([]float32, size.cols)
			for i := range w {
				w[i] = rng.Float32()*2 - 1
			}
			for i := range x {
				x[i] = rng.Float32()*2 - 1
			}
			got, want := make([]float32, size.rows), make([]float32, size.rows)
			matmul(got, x, w)
			refMatmul(want, x, w, size.cols, size.rows)
			if !slices.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}
