package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cocoonhost/cocoon/host/backend"
)

const testKey = "sk-test-SECRET-0123456789"

// storyRequest is the request of the transcripts: 34 bytes of message text, so the
// fallback prompt count is 9.
func storyRequest() *backend.Request {
	return &backend.Request{
		Model: "story-model",
		Messages: []backend.Message{
			{Role: "system", Content: "You write stories."},
			{Role: "user", Content: "Tell me a story."},
		},
	}
}

func transcript(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// replay serves body as an event stream in pieces of 1 to maxPiece bytes drawn from
// seed, flushing each, as a transport may deliver it.
func replay(body []byte, seed uint64, maxPiece int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rng := rand.New(rand.NewPCG(seed, 0))
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		for rest := body; len(rest) > 0; {
			n := min(1+rng.IntN(maxPiece), len(rest))
			if _, err := w.Write(rest[:n]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			rest = rest[n:]
		}
	}
}

// newBackend serves h on loopback and returns a Backend for it.
func newBackend(t *testing.T, h http.Handler, opts ...Option) (*Backend, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	b, err := New(srv.URL+"/v1", append([]Option{WithAPIKey(testKey)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, srv
}

type outcome struct {
	deltas []string
	res    backend.Result
	err    error
}

func (o outcome) text() string { return strings.Join(o.deltas, "") }

func generate(ctx context.Context, b *Backend, req *backend.Request) outcome {
	var o outcome
	o.res, o.err = b.Generate(ctx, req, func(d string) error {
		o.deltas = append(o.deltas, d)
		return nil
	})
	return o
}

// checkError checks that err is a *backend.Error with code and a message containing
// want, and that it leaks neither the key nor the server's address.
func checkError(t *testing.T, err error, code backend.Code, want string, srv *httptest.Server) {
	t.Helper()
	var be *backend.Error
	if !errors.As(err, &be) {
		t.Fatalf("error = %v (%T), want a *backend.Error", err, err)
	}
	if be.Code != code || !strings.Contains(be.Message, want) {
		t.Errorf("error = %s %q, want %s containing %q", be.Code, be.Message, code, want)
	}
	addr := strings.TrimPrefix(srv.URL, "http://")
	if strings.Contains(be.Message, testKey) || strings.Contains(be.Message, addr) {
		t.Errorf("message %q leaks the key or the address %s", be.Message, addr)
	}
}

const story = "Once upon a time, there was a little girl named Lily."

func TestTranscripts(t *testing.T) {
	tests := []struct {
		file      string
		text      string
		finish    string
		usage     backend.Usage
		model     string
		errCode   backend.Code // "" for success
		errSubstr string
	}{
		{file: "vllm.sse", text: story, finish: "stop", usage: backend.Usage{PromptTokens: 42, CompletionTokens: 14}, model: "meta-llama/Meta-Llama-3.1-8B-Instruct"},
		{file: "sglang.sse", text: story, finish: "stop", usage: backend.Usage{PromptTokens: 30, CompletionTokens: 14}, model: "Qwen/Qwen2.5-7B-Instruct"},
		{file: "llamacpp.sse", text: story, finish: "length", usage: backend.Usage{PromptTokens: 20, CompletionTokens: 13}, model: "stories15M.gguf"},
		{file: "ollama.sse", text: story, finish: "stop", usage: backend.Usage{PromptTokens: 31, CompletionTokens: 14}, model: "llama3.2:1b"},
		// No usage chunk: 13 non-empty deltas, ceil(34/4) prompt tokens.
		{file: "ollama_nousage.sse", text: story, finish: "stop", usage: backend.Usage{PromptTokens: 9, CompletionTokens: 13}, model: "llama3.2:1b"},
		{file: "quirks.sse", text: "Once upon a time.", finish: "stop", usage: backend.Usage{PromptTokens: 9, CompletionTokens: 3}, model: "m"},
		{file: "utf8_split.sse", text: "café 😀 🍕 été €", finish: "stop", usage: backend.Usage{PromptTokens: 9, CompletionTokens: 8}, model: "story-model"},
		{file: "vllm_error.sse", text: "Once upon a time", usage: backend.Usage{PromptTokens: 9, CompletionTokens: 4}, model: "meta-llama/Meta-Llama-3.1-8B-Instruct",
			errCode: backend.CodeUpstream, errSubstr: "EngineCore encountered an issue"},
		{file: "vllm_legacy_error.sse", text: "Once upon", usage: backend.Usage{PromptTokens: 9, CompletionTokens: 2}, model: "meta-llama/Meta-Llama-3.1-8B-Instruct",
			errCode: backend.CodeInvalidRequest, errSubstr: "max_model_len: 8192"},
		{file: "llamacpp_error.sse", text: "Once upon a", usage: backend.Usage{PromptTokens: 9, CompletionTokens: 3}, model: "stories15M.gguf",
			errCode: backend.CodeUpstream, errSubstr: "Input prompt is too big"},
	}
	deliveries := []struct {
		name     string
		crlf     bool
		seed     uint64
		maxPiece int
	}{
		{name: "whole", maxPiece: math.MaxInt32},
		{name: "crlf", crlf: true, maxPiece: math.MaxInt32},
		{name: "bytes", seed: 1, maxPiece: 1},
		{name: "split7", seed: 2, maxPiece: 7},
		{name: "split64-crlf", crlf: true, seed: 3, maxPiece: 64},
	}
	for _, tt := range tests {
		for _, d := range deliveries {
			t.Run(tt.file+"/"+d.name, func(t *testing.T) {
				body := transcript(t, tt.file)
				if d.crlf {
					body = bytes.ReplaceAll(body, []byte("\n"), []byte("\r\n"))
				}
				b, srv := newBackend(t, replay(body, d.seed, d.maxPiece))
				o := generate(t.Context(), b, storyRequest())
				if o.text() != tt.text {
					t.Errorf("text = %q, want %q", o.text(), tt.text)
				}
				for _, delta := range o.deltas {
					if delta == "" || !utf8.ValidString(delta) {
						t.Errorf("delta %q is empty or not valid UTF-8", delta)
					}
				}
				if o.res.Usage != tt.usage || o.res.Model != tt.model {
					t.Errorf("usage, model = %+v, %q; want %+v, %q", o.res.Usage, o.res.Model, tt.usage, tt.model)
				}
				if tt.errCode != "" {
					checkError(t, o.err, tt.errCode, tt.errSubstr, srv)
					return
				}
				if o.err != nil {
					t.Fatal(o.err)
				}
				if o.res.FinishReason != tt.finish {
					t.Errorf("finish = %q, want %q", o.res.FinishReason, tt.finish)
				}
			})
		}
	}
}

func TestRequestBody(t *testing.T) {
	temp, topP, seed := 0.0, 0.9, int64(7)
	tests := []struct {
		name string
		opts []Option
		req  backend.Request
		want string // the body the server gets, as JSON
	}{{
		name: "raw fields forwarded, typed fields win",
		req: backend.Request{
			Model:       "m1",
			Messages:    []backend.Message{{Role: "user", Content: "Hi"}},
			MaxTokens:   16,
			Temperature: &temp,
			TopP:        &topP,
			Seed:        &seed,
			Stop:        []string{"\n\n"},
			Raw: []byte(`{"model":"client-model","messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}],
				"max_completion_tokens":99,"temperature":1.5,"n":3,"stream":false,"repetition_penalty":1.1,
				"logit_bias":{"50256":-100},"stream_options":{"continuous_usage_stats":true,"include_usage":false}}`),
		},
		want: `{"model":"m1","messages":[{"role":"user","content":"Hi"}],"max_tokens":16,"temperature":0,"top_p":0.9,
			"seed":7,"stop":["\n\n"],"stream":true,"repetition_penalty":1.1,"logit_bias":{"50256":-100},
			"stream_options":{"continuous_usage_stats":true,"include_usage":true}}`,
	}, {
		name: "unset typed fields remove raw members",
		req: backend.Request{
			Messages: []backend.Message{{Role: "user", Content: "Hi"}},
			Raw:      []byte(`{"max_tokens":5,"temperature":0.3,"top_p":0.5,"seed":1,"stop":"x","stream_options":"bad"}`),
		},
		want: `{"messages":[{"role":"user","content":"Hi"}],"stream":true,"stream_options":{"include_usage":true}}`,
	}, {
		name: "default model",
		opts: []Option{WithModel("served")},
		req:  backend.Request{Messages: []backend.Message{{Role: "user", Content: "Hi"}}},
		want: `{"model":"served","messages":[{"role":"user","content":"Hi"}],"stream":true,"stream_options":{"include_usage":true}}`,
	}, {
		name: "default model yields to the request",
		opts: []Option{WithModel("served")},
		req:  backend.Request{Model: "asked", Messages: []backend.Message{{Role: "user", Content: "Hi"}}},
		want: `{"model":"asked","messages":[{"role":"user","content":"Hi"}],"stream":true,"stream_options":{"include_usage":true}}`,
	}, {
		name: "override",
		opts: []Option{WithModelOverride("forced"), WithModel("served")},
		req:  backend.Request{Model: "asked", Messages: []backend.Message{{Role: "user", Content: "Hi"}}},
		want: `{"model":"forced","messages":[{"role":"user","content":"Hi"}],"stream":true,"stream_options":{"include_usage":true}}`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got map[string]any
			var header http.Header
			var path string
			h := func(w http.ResponseWriter, r *http.Request) {
				path, header = r.Method+" "+r.URL.Path, r.Header
				if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
					t.Error(err)
				}
				replay(transcript(t, "vllm.sse"), 0, math.MaxInt32)(w, r)
			}
			b, _ := newBackend(t, http.HandlerFunc(h), tt.opts...)
			if o := generate(t.Context(), b, &tt.req); o.err != nil {
				t.Fatal(o.err)
			}
			var want map[string]any
			if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				gotJSON, _ := json.Marshal(got)
				t.Errorf("body:\n got %s\nwant %s", gotJSON, tt.want)
			}
			if path != "POST /v1/chat/completions" || header.Get("Authorization") != "Bearer "+testKey ||
				header.Get("Accept") != "text/event-stream" || header.Get("Content-Type") != "application/json" {
				t.Errorf("request %s with headers %v", path, header)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name string
		req  backend.Request
		want string
	}{
		{"no messages", backend.Request{Raw: []byte(`{}`)}, "the request has no messages"},
		{"raw not an object", backend.Request{Messages: []backend.Message{{Role: "user", Content: "Hi"}}, Raw: []byte(`[1]`)}, "not a JSON object"},
		{"raw null", backend.Request{Messages: []backend.Message{{Role: "user", Content: "Hi"}}, Raw: []byte(`null`)}, "not a JSON object"},
		{"NaN", backend.Request{Messages: []backend.Message{{Role: "user", Content: "Hi"}}, Temperature: &nan}, "temperature is not a finite number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			b, srv := newBackend(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
			checkError(t, generate(t.Context(), b, &tt.req).err, backend.CodeInvalidRequest, tt.want, srv)
			if called {
				t.Error("the server was called")
			}
		})
	}
}

func TestHTTPErrors(t *testing.T) {
	long := strings.Repeat("é\nx", 2000)
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string // {addr} is the server's host:port
		code        backend.Code
		msg         string
	}{
		{"vLLM legacy 400", 400, "application/json",
			`{"object":"error","message":"This model's maximum context length is 8192 tokens. However, you requested 9000 tokens.","type":"BadRequestError","param":null,"code":400}`,
			backend.CodeInvalidRequest, "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens."},
		{"Ollama 404", 404, "application/json",
			`{"error":{"message":"model \"llama3\" not found, try pulling it first","type":"api_error","param":null,"code":null}}`,
			backend.CodeInvalidRequest, `model "llama3" not found, try pulling it first`},
		{"FastAPI 422", 422, "application/json", `{"detail":[{"loc":["body","messages"],"msg":"field required"}]}`,
			backend.CodeInvalidRequest, "inference server answered HTTP 422 Unprocessable Entity"},
		{"429", 429, "application/json", `{"error":{"message":"Rate limit reached","type":"rate_limit_error","code":"rate_limit_exceeded"}}`,
			backend.CodeUnavailable, "Rate limit reached"},
		{"llama.cpp loading 503", 503, "application/json", `{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}`,
			backend.CodeUnavailable, "Loading model"},
		{"plain 500", 500, "text/plain", "Internal Server Error", backend.CodeUpstream, "inference server answered HTTP 500 Internal Server Error"},
		{"proxy HTML 502", 502, "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>", backend.CodeUpstream, "inference server answered HTTP 502 Bad Gateway"},
		{"504", 504, "text/plain", "", backend.CodeTimeout, "HTTP 504"},
		{"key quoted 401", 401, "application/json",
			`{"error":{"message":"Incorrect API key provided: ` + testKey + `.","type":"invalid_request_error","code":"invalid_api_key"}}`,
			backend.CodeUpstream, "Incorrect API key provided: [redacted]."},
		{"address quoted, string shape", 500, "application/json",
			`{"error":"proxy error: dial http://{addr}/v1: connection refused, also {addr}"}`,
			backend.CodeUpstream, "proxy error: dial [backend]: connection refused, also [backend]"},
		{"long message", 400, "application/json", `{"error":{"message":` + strconvQuote(long) + `}}`,
			backend.CodeInvalidRequest, "é xé x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				w.WriteHeader(tt.status)
				io.WriteString(w, strings.ReplaceAll(tt.body, "{addr}", r.Host))
			}
			b, srv := newBackend(t, http.HandlerFunc(h))
			o := generate(t.Context(), b, storyRequest())
			checkError(t, o.err, tt.code, tt.msg, srv)
			var be *backend.Error
			errors.As(o.err, &be)
			if want := backend.Errorf(tt.code, "").Status; be.Status != want {
				t.Errorf("status = %d, want %d", be.Status, want)
			}
			if len(be.Message) > maxMessage || strings.ContainsAny(be.Message, "\n\r") || !utf8.ValidString(be.Message) {
				t.Errorf("message %q is too long, has line breaks or invalid UTF-8", be.Message)
			}
			// Models goes through the same mapping.
			_, err := b.Models(t.Context())
			checkError(t, err, tt.code, tt.msg, srv)
		})
	}
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestNotAStream(t *testing.T) {
	tests := []struct {
		name, contentType, body string
		code                    backend.Code
		msg                     string
	}{
		{"error with 200", "application/json", `{"error":{"message":"busy","code":503}}`, backend.CodeUnavailable, "busy"},
		{"stream ignored", "application/json", `{"id":"x","object":"chat.completion","choices":[]}`, backend.CodeUpstream, "answered application/json, not an event stream"},
		{"no content type", "", ``, backend.CodeUpstream, "without a Content-Type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = []string{tt.contentType}
				io.WriteString(w, tt.body)
			}
			b, srv := newBackend(t, http.HandlerFunc(h))
			checkError(t, generate(t.Context(), b, storyRequest()).err, tt.code, tt.msg, srv)
		})
	}
}

