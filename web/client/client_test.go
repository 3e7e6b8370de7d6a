package client

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/web"
	"github.com/cocoonhost/cocoon/web/client/clienttest"
	"github.com/cocoonhost/cocoon/web/e2e"
)

const testKey = "client-test-key"

// echoBackend streams the words of the last message back, one delta each.
type echoBackend struct{}

func (echoBackend) Generate(_ context.Context, req *backend.Request, emit func(string) error) (backend.Result, error) {
	words := strings.Fields(req.Messages[len(req.Messages)-1].Content)
	for i, w := range words {
		if i > 0 {
			w = " " + w
		}
		if err := emit(w); err != nil {
			return backend.Result{FinishReason: "cancelled"}, err
		}
	}
	return backend.Result{FinishReason: "stop", Usage: backend.Usage{PromptTokens: 1, CompletionTokens: len(words)}, Model: "m"}, nil
}

func (echoBackend) Models(context.Context) ([]backend.Model, error) {
	return []backend.Model{{ID: "m", OwnedBy: "test"}}, nil
}
func (echoBackend) Health(context.Context) error { return nil }
func (echoBackend) Close() error                 { return nil }

// testHost is the real web server on a simulated TDX, behind a relay that may alter
// what the host answers (an attacker on the way).
type testHost struct {
	url  string
	root *x509.Certificate // the simulator's root
	// alter, when set, rewrites the body of each chat answer.
	alter atomic.Pointer[func(string) string]
	// busy answers the next evidence requests 429 with Retry-After: 0.
	busy atomic.Int32
	// asked counts the requests the relay saw.
	asked atomic.Int32
	// seenRequests holds the headers and bodies of the chat requests the relay saw,
	// envelopes the bodies of the sealed ones.
	mu           sync.Mutex
	seenRequests strings.Builder
	envelopes    [][]byte
	// handler is the host behind the relay; restart replaces it (a new host key, new
	// end-to-end keys), forget with one of the same keys that holds no session.
	handler atomic.Pointer[http.Handler]
	restart func()
	forget  func()
}

// requests returns what the relay saw of the chat requests.
func (h *testHost) requests() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seenRequests.String()
}

