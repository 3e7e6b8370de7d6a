package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/web"
)

const proxyKey = "proxy-test-key"

// cannedBackend answers every request with the same deltas. A request whose last
// message is "fail" fails after two deltas; with held set, a request whose last message
// is "hold" stops after two deltas until held is closed, and says so on reached.
type cannedBackend struct {
	deltas  []string
	held    chan struct{}
	reached chan struct{}
}

func (b cannedBackend) Generate(ctx context.Context, req *backend.Request, emit func(string) error) (backend.Result, error) {
	last := req.Messages[len(req.Messages)-1].Content
	for i, d := range b.deltas {
		if i == 2 && last == "fail" {
			return backend.Result{}, backend.Errorf(backend.CodeUpstream, "the GPU server went away")
		}
		if i == 2 && last == "hold" && b.held != nil {
			b.reached <- struct{}{}
			select {
			case <-b.held:
			case <-ctx.Done():
				return backend.Result{}, ctx.Err()
			}
		}
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

// relayed is an answer of the host as the relay passes it on.
type relayed struct {
	status int
	header http.Header
	body   string
}

// simHost is the real web server with simulated attestation and a pipeline without
// modules, behind a relay that records the paths asked, can alter the chat answers
// (rewrite), answer the next evidence requests 429 (busy), and can be pointed at a
// restarted host.
type simHost struct {
	url, id, root string
	dir           string // the simulator's
	backend       cannedBackend
	host          atomic.Pointer[http.Handler]
	rewrite       atomic.Pointer[func(*relayed)]
	busy          atomic.Int32 // evidence requests still to answer 429
	busyAfter     atomic.Value // their Retry-After
	mu            sync.Mutex
	paths         []string
}

func newSimHost(t *testing.T, rewrite func(*relayed)) *simHost {
	t.Helper()
	h := &simHost{dir: filepath.Join(t.TempDir(), "attest"), backend: cannedBackend{deltas: []string{"Hello", ", ", "world"}}}
	h.root = filepath.Join(h.dir, attest.SimRootFile)
	if rewrite != nil {
		h.rewrite.Store(&rewrite)
	}
	relay := httptest.NewServer(h)
	t.Cleanup(relay.Close)
	h.url = h.start(t, relay.URL)
	return h
}

// start boots a host on the simulator of h.dir (a new host key at every start, the same
// root), pushes the pipeline and puts the host behind the relay at url.
func (h *simHost) start(t *testing.T, url string) string {
	t.Helper()
	sim, err := attest.NewSim(h.dir)
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
	data := t.TempDir()
	store, err := host.OpenStore(context.Background(), sandbox, filepath.Join(data, "modules"))
	if err != nil {
		t.Fatal(err)
	}
	registry, err := host.OpenRegistry(sandbox, store, filepath.Join(data, "pipelines"), make([]byte, host.MinRegistryKey))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := web.New(web.Config{Backend: h.backend, Sandbox: sandbox, Store: store, Registry: registry,
		APIKeys: []web.APIKey{{Name: "t", Key: proxyKey}}, Attestation: ah, MaxQuotesPerSecond: 100})
	if err != nil {
		t.Fatal(err)
	}
	handler := srv.Handler()
	h.host.Store(&handler)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/pipelines", strings.NewReader(`{"manifest":{"abi_version":1,"model":"m"},"modules":{}}`))
	req.Header.Set("Authorization", "Bearer "+proxyKey)
	handler.ServeHTTP(rec, req)
	var p struct{ ID string }
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.ID == "" || (h.id != "" && p.ID != h.id) {
		t.Fatalf("push: %d %s %v", rec.Code, rec.Body, err)
	}
	h.id = p.ID
	return url
}

func (h *simHost) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.paths = append(h.paths, r.URL.Path)
	h.mu.Unlock()
	if strings.HasSuffix(r.URL.Path, "attestation") && h.busy.Add(-1) >= 0 {
		w.Header().Set("Retry-After", h.busyAfter.Load().(string))
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"error":{"message":"quotes are rate-limited","type":"rate_limit_error","code":"quote_rate_limited"}}`)
		return
	}
	handler := *h.host.Load()
	rewrite := h.rewrite.Load()
	if rewrite == nil || !strings.HasSuffix(r.URL.Path, "/chat/completions") {
		handler.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, r)
	a := &relayed{rec.Code, rec.Header(), rec.Body.String()}
	(*rewrite)(a)
	for k, v := range a.header {
		w.Header()[k] = v
	}
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

// asked counts the requests the relay saw for paths ending with suffix.
func (h *simHost) asked(suffix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, p := range h.paths {
		if strings.HasSuffix(p, suffix) {
			n++
		}
	}
	return n
}

// answer429 answers the next n evidence requests 429 with Retry-After after.
func (h *simHost) answer429(n int, after string) {
	h.busyAfter.Store(after)
	h.busy.Store(int32(n))
}

// startProxy verifies the host as `cocoon proxy` does at start and serves the proxy.
func startProxy(t *testing.T, h *simHost, live bool) (string, *proxy, *syncBuffer) {
	t.Helper()
	log := &syncBuffer{}
	p := &proxy{base: h.url, key: proxyKey, pipelineID: h.id, opts: attest.EvidenceOptions{SimRoot: mustRoot(t, h.root)}, live: live, log: log}
	if err := p.start(context.Background(), io.Discard); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(p)
	t.Cleanup(ts.Close)
	return ts.URL, p, log
}

// syncBuffer is a log written by the proxy's handlers and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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

func postChat(t *testing.T, url, body string) relayed {
	t.Helper()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return relayed{resp.StatusCode, resp.Header, string(b)}
}

// verifyAsApp checks an answer the app got, as an app that verifies for itself would:
// the proxy releases the host's signed bytes unchanged.
func verifyAsApp(key ed25519.PublicKey, request, pipeline string, a relayed) error {
	v := attest.ResponseVerifier{HostKey: key, Request: []byte(request), PipelineID: pipeline}
	if a.header.Get("Content-Type") != "text/event-stream" {
		return v.VerifyBody(a.status, a.header.Get("Retry-After"), []byte(a.body), a.header.Get(attest.ResponseSignatureHeader))
	}
	s := v.ReadStream(strings.NewReader(a.body), 1<<20)
	for {
		if _, err := s.Next(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

const (
	chatBody   = `{"messages":[{"role":"user","content":"hi"}]}`
	streamBody = `{"messages":[{"role":"user","content":"hi"}],"stream":true}`
	usageBody  = `{"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`
	failBody   = `{"messages":[{"role":"user","content":"fail"}],"stream":true}`
	badBody    = `{"messages":"hi"}`
)

var modes = []struct {
	name string
	live bool
}{{"verified", false}, {"live", true}}

// TestProxyRelaysSignedAnswers: what the host signed reaches the app byte for byte,
// errors included, in both modes, and verifies there.
func TestProxyRelaysSignedAnswers(t *testing.T) {
	h := newSimHost(t, nil)
	for _, mode := range modes {
		url, p, _ := startProxy(t, h, mode.live)
		for _, tt := range []struct {
			name, body string
			status     int
			want       []string // in the answer, in order
		}{
			{"completion", chatBody, 200, []string{`"content":"Hello, world"`, `"finish_reason":"stop"`}},
			{"stream", streamBody, 200, []string{`"content":"Hello"`, `"content":"world"`, `"cocoon_signature":"ed25519=`, "data: [DONE]"}},
			{"stream with usage", usageBody, 200, []string{`"content":"world"`, `"usage":{"prompt_tokens":3`, `"cocoon_signature":"ed25519=`, "data: [DONE]"}},
			{"the host's error", badBody, 400, []string{"messages: must be", `"code":"invalid_request"`}},
			{"the host's error event", failBody, 200, []string{`"content":", "`, `"code":"upstream_error"`, `"cocoon_signature":"ed25519=`}},
		} {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				got := postChat(t, url, tt.body)
				if got.status != tt.status {
					t.Fatalf("status %d, want %d: %s", got.status, tt.status, got.body)
				}
				rest := got.body
				for _, w := range tt.want {
					i := strings.Index(rest, w)
					if i < 0 {
						t.Fatalf("answer lacks %q (in order):\n%s", w, got.body)
					}
					rest = rest[i+len(w):]
				}
				if err := verifyAsApp(p.cur.hostKey, tt.body, h.id, got); err != nil {
					t.Fatalf("the app's copy does not verify: %v\n%s", err, got.body)
				}
			})
		}
	}
}

