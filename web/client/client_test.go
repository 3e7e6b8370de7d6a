package client

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/web"
	"github.com/cocoonhost/cocoon/web/client/clienttest"
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
}

func newTestHost(t *testing.T) *testHost {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "attest")
	sim, err := attest.NewSim(dir)
	if err != nil {
		t.Fatal(err)
	}
	ah, err := attest.Boot(ctx, sim, "embedded", "m")
	if err != nil {
		t.Fatal(err)
	}
	handler := clienttest.Handler(t, web.Config{Backend: echoBackend{}, APIKeys: []web.APIKey{{Name: "t", Key: testKey}},
		Attestation: ah, MaxQuotesPerSecond: 100})
	h := &testHost{}
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
// its end. The same answer unaltered verifies.
func TestChatRefusesAlteredAnswers(t *testing.T) {
	h := newTestHost(t)
	c := h.client(t, true)
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
