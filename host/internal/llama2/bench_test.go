package llama2

import (
	"fmt"
	"testing"
)

// BenchmarkDecode measures greedy decoding from BOS over the first 256 positions, the
// figure to compare with run.c's tokens/s.
func BenchmarkDecode(b *testing.B) {
	m, _ := loadModel(b)
	const steps = 256
	st := m.NewState(steps)
	s := NewSampler(0, 0, 1)
	for b.Loop() {
		token := BOS
		for pos := range steps {
			token = s.Sample(st.Forward(token, pos))
		}
	}
	b.ReportMetric(float64(b.N*steps)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkMatmul measures the matrix-vector kernel on the shapes of stories260K
// (dim 64, hidden 172, vocab 512) and of larger models.
func BenchmarkMatmul(b *testing.B) {
	for _, size := range []struct{ rows, cols int }{
		{64, 64}, {172, 64}, {512, 64}, {288, 288}, {768, 288}, {1024, 1024}, {4096, 1024}, {32000, 288},
	} {
		out, x, w := make([]float32, size.rows), make([]float32, size.cols), make([]float32, size.rows*size.cols)
		for i := range w {
			w[i] = float32(i%7) * 0.1
		}
		for i := range x {
			x[i] = float32(i%5) * 0.1
		}
		b.Run(fmt.Sprintf("%dx%d", size.rows, size.cols), func(b *testing.B) {
			for b.Loop() {
				matmul(out, x, w)
			}
			b.ReportMetric(float64(b.N*size.rows*size.cols)/b.Elapsed().Seconds()/1e9, "GMAC/s")
		})
	}
}