func newTestHost(t *testing.T) *testHost {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "attest")
	h := &testHost{}
	// restart boots the host anew on a simulated TDX of the same root: a new host
	// key, new end-to-end keys.
	var ah *attest.Host
	h.forget = func() {
		handler := clienttest.Handler(t, web.Config{Backend: echoBackend{}, APIKeys: []web.APIKey{{Name: "t", Key: testKey}},
			Attestation: ah, MaxQuotesPerSecond: 100})
		h.handler.Store(&handler)
	}
	h.restart = func() {
		sim, err := attest.NewSim(dir)
		if err != nil {
			t.Fatal(err)
		}
		if ah, err = attest.Boot(ctx, sim, "embedded", "m"); err != nil {
			t.Fatal(err)
		}
		h.forget()
	}
	h.restart()
	b, err := os.ReadFile(filepath.Join(dir, attest.SimRootFile))
	if err != nil {
		t.Fatal(err)
	}
	if h.root, err = attest.ParseCertificatePEM(b); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.asked.Add(1)
		if strings.HasSuffix(r.URL.Path, "/attestation") && h.busy.Add(-1) >= 0 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"message":"quotes are rate-limited","type":"rate_limit_error","code":"quote_rate_limited"}}`)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/chat/completions") {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			h.mu.Lock()
			fmt.Fprintf(&h.seenRequests, "%v\n%s\n", r.Header, body)
			if r.Header.Get("Content-Type") == e2e.ContentType {
				h.envelopes = append(h.envelopes, body)
			}
			h.mu.Unlock()
		}
		handler := *h.handler.Load()
		alter := h.alter.Load()
		if alter == nil || !strings.HasSuffix(r.URL.Path, "/chat/completions") {
			handler.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		io.WriteString(w, (*alter)(rec.Body.String()))
	}))
	t.Cleanup(ts.Close)
	h.url = ts.URL
	return h
}

func (h *testHost) client(t *testing.T, trusted bool) *Client {
	t.Helper()
	opts := []Option{WithAPIKey(testKey)}
	if trusted {
		opts = append(opts, WithTrust(attest.Policy{}, attest.EvidenceOptions{SimRoot: h.root}))
	}
	c, err := New(h.url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestChatRefusesAlteredAnswers: an answer altered on its way (text, finish reason,
// the signature dropped) is refused with CodeNotVerified by a client that knows the
// attested key; a whole answer's text never reaches the caller, a stream's fails at
// its end. The same answer unaltered verifies. In plaintext, so that the relay can
// read what it alters (TestChatSealsToTheAttestedKey alters sealed answers).
func TestChatRefusesAlteredAnswers(t *testing.T) {
	h := newTestHost(t)
	c := h.client(t, true).WithPlaintext()
	for _, tt := range []struct {
		name   string
		stream bool
		alter  func(string) string
		code   Code // "" when the answer verifies
	}{
		{"whole, unaltered", false, nil, ""},
		{"stream, unaltered", true, nil, ""},
		{"whole, text altered", false, func(s string) string { return strings.Replace(s, "hello", "HELLO", 1) }, CodeNotVerified},
		{"whole, finish reason altered", false, func(s string) string { return strings.Replace(s, `"stop"`, `"length"`, 1) }, CodeNotVerified},
		{"stream, delta altered", true, func(s string) string { return strings.Replace(s, "hello", "HELLO", 1) }, CodeNotVerified},
		{"stream, signature dropped", true, func(s string) string {
			i := strings.Index(s, `data: {"object":"chat.completion.chunk","choices":[],"cocoon_signature"`)
			if i < 0 {
				t.Fatalf("no signature event in %q", s)
			}
			return s[:i] + "data: [DONE]\n\n"
		}, CodeNotVerified},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.alter != nil {
				h.alter.Store(&tt.alter)
				defer h.alter.Store(nil)
			}
			var text strings.Builder
			req := ChatRequest{Messages: []ChatMessage{{Role: "user", Content: "hello world"}}, Stream: tt.stream}
			answer, err := c.Chat(context.Background(), "", req, nil, func(s string) error { text.WriteString(s); return nil })
			if tt.code == "" {
				if err != nil || !answer.Verified || text.String() != "hello world" {
					t.Fatalf("answer %+v, text %q, err %v; want the verified text", answer, text.String(), err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code {
				t.Fatalf("err %v, want an Error with code %s", err, tt.code)
			}
			if !tt.stream && text.Len() > 0 {
				t.Errorf("an unverified whole answer reached the caller: %q", text.String())
			}
		})
	}
}

// TestChatSealsToTheAttestedKey: a client that verified an http host seals its chat
// request to the host's end-to-end key, so the relay between sees neither the prompt,
// nor the API key, nor the answer, streamed or whole; a byte of the sealed answer
// changed on the way is an error, never other text.
func TestChatSealsToTheAttestedKey(t *testing.T) {
	h := newTestHost(t)
	c := h.client(t, true)
	var seen strings.Builder
	var mu sync.Mutex
	for _, stream := range []bool{false, true} {
		h.alter.Store(nil)
		record := func(s string) string { mu.Lock(); seen.WriteString(s); mu.Unlock(); return s }
		h.alter.Store(&record)
		var text strings.Builder
		req := ChatRequest{Messages: []ChatMessage{{Role: "user", Content: "secret words"}}, Stream: stream}
		answer, err := c.Chat(context.Background(), "", req, nil, func(s string) error { text.WriteString(s); return nil })
		if err != nil || !answer.Verified || text.String() != "secret words" {
			t.Fatalf("stream %v: answer %+v, text %q, err %v; want the verified text", stream, answer, text.String(), err)
		}
		for i := 0; i < 400; i += 37 { // a byte of the sealed answer, at several places
			flip := func(s string) string {
				if i >= len(s) {
					return s
				}
				b := []byte(s)
				b[i] ^= 0x20
				return string(b)
			}
			h.alter.Store(&flip)
			text.Reset()
			_, err := c.Chat(context.Background(), "", req, nil, func(s string) error { text.WriteString(s); return nil })
			if err == nil && text.String() != "secret words" {
				t.Errorf("stream %v, byte %d changed: text %q without an error", stream, i, text.String())
			}
			if !strings.HasPrefix("secret words", text.String()) {
				t.Errorf("stream %v, byte %d changed: other text %q reached the caller", stream, i, text.String())
			}
		}
	}
	h.alter.Store(nil)
	for _, secret := range []string{"secret", testKey} {
		if strings.Contains(h.requests(), secret) || strings.Contains(seen.String(), secret) {
			t.Errorf("the relay read %q", secret)
		}
	}
	if !strings.Contains(h.requests(), e2e.ContentType) {
		t.Errorf("the relay saw no sealed request:\n%s", h.requests())
	}
}

// TestChatSessions: a client's first sealed chat to a host key is a version 1
// envelope asking for a session, the next ones session envelopes (no KEM), streamed or
// not; a host that holds no such session (it forgot it) answers e2e_session_unknown,
// and the chat is sent once more as version 1 and succeeds; a host restarted with new
// keys gets version 1 again, sealed to its new key. No envelope, and no session
// request id, is sent twice.
func TestChatSessions(t *testing.T) {
	h := newTestHost(t)
	c := h.client(t, true)
	chat := func(stream bool) {
		t.Helper()
		var text strings.Builder
		req := ChatRequest{Messages: []ChatMessage{{Role: "user", Content: "secret words"}}, Stream: stream}
		if _, err := c.Chat(context.Background(), "", req, nil, func(s string) error { text.WriteString(s); return nil }); err != nil || text.String() != "secret words" {
			t.Fatalf("text %q, %v", text.String(), err)
		}
	}
	versions := func() string {
		h.mu.Lock()
		defer h.mu.Unlock()
		var v strings.Builder
		seen := map[string]bool{}
		for i, env := range h.envelopes {
			if seen[string(env)] {
				t.Errorf("envelope %d was sent before", i)
			}
			seen[string(env)] = true
			fmt.Fprint(&v, env[0])
		}
		h.envelopes = nil
		return v.String()
	}
	for i := range 4 {
		chat(i%2 == 1)
	}
	if v := versions(); v != "1222" {
		t.Errorf("envelope versions %s, want 1222: one KEM, then the session", v)
	}
	h.forget()
	chat(false)
	chat(true)
	if v := versions(); v != "212" {
		t.Errorf("after the host forgot the session: versions %s, want 212 (refused, sent again, a new session)", v)
	}
	h.restart()
	chat(true)
	chat(false)
	if v := versions(); v != "12" {
		t.Errorf("after a restart with new keys: versions %s, want 12", v)
	}
}

// TestChatWithoutTrust: over http without a trust nothing can be checked, and Chat
// says so (Verified false) instead of claiming it.
func TestChatWithoutTrust(t *testing.T) {
	h := newTestHost(t)
	answer, err := h.client(t, false).Chat(context.Background(), "", ChatRequest{Messages: []ChatMessage{{Role: "user", Content: "hi"}}}, nil, func(string) error { return nil })
	if err != nil || answer.Verified {
		t.Fatalf("answer %+v, err %v; want an answer not marked verified", answer, err)
	}
}

// TestVerifyBootRefusesAnotherRoot: a client that trusts another simulator root does
// not take the host's evidence, and the error carries the failed checks.
func TestVerifyBootRefusesAnotherRoot(t *testing.T) {
	h, other := newTestHost(t), newTestHost(t)
	c, err := New(h.url, WithTrust(attest.Policy{}, attest.EvidenceOptions{SimRoot: other.root}))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.VerifyBoot(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeNotVerified || len(e.FailedChecks()) == 0 {
		t.Fatalf("err %v; want CodeNotVerified with failed checks", err)
	}
	if _, _, err := h.client(t, true).VerifyBoot(context.Background()); err != nil {
		t.Fatalf("under its own root: %v", err)
	}
}

// TestRetries: a GET the host answers 429 with a Retry-After is sent again, at most
// MaxRetries times, and each wait is logged; an upload is sent once.
func TestRetries(t *testing.T) {
	h := newTestHost(t)
	for _, tt := range []struct {
		name     string
		busy     int32
		ok       bool
		requests int32
	}{
		{"once busy", 1, true, 2},
		{"always busy", 100, false, 1 + MaxRetries},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h.busy.Store(tt.busy)
			defer h.busy.Store(0)
			var log strings.Builder
			before := h.asked.Load()
			_, err := h.client(t, false).WithRetryLog(&log).BootEvidence(context.Background(), NewNonce(32))
			var e *Error
			if tt.ok != (err == nil) || (err != nil && (!errors.As(err, &e) || e.Code != CodeRefused || e.HostCode != "quote_rate_limited")) {
				t.Fatalf("err %v", err)
			}
			if n := h.asked.Load() - before; n != tt.requests {
				t.Errorf("%d requests, want %d", n, tt.requests)
			}
			if !strings.Contains(log.String(), "retrying in 0s") {
				t.Errorf("the waits are not logged: %q", log.String())
			}
		})
	}
	h.busy.Store(1) // a POST is not retried: the host may have acted on it
	defer h.busy.Store(0)
	before := h.asked.Load()
	resp, err := h.client(t, false).request(context.Background(), http.MethodPost, "/v1/attestation", []byte("{}"), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := h.asked.Load() - before; n != 1 || resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("POST: %d requests, status %d; want 1 request, its 429", n, resp.StatusCode)
	}
}

// TestErrors: each way a host call fails is an Error with its code and a message
// that names the host, never the API key.
func TestErrors(t *testing.T) {
	h := newTestHost(t)
	down := httptest.NewServer(nil)
	down.Close()
	notHost := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>") }))
	defer notHost.Close()
	wrongKey, _ := New(h.url, WithAPIKey("sk-secret-wrong"))
	unreachable, _ := New(down.URL, WithAPIKey(testKey))
	other, _ := New(notHost.URL, WithAPIKey(testKey))
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		call func() error
		code Code
	}{
		{"not a URL", func() error { _, err := New("localhost:8080"); return err }, CodeInvalid},
		{"unreachable", func() error { _, err := unreachable.Pipelines(ctx); return err }, CodeUnreachable},
		{"wrong key", func() error { _, err := wrongKey.Pipelines(ctx); return err }, CodeRefused},
		{"unknown pipeline", func() error { _, err := h.client(t, false).Pipeline(ctx, strings.Repeat("0", 64)); return err }, CodeRefused},
		{"not a Cocoon host", func() error { _, err := other.Pipelines(ctx); return err }, CodeBadAnswer},
		{"not evidence", func() error { _, err := other.BootEvidence(ctx, nil); return err }, CodeBadAnswer},
		{"an answer over the limit", func() error { _, err := other.GetBytes(ctx, "/readyz", 5); return err }, CodeBadAnswer},
		{"a 404 carries its status", func() error {
			_, err := h.client(t, false).GetBytes(ctx, "/v1/pipelines/"+strings.Repeat("0", 64)+"/attestation?nonce=00", 1<<20)
			if e := (*Error)(nil); errors.As(err, &e) && e.Status != http.StatusNotFound {
				return fmt.Errorf("status %d: %w", e.Status, err)
			}
			return err
		}, CodeRefused},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code {
				t.Fatalf("err %v (%T), want code %s", err, err, tt.code)
			}
			if strings.Contains(e.Error(), "sk-secret-wrong") {
				t.Errorf("the message shows the API key: %s", e)
			}
		})
	}
}

func appendLine(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.WriteString(f, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

// connCounter is a host that counts the connections it accepted and those that
// closed. With hold set, it answers no request until hold requests are under way (or
// 5 s passed), so that a burst of hold requests needs hold connections at once.
type connCounter struct {
	url            string
	opened, closed atomic.Int32
	hold           int32
	arrived        atomic.Int32
}

func newConnCounter(t *testing.T, hold int32) *connCounter {
	t.Helper()
	cc := &connCounter{hold: hold}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cc.arrived.Add(1)
		for deadline := time.Now().Add(5 * time.Second); cc.arrived.Load()%max(cc.hold, 1) != 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		io.WriteString(w, `{"data":[]}`)
	}))
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			cc.opened.Add(1)
		case http.StateClosed:
			cc.closed.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	cc.url = ts.URL
	return cc
}

// TestOwnConnections: closing one client's idle connections (a router dropping a
// restarted host's) closes none of another client's, over http too; and
// WithMaxIdleConns keeps a burst's connections for the next burst.
func TestOwnConnections(t *testing.T) {
	a, b := newConnCounter(t, 0), newConnCounter(t, 0)
	ca, _ := New(a.url)
	cb, _ := New(b.url)
	ctx := context.Background()
	for _, c := range []*Client{ca, cb} {
		if _, err := c.Pipelines(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ca.HTTPClient().CloseIdleConnections()
	deadline := time.Now().Add(2 * time.Second)
	for a.closed.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // were b's closed too, its server would see it by now
	if a.closed.Load() != 1 || b.closed.Load() != 0 {
		t.Fatalf("closing the idle connections of one client closed %d of its own and %d of another's; want 1 and 0", a.closed.Load(), b.closed.Load())
	}

	const burst = 8
	for _, tt := range []struct {
		name     string
		opts     []Option
		reusable bool // the second burst dials nothing
	}{
		{"net/http's 2", nil, false},
		{"WithMaxIdleConns", []Option{WithMaxIdleConns(burst)}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newConnCounter(t, burst)
			c, _ := New(h.url, tt.opts...)
			for round := range 2 {
				var wg sync.WaitGroup
				start := make(chan struct{})
				for range burst {
					wg.Go(func() {
						<-start
						if _, err := c.Pipelines(ctx); err != nil {
							t.Error(err)
						}
					})
				}
				close(start)
				wg.Wait()
				if round == 0 {
					continue
				}
				if opened := h.opened.Load(); (opened <= burst) != tt.reusable {
					t.Errorf("%d connections for two bursts of %d concurrent requests (reusable %v)", opened, burst, tt.reusable)
				}
			}
		})
	}
}
