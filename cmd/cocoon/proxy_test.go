package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/web"
)

const proxyKey = "proxy-test-key"

// cannedBackend answers every request with the same deltas.
type cannedBackend struct{ deltas []string }

func (b cannedBackend) Generate(ctx context.Context, req *backend.Request, emit func(string) error) (backend.Result, error) {
	for _, d := range b.deltas {
		if err := emit(d); err != nil {
			return backend.Result{FinishReason: "cancelled"}, err
		}
	}
	return backend.Result{FinishReason: "stop", Usage: backend.Usage{PromptTokens: 3, CompletionTokens: len(b.deltas)}, Model: "m"}, nil
}

func (cannedBackend) Models(context.Context) ([]backend.Model, error) {
	return []backend.Model{{ID: "m", OwnedBy: "test"}}, nil
}
func (cannedBackend) Health(context.Context) error { return nil }
func (cannedBackend) Close() error                 { return nil }

// simWebHost runs the real web server with simulated attestation and a pipeline
// without modules, behind rewrite, which may change what the host sends. It returns
// the host's URL, the pipeline id and the sim root's path.
func simWebHost(t *testing.T, rewrite func(h http.Header, body string) string) (string, string, string) {
	t.Helper()
	dir := t.TempDir()
	sim, err := attest.NewSim(filepath.Join(dir, "attest"))
	if err != nil {
		t.Fatal(err)
	}
	ah, err := attest.Boot(context.Background(), sim, "embedded", "m")
	if err != nil {
		t.Fatal(err)
	}
	sandbox, err := host.NewSandbox(context.Background(), host.NewSandboxConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sandbox.Close(context.Background()) })
	store, err := host.OpenStore(context.Background(), sandbox, filepath.Join(dir, "modules"))
	if err != nil {
		t.Fatal(err)
	}
	registry, err := host.OpenRegistry(sandbox, store, filepath.Join(dir, "pipelines"), make([]byte, host.MinRegistryKey))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := web.New(web.Config{Backend: cannedBackend{[]string{"Hello", ", ", "world"}}, Sandbox: sandbox, Store: store,
		Registry: registry, APIKeys: []web.APIKey{{Name: "t", Key: proxyKey}}, Attestation: ah, MaxQuotesPerSecond: 100})
	if err != nil {
		t.Fatal(err)
	}
	handler := srv.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rewrite == nil || !strings.HasSuffix(r.URL.Path, "/chat/completions") {
			handler.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, r)
		body := rewrite(rec.Header(), rec.Body.String())
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		io.WriteString(w, body)
	}))
	t.Cleanup(ts.Close)

	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/pipelines", strings.NewReader(`{"manifest":{"abi_version":1,"model":"m"},"modules":{}}`))
	req.Header.Set("Authorization", "Bearer "+proxyKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || p.ID == "" {
		t.Fatalf("push: %s %v", resp.Status, err)
	}
	return ts.URL, p.ID, filepath.Join(dir, "attest", attest.SimRootFile)
}

// startProxy verifies the host as `cocoon proxy` does at start and serves the proxy.
func startProxy(t *testing.T, url, id, root string) string {
	t.Helper()
	trustedRoot := mustRoot(t, root)
	p := &proxy{base: url, key: proxyKey, pipelineID: id, opts: attest.EvidenceOptions{SimRoot: trustedRoot}, log: io.Discard}
	if err := p.start(context.Background(), io.Discard); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(p)
	t.Cleanup(ts.Close)
	return ts.URL
}

