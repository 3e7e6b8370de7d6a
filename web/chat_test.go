package web

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/host/backend"
)

// greedy200 is the request of the engine's golden file: no prompt, 200 tokens, greedy.
const greedy200 = `{"model":"stories260K","messages":[{"role":"user","content":""}],"max_tokens":200,"temperature":0}`

const emptyPipeline = `{"abi_version":1,"model":"stories260K"}`

// TestGoldenThroughHTTP checks that the HTTP path adds nothing to what the engine
// generates: the bare backend and an empty pipeline both give the golden text, which is
// also what the engine gives when called directly.
func TestGoldenThroughHTTP(t *testing.T) {
	f := newFixture(t)
	golden, err := os.ReadFile(filepath.Join(modelDir(), "golden_t0_n200.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var direct strings.Builder
	temp := 0.0
	if _, err := f.engine.Generate(context.Background(), &backend.Request{MaxTokens: 200, Temperature: &temp,
		Messages: []backend.Message{{Role: "user"}}}, func(d string) error { direct.WriteString(d); return nil }); err != nil {
		t.Fatal(err)
	}
	if direct.String() != string(golden) {
		t.Fatal("the engine itself does not give the golden text")
	}
	id := f.push(emptyPipeline)
	for _, path := range []string{"/v1/chat/completions", "/p/" + id + "/v1/chat/completions"} {
		res := f.do("POST", path, ownerKey, greedy200)
		if res.status != http.StatusOK || res.header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %s", path, res.status, res.body)
		}
		var c completion
		res.json(t, &c)
		if len(c.Choices) != 1 || c.Choices[0].Message.Content != string(golden) {
			t.Errorf("%s: content differs from the golden text:\n%s", path, res.body)
		}
		if c.Object != "chat.completion" || c.Model != "stories260K" || !strings.HasPrefix(c.ID, "chatcmpl-") ||
			c.Choices[0].Message.Role != "assistant" || c.Choices[0].FinishReason != "length" {
			t.Errorf("%s: envelope %+v", path, c)
		}
		if c.Usage != (usageJSON{PromptTokens: 1, CompletionTokens: 200, TotalTokens: 201}) {
			t.Errorf("%s: usage %+v", path, c.Usage)
		}
	}
}

func TestStreaming(t *testing.T) {
	f := newFixture(t)
	const req = `{"model":"stories260K","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":40,"temperature":0`
	whole := f.do("POST", "/v1/chat/completions", ownerKey, req+`}`)
	var c completion
	whole.json(t, &c)

	for _, tc := range []struct {
		name, body string
		usage      bool
	}{
		{"without usage", req + `,"stream":true}`, false},
		{"with usage", req + `,"stream":true,"stream_options":{"include_usage":true}}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.do("POST", "/v1/chat/completions", ownerKey, tc.body)
			if res.status != http.StatusOK || res.header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("%d %s %s", res.status, res.header, res.body)
			}
			s := parseSSE(t, res.body)
			if !s.done || s.err != nil {
				t.Fatalf("stream did not end with [DONE]: %s", res.body)
			}
			if s.text() != c.Choices[0].Message.Content {
				t.Errorf("streamed %q, non-streaming %q", s.text(), c.Choices[0].Message.Content)
			}
			if len(s.chunks) < 4 {
				t.Fatalf("%d chunks: the answer was not streamed", len(s.chunks))
			}
			if s.chunks[0].Choices[0].Delta.Role != "assistant" || s.chunks[1].Choices[0].Delta.Role != "" {
				t.Errorf("role must come in the first chunk only: %+v", s.chunks[:2])
			}
			id := s.chunks[0].ID
			for _, ch := range s.chunks {
				if ch.ID != id || ch.Object != "chat.completion.chunk" || ch.Model != "stories260K" {
					t.Errorf("chunk envelope %+v", ch)
				}
			}
			last := s.chunks[len(s.chunks)-1]
			if tc.usage {
				if len(last.Choices) != 0 || last.Usage == nil || *last.Usage != c.Usage {
					t.Errorf("usage chunk %+v, want usage %+v", last, c.Usage)
				}
				last = s.chunks[len(s.chunks)-2]
			} else if last.Usage != nil {
				t.Errorf("usage sent without include_usage: %+v", last)
			}
			if fr := last.Choices[0].FinishReason; fr == nil || *fr != "length" {
				t.Errorf("finish chunk %+v", last)
			}
		})
	}
}

// pipelineFixture uploads the example pipeline: the PII redactor (Go) before the
// model and the output guard (C) after it, masking words every story has.
func pipelineFixture(t *testing.T) (*fixture, string) {
	f := newFixture(t)
	pii := plugin(t, "pii-redactor/go/pii-redactor.wasm")
	guard := plugin(t, "output-guard/c/output-guard.wasm")
	id := f.push(`{"abi_version":1,"model":"stories260K",
		"pre":[{"module":"`+hashOf(pii)+`"}],
		"post":[{"module":"`+hashOf(guard)+`","config":{"words":["was","the","a"],"replacement":"***"}}]}`, pii, guard)
	return f, id
}

var maskedWord = regexp.MustCompile(`(?i)\b(was|the|a)\b`)

func TestPipelineRedactsAndGuards(t *testing.T) {
	f, id := pipelineFixture(t)
	const msg = `{"model":"stories260K","messages":[{"role":"user","content":"I am ann@example.com, call +1 415 555 2671."}],"max_tokens":60,"temperature":0`
	for _, stream := range []bool{false, true} {
		body := msg + `}`
		if stream {
			body = msg + `,"stream":true}`
		}
		res := f.do("POST", "/p/"+id+"/v1/chat/completions", ownerKey, body)
		if res.status != http.StatusOK {
			t.Fatalf("stream=%v: %d %s", stream, res.status, res.body)
		}
		got := f.backend.last().Messages[0].Content
		if got != "I am [email], call [phone]." {
			t.Errorf("the backend got %q: the PII was not redacted", got)
		}
		var text string
		if stream {
			s := parseSSE(t, res.body)
			if !s.done {
				t.Fatalf("stream did not end: %s", res.body)
			}
			text = s.text()
		} else {
			var c completion
			res.json(t, &c)
			text = c.Choices[0].Message.Content
		}
		// What the engine says to the redacted prompt, unguarded.
		var raw strings.Builder
		temp := 0.0
		f.engine.Generate(context.Background(), &backend.Request{MaxTokens: 60, Temperature: &temp,
			Messages: []backend.Message{{Role: "user", Content: got}}}, func(d string) error { raw.WriteString(d); return nil })
		if !maskedWord.MatchString(raw.String()) {
			t.Fatalf("the test needs a masked word in the raw answer %q", raw.String())
		}
		if maskedWord.MatchString(text) || !strings.Contains(text, "***") {
			t.Errorf("stream=%v: the guard did not mask the answer: %q", stream, text)
		}
		if want := maskedWord.ReplaceAllString(raw.String(), "***"); text != want {
			t.Errorf("stream=%v: answer %q, want %q", stream, text, want)
		}
	}
}

func TestModuleRejectionAndFault(t *testing.T) {
	f := newFixture(t)
	tmpl := plugin(t, "prompt-template/c/prompt-template.wasm")
	pii := plugin(t, "pii-redactor/go/pii-redactor.wasm")
	reject := f.push(`{"abi_version":1,"model":"stories260K","pre":[{"module":"`+hashOf(tmpl)+`","config":{"on_existing":"reject"}}]}`, tmpl)
	broken := f.push(`{"abi_version":1,"model":"stories260K","pre":[{"module":"`+hashOf(pii)+`","config":{"roles":[]}}]}`, pii)
	const withSystem = `{"messages":[{"role":"system","content":"be rude"},{"role":"user","content":"hi"}],"max_tokens":5`

	before := len(f.backend.requests)
	for _, stream := range []string{`}`, `,"stream":true}`} {
		res := f.do("POST", "/p/"+reject+"/v1/chat/completions", ownerKey, withSystem+stream)
		e := res.apiErr(t)
		if res.status != http.StatusForbidden || e.Code != "rejected" || e.Type != "policy_violation" ||
			e.Message != "this pipeline does not accept system messages" {
			t.Errorf("rejection: %d %+v", res.status, e)
		}
		res = f.do("POST", "/p/"+broken+"/v1/chat/completions", ownerKey, withSystem+stream)
		e = res.apiErr(t)
		if res.status != http.StatusInternalServerError || e.Code != "module_error" || e.Type != "module_error" ||
			!strings.HasPrefix(e.Message, "pre module 1 ("+hashOf(pii)+"): ") {
			t.Errorf("fault: %d %+v", res.status, e)
		}
	}
	if len(f.backend.requests) != before {
		t.Error("the backend ran although the pre stage failed")
	}
	m := f.do("GET", "/metrics", "", nil)
	for _, want := range []string{
		`cocoon_module_failures_total{kind="rejected",stage="pre"} 2`,
		`cocoon_module_failures_total{kind="module_error",stage="pre"} 2`,
	} {
		if !strings.Contains(string(m.body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestBadChatRequests(t *testing.T) {
	f := newFixture(t, func(c *Config, _ *recorder) { c.MaxRequestBytes = 1024 })
	id := f.push(emptyPipeline)
	for _, tc := range []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"not JSON", "/v1/chat/completions", `{"messages":`, 400, "request: invalid JSON at byte 12: unexpected end of JSON input"},
		{"array", "/v1/chat/completions", `[]`, 400, "request: JSON array where an object is required"},
		{"stream not bool", "/v1/chat/completions", `{"stream":"yes","messages":[]}`, 400, `request: JSON string for field "stream"`},
		{"no messages", "/v1/chat/completions", `{"model":"stories260K"}`, 400, "a request without messages"},
		{"image part", "/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, 400,
			`request: messages[0].content: part 0 is of type "image_url": the backend takes text parts only`},
		{"n", "/v1/chat/completions", `{"n":2,"messages":[{"role":"user","content":"x"}]}`, 400, "request: n is 2"},
		{"stop", "/v1/chat/completions", `{"stop":5,"messages":[{"role":"user","content":"x"}]}`, 400, "request: stop: must be a string or an array of strings"},
		{"unknown model", "/v1/chat/completions", `{"model":"gpt-4","messages":[{"role":"user","content":"x"}]}`, 400, `model "gpt-4" is not served here`},
		{"bad temperature", "/v1/chat/completions", `{"temperature":3,"messages":[{"role":"user","content":"x"}]}`, 400, "temperature must be between 0 and 2"},
		{"other model", "/p/" + id + "/v1/chat/completions", `{"model":"gpt-4","messages":[{"role":"user","content":"x"}]}`, 400,
			`model "gpt-4" is not this pipeline's: it serves "stories260K"`},
		{"too large", "/v1/chat/completions", `{"messages":[{"role":"user","content":"` + strings.Repeat("x", 1024) + `"}]}`, 413,
			"the request body is over the limit of 1024 bytes"},
		{"unknown pipeline", "/p/" + strings.Repeat("0", 64) + "/v1/chat/completions", `{}`, 404, "no pipeline with id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.do("POST", tc.path, ownerKey, tc.body)
			e := res.apiErr(t)
			if res.status != tc.status || !strings.Contains(e.Message, tc.want) {
				t.Errorf("%d %+v, want %d and %q", res.status, e, tc.status, tc.want)
			}
		})
	}
}

