package web

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
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
	// sealed, answers opened and streams read to their end, the client's sealing and
	// opening included: to its X25519 key and to its ML-KEM-768+X25519 key, a fresh KEM
	// per request, and as the default clients seal (e2e.Sessions: web/client's Chat,
	// cocoon proxy): under a session established by a first ML-KEM-768+X25519 request,
	// made before the timer starts, so that every timed request is a session envelope.
	h, _ := bootSim(b)
	fa := newFixture(b, func(c *Config, _ *recorder) { c.Attestation = h })
	fa.push(`{"abi_version":1,"model":"stories260K","pre":[{"module":"`+host.HashOf(wasm)+`"}],"post":[]}`, wasm)
	path := "/p/" + id + "/v1/chat/completions"
	pub := h.BootEvidence().E2EKeys.Public()
	sessions, established := e2e.NewSessions(), false
	// A variant times one request: from the start of its sealing to the last byte of
	// the answer opened. hostPath is the host's and the wire's share (send to last
	// byte received), client the client's sealing and opening.
	type variant struct {
		name string
		run  func(body []byte, stream bool) (hostPath, client time.Duration)
	}
	signed := variant{"signed", func(body []byte, _ bool) (time.Duration, time.Duration) {
		t0 := time.Now()
		if res := fa.do("POST", path, ownerKey, body); res.status != http.StatusOK {
			b.Fatalf("%d %s", res.status, res.body)
		}
		return time.Since(t0), 0
	}}
	sealedWith := func(name string, seal func(body []byte) ([]byte, *e2e.Client, error)) variant {
		return variant{name, func(body []byte, stream bool) (time.Duration, time.Duration) {
			t0 := time.Now()
			env, c, err := seal(body)
			if err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			req, _ := http.NewRequest(http.MethodPost, fa.http.URL+path, bytes.NewReader(env))
			req.Header.Set("Content-Type", e2e.ContentType)
			resp, err := fa.http.Client().Do(req)
			if err != nil {
				b.Fatal(err)
			}
			raw, err := io.ReadAll(resp.Body)
			resp.Body.Close()
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
		}}
	}
	sealTo := func(s e2e.Suite) func([]byte) ([]byte, *e2e.Client, error) {
		return func(body []byte) ([]byte, *e2e.Client, error) {
			return e2e.SealRequest(s, pub.Key(s), http.MethodPost, path, e2e.Request{Header: http.Header{"Authorization": {"Bearer " + ownerKey}}, Body: body})
		}
	}
	variants := []variant{signed,
		sealedWith("x25519", sealTo(e2e.X25519)),
		sealedWith("mlkem768x25519", sealTo(e2e.MLKEM768X25519)),
		sealedWith("mlkem768x25519-session", func(body []byte) ([]byte, *e2e.Client, error) {
			env, c, err := sessions.Seal(e2e.MLKEM768X25519, pub.MLKEM768X25519, http.MethodPost, path, e2e.Request{Header: http.Header{"Authorization": {"Bearer " + ownerKey}}, Body: body})
			if err == nil && established && env[0] != e2e.SessionVersion {
				b.Fatalf("a request of the session variant was sealed as version %d", env[0])
			}
			return env, c, err
		}),
	}
	variants[len(variants)-1].run(body, false) // establishes the session
	established = true
	// Interleaved: each iteration times one request of each variant, so that the load
	// of a shared machine weighs on all alike, and which goes first rotates, so that
	// none always runs after another's garbage. For each sealed variant v,
	// "v-host/signed" is the median over iterations of the ratio of its time on the
	// host and the wire to the plaintext request's of the same iteration, and
	// "v/signed" adds the client's sealing and opening, which ran on the same two
	// cores: the bound is on the latter. Medians of pairs, since a burst of
	// another process's load lands on a few iterations, not on the figure.
	interleaved := func(name string, body []byte, stream bool) {
		b.Run(name, func(b *testing.B) {
			hostPath := make([][]time.Duration, len(variants))
			client := make([][]time.Duration, len(variants))
			round := 0
			for b.Loop() {
				for i := range variants {
					v := (round + i) % len(variants)
					hp, c := variants[v].run(body, stream)
					hostPath[v], client[v] = append(hostPath[v], hp), append(client[v], c)
				}
				round++
			}
			mean := func(ds []time.Duration) float64 {
				var sum time.Duration
				for _, d := range ds {
					sum += d
				}
				return float64(sum.Nanoseconds()) / float64(len(ds))
			}
			medianRatio := func(v int, withClient bool) float64 {
				r := make([]float64, round)
				for i := range r {
					e := hostPath[v][i]
					if withClient {
						e += client[v][i]
					}
					r[i] = float64(e) / float64(hostPath[0][i])
				}
				slices.Sort(r)
				return r[len(r)/2]
			}
			b.ReportMetric(mean(hostPath[0]), "signed-ns/req")
			for v := 1; v < len(variants); v++ {
				b.ReportMetric(mean(client[v]), variants[v].name+"-client-ns/req")
				b.ReportMetric(medianRatio(v, false), variants[v].name+"-host/signed")
				b.ReportMetric(medianRatio(v, true), variants[v].name+"/signed")
			}
		})
	}
	interleaved("http-pipeline-e2e", body, false)
	interleaved("http-pipeline-stream-e2e", streamBody, true)
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