func mustRoot(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := attest.ParseCertificatePEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func postChat(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const (
	chatBody   = `{"messages":[{"role":"user","content":"hi"}]}`
	streamBody = `{"messages":[{"role":"user","content":"hi"}],"stream":true}`
	usageBody  = `{"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`
)

func TestProxy(t *testing.T) {
	tamper := func(_ http.Header, s string) string { return strings.Replace(s, "world", "w0rld", 1) }
	// beforeDone adds an event before [DONE], where a billing host puts its receipt.
	beforeDone := func(event string) func(http.Header, string) string {
		return func(_ http.Header, s string) string {
			return strings.Replace(s, "data: [DONE]", "data: "+event+"\n\ndata: [DONE]", 1)
		}
	}
	tests := []struct {
		name    string
		rewrite func(h http.Header, body string) string
		body    string
		status  int
		want    []string // in the answer, in order
		notWant []string
	}{
		{"completion", nil, chatBody, 200, []string{`"content":"Hello, world"`}, nil},
		{"stream", nil, streamBody, 200, []string{`"content":"Hello"`, `"content":"world"`, "data: [DONE]"},
			[]string{`"usage"`, `"error"`}},
		{"stream with usage", nil, usageBody, 200, []string{`"content":"world"`, `"usage":{"prompt_tokens":3`, `"cocoon_signature":"ed25519=`, "data: [DONE]"}, []string{`"error"`}},
		{"tampered completion", tamper, chatBody, 502, []string{"not signed by the attested host key", `"code":"unverified_response"`}, []string{"w0rld"}},
		{"tampered stream", tamper, streamBody, 200, []string{`"content":"w0rld"`, "not signed by the attested host key", `"code":"unverified_response"`},
			[]string{"[DONE]"}},
		{"stream without signature", func(_ http.Header, s string) string { return strings.ReplaceAll(s, `"cocoon_signature"`, `"x"`) }, usageBody, 200,
			[]string{`"content":"world"`, "the stream ended without one"}, []string{"[DONE]"}},
		{"stream with a receipt", beforeDone(`{"object":"chat.completion.chunk","choices":[],"cocoon_receipt":{"seq":1}}`), usageBody, 200,
			[]string{`"cocoon_signature":"ed25519=`, `"cocoon_receipt":{"seq":1}`, "data: [DONE]"}, []string{`"error"`}},
		{"content after the signature", beforeDone(`{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"!"}}]}`), usageBody, 200,
			[]string{`"content":"world"`, "after the signed chunk"}, []string{"[DONE]", `"content":"!"`}},
		{"completion without signature", func(h http.Header, s string) string { h.Del(attest.ResponseSignatureHeader); return s }, chatBody, 502,
			[]string{"the host sent none"}, []string{"Hello"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, id, root := simWebHost(t, tt.rewrite)
			status, got := postChat(t, startProxy(t, url, id, root), tt.body)
			if status != tt.status {
				t.Fatalf("status %d, want %d: %s", status, tt.status, got)
			}
			rest := got
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("answer lacks %q (in order):\n%s", w, got)
				}
				rest = rest[i+len(w):]
			}
			for _, w := range tt.notWant {
				if strings.Contains(got, w) {
					t.Fatalf("answer contains %q:\n%s", w, got)
				}
			}
		})
	}
}

func TestProxyModels(t *testing.T) {
	url, id, root := simWebHost(t, nil)
	resp, err := http.Get(startProxy(t, url, id, root) + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"id":"m"`) {
		t.Fatalf("%s: %s", resp.Status, b)
	}
}

// The proxy refuses to start, exit 1 before it listens, when the host does not verify.
func TestProxyRefusesToStart(t *testing.T) {
	url, id, root := simWebHost(t, nil)
	_, _, otherRoot := simWebHost(t, nil)
	tests := []struct {
		name       string
		args       []string
		code       int
		stderrPart string
	}{
		{"sim not trusted", []string{"--host", url, "--pipeline", id}, 1,
			"refusing to proxy to " + url + ", which does not verify: boot evidence: quote signature chain: "},
		{"another sim root", []string{"--host", url, "--pipeline", id, "--trust-sim-root", otherRoot}, 1,
			"boot evidence: quote signature chain: not signed by the given simulator root"},
		{"module not run", []string{"--host", url, "--pipeline", id, "--trust-sim-root", root, "--expect-module", moduleA}, 1,
			"pipeline evidence: expected modules: the pipeline does not run " + moduleA},
		{"unknown pipeline", []string{"--host", url, "--pipeline", strings.Repeat("ee", 32), "--trust-sim-root", root}, 1, "the host refused (404 Not Found)"},
		{"no pipeline", []string{"--host", url}, 2, "is not a pipeline id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			// A free port: were the proxy to start, it would block here and time out.
			args := append([]string{"proxy", "--listen", "127.0.0.1:0", "--api-key", proxyKey}, tt.args...)
			code := runCommand(args, strings.NewReader(""), &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.stderrPart) {
				t.Fatalf("exit %d, want %d; stderr: %s\nwant stderr containing %q", code, tt.code, stderr.String(), tt.stderrPart)
			}
		})
	}
}
