package plugins_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/abi/guest"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/internal/proctest"
	"github.com/cocoonhost/cocoon/plugins/output-guard/go/guard"
	"github.com/cocoonhost/cocoon/plugins/prompt-template/go/template"
)

// The benchmark pipeline: prompt-template as pre, output-guard as post, on a 4 KiB
// request, non-streaming, with a fresh instance of each module per request.
var (
	templateConfig = []byte(`{"system":"You are a storyteller for children.","user_template":"Write a short story about: {{content}}"}`)
	guardConfig    = []byte(`{"words":["darn","heck","drat"]}`)
	benchRequest   = func() []byte {
		b, _ := json.Marshal(map[string]any{
			"model":      "stories260K",
			"max_tokens": 256,
			"messages": []map[string]string{
				{"role": "user", "content": strings.Repeat("a cat and a dog who find a darn big box, ", 100)},
			},
		})
		return b
	}()
	story = strings.Fields(strings.Repeat("Once upon a time there was a cat. The cat said heck and ran. ", 10))
)

// generateStory stands in for the backend: the benchmark measures the modules, so it
// emits a fixed 600-byte story word by word.
func generateStory(ctx context.Context, request []byte, emit func(string) error) (host.Generation, error) {
	for _, w := range story {
		if err := emit(w + " "); err != nil {
			return host.Generation{}, err
		}
	}
	return host.Generation{ID: "chatcmpl-bench", Created: 1, Model: "stories260K", FinishReason: "stop", PromptTokens: 1000, CompletionTokens: len(story)}, nil
}

func benchPipeline(b *testing.B, s *host.Sandbox, lang string) *host.Pipeline {
	b.Helper()
	compile := func(plugin string) *host.Module {
		wasm, err := os.ReadFile(plugin + "/" + lang + "/" + plugin + ".wasm")
		if err != nil {
			b.Fatalf("%v: run `make plugins` first", err)
		}
		m, err := s.Compile(context.Background(), wasm)
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
	p, err := s.NewPipeline(host.PipelineSpec{
		Pre:  []host.ModuleSpec{{Module: compile("prompt-template"), Config: templateConfig}},
		Post: []host.ModuleSpec{{Module: compile("output-guard"), Config: guardConfig}},
	})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// nativePipeline is the same transform in native Go, the baseline: decode, apply and
// encode the request; build, decode, apply and encode the response.
func nativePipeline(tmpl template.Config, g guard.Config) func() ([]byte, error) {
	return func() ([]byte, error) {
		var req guest.ChatRequest
		if err := json.Unmarshal(benchRequest, &req); err != nil {
			return nil, err
		}
		if err := tmpl.Request(&req); err != nil {
			return nil, err
		}
		if _, err := json.Marshal(&req); err != nil {
			return nil, err
		}
		var content strings.Builder
		gen, _ := generateStory(context.Background(), nil, func(d string) error { content.WriteString(d); return nil })
		resp, _ := json.Marshal(map[string]any{"id": gen.ID, "object": "chat.completion", "created": gen.Created, "model": gen.Model,
			"choices": []any{map[string]any{"index": 0, "message": map[string]string{"role": "assistant", "content": content.String()}, "finish_reason": gen.FinishReason}}})
		var r guest.ChatResponse
		if err := json.Unmarshal(resp, &r); err != nil {
			return nil, err
		}
		g.Response(&r)
		return json.Marshal(&r)
	}
}

// BenchmarkPipeline is the README's per-request overhead figure: pre + post on a 4 KiB
// request with per-request isolation, for the AssemblyScript, C and Go examples and
// native Go.
func BenchmarkPipeline(b *testing.B) {
	tmpl, err := template.ParseConfig(templateConfig)
	if err != nil {
		b.Fatal(err)
	}
	g, err := guard.ParseConfig(guardConfig)
	if err != nil {
		b.Fatal(err)
	}
	native := nativePipeline(tmpl, g)
	b.Run("native", func(b *testing.B) {
		b.SetBytes(int64(len(benchRequest)))
		b.ReportAllocs()
		defer reportCPU(b)()
		for b.Loop() {
			if _, err := native(); err != nil {
				b.Fatal(err)
			}
		}
	})
	s := newSandbox(b)
	for _, lang := range []string{"as", "c", "go"} {
		p := benchPipeline(b, s, lang)
		b.Run(lang, func(b *testing.B) {
			b.SetBytes(int64(len(benchRequest)))
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				res, err := p.Run(context.Background(), benchRequest, generateStory, nil)
				if err != nil {
					b.Fatal(err)
				}
				if !strings.Contains(string(res.Response), "The cat said **** and ran.") {
					b.Fatalf("the guard did not run: %s", res.Response)
				}
			}
		})
	}
}

// reportCPU starts counting the process's CPU time (user and system, all threads) and
// returns the function that reports it per operation as cpu-ns/op. On a machine that
// other work loads, wall time per operation grows with the wait for a processor;
// CPU time much less, so ratios of cpu-ns/op measured in one run stay comparable.
func reportCPU(b *testing.B) func() {
	start := proctest.CPU()
	return func() {
		b.ReportMetric(float64(proctest.CPU()-start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkStreamDelta is the cost of one streamed delta through the output guard, once
// its instance exists: the per-token overhead of a post module.
func BenchmarkStreamDelta(b *testing.B) {
	g, err := guard.ParseConfig(guardConfig)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("native", func(b *testing.B) {
		st := g.NewStream()
		for i := 0; b.Loop(); i++ {
			st.Chunk(story[i%len(story)] + " ")
		}
	})
	s := newSandbox(b)
	for _, lang := range []string{"as", "c", "go"} {
		p := benchPipeline(b, s, lang)
		b.Run(lang, func(b *testing.B) {
			sess := p.NewSession(context.Background())
			defer sess.Close()
			for i := 0; b.Loop(); i++ {
				if _, err := sess.Chunk(story[i%len(story)] + " "); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
