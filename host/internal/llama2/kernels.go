package llama2

import "math"

// matmul sets out = W·x for a row-major W of len(out) rows and len(x) columns. It is
// where most of a step's time goes. It runs on the calling goroutine: splitting a
// product across CPUs measured no gain on a 2-CPU machine at any size
// (BenchmarkMatmul), as handing work over costs microseconds and large products are
// bound by memory bandwidth; concurrent generations use the other CPUs instead.
func matmul(out, x, w []float32) { matmulStride(out, x, w, len(x)) }

// matmulStride sets each out[i] to the dot product of x and the len(x) values of w
// from i·stride on. Each row is summed in order, as run.c does, so the results are
// run.c's to the bit; four rows at a time give the CPU four independent chains of
// additions to overlap, and load each element of x once for all four.
func matmulStride(out, x, w []float32, stride int) {
	n := len(x)
	i := 0
	for ; i+4 <= len(out); i += 4 {
		o0 := i * stride
		o1, o2, o3 := o0+stride, o0+2*stride, o0+3*stride
		r0, r1, r2, r3 := w[o0:o0+n], w[o1:o1+n], w[o2:o2+n], w[o3:o3+n]
		var s0, s1, s2, s3 float32
		for j, xj := range x {
			s0 += r0[j] * xj
			s1 += r1[j] * xj
			s2 += r2[j] * xj
			s3 += r3[j] * xj
		}
		o := out[i : i+4 : i+4]
		o[0], o[1], o[2], o[3] = s0, s1, s2, s3
	}
	for ; i < len(out); i++ {
		out[i] = dot(x, w[i*stride:i*stride+n])
	}
}

// dot returns the dot product of a and b[:len(a)], summed in order.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s float32
	for i, v := range a {
		s += v * b[i]
	}
	return s
}

// axpy adds a·x to y.
func axpy(y []float32, a float32, x []float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += a * x[i]
	}
}

// add adds x to y.
func add(y, x []float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += x[i]
	}
}

// rmsnorm sets out = weight * x / rms(x), as run.c does (epsilon 1e-5).
func rmsnorm(out, x, weight []float32) {
	ss := dot(x, x)/float32(len(x)) + 1e-5
	ss = 1 / float32(math.Sqrt(float64(ss)))
	x, weight = x[:len(out)], weight[:len(out)]
	for i := range out {
		out[i] = weight[i] * (ss * x[i])
	}
}

// softmax turns x into probabilities in place.
func softmax(x []float32) {
	maxVal := x[0]
	for _, v := range x[1:] {
		maxVal = max(maxVal, v)
	}
	var sum float32
	for i, v := range x {
		e := expf(v - maxVal)
		x[i] = e
		sum += e
	}
	for i := range x {
		x[i] /= sum
	}
}

// swiglu sets h = silu(h) * g, the gate of Llama's feed-forward layer.
func swiglu(h, g []float32) {
	g = g[:len(h)]
	for i, v := range h {
		h[i] = v * (1 / (1 + expf(-v))) * g[i]
	}
}

// expf is e^x in float32, like C's expf.
func expf(x float32) float32 { return float32(math.Exp(float64(x))) }