func TestTruncatedStream(t *testing.T) {
	body := transcript(t, "vllm.sse")
	cut := bytes.Index(body, []byte(`"content":" Lily"`))
	b, srv := newBackend(t, replay(body[:cut], 0, math.MaxInt32))
	o := generate(t.Context(), b, storyRequest())
	checkError(t, o.err, backend.CodeUpstream, "ended the stream before the answer was complete", srv)
	if o.text() != "Once upon a time, there was a little girl named" {
		t.Errorf("text = %q", o.text())
	}
}

// sseChunk is one chat.completion.chunk event with content.
func sseChunk(content, finish string) string {
	c := map[string]any{"index": 0, "delta": map[string]string{"content": content}}
	if finish != "" {
		c["finish_reason"] = finish
	}
	b, _ := json.Marshal(map[string]any{"object": "chat.completion.chunk", "model": "m", "choices": []any{c}})
	return "data: " + string(b) + "\n\n"
}

// wait blocks until the client goes away, or fails the test after a while.
func wait(t *testing.T, r *http.Request) {
	// net/http notices a client going away only once the body is read, as the
	// servers do.
	io.Copy(io.Discard, r.Body)
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
		t.Error("the client did not go away")
	}
}

func flush(w http.ResponseWriter, s string) {
	io.WriteString(w, s)
	w.(http.Flusher).Flush()
}