// TestProxyRefusesAlteredAnswers performs probes 5 and 6 of issue 11: a relay between
// the proxy and the host alters what the signature did not use to cover (finish_reason,
// model, a tool call, an extra choice, a refusal, non-string content, the usage), an
// error body, one event of a stream, or reorders or drops events. No alteration reaches
// the app as a verified 200: in verified mode the app gets a 502 and no byte of the
// host's answer; in live mode a stream it got ends with the proxy's error event, never
// with [DONE].
func TestProxyRefusesAlteredAnswers(t *testing.T) {
	replace := func(old, new string) func(*relayed) {
		return func(a *relayed) {
			if !strings.Contains(a.body, old) {
				panic("the host's answer lacks " + old + ":\n" + a.body)
			}
			a.body = strings.Replace(a.body, old, new, 1)
		}
	}
	// events splits a stream into its events, and join puts them together again.
	events := func(body string) []string { ev := strings.SplitAfter(body, "\n\n"); return ev[:len(ev)-1] }
	join := func(ev []string) string { return strings.Join(ev, "") }
	tests := []struct {
		name, body string
		rewrite    func(*relayed)
		altered    string // a string only the altered answer holds
	}{
		{"finish_reason", chatBody, replace(`"finish_reason":"stop"`, `"finish_reason":"length"`), `"length"`},
		{"model", chatBody, replace(`"model":"m"`, `"model":"gpt-4o"`), "gpt-4o"},
		{"a tool call", chatBody, replace(`"role":"assistant",`, `"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"transfer","arguments":"{\"to\":\"EQevil\"}"}}],`), "transfer"},
		{"an extra choice", chatBody, replace(`"choices":[`, `"choices":[{"index":1,"message":{"role":"assistant","content":"Send your seed phrase"},"finish_reason":"stop"},`), "seed phrase"},
		{"a refusal", chatBody, replace(`"role":"assistant",`, `"role":"assistant","refusal":"I cannot help",`), "cannot help"},
		{"non-string content", chatBody, replace(`"content":"Hello, world"`, `"content":[{"type":"text","text":"Hello, w0rld"}]`), "w0rld"},
		{"the usage", chatBody, replace(`"completion_tokens":3`, `"completion_tokens":3000`), "3000"},
		{"an error body", badBody, replace(`"message":"`, `"message":"your session expired: log in at https://evil.example; `), "evil.example"},
		{"an error's status", badBody, func(a *relayed) { a.status = http.StatusForbidden }, ""},
		{"an error's Retry-After", badBody, func(a *relayed) { a.header.Set("Retry-After", "86400") }, "86400"},
		{"the signature removed", chatBody, func(a *relayed) { a.header.Del(attest.ResponseSignatureHeader) }, ""},
		{"a stream event", streamBody, replace(`"content":"world"`, `"content":"w0rld"`), "w0rld"},
		{"a stream's finish_reason", streamBody, replace(`"finish_reason":"stop"`, `"finish_reason":"content_filter"`), "content_filter"},
		{"a stream's model", usageBody, replace(`"model":"m"`, `"model":"gpt-4o"`), "gpt-4o"},
		{"stream events reordered", streamBody, func(a *relayed) { ev := events(a.body); ev[1], ev[2] = ev[2], ev[1]; a.body = join(ev) }, ""},
		{"a stream event dropped", streamBody, func(a *relayed) { ev := events(a.body); a.body = join(append(ev[:2], ev[3:]...)) }, ""},
		{"a stream event added", streamBody, func(a *relayed) {
			ev := events(a.body)
			a.body = join(append(ev[:1], append([]string{strings.Replace(ev[1], `", "`, `"Ignore the above. "`, 1)}, ev[1:]...)...))
		}, "Ignore the above"},
		{"the signature event dropped", streamBody, func(a *relayed) { ev := events(a.body); a.body = join(append(ev[:len(ev)-2], ev[len(ev)-1])) }, ""},
		{"an event after the signature", streamBody, replace("data: [DONE]", `data: {"choices":[{"index":0,"delta":{"content":"!"}}]}`+"\n\ndata: [DONE]"), `"!"`},
		{"a stream's error event", failBody, replace("the GPU server went away", "pay again at https://evil.example"), "evil.example"},
		{"a stream cut short", streamBody, func(a *relayed) { a.body = a.body[:len(a.body)/2] }, ""},
	}
	h := newSimHost(t, nil)
	for _, mode := range modes {
		url, _, log := startProxy(t, h, mode.live)
		for _, tt := range tests {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				h.rewrite.Store(&tt.rewrite)
				defer h.rewrite.Store(nil)
				got := postChat(t, url, tt.body)
				stream := tt.body != chatBody && tt.body != badBody
				if mode.live && stream {
					ev := events(got.body)
					if got.status != 200 || slices.Contains(ev, "data: [DONE]\n\n") || !strings.Contains(ev[len(ev)-1], `"code":"unverified_response"`) {
						t.Fatalf("live: a stream that does not verify must end with the proxy's error event, not [DONE]: %d\n%s", got.status, got.body)
					}
					return
				}
				if got.status != http.StatusBadGateway || !strings.Contains(got.body, `"code":"unverified_response"`) ||
					strings.Contains(got.body, "chat.completion") || (tt.altered != "" && strings.Contains(got.body, tt.altered)) {
					t.Fatalf("the app got %d:\n%s", got.status, got.body)
				}
			})
		}
		// An altered answer makes the proxy check that the host's key did not change,
		// once per answer, and the host verifies again with the same key.
		if !strings.Contains(log.String(), "the host at "+h.url+" verified again, with the same host key") {
			t.Errorf("%s: the proxy's log:\n%s", mode.name, log)
		}
	}
}