// A backend failure after the first chunk ends the stream with an error event.
func TestErrorMidStream(t *testing.T) {
	f := newFixture(t, func(_ *Config, r *recorder) {
		r.hook = func(ctx context.Context, n int, d string, emit func(string) error) error {
			if n == 3 {
				return backend.Errorf(backend.CodeUpstream, "the GPU server went away")
			}
			return emit(d)
		}
	})
	res := f.do("POST", "/v1/chat/completions", ownerKey, `{"messages":[{"role":"user","content":"x"}],"max_tokens":20,"stream":true}`)
	s := parseSSE(t, res.body)
	if res.status != 200 || len(s.chunks) != 2 || s.done || s.err == nil {
		t.Fatalf("%d: %s", res.status, res.body)
	}
	if s.err.Code != "upstream_error" || s.err.Type != "backend_error" || s.err.Message != "backend: the GPU server went away" {
		t.Errorf("error event %+v", s.err)
	}
}

func TestOverCapacity(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	f := newFixture(t, func(c *Config, r *recorder) {
		c.MaxGenerations = 1
		r.hook = func(ctx context.Context, n int, d string, emit func(string) error) error {
			if n == 1 {
				close(started)
				<-release
			}
			return emit(d)
		}
	})
	first := make(chan response, 1)
	go func() {
		res, err := f.send("POST", "/v1/chat/completions", ownerKey, greedy200)
		if err != nil {
			res = response{status: -1, body: []byte(err.Error())}
		}
		first <- res
	}()
	select {
	case <-started:
	case res := <-first:
		t.Fatalf("the first request ended before its first delta: %d %s", res.status, res.body)
	}
	res := f.do("POST", "/v1/chat/completions", ownerKey, `{"messages":[{"role":"user","content":"x"}],"max_tokens":5}`)
	e := res.apiErr(t)
	if res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") != "1" || e.Code != "over_capacity" {
		t.Errorf("over capacity: %d %s %+v", res.status, res.header, e)
	}
	close(release)
	if res := <-first; res.status != 200 {
		t.Errorf("the running request: %d %s", res.status, res.body)
	}
	f.backend.hook = nil
	if res := f.do("POST", "/v1/chat/completions", ownerKey, `{"messages":[{"role":"user","content":"x"}],"max_tokens":5}`); res.status != 200 {
		t.Errorf("after the slot was released: %d %s", res.status, res.body)
	}
}