func TestFirstByteTimeout(t *testing.T) {
	tests := []struct {
		name    string
		handler func(t *testing.T) http.HandlerFunc
		wantErr bool
	}{
		{"no headers", func(t *testing.T) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) { wait(t, r) }
		}, true},
		{"headers, no body", func(t *testing.T) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				w.WriteHeader(200)
				w.(http.Flusher).Flush()
				wait(t, r)
			}
		}, true},
		{"slow but in time", func(t *testing.T) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(150 * time.Millisecond)
				w.Header().Set("Content-Type", "text/event-stream")
				flush(w, sseChunk("Once", "stop")+"data: [DONE]\n\n")
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit := 100 * time.Millisecond
			if !tt.wantErr {
				limit = 5 * time.Second // far above the server's 150 ms, however loaded the machine
			}
			b, srv := newBackend(t, tt.handler(t), WithFirstByteTimeout(limit), WithIdleTimeout(time.Hour))
			start := time.Now()
			o := generate(t.Context(), b, storyRequest())
			if !tt.wantErr {
				if o.err != nil || o.text() != "Once" {
					t.Fatalf("got %q, %v", o.text(), o.err)
				}
				return
			}
			checkError(t, o.err, backend.CodeTimeout, "inference server sent nothing within 100ms", srv)
			if d := time.Since(start); d < limit || d > limit+2*time.Second {
				t.Errorf("failed after %s, want about %s", d, limit)
			}
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	// The first byte comes at once, or after a few idle timeouts, well within the
	// first-byte timeout: the idle clock starts then.
	for _, delay := range []time.Duration{0, 250 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			h := func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(delay)
				w.Header().Set("Content-Type", "text/event-stream")
				flush(w, sseChunk("Once", "")+sseChunk(" upon", ""))
				wait(t, r)
			}
			b, srv := newBackend(t, http.HandlerFunc(h), WithFirstByteTimeout(time.Minute), WithIdleTimeout(100*time.Millisecond))
			start := time.Now()
			o := generate(t.Context(), b, storyRequest())
			checkError(t, o.err, backend.CodeTimeout, "inference server went silent for 100ms", srv)
			if o.text() != "Once upon" || o.res.Usage.CompletionTokens != 2 {
				t.Errorf("text, usage = %q, %+v", o.text(), o.res.Usage)
			}
			if d := time.Since(start); d > delay+2*time.Second {
				t.Errorf("failed after %s", d)
			}
		})
	}
}