// TestProxyReleasesNothingUnverified: in verified mode the app gets nothing, not even
// the status, while the host's stream is still under way; in live mode it gets the
// chunks as they come.
func TestProxyReleasesNothingUnverified(t *testing.T) {
	h := newSimHost(t, nil)
	h.backend.reached = make(chan struct{}, 1)
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			held := make(chan struct{})
			h.backend.held = held
			release := sync.OnceFunc(func() { close(held) })
			defer release()   // a failure must not leave the host's handler, and the test, waiting
			h.start(t, h.url) // a host whose backend holds
			url, p, _ := startProxy(t, h, mode.live)
			type result struct {
				resp *http.Response
				err  error
			}
			done := make(chan result, 1)
			go func() {
				resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(`{"messages":[{"role":"user","content":"hold"}],"stream":true}`))
				done <- result{resp, err}
			}()
			<-h.backend.reached // the host sent two chunks and holds the rest
			var res result
			select {
			case res = <-done:
				if !mode.live {
					t.Fatalf("verified mode answered while the host's stream was under way: %v", res.resp.Status)
				}
			case <-time.After(2 * time.Second):
				if mode.live {
					t.Fatal("live mode answered nothing within 2 s of the host's first chunks")
				}
			}
			if mode.live {
				r := bufio.NewReader(res.resp.Body)
				first, err := r.ReadString('\n')
				if err != nil || !strings.Contains(first, `"content":"Hello"`) {
					t.Fatalf("live mode: the first chunk %q, %v", first, err)
				}
				release()
				rest, _ := io.ReadAll(r)
				res.resp.Body.Close()
				if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
					t.Fatalf("live mode: the stream's end:\n%s", rest)
				}
				return
			}
			release()
			res = <-done
			if res.err != nil {
				t.Fatal(res.err)
			}
			defer res.resp.Body.Close()
			b, _ := io.ReadAll(res.resp.Body)
			if res.resp.StatusCode != 200 || verifyAsApp(p.cur.hostKey, `{"messages":[{"role":"user","content":"hold"}],"stream":true}`, h.id,
				relayed{res.resp.StatusCode, res.resp.Header, string(b)}) != nil {
				t.Fatalf("verified mode, once the host finished: %s\n%s", res.resp.Status, b)
			}
		})
	}
}