// A client that goes away cancels its generation in the engine, and frees its slot.
func TestDisconnectCancelsGeneration(t *testing.T) {
	started := make(chan struct{})
	f := newFixture(t, func(c *Config, r *recorder) {
		c.MaxGenerations = 1
		r.hook = func(ctx context.Context, n int, d string, emit func(string) error) error {
			if n == 2 {
				close(started)
				<-ctx.Done() // hold the generation until the server cancels it
			}
			return emit(d)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	// Greedy from an empty prompt: the golden story, hundreds of tokens long.
	req, _ := http.NewRequestWithContext(ctx, "POST", f.http.URL+"/v1/chat/completions",
		strings.NewReader(`{"messages":[{"role":"user","content":""}],"max_tokens":0,"temperature":0,"stream":true}`))
	setAuth(req, ownerKey)
	finished := make(chan error, 1)
	go func() {
		res, err := f.http.Client().Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		finished <- err
	}()
	select {
	case <-started:
	case err := <-finished:
		t.Fatalf("the request ended before its second delta: %v", err)
	}
	cancel()
	select {
	case end := <-f.backend.ended:
		if !errors.Is(end.err, context.Canceled) || end.result.FinishReason != "cancelled" || end.result.Usage.CompletionTokens >= 500 {
			t.Errorf("generation ended with %+v, %v; want cancelled early", end.result, end.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the generation did not stop after the client left")
	}
	f.backend.hook = nil
	deadline := time.Now().Add(5 * time.Second)
	for {
		res := f.do("POST", "/v1/chat/completions", ownerKey, `{"messages":[{"role":"user","content":"x"}],"max_tokens":2}`)
		if res.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not released: %d %s", res.status, res.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