// A stream that lasts many idle timeouts succeeds while it keeps moving: with
// keep-alive comments only, with data, or with a caller slow to take the data.
func TestNoTotalTimeout(t *testing.T) {
	const idle = 150 * time.Millisecond
	tests := []struct {
		name      string
		event     string
		gap       time.Duration // between events
		emitDelay time.Duration // in the first emit
		idleHook  bool          // the caller passes backend.WithIdle
	}{
		{"keep-alives", ": keep-alive\n\n", idle / 3, 0, false},
		{"data", sseChunk(".", ""), idle / 3, 0, false},
		// The events pile up in the connection while the caller is busy.
		{"slow caller", sseChunk(".", ""), idle / 3, 2 * idle, false},
		{"slow caller with an idle hook", sseChunk(".", ""), idle / 3, 2 * idle, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				flush(w, sseChunk("Once", ""))
				for range 8 {
					time.Sleep(tt.gap)
					flush(w, tt.event)
				}
				flush(w, sseChunk(" upon", "stop")+"data: [DONE]\n\n")
			}
			b, _ := newBackend(t, http.HandlerFunc(h), WithFirstByteTimeout(idle), WithIdleTimeout(idle))
			start := time.Now()
			ctx := t.Context()
			if tt.idleHook {
				ctx = backend.WithIdle(ctx, func() error { return nil })
			}
			var text strings.Builder
			_, err := b.Generate(ctx, storyRequest(), func(d string) error {
				if text.Len() == 0 {
					time.Sleep(tt.emitDelay)
				}
				text.WriteString(d)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(text.String(), "Once") || !strings.HasSuffix(text.String(), " upon") {
				t.Errorf("text = %q", text.String())
			}
			if d := time.Since(start); d < 2*idle {
				t.Errorf("the stream took %s: the test proves nothing", d)
			}
		})
	}
}