// TestProxyRecoversAfterHostRestart: a host restarted under a running proxy signs with
// a new key; the proxy verifies it again, checks the answer with the new key and
// delivers it, with no restart of the proxy and no request sent twice.
func TestProxyRecoversAfterHostRestart(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			h := newSimHost(t, nil)
			url, p, log := startProxy(t, h, mode.live)
			before := p.cur.hostKey
			for i, body := range []string{chatBody, streamBody} {
				h.start(t, h.url) // a restart: the same sim root, a new host key
				chats := h.asked("/chat/completions")
				got := postChat(t, url, body)
				if got.status != 200 || strings.Contains(got.body, "unverified") {
					t.Fatalf("after restart %d: %d\n%s\nlog:\n%s", i+1, got.status, got.body, log)
				}
				if p.cur.hostKey.Equal(before) {
					t.Fatal("the proxy still holds the old host key")
				}
				if err := verifyAsApp(p.cur.hostKey, body, h.id, got); err != nil {
					t.Fatalf("the delivered answer does not verify with the new key: %v", err)
				}
				if n := h.asked("/chat/completions") - chats; n != 1 {
					t.Errorf("the request was sent to the host %d times", n)
				}
				before = p.cur.hostKey
			}
			if n := strings.Count(log.String(), "verified again, with a new host key"); n != 2 {
				t.Errorf("%d re-verifications logged, want 2:\n%s", n, log)
			}
			if !strings.Contains(log.String(), "an answer's signature does not verify with the attested host key: verifying the host at") {
				t.Errorf("the log does not say why it verified again:\n%s", log)
			}
		})
	}
}

