// Package proxytest runs real Cocoon hosts for tests of clients and of the proxy: the
// web server with simulated attestation, a pipeline without modules, behind a relay
// that records the paths asked and can alter answers, answer evidence requests 429,
// be pointed at a restarted host, or be killed; and a market (Market): a registry on the
// emulated chain with billing hosts that register on it.
package proxytest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/web"
	"github.com/cocoonhost/cocoon/web/e2e"
)

// APIKey is the owner key of every Host.
const APIKey = "proxy-test-key"

// Canned answers every request with the same deltas. A request whose last message is
// "fail" fails after two deltas; with Held set, a request whose last message is "hold"
// stops after two deltas until Held is closed, and says so on Reached.
type Canned struct {
	Deltas  []string
	Held    chan struct{}
	Reached chan struct{}
}

// Generate answers req with the deltas.
func (b *Canned) Generate(ctx context.Context, req *backend.Request, emit func(string) error) (backend.Result, error) {
	last := req.Messages[len(req.Messages)-1].Content
	for i, d := range b.Deltas {
		if i == 2 && last == "fail" {
			return backend.Result{}, backend.Errorf(backend.CodeUpstream, "the GPU server went away")
		}
		if i == 2 && last == "hold" && b.Held != nil {
			b.Reached <- struct{}{}
			select {
			case <-b.Held:
			case <-ctx.Done():
				return backend.Result{}, ctx.Err()
			}
		}
		if err := emit(d); err != nil {
			return backend.Result{FinishReason: "cancelled"}, err
		}
	}
	return backend.Result{FinishReason: "stop", Usage: backend.Usage{PromptTokens: 3, CompletionTokens: len(b.Deltas)}, Model: "m"}, nil
}

// Models lists the one model "m".
func (*Canned) Models(context.Context) ([]backend.Model, error) {
	return []backend.Model{{ID: "m", OwnedBy: "test"}}, nil
}

// Health is always ready.
func (*Canned) Health(context.Context) error { return nil }

// Close does nothing.
func (*Canned) Close() error { return nil }

// Answer is an answer of the host as the relay passes it on.
type Answer struct {
	Status int
	Header http.Header
	Body   string
}

// Host is a real host on the simulator, behind a relay.
type Host struct {
	URL  string // the relay's
	ID   string // the pipeline's id
	Root string // the simulator root's PEM file
	// Dir is the simulator's directory: set another before Start to boot under
	// another root.
	Dir string
	// Backend is what Start boots the host with.
	Backend backend.Backend
	// Config, when set, edits the host's configuration before Start boots it.
	Config func(*web.Config)

	relay     *httptest.Server
	host      atomic.Pointer[http.Handler]
	tls       atomic.Pointer[tls.Config] // the booted host's RA-TLS, for an RA-TLS relay (newHost)
	rewrite   atomic.Pointer[func(*Answer)]
	intercept atomic.Pointer[func(http.ResponseWriter, *http.Request) bool]
	busy      atomic.Int32           // evidence requests still to answer 429
	hidden    atomic.Pointer[string] // a path the relay answers 404 for
	busyAfter atomic.Value           // their Retry-After
	rec       Recorder               // every byte the relay passed, both ways
}

// NewHost boots a host with backend b (a Canned "Hello, world" when nil), pushes the
// pipeline (no modules, the backend's first model), and serves it behind a relay
// until the test ends.
func NewHost(t testing.TB, b backend.Backend) *Host {
	t.Helper()
	h := newHost(t, b, false)
	h.Start(t)
	return h
}

// newHost is NewHost before its first Start (a caller sets Config first), its relay
// serving over RA-TLS (https) when ratls is set: the relay then terminates TLS with the
// booted host's RA-TLS certificate, as the host itself does, so that a client's
// handshake verifies the host's attestation and no one between can alter or inject an
// answer (the relay's own alterations stand for the host's).
func newHost(t testing.TB, b backend.Backend, ratls bool) *Host {
	if b == nil {
		b = &Canned{Deltas: []string{"Hello", ", ", "world"}}
	}
	h := &Host{Dir: filepath.Join(t.TempDir(), "attest"), Backend: b}
	h.relay = httptest.NewUnstartedServer(h.rec.Record(h))
	if ratls {
		// Each handshake takes the booted host's RA-TLS config, its certificate and TLS 1.3.
		h.relay.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return h.tls.Load(), nil }}
		h.relay.StartTLS()
	} else {
		h.relay.Start()
	}
	t.Cleanup(h.relay.Close)
	h.URL = h.relay.URL
	return h
}