func TestLongLine(t *testing.T) {
	big := strings.Repeat("ab€", 3<<19/5) // 1.5 MiB with multi-byte characters
	body := sseChunk(big, "") + sseChunk("!", "stop") + "data: [DONE]\n\n"
	t.Run("within the limit", func(t *testing.T) {
		b, _ := newBackend(t, replay([]byte(body), 4, 256<<10))
		o := generate(t.Context(), b, storyRequest())
		if o.err != nil {
			t.Fatal(o.err)
		}
		if o.text() != big+"!" {
			t.Errorf("got %d bytes, want %d", len(o.text()), len(big)+1)
		}
	})
	t.Run("over the limit", func(t *testing.T) {
		b, srv := newBackend(t, replay([]byte(body), 4, 256<<10), WithMaxLineSize(1<<20))
		o := generate(t.Context(), b, storyRequest())
		checkError(t, o.err, backend.CodeUpstream, "inference server sent an event stream line over 1048576 bytes", srv)
	})
}

// stopped serves one chunk and reports on gone when the client goes away.
func stopped(t *testing.T, gone chan<- struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		flush(w, sseChunk("Once", ""))
		wait(t, r)
		close(gone)
	}
}

func TestCancel(t *testing.T) {
	errStop := errors.New("client left")
	tests := []struct {
		name string
		// stop ends the generation from within emit and returns emit's result.
		stop    func(cancel context.CancelFunc, b *Backend) error
		wantErr error
		code    backend.Code
	}{
		{"context", func(cancel context.CancelFunc, _ *Backend) error { cancel(); return nil }, context.Canceled, ""},
		{"emit error", func(context.CancelFunc, *Backend) error { return errStop }, errStop, ""},
		{"close", func(_ context.CancelFunc, b *Backend) error { b.Close(); return nil }, nil, backend.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gone := make(chan struct{})
			b, srv := newBackend(t, stopped(t, gone))
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			start := time.Now()
			res, err := b.Generate(ctx, storyRequest(), func(string) error { return tt.stop(cancel, b) })
			// Milliseconds alone; the server never ends the stream on its own.
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Generate returned after %s", d)
			}
			if tt.code != "" {
				checkError(t, err, tt.code, "backend is closed", srv)
			} else if err != tt.wantErr || res.FinishReason != "cancelled" {
				t.Errorf("err, finish = %v, %q; want %v, cancelled", err, res.FinishReason, tt.wantErr)
			}
			if res.Usage.CompletionTokens != 1 {
				t.Errorf("usage = %+v, want the one delta counted", res.Usage)
			}
			select {
			case <-gone:
			case <-time.After(5 * time.Second):
				t.Fatal("the server did not see the client go away")
			}
		})
	}
}

