package host

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// request4KiB is a chat request of about 4 KiB, the size the README's figures use.
func request4KiB() []byte {
	b, _ := json.Marshal(map[string]any{
		"model": "m",
		"messages": []map[string]string{
			{"role": "system", "content": "You are a storyteller."},
			{"role": "user", "content": strings.Repeat("Tell me a story about a cat and a dog. ", 100)},
		},
	})
	return b
}

// BenchmarkRun measures what the sandbox adds to a request: fresh instances, the
// calls, the copies and the host's JSON checks. "no-modules" is the same request through
// an empty pipeline, the baseline; "wat" runs the SPEC.md example as pre and a
// stream-and-post module as post.
func BenchmarkRun(b *testing.B) {
	s := newTestSandbox(b)
	req := request4KiB()
	for _, bc := range []struct {
		name string
		spec PipelineSpec
	}{
		{"no-modules", PipelineSpec{}},
		{"wat", PipelineSpec{
			Pre:  []ModuleSpec{{Module: compile(b, s, "spec_example")}},
			Post: []ModuleSpec{{Module: compile(b, s, "hold")}},
		}},
	} {
		p := pipeline(b, s, bc.spec)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(req)))
			for b.Loop() {
				if _, err := p.Run(context.Background(), req, storyteller, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInstantiate measures a fresh instance of a small module, the per-request
// cost of isolation.
func BenchmarkInstantiate(b *testing.B) {
	s := newTestSandbox(b)
	p := pipeline(b, s, PipelineSpec{Pre: []ModuleSpec{{Module: compile(b, s, "spec_example")}}})
	b.ReportAllocs()
	for b.Loop() {
		sess := p.NewSession(context.Background())
		if _, err := sess.instance(StagePre, 0); err != nil {
			b.Fatal(err)
		}
		sess.Close()
	}
}
