package web

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
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
		// The bare endpoint serves the backend's model when none is named: every chunk
		// names it, not "" (the result that names it comes after the chunks).
		{"without a model", strings.Replace(req, `"model":"stories260K",`, "", 1) + `,"stream":true}`, false},
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

// TestBadChatRequests: a client's bad request is a 400 naming what is wrong, the same
// through a pipeline as on the bare endpoint, before any module runs (it used to reach
// the pre modules and come back as their 500 module_error); the parameters the host
// does not implement are refused, not ignored.
func TestBadChatRequests(t *testing.T) {
	f := newFixture(t)
	pii := plugin(t, "pii-redactor/go/pii-redactor.wasm")
	id := f.push(`{"abi_version":1,"model":"stories260K","pre":[{"module":"`+hashOf(pii)+`"}]}`, pii)
	const msgs = `"messages":[{"role":"user","content":"x"}]`
	for _, tc := range []struct {
		name, body, want string
	}{
		{"empty object", `{}`, "messages: missing: a chat request needs a non-empty array of messages"},
		{"no messages", `{"messages":[]}`, "messages: must be a non-empty array of messages"},
		{"messages a string", `{"messages":"hi"}`, "messages: must be a non-empty array of messages"},
		{"not JSON", `{"messages":`, "invalid JSON at byte 12"},
		{"array", `[]`, "array where an object is required"},
		{"stream not bool", `{"stream":"yes",` + msgs + `}`, "stream: must be true or false"},
		{"image part", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`,
			`messages[0].content[0].type: "image_url" is not supported by this host (text parts only)`},
		{"negative max_tokens", `{` + msgs + `,"max_tokens":-1}`, "max_tokens: must be an integer from 1"},
		{"n", `{"n":2,` + msgs + `}`, "n: must be 1: this host answers with one choice"},
		{"stop", `{"stop":5,` + msgs + `}`, "stop: must be a string or an array of strings"},
		{"temperature", `{"temperature":3,` + msgs + `}`, "temperature: must be a number from 0 to 2"},
		{"tools", `{` + msgs + `,"tools":[{"type":"function","function":{"name":"get_weather"}}],"tool_choice":"auto"}`, "tools: not supported by this host (no tool calls)"},
		{"json output", `{` + msgs + `,"response_format":{"type":"json_object"}}`, `response_format: not supported by this host (only {"type": "text"})`},
		{"logprobs", `{` + msgs + `,"logprobs":true,"top_logprobs":2}`, "logprobs: not supported by this host"},
		{"logit_bias", `{` + msgs + `,"logit_bias":{"13":5}}`, "logit_bias: not supported by this host"},
		{"audio", `{` + msgs + `,"modalities":["text","audio"],"audio":{"voice":"alloy","format":"wav"}}`, "modalities: not supported by this host (text only)"},
	} {
		for _, path := range []string{"/v1/chat/completions", "/p/" + id + "/v1/chat/completions"} {
			t.Run(tc.name+" "+path[:3], func(t *testing.T) {
				res := f.do("POST", path, ownerKey, tc.body)
				e := res.apiErr(t)
				if res.status != 400 || e.Type != "invalid_request_error" || e.Code != "invalid_request" || !strings.Contains(e.Message, tc.want) {
					t.Errorf("%d %+v, want 400 invalid_request and %q", res.status, e, tc.want)
				}
			})
		}
	}
	for _, tc := range []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"unknown model", "/v1/chat/completions", `{"model":"gpt-4",` + msgs + `}`, 400, `model "gpt-4" is not served here`},
		{"other model", "/p/" + id + "/v1/chat/completions", `{"model":"gpt-4",` + msgs + `}`, 400,
			`model "gpt-4" is not this pipeline's: it serves "stories260K"`},
		{"unknown pipeline", "/p/" + strings.Repeat("0", 64) + "/v1/chat/completions", `{}`, 404, "no pipeline with id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.do("POST", tc.path, ownerKey, tc.body)
			if e := res.apiErr(t); res.status != tc.status || !strings.Contains(e.Message, tc.want) {
				t.Errorf("%d %+v, want %d and %q", res.status, e, tc.status, tc.want)
			}
		})
	}
	if m := f.do("GET", "/metrics", "", nil); strings.Contains(string(m.body), "cocoon_module_failures_total{") {
		t.Errorf("a module ran on a bad request:\n%s", regexp.MustCompile(`(?m)^cocoon_module_failures_total.*$`).FindAllString(string(m.body), -1))
	}
}