// A server or proxy that keeps the body open after [DONE] does not hold the answer up.
func TestOpenAfterDone(t *testing.T) {
	gone := make(chan struct{})
	h := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		flush(w, sseChunk("Once", "stop")+"data: [DONE]\n\n")
		wait(t, r)
		close(gone)
	}
	b, _ := newBackend(t, http.HandlerFunc(h))
	start := time.Now()
	if o := generate(t.Context(), b, storyRequest()); o.err != nil || o.text() != "Once" {
		t.Fatalf("got %q, %v", o.text(), o.err)
	}
	// Milliseconds alone; the server never closes the body on its own.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Generate returned after %s", d)
	}
	<-gone
}

func TestClosedBackend(t *testing.T) {
	b, srv := newBackend(t, replay(transcript(t, "vllm.sse"), 0, math.MaxInt32))
	b.Close()
	checkError(t, generate(t.Context(), b, storyRequest()).err, backend.CodeUnavailable, "backend is closed", srv)
	checkError(t, b.Health(t.Context()), backend.CodeUnavailable, "backend is closed", srv)
}

func TestUnreachable(t *testing.T) {
	b, srv := newBackend(t, http.NotFoundHandler())
	srv.Close()
	checkError(t, generate(t.Context(), b, storyRequest()).err, backend.CodeUnavailable, "cannot reach the inference server: connection refused", srv)
	checkError(t, b.Health(t.Context()), backend.CodeUnavailable, "cannot reach the inference server: connection refused", srv)
}

