package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/host/backend/embedded"
	"github.com/cocoonhost/cocoon/internal/wasmtest"
	"github.com/cocoonhost/cocoon/settle"
)

const (
	ownerKey = "sk-test-owner"
	otherKey = "sk-test-other"
	botToken = "123456:ABC-test-token"
)

// modelDir is the stories260K folder: $COCOON_MODEL_DIR, or the shared copy beside the
// repository.
func modelDir() string {
	if dir := os.Getenv("COCOON_MODEL_DIR"); dir != "" {
		return dir
	}
	return filepath.Join("..", "..", "shared", "models", "stories260K")
}

// Loaded once per test binary: the engine and the sandbox (whose in-memory compilation
// cache makes each fixture's store compile a module already seen in no time).
var (
	sharedOnce    sync.Once
	sharedEngine  *embedded.Backend
	sharedSandbox *host.Sandbox
	sharedErr     error
)

func shared(t testing.TB) (*embedded.Backend, *host.Sandbox) {
	t.Helper()
	sharedOnce.Do(func() {
		if sharedEngine, sharedErr = embedded.New(modelDir()); sharedErr != nil {
			return
		}
		sharedSandbox, sharedErr = host.NewSandbox(context.Background(), host.NewSandboxConfig())
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return sharedEngine, sharedSandbox
}

// plugin reads an example module built by `make plugins`, such as
// "pii-redactor/go/pii-redactor.wasm".
func plugin(t testing.TB, path string) []byte {
	t.Helper()
	return wasmtest.Plugin(t, path)
}

// recorder wraps the real engine and records what it was asked and how each generation
// ended. hook, when set, wraps each generation's emit (to hold or fail a generation).
type recorder struct {
	backend.Backend
	mu         sync.Mutex
	requests   []*backend.Request
	ended      chan generationEnd
	hook       func(ctx context.Context, n int, delta string, emit func(string) error) error
	modelLists atomic.Int32 // calls of Models
	// noWindow hides the models' context lengths, as a backend that does not report
	// them.
	noWindow bool
}

func (r *recorder) Models(ctx context.Context) ([]backend.Model, error) {
	r.modelLists.Add(1)
	models, err := r.Backend.Models(ctx)
	if r.noWindow {
		for i := range models {
			models[i].ContextLength = 0
		}
	}
	return models, err
}

type generationEnd struct {
	result backend.Result
	err    error
}

func (r *recorder) Generate(ctx context.Context, req *backend.Request, emit func(string) error) (backend.Result, error) {
	r.mu.Lock()
	r.requests = append(r.requests, req)
	r.mu.Unlock()
	if r.hook != nil {
		inner, n := emit, 0
		emit = func(d string) error {
			n++
			return r.hook(ctx, n, d, inner)
		}
	}
	res, err := r.Backend.Generate(ctx, req, emit)
	select {
	case r.ended <- generationEnd{res, err}:
	default:
	}
	return res, err
}

func (r *recorder) last() *backend.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.requests) == 0 {
		return nil
	}
	return r.requests[len(r.requests)-1]
}

// fixture is a server on loopback with its own data directory.
type fixture struct {
	t       testing.TB
	engine  *embedded.Backend
	backend *recorder
	server  *Server
	http    *httptest.Server
	store   *host.Store
}

func newFixture(t testing.TB, configure ...func(*Config, *recorder)) *fixture {
	t.Helper()
	engine, sandbox := shared(t)
	dir := t.TempDir()
	store, err := host.OpenStore(context.Background(), sandbox, filepath.Join(dir, "modules"))
	if err != nil {
		t.Fatal(err)
	}
	registry, err := host.OpenRegistry(sandbox, store, filepath.Join(dir, "pipelines"), make([]byte, host.MinRegistryKey))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Backend: engine, ended: make(chan generationEnd, 16)}
	cfg := Config{
		Backend: rec, Sandbox: sandbox, Store: store, Registry: registry,
		APIKeys:          []APIKey{{Name: "owner", Key: ownerKey}, {Name: "other", Key: otherKey}},
		TelegramBotToken: botToken,
		MaxGenerations:   4,
	}
	for _, c := range configure {
		c(&cfg, rec)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return &fixture{t: t, engine: engine, backend: rec, server: s, http: hs, store: store}
}

// response is an answer read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer %d %s: %v", r.status, r.body, err)
	}
}