// TestOversizedRequests: a body over the pipeline's first pre module's input limit is a
// 413 naming the limit before any module runs, a body over MaxRequestBytes a 413 at
// reading, and a prompt too long for the model is refused by its size in milliseconds,
// not tokenized for seconds while it holds a generation slot.
func TestOversizedRequests(t *testing.T) {
	f := newFixture(t, func(c *Config, _ *recorder) { c.MaxRequestBytes = 8 << 20 })
	pii := plugin(t, "pii-redactor/go/pii-redactor.wasm")
	id := f.push(`{"abi_version":1,"model":"stories260K","pre":[{"module":"`+hashOf(pii)+`","limits":{"input_bytes":4096}}]}`, pii)
	prompt := func(n int) string {
		return `{"messages":[{"role":"user","content":"` + strings.Repeat("Once upon a time ", n/17+1) + `"}]}`
	}
	res := f.do("POST", "/p/"+id+"/v1/chat/completions", ownerKey, prompt(5000))
	if e := res.apiErr(t); res.status != 413 || e.Code != "body_too_large" ||
		!strings.Contains(e.Message, "over the input limit of 4096 bytes of this pipeline's first pre module ("+hashOf(pii)+")") {
		t.Errorf("over the module's input limit: %d %+v", res.status, e)
	}
	if m := f.do("GET", "/metrics", "", nil); strings.Contains(string(m.body), `cocoon_stage_duration_seconds_count{stage="pre"}`) {
		t.Error("the pre stage ran on a body over its first module's limit")
	}
	res = f.do("POST", "/v1/chat/completions", ownerKey, prompt(9<<20))
	if e := res.apiErr(t); res.status != 413 || !strings.Contains(e.Message, "over the limit of 8388608 bytes") {
		t.Errorf("over MaxRequestBytes: %d %+v", res.status, e)
	}
	start := time.Now()
	res = f.do("POST", "/v1/chat/completions", ownerKey, prompt(4<<20))
	took := time.Since(start)
	t.Logf("a 4 MB prompt refused in %v", took)
	if took > slowdown*2*time.Second { // tokenizing it took 4.7 s
		t.Errorf("refusing a 4 MB prompt took %v", took)
	}
	if e := res.apiErr(t); res.status != 400 || !strings.Contains(e.Message, "context window of 512 tokens leaves no room") {
		t.Errorf("a 4 MB prompt: %d %+v", res.status, e)
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

// running sends greedy200 in the background and returns once its generation has
// closed started (from a recorder hook); its answer comes on the channel.
func (f *fixture) running(started <-chan struct{}) <-chan response {
	f.t.Helper()
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
		f.t.Fatalf("the first request ended before its first delta: %d %s", res.status, res.body)
	}
	return first
}

// atCapacity configures a host of one generation slot whose first generation, once it
// started (closing started), holds its slot until release is closed.
func atCapacity(started, release chan struct{}) func(*Config, *recorder) {
	return func(c *Config, r *recorder) {
		c.MaxGenerations = 1
		c.MaxWaiting = -1 // none wait: the next request is refused (TestBurstWaits has the queue)
		r.hook = func(ctx context.Context, n int, d string, emit func(string) error) error {
			if n == 1 {
				close(started)
				<-release
			}
			return emit(d)
		}
	}
}

func TestOverCapacity(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	f := newFixture(t, atCapacity(started, release))
	first := f.running(started)
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

// TestCapacityBeforeBody: at capacity a request is refused at once, before its body
// is read (the host used to wait for the whole body and parse it first); a client that
// dribbles its body holds no slot meanwhile, and is answered 408 when the body timeout
// passes (it used to be waited for as long as it liked).
func TestCapacityBeforeBody(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	f := newFixture(t, func(c *Config, r *recorder) {
		c.MaxGenerations = 1
		c.MaxWaiting = -1
		c.RequestReadTimeout = 500 * time.Millisecond
		r.hook = func(ctx context.Context, n int, d string, emit func(string) error) error {
			if n == 1 && started != nil {
				close(started)
				<-release
			}
			return emit(d)
		}
	})
	addr := strings.TrimPrefix(f.http.URL, "http://")
	// partial sends the headers of a chat request and the first 10 of its 1000 body
	// bytes, and returns a reader of the answer.
	partial := func() *bufio.Reader {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: cocoon\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\n\r\n{\"messages", ownerKey)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		return bufio.NewReader(conn)
	}
	answer := func(r *bufio.Reader) *http.Response {
		t.Helper()
		res, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		return res
	}

	first := f.running(started)
	// At capacity: refused at once, with 10 of 1000 body bytes sent.
	if res := answer(partial()); res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "1" {
		t.Errorf("at capacity: %d %v", res.StatusCode, res.Header)
	}
	close(release)
	if res := <-first; res.status != 200 {
		t.Errorf("the running request: %d %s", res.status, res.body)
	}

	// A dribbling client: it holds no slot while it dribbles, and is cut by the body
	// timeout.
	started = nil
	dribbler := partial()
	if res := f.do("POST", "/v1/chat/completions", ownerKey, `{"messages":[{"role":"user","content":"x"}],"max_tokens":2}`); res.status != 200 {
		t.Errorf("a request beside a dribbling client: %d %s", res.status, res.body)
	}
	start := time.Now()
	if res := answer(dribbler); res.StatusCode != http.StatusRequestTimeout && res.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a body that never arrives: %d", res.StatusCode)
	}
	if res := answer(partial()); res.StatusCode != http.StatusRequestTimeout || time.Since(start) > 4*time.Second {
		t.Errorf("a body that never arrives: %d after %v", res.StatusCode, time.Since(start))
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
		strings.NewReader(`{"messages":[{"role":"user","content":""}],"temperature":0,"stream":true}`))
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
		if !errors.Is(end.err, context.Canceled) && !errors.Is(end.err, errClientGone) || end.result.FinishReason != "cancelled" || end.result.Usage.CompletionTokens >= 500 {
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

// TestBurstWaits: a burst of 12 requests on 2 slots is served, the 10 that find the
// slots taken waiting for them (the host used to answer them 429 at once); past the
// queue's bound a request is refused at once, and one that waits longer than SlotWait
// is refused then, not held for as long as the slots stay taken.
func TestBurstWaits(t *testing.T) {
	t.Run("burst", func(t *testing.T) {
		f := newFixture(t, func(c *Config, r *recorder) {
			c.MaxGenerations = 2
			c.MaxWaiting = 10
			// Each generation holds its slot long enough for the whole burst to arrive.
			r.hook = func(ctx context.Context, n int, d string, emit func(string) error) error {
				if n == 1 {
					time.Sleep(200 * time.Millisecond)
				}
				return emit(d)
			}
		})
		const burst = 12
		results := make(chan response, burst)
		for range burst {
			go func() {
				res, err := f.send("POST", "/v1/chat/completions", ownerKey, `{"messages":[{"role":"user","content":"x"}],"max_tokens":20}`)
				if err != nil {
					res = response{status: -1, body: []byte(err.Error())}
				}
				results <- res
			}()
		}
		for range burst {
			if res := <-results; res.status != http.StatusOK {
				t.Errorf("a request of the burst: %d %s", res.status, res.body)
			}
		}
	})
	t.Run("bounded", func(t *testing.T) {
		started, release := make(chan struct{}), make(chan struct{})
		f := newFixture(t, atCapacity(started, release), func(c *Config, _ *recorder) {
			c.MaxWaiting = 2
			c.SlotWait = 500 * time.Millisecond
		})
		first := f.running(started)
		const body = `{"messages":[{"role":"user","content":"x"}],"max_tokens":5}`
		waiters := make(chan response, 2)
		for range 2 {
			go func() {
				res, _ := f.send("POST", "/v1/chat/completions", ownerKey, body)
				waiters <- res
			}()
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(f.server.waiting) < 2 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		start := time.Now()
		if res := f.do("POST", "/v1/chat/completions", ownerKey, body); res.status != http.StatusTooManyRequests || time.Since(start) > 2*time.Second {
			t.Errorf("past the queue: %d after %v, want 429 at once", res.status, time.Since(start))
		}
		for range 2 {
			if res := <-waiters; res.status != http.StatusTooManyRequests || res.apiErr(t).Code != "over_capacity" || time.Since(start) > 5*time.Second {
				t.Errorf("a waiter after SlotWait: %d %s after %v", res.status, res.body, time.Since(start))
			}
		}
		close(release)
		if res := <-first; res.status != http.StatusOK {
			t.Errorf("the running request: %d %s", res.status, res.body)
		}
	})
}