func TestModels(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []backend.Model
	}{
		{"vLLM", `{"object":"list","data":[{"id":"meta-llama/Meta-Llama-3.1-8B-Instruct","object":"model","created":1730000000,
			"owned_by":"vllm","root":"meta-llama/Meta-Llama-3.1-8B-Instruct","parent":null,"max_model_len":8192,
			"permission":[{"id":"modelperm-1","object":"model_permission","allow_sampling":true}]}]}`,
			[]backend.Model{{ID: "meta-llama/Meta-Llama-3.1-8B-Instruct", OwnedBy: "vllm", ContextLength: 8192}}},
		{"SGLang", `{"object":"list","data":[{"id":"Qwen/Qwen2.5-7B-Instruct","object":"model","created":1730000000,
			"owned_by":"sglang","root":"Qwen/Qwen2.5-7B-Instruct","max_model_len":32768}]}`,
			[]backend.Model{{ID: "Qwen/Qwen2.5-7B-Instruct", OwnedBy: "sglang", ContextLength: 32768}}},
		{"llama.cpp", `{"models":[{"name":"stories15M.gguf","model":"stories15M.gguf"}],"object":"list","data":[{"id":"stories15M.gguf",
			"object":"model","created":1730000000,"owned_by":"llamacpp","meta":{"vocab_type":1,"n_vocab":32000,"n_ctx_train":256,
			"n_embd":288,"n_params":24407712,"size":48769664}}]}`,
			[]backend.Model{{ID: "stories15M.gguf", OwnedBy: "llamacpp", ContextLength: 256}}},
		{"Ollama", `{"object":"list","data":[{"id":"llama3.2:1b","object":"model","created":1730000000,"owned_by":"library"},
			{"id":"qwen2.5:0.5b","object":"model","created":1730000000,"owned_by":"library"}]}`,
			[]backend.Model{{ID: "llama3.2:1b", OwnedBy: "library"}, {ID: "qwen2.5:0.5b", OwnedBy: "library"}}},
		{"empty", `{"object":"list","data":[]}`, []backend.Model{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var path, auth string
			h := func(w http.ResponseWriter, r *http.Request) {
				path, auth = r.Method+" "+r.URL.Path, r.Header.Get("Authorization")
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, tt.body)
			}
			b, _ := newBackend(t, http.HandlerFunc(h))
			got, err := b.Models(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("models = %+v, want %+v", got, tt.want)
			}
			if path != "GET /v1/models" || auth != "Bearer "+testKey {
				t.Errorf("request %s with Authorization %q", path, auth)
			}
			if err := b.Health(t.Context()); err != nil {
				t.Errorf("Health: %v", err)
			}
		})
	}
}

func TestModelsBad(t *testing.T) {
	tests := []struct{ name, body, msg string }{
		{"not JSON", "<html></html>", "no model list"},
		{"not a list", `{"status":"ok"}`, "no model list"},
		{"too big", `{"data":[` + strings.Repeat(`{"id":"x"},`, 200) + `{"id":"y"}]}`, "model list over 1024 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, tt.body) }
			b, srv := newBackend(t, http.HandlerFunc(h), WithMaxLineSize(1024))
			checkError(t, b.Health(t.Context()), backend.CodeUpstream, tt.msg, srv)
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		url  string
		opts []Option
		want string // "" for success
	}{
		{"http://127.0.0.1:8000/v1/", nil, ""},
		{"https://gpu.internal/v1", nil, ""},
		{"127.0.0.1:8000/v1", nil, "absolute http or https URL"},
		{"ftp://host/v1", nil, "absolute http or https URL"},
		{"http:///v1", nil, "absolute http or https URL"},
		{"http://user:pw@host/v1", nil, "must not hold credentials"},
		{"http://host/v1?key=x", nil, "must not hold credentials"},
		{"http://host/v1", []Option{WithMaxLineSize(100)}, "max line size 100 is below 1024 bytes"},
	}
	for _, tt := range tests {
		b, err := New(tt.url, tt.opts...)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("New(%q): %v", tt.url, err)
		case tt.want == "":
			if b.chatURL != strings.TrimSuffix(tt.url, "/")+"/chat/completions" {
				t.Errorf("New(%q): chat URL %q", tt.url, b.chatURL)
			}
			b.Close()
		case err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "pw"):
			t.Errorf("New(%q) error = %v, want %q", tt.url, err, tt.want)
		}
	}
}
