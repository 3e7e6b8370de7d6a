package web

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/host/backend"
)

// BenchmarkHTTP is the README's HTTP-path figure: what the full path adds to a request
// (HTTP, auth, JSON, the sandbox with a trivial pre module, SSE) against calling the
// embedded backend directly, in the same run. Every request generates 16 greedy tokens
// from the same prompt, so the backend's share is identical.
func BenchmarkHTTP(b *testing.B) {
	engine, sandbox := shared(b)
	dir := b.TempDir()
	store, err := host.OpenStore(context.Background(), sandbox, filepath.Join(dir, "modules"))
	if err != nil {
		b.Fatal(err)
	}
	registry, err := host.OpenRegistry(sandbox, store, filepath.Join(dir, "pipelines"))
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{Backend: engine, Sandbox: sandbox, Store: store, Registry: registry,
		APIKeys: []APIKey{{Name: "owner", Key: ownerKey}}, MaxGenerations: 4})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	// The trivial pipeline: the SPEC.md example, a pre module that returns its input.
	wasm, err := os.ReadFile(filepath.Join("..", "host", "testdata", "spec_example.wasm"))
	if err != nil {
		b.Fatalf("%v: run `make plugins` first", err)
	}
	upload, _ := json.Marshal(map[string]any{
		"manifest": map[string]any{"abi_version": 1, "model": "stories260K", "pre": []any{map[string]any{"module": host.HashOf(wasm)}}, "post": []any{}},
		"modules":  map[string]string{host.HashOf(wasm): base64.StdEncoding.EncodeToString(wasm)},
	})
	var created struct{ ID string }
	post(b, srv.URL+"/v1/pipelines", upload, &created)

	zero := 0.0
	direct := &backend.Request{Messages: []backend.Message{{Role: "user", Content: "Once upon a time"}}, MaxTokens: 16, Temperature: &zero}
	body := []byte(`{"model":"stories260K","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":16,"temperature":0}`)
	streamBody := []byte(`{"model":"stories260K","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":16,"temperature":0,"stream":true}`)

	run := func(name string, f func()) {
		b.Run(name, func(b *testing.B) {
			start := time.Now()
			for b.Loop() {
				f()
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
	run("direct", func() {
		if _, err := engine.Generate(context.Background(), direct, func(string) error { return nil }); err != nil {
			b.Fatal(err)
		}
	})
	run("http-pipeline", func() { post(b, srv.URL+"/p/"+created.ID+"/v1/chat/completions", body, nil) })
	run("http-pipeline-stream", func() { post(b, srv.URL+"/p/"+created.ID+"/v1/chat/completions", streamBody, nil) })
}

// post sends an authorized POST and decodes the JSON answer into out (if not nil),
// failing on any status but 200 and 201.
func post(b *testing.B, url string, body []byte, out any) {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+ownerKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil || (res.StatusCode != 200 && res.StatusCode != 201) {
		b.Fatalf("%s: %d %s %v", url, res.StatusCode, data, err)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			b.Fatal(err)
		}
	}
}
