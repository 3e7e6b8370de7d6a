package meter

import (
	"context"
	"os"
	"testing"
	"time"
)

// BenchmarkInstrument instruments the largest module make plugins builds (a Go guest).
func BenchmarkInstrument(b *testing.B) {
	var wasm []byte
	for _, path := range realModules(b) {
		if m, err := os.ReadFile(path); err == nil && len(m) > len(wasm) {
			wasm = m
		}
	}
	b.SetBytes(int64(len(wasm)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := instrument(wasm, testMaxDepth, testFrameLocals); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoop runs a tight loop (a byte load and an add per iteration) without any
// way to stop it, with wazero's WithCloseOnContextDone, and metered, and reports the
// time per iteration.
func BenchmarkLoop(b *testing.B) {
	const iterations = 1_000_000
	loops := testModule(b, "loops")
	for _, bc := range []struct {
		name               string
		wasm               []byte
		closeOnContextDone bool
	}{
		{"unbounded", loops, false},
		{"close-on-context-done", loops, true},
		{"metered", mustInstrument(b, loops), false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			g := instantiate(b, newRuntime(b, bc.closeOnContextDone), bc.wasm, nil)
			fn := g.mod.ExportedFunction("sum_memory")
			ctx, cancel := context.WithTimeout(g.ctx(context.Background()), time.Hour)
			defer cancel()
			var sum uint64
			for b.Loop() {
				r, err := fn.Call(ctx, iterations)
				if err != nil {
					b.Fatal(err)
				}
				sum = r[0]
			}
			if sum == 0 {
				b.Fatal("sum_memory returned 0")
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/iterations, "ns/iter")
		})
	}
}

// BenchmarkSmallFill runs a loop of 16-byte memory.fill instructions, as uploaded and
// metered (each fill becomes a call that charges its bytes), and reports the time per
// fill: what metering adds to a small bulk operation.
func BenchmarkSmallFill(b *testing.B) {
	const fills = 100_000
	bulk := testModule(b, "bulk")
	for _, bc := range []struct {
		name string
		wasm []byte
	}{{"unbounded", bulk}, {"metered", mustInstrument(b, bulk)}} {
		b.Run(bc.name, func(b *testing.B) {
			g := instantiate(b, newRuntime(b, false), bc.wasm, nil)
			fn := g.mod.ExportedFunction("fill_loop")
			ctx := g.ctx(context.Background())
			for b.Loop() {
				if _, err := fn.Call(ctx, 16, fills); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/fills, "ns/fill")
		})
	}
}