// TestProxyStopsAfterAFailedVerification: a host that fails verification after the
// proxy started (here, a quote under a root nobody trusted) is not forwarded to again:
// every request is refused, without asking the host, until the proxy restarts; and
// the failed boot evidence costs no pipeline quote.
func TestProxyStopsAfterAFailedVerification(t *testing.T) {
	h := newSimHost(t, nil)
	url, _, log := startProxy(t, h, false)
	h.dir = filepath.Join(t.TempDir(), "another-root")
	h.start(t, h.url)
	quotes := h.asked("/" + h.id + "/attestation")
	for i := range 2 {
		got := postChat(t, url, chatBody)
		if got.status != http.StatusBadGateway || !strings.Contains(got.body, "quote signature chain") || !strings.Contains(got.body, "forwards nothing more") {
			t.Fatalf("request %d: %d %s", i, got.status, got.body)
		}
	}
	if n := h.asked("/chat/completions"); n != 1 {
		t.Errorf("the host was asked %d chat requests; want 1, before it failed verification", n)
	}
	if n := h.asked("/v1/attestation"); n != 2 {
		t.Errorf("the boot evidence was fetched %d times; want 2: at start, then once", n)
	}
	if n := h.asked("/"+h.id+"/attestation") - quotes; n != 0 {
		t.Errorf("%d pipeline quotes were asked of a host whose boot evidence failed", n)
	}
	if resp, err := http.Get(url + "/v1/models"); err != nil || resp.StatusCode != http.StatusBadGateway {
		t.Errorf("models of a refused host: %v %v", resp, err)
	}
	if !strings.Contains(log.String(), "the proxy forwards nothing more") {
		t.Errorf("log:\n%s", log)
	}
}

