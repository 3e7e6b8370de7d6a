package plugin

import (
	"context"
	"testing"

	"github.com/cocoonhost/cocoon/host/backend"
)

// BenchmarkTokenOverhead measures what the process boundary costs per streamed token:
// the same backend streams 256 tiny deltas per Generate with no work between them, in
// process and through a plugin process. The difference of the ns/token figures is the
// boundary's cost (a gRPC message each way through go-plugin's mTLS connection).
//
//	go test -run '^$' -bench TokenOverhead -benchtime 2s ./host/backend/plugin
func BenchmarkTokenOverhead(b *testing.B) {
	const tokens = 256
	run := func(b *testing.B, be backend.Backend) {
		req := request("words 256")
		n := 0
		emit := func(string) error { n++; return nil }
		for b.Loop() {
			if _, err := be.Generate(context.Background(), req, emit); err != nil {
				b.Fatal(err)
			}
		}
		if n != b.N*tokens {
			b.Fatalf("%d deltas, want %d", n, b.N*tokens)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/token")
	}
	b.Run("in-process", func(b *testing.B) { run(b, &scripted{}) })
	b.Run("plugin", func(b *testing.B) {
		c, _ := launch(b, "serve", 0)
		run(b, c)
	})
}