// apiErr decodes an OpenAI error answer.
func (r response) apiErr(t testing.TB) errorObject {
	t.Helper()
	var e errorBody
	r.json(t, &e)
	if e.Error.Message == "" || e.Error.Type == "" || e.Error.Code == "" {
		t.Fatalf("answer %d %s is not an OpenAI error", r.status, r.body)
	}
	return e.Error
}

// do sends a request with the API key key ("" for none, or a full Authorization value
// when it has a space).
func (f *fixture) do(method, path, key string, body any) response {
	f.t.Helper()
	res, err := f.send(method, path, key, body)
	if err != nil {
		f.t.Fatal(err)
	}
	return res
}

// send is do for goroutines other than the test's: it returns the error instead of
// failing the test.
func (f *fixture) send(method, path, key string, body any) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, f.http.URL+path, rd)
	if err != nil {
		return response{}, err
	}
	setAuth(req, key)
	res, err := f.http.Client().Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	return response{res.StatusCode, res.Header, b}, nil
}

func setAuth(req *http.Request, key string) {
	switch {
	case strings.Contains(key, " "):
		req.Header.Set("Authorization", key)
	case key != "":
		req.Header.Set("Authorization", "Bearer "+key)
	}
}

// upload builds an upload body: the manifest and the given module bytes.
func upload(manifest string, modules ...[]byte) map[string]any {
	enc := map[string]string{}
	for _, m := range modules {
		enc[host.HashOf(m)] = base64.StdEncoding.EncodeToString(m)
	}
	return map[string]any{"manifest": json.RawMessage(manifest), "modules": enc}
}

// push uploads a pipeline and returns its id.
func (f *fixture) push(manifest string, modules ...[]byte) string {
	f.t.Helper()
	res := f.do("POST", "/v1/pipelines", ownerKey, upload(manifest, modules...))
	if res.status != http.StatusCreated && res.status != http.StatusOK {
		f.t.Fatalf("upload: %d %s", res.status, res.body)
	}
	var p pipelineJSON
	res.json(f.t, &p)
	return p.ID
}

// completion is the part of a chat.completion the tests read.
type completion struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage usageJSON `json:"usage"`
}

// streamed is a streamed answer: its chunks, the error event if any, and whether
// [DONE] came.
type streamed struct {
	chunks []chunkJSON
	err    *errorObject
	done   bool
	// receipt is a billed stream's receipt event, which must come after every chunk.
	receipt *settle.Receipt
	// signature is the value of an attesting host's signature event, which must come
	// after every other event but [DONE].
	signature string
}

func (s streamed) text() string {
	var b strings.Builder
	for _, c := range s.chunks {
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				b.WriteString(*ch.Delta.Content)
			}
		}
	}
	return b.String()
}

// parseSSE reads a whole event stream, failing on anything that is not a data event.
func parseSSE(t testing.TB, body []byte) streamed {
	t.Helper()
	var s streamed
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("not a data line: %q", line)
		}
		if s.done || s.signature != "" && data != "[DONE]" {
			t.Fatalf("event after the end of the stream: %q", line)
		}
		if data == "[DONE]" {
			if s.err != nil {
				t.Fatalf("[DONE] after an error event")
			}
			s.done = true
			continue
		}
		if sig, ok := strings.CutPrefix(data, `{"object":"chat.completion.chunk","choices":[],"cocoon_signature":"`); ok {
			s.signature = strings.TrimSuffix(sig, `"}`)
			continue
		}
		if s.err != nil {
			t.Fatalf("event after the error event: %q", line)
		}
		if strings.HasPrefix(data, `{"error"`) {
			var e errorBody
			if err := json.Unmarshal([]byte(data), &e); err != nil {
				t.Fatal(err)
			}
			s.err = &e.Error
			continue
		}
		if s.receipt != nil {
			t.Fatalf("a chunk after the receipt: %q", line)
		}
		if strings.Contains(data, `"cocoon_receipt"`) {
			var r struct {
				Choices []struct{}      `json:"choices"`
				Receipt *settle.Receipt `json:"cocoon_receipt"`
			}
			if err := json.Unmarshal([]byte(data), &r); err != nil || r.Receipt == nil || r.Choices == nil {
				t.Fatalf("receipt event %q: %v", data, err)
			}
			s.receipt = r.Receipt
			continue
		}
		var c chunkJSON
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		s.chunks = append(s.chunks, c)
	}
	return s
}