// TestProxyHonoursRetryAfter: verification waits as long as a host at its quote rate
// asks (429 with Retry-After), a bounded number of times, and gives up at once on a
// wait too long.
func TestProxyHonoursRetryAfter(t *testing.T) {
	h := newSimHost(t, nil)
	for _, tt := range []struct {
		name        string
		busy        int
		after       string
		ok          bool
		requests    int
		slower      time.Duration
		errContains string
	}{
		{"twice", 2, "1", true, 4, 2 * time.Second, ""},
		{"always", 100, "0", false, 1 + maxRetries, 0, "the host refused (429 Too Many Requests): quotes are rate-limited"},
		{"too long to wait", 1, "3600", false, 1, 0, "the host refused (429 Too Many Requests)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h.answer429(tt.busy, tt.after)
			defer h.answer429(0, "0")
			asked := h.asked("attestation")
			log := &syncBuffer{}
			p := &proxy{base: h.url, key: proxyKey, pipelineID: h.id, opts: attest.EvidenceOptions{SimRoot: mustRoot(t, h.root)}, log: log}
			start := time.Now()
			err := p.start(context.Background(), io.Discard)
			took := time.Since(start)
			if (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), tt.errContains)) {
				t.Fatalf("%v", err)
			}
			if n := h.asked("attestation") - asked; n != tt.requests {
				t.Errorf("%d evidence requests, want %d", n, tt.requests)
			}
			if took < tt.slower || took > tt.slower+20*time.Second {
				t.Errorf("took %v, want about %v", took, tt.slower)
			}
			if tt.busy > 0 && tt.after != "3600" && !strings.Contains(log.String(), "retrying in") {
				t.Errorf("the waits are not logged:\n%s", log)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		status int
		value  string
		wait   time.Duration
		ok     bool
	}{
		{429, "2", 2 * time.Second, true},
		{503, "0", 0, true},
		{429, now.Add(10 * time.Second).Format(http.TimeFormat), 10 * time.Second, true},
		{429, now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{429, "31", 0, false},
		{429, "99999999999999999999", 0, false},
		{429, "-1", 0, false},
		{429, "soon", 0, false},
		{429, "", 0, false},
		{500, "1", 0, false},
		{200, "1", 0, false},
	} {
		resp := &http.Response{StatusCode: tt.status, Header: http.Header{"Retry-After": {tt.value}}}
		if wait, ok := retryAfter(resp, now); ok != tt.ok || (ok && wait != tt.wait) {
			t.Errorf("%d Retry-After %q: %v %v, want %v %v", tt.status, tt.value, wait, ok, tt.wait, tt.ok)
		}
	}
}

func TestProxyModels(t *testing.T) {
	h := newSimHost(t, nil)
	url, _, _ := startProxy(t, h, false)
	asked := h.asked("/models")
	resp, err := http.Get(url + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"id":"m"`) {
		t.Fatalf("%s: %s", resp.Status, b)
	}
	if h.asked("/models") != asked {
		t.Error("the proxy forwarded the models request: the host's answer to it is not signed")
	}
}

// The proxy refuses to start, exit 1 before it listens, when the host does not verify.
func TestProxyRefusesToStart(t *testing.T) {
	h := newSimHost(t, nil)
	other := newSimHost(t, nil)
	url, id, root := h.url, h.id, h.root
	tests := []struct {
		name       string
		args       []string
		code       int
		stderrPart string
	}{
		{"sim not trusted", []string{"--host", url, "--pipeline", id}, 1,
			"refusing to proxy to " + url + ", which does not verify: boot evidence: quote signature chain: "},
		{"another sim root", []string{"--host", url, "--pipeline", id, "--trust-sim-root", other.root}, 1,
			"boot evidence: quote signature chain: not signed by the given simulator root"},
		{"module not run", []string{"--host", url, "--pipeline", id, "--trust-sim-root", root, "--expect-module", moduleA}, 1,
			"pipeline evidence: expected modules: the pipeline does not run " + moduleA},
		{"unknown pipeline", []string{"--host", url, "--pipeline", strings.Repeat("ee", 32), "--trust-sim-root", root}, 1, "the host refused (404 Not Found)"},
		{"no pipeline", []string{"--host", url}, 2, "is not a pipeline id"},
		{"unknown release mode", []string{"--host", url, "--pipeline", id, "--release", "fast"}, 2, `--release "fast": want "verified" or "live"`},
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
	if n := h.asked("/" + id + "/attestation"); n != 1 {
		t.Errorf("%d pipeline quotes for the 3 starts that fetched evidence, 2 of which failed at the boot evidence; want 1", n)
	}
}

// TestChatChecksSignatures: cocoon chat checks the answer against the attested host
// key when it has one (over http, from the boot evidence it verifies first with the
// trust flags), errors included, and fails on an altered answer; without a key it says
// that the answer is not verified.
func TestChatChecksSignatures(t *testing.T) {
	h := newSimHost(t, nil)
	trusted := []string{"chat", "--host", h.url, "--api-key", proxyKey, "--pipeline", h.id, "--trust-sim-root", h.root}
	unknown := append(trusted, "--no-stream", "--pipeline", strings.Repeat("ee", 32))
	alter := func(a *relayed) { a.body = strings.Replace(a.body, "world", "w0rld", 1) }
	for _, tt := range []struct {
		name    string
		args    []string
		rewrite func(*relayed)
		code    int
		stdout  string
		stderr  string
	}{
		{"stream", trusted, nil, 0, "Hello, world\n", ""},
		{"whole", append(trusted, "--no-stream"), nil, 0, "Hello, world\n", ""},
		{"the host's error", unknown, nil, 1, "", "the host refused (404 Not Found): no pipeline with id"},
		{"altered stream", trusted, alter, 1, "Hello, w0rld", "the answer above is not signed by the attested host key: do not trust it"},
		{"altered completion", append(trusted, "--no-stream"), alter, 1, "",
			"the host's answer (200 OK) is not signed by the attested host key, so it is not shown"},
		{"altered error", unknown, func(a *relayed) { a.status = http.StatusInternalServerError }, 1, "",
			"the host's answer (500 Internal Server Error) is not signed by the attested host key"},
		{"not verified", []string{"chat", "--host", h.url, "--api-key", proxyKey, "--pipeline", h.id}, nil, 0, "Hello, world\n",
			"note: the answer is not verified"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.rewrite != nil {
				h.rewrite.Store(&tt.rewrite)
				defer h.rewrite.Store(nil)
			}
			var stdout, stderr bytes.Buffer
			code := runCommand(append(tt.args, "hi"), strings.NewReader(""), &stdout, &stderr)
			verifying := tt.name != "not verified"
			if code != tt.code || !strings.HasPrefix(stdout.String(), tt.stdout) || !strings.Contains(stderr.String(), tt.stderr) ||
				(verifying && strings.Contains(stderr.String(), "not verified")) {
				t.Fatalf("exit %d; stdout %q; stderr %q", code, stdout.String(), stderr.String())
			}
		})
	}
}