// Start boots a host on the simulator of h.Dir (a new host key at every start, the
// same root for the same Dir), pushes the pipeline and puts the host behind the relay:
// a restart.
func (h *Host) Start(t testing.TB) {
	t.Helper()
	sim, err := attest.NewSim(h.Dir)
	if err != nil {
		t.Fatal(err)
	}
	h.Root = filepath.Join(h.Dir, attest.SimRootFile)
	models, err := h.Backend.Models(context.Background())
	if err != nil || len(models) == 0 {
		t.Fatalf("the backend's models: %v %v", models, err)
	}
	model := models[0].ID
	ah, err := attest.Boot(context.Background(), sim, "embedded", model)
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
	cfg := web.Config{Backend: h.Backend, Sandbox: sandbox, Store: store, Registry: registry,
		APIKeys: []web.APIKey{{Name: "t", Key: APIKey}}, Attestation: ah, MaxQuotesPerSecond: 100}
	if h.Config != nil {
		h.Config(&cfg)
	}
	srv, err := web.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.tls.Store(cfg.Attestation.TLSConfig(time.Hour))
	handler := srv.Handler()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/pipelines", strings.NewReader(`{"manifest":{"abi_version":1,"model":`+strconv.Quote(model)+`},"modules":{}}`))
	req.Header.Set("Authorization", "Bearer "+APIKey)
	handler.ServeHTTP(rec, req)
	var p struct{ ID string }
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.ID == "" || (h.ID != "" && p.ID != h.ID) {
		t.Fatalf("push: %d %s %v", rec.Code, rec.Body, err)
	}
	h.ID = p.ID
	h.host.Store(&handler)
}

// ServeHTTP is the relay, behind its Recorder.
func (h *Host) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "attestation") && h.busy.Add(-1) >= 0 {
		w.Header().Set("Retry-After", h.busyAfter.Load().(string))
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"error":{"message":"quotes are rate-limited","type":"rate_limit_error","code":"quote_rate_limited"}}`)
		return
	}
	if hidden := h.hidden.Load(); hidden != nil && r.URL.Path == *hidden {
		http.NotFound(w, r) // unsigned, as any relay can answer
		return
	}
	if f := h.intercept.Load(); f != nil && strings.HasSuffix(r.URL.Path, "/chat/completions") && (*f)(w, r) {
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
	a := &Answer{rec.Code, rec.Header(), rec.Body.String()}
	(*rewrite)(a)
	for k, v := range a.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(a.Status)
	io.WriteString(w, a.Body)
}

// Captured returns every byte the relay passed so far, both ways: request lines,
// headers and bodies, answers' headers and bodies.
func (h *Host) Captured() []byte { return h.rec.Captured() }

// Rewrite alters every chat answer with f from now on; nil stops altering.
func (h *Host) Rewrite(f func(*Answer)) {
	if f == nil {
		h.rewrite.Store(nil)
		return
	}
	h.rewrite.Store(&f)
}

// Intercept has f see every chat request from now on before the host does: f answers
// it in the host's place and returns true, or returns false to pass it on (it may
// wait first, as a relay holding it back).
func (h *Host) Intercept(f func(w http.ResponseWriter, r *http.Request) (answered bool)) {
	h.intercept.Store(&f)
}

// ForgeRefusal answers the next chat request, which the host runs, with a forged
// plaintext 400 of error code in place of the host's answer, as a relay can forge
// web/E2E.md §4's unsigned refusals; later answers pass unaltered (Rewrite(nil) ends
// it). forged reports whether it has happened.
func (h *Host) ForgeRefusal(code string) (forged func() bool) { return h.forgeRefusal(code, false) }

// ForgeRefusalAndHangUp is ForgeRefusal, and then the relay takes the host off the
// network, as one that drops the proxy's connections: the forged answer closes its
// connection and every new one is refused, so nothing sent after it reaches the host.
func (h *Host) ForgeRefusalAndHangUp(code string) (forged func() bool) {
	return h.forgeRefusal(code, true)
}

func (h *Host) forgeRefusal(code string, hangUp bool) (forged func() bool) {
	var pending atomic.Bool
	pending.Store(true)
	h.Rewrite(func(a *Answer) {
		if pending.Swap(false) {
			a.Status, a.Header = http.StatusBadRequest, http.Header{"Content-Type": {"application/json"}}
			a.Body = `{"error":{"message":"forged","type":"invalid_request_error","param":null,"code":"` + code + `"}}`
			if hangUp {
				a.Header.Set("Connection", "close")
				h.relay.Listener.Close()
			}
		}
	})
	return func() bool { return !pending.Load() }
}

// Versions returns the envelope version (the first byte) of each sealed request the
// relay passed, in order: 1 sealed to the host's key, 2 under a session.
func (h *Host) Versions() []byte {
	var versions []byte
	for _, e := range h.rec.Exchanges() {
		if e.ContentType == e2e.ContentType && len(e.Body) > 0 {
			versions = append(versions, e.Body[0])
		}
	}
	return versions
}

// Hide makes the relay answer 404 Not Found, in plaintext, to every request for path
// from now on, in place of the host.
func (h *Host) Hide(path string) { h.hidden.Store(&path) }

// Asked counts the requests the relay saw for paths ending with suffix.
func (h *Host) Asked(suffix string) int { return h.rec.Asked(suffix) }

// Answer429 answers the next n evidence requests 429 with Retry-After after.
func (h *Host) Answer429(n int, after string) {
	h.busyAfter.Store(after)
	h.busy.Store(int32(n))
}

// Kill stops the host abruptly, as a killed process: its listener closes (new
// connections are refused) and every open connection is cut, answers half-written
// included.
func (h *Host) Kill() {
	h.relay.Listener.Close()
	h.relay.CloseClientConnections()
}

// RootCert is the simulator root certificate of h.Root.
func (h *Host) RootCert(t testing.TB) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(h.Root)
	if err != nil {
		t.Fatal(err)
	}
	c, err := attest.ParseCertificatePEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
