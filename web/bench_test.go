package web

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/web/e2e"
)

// BenchmarkHTTP is the README's HTTP-path figure: what the full path adds to a request
// (HTTP, auth, JSON, the sandbox with a trivial pre module, SSE) against calling the
// embedded backend directly, in the same run. Every request generates 16 greedy tokens
// from the same prompt, so the backend's share is identical.
func BenchmarkHTTP(b *testing.B) {
	f := newFixture(b)
	// The trivial pipeline: the SPEC.md example, a pre module that returns its input.
	wasm, err := os.ReadFile(filepath.Join("..", "host", "testdata", "spec_example.wasm"))
	if err != nil {
		b.Fatalf("%v: run `make plugins` first", err)
	}
	id := f.push(`{"abi_version":1,"model":"stories260K","pre":[{"module":"`+host.HashOf(wasm)+`"}],"post":[]}`, wasm)
	engine := f.engine

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
	chat := func(body []byte) func() {
		return func() {
			if res := f.do("POST", "/p/"+id+"/v1/chat/completions", ownerKey, body); res.status != http.StatusOK {
				b.Fatalf("%d %s", res.status, res.body)
			}
		}
	}
	run("http-pipeline", chat(body))
	run("http-pipeline-stream", chat(streamBody))

	// End-to-end encryption (web/E2E.md) against its baseline in the same run: the same
	// requests to an attesting host (every answer signed), in plaintext ("signed") and
	// sealed to its ML-KEM-768+X25519 key, answers opened and streams read to their
	// end, the client's sealing and opening included ("e2e").
	h, _ := bootSim(b)
	fa := newFixture(b, func(c *Config, _ *recorder) { c.Attestation = h })
	fa.push(`{"abi_version":1,"model":"stories260K","pre":[{"module":"`+host.HashOf(wasm)+`"}],"post":[]}`, wasm)
	path := "/p/" + id + "/v1/chat/completions"
	signed := func(body []byte) func() {
		return func() {
			if res := fa.do("POST", path, ownerKey, body); res.status != http.StatusOK {
				b.Fatalf("%d %s", res.status, res.body)
			}
		}
	}
	pub := h.BootEvidence().E2EKeys.Public().MLKEM768X25519
	// sealed returns the time of a sealed request from its send to the last byte of the
	// answer (the host's share and the wire's), and the client's sealing and opening.
	sealed := func(body []byte, stream bool) func() (hostPath, client time.Duration) {
		return func() (time.Duration, time.Duration) {
			t0 := time.Now()
			env, c, err := e2e.SealRequest(e2e.MLKEM768X25519, pub, http.MethodPost, path,
				e2e.Request{Header: http.Header{"Authorization": {"Bearer " + ownerKey}}, Body: body})
			if err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			resp := postEnvelope(b, fa, path, env)
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Fatalf("%d %v", resp.StatusCode, err)
			}
			t2 := time.Now()
			if !stream {
				_, _, err = c.OpenBody(resp.StatusCode, raw)
			} else {
				var st *e2e.Stream
				if st, err = c.OpenStream(bytes.NewReader(raw), 1<<20); err == nil {
					_, err = io.Copy(io.Discard, st)
				}
			}
			if err != nil {
				b.Fatal(err)
			}
			return t2.Sub(t1), t1.Sub(t0) + time.Since(t2)
		}
	}
	// Paired: each iteration times one plaintext and one sealed request, so that the
	// load of a shared machine weighs on both alike. "host-e2e/signed" is
	// the ratio of the sealed requests' time on the host and the wire to the plaintext
	// ones'; "all-e2e/signed" adds the client's sealing and opening, which ran on the
	// same two cores.
	paired := func(name string, plain func(), enc func() (time.Duration, time.Duration)) {
		b.Run(name, func(b *testing.B) {
			var tp, te, tc time.Duration
			first := false
			for b.Loop() {
				// Which of the two goes first alternates, so that neither always runs
				// after the other's garbage.
				if first = !first; first {
					hostPath, client := enc()
					te, tc = te+hostPath, tc+client
				}
				t0 := time.Now()
				plain()
				tp += time.Since(t0)
				if !first {
					hostPath, client := enc()
					te, tc = te+hostPath, tc+client
				}
			}
			n := float64(b.N)
			b.ReportMetric(float64(tp.Nanoseconds())/n, "signed-ns/req")
			b.ReportMetric(float64(te.Nanoseconds())/n, "e2e-ns/req")
			b.ReportMetric(float64(tc.Nanoseconds())/n, "client-ns/req")
			b.ReportMetric(float64(te)/float64(tp), "host-e2e/signed")
			b.ReportMetric(float64(te+tc)/float64(tp), "all-e2e/signed")
		})
	}
	paired("http-pipeline-e2e", signed(body), sealed(body, false))
	paired("http-pipeline-stream-e2e", signed(streamBody), sealed(streamBody, true))
}

// BenchmarkHTTPBilled is the README's admission figure: the same non-streaming request
// unbilled (API key) and billed (signed with the escrow's client key: signature check,
// cached escrow, ledger hold, receipt signed and committed with fsync), in the same run.
// The difference is what billing adds per request.
func BenchmarkHTTPBilled(b *testing.B) {
	escrowTTL = time.Minute
	defer func() { escrowTTL = 0 }()
	plain, f := newFixture(b), newBilling(b, 900e9)
	path := "/v1/chat/completions"
	b.Run("unbilled", func(b *testing.B) {
		for b.Loop() {
			if res := plain.do("POST", path, ownerKey, chatBody); res.status != http.StatusOK {
				b.Fatalf("%d %s", res.status, res.body)
			}
		}
	})
	b.Run("billed", func(b *testing.B) {
		for b.Loop() {
			if res := f.signed(b, f.clientKey, path, chatBody, nil); res.status != http.StatusOK {
				b.Fatalf("%d %s", res.status, res.body)
			}
		}
	})
}
