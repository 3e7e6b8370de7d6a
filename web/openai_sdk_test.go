package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sdkDir holds the OpenAI SDK client: client.mjs and the pinned npm package.
var sdkDir = filepath.Join("testdata", "openai-sdk")

// sdkResult is one line of client.mjs: what the SDK made of an answer, or its error.
type sdkResult struct {
	Mode         string     `json:"mode"`
	Text         string     `json:"text"`
	FinishReason string     `json:"finish_reason"`
	Usage        *usageJSON `json:"usage"`
	Chunks       int        `json:"chunks"`
	Error        *struct {
		Name    string `json:"name"`
		Status  int    `json:"status"`
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    string `json:"code"`
	} `json:"error"`
}

// runSDK runs client.mjs against baseURL with key, in the given modes, and returns its
// lines and whether it exited 0. It fails the test when node or the SDK is missing:
// CI installs both, and a test that skipped would prove nothing.
func runSDK(t *testing.T, baseURL, key, prompt string, maxTokens int, modes ...string) ([]sdkResult, bool) {
	t.Helper()
	const setup = "run `npm ci --prefix web/testdata/openai-sdk` (CI does it in .ci/run)"
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed: install nodejs and npm (apt-get install nodejs npm), then %s", setup)
	}
	if _, err := os.Stat(filepath.Join(sdkDir, "node_modules", "openai", "package.json")); err != nil {
		t.Fatalf("the OpenAI SDK is not installed: %s", setup)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	args := []string{"client.mjs", "--base-url", baseURL, "--prompt", prompt, "--max-tokens", strconv.Itoa(maxTokens)}
	cmd := exec.CommandContext(ctx, node, append(args, modes...)...)
	cmd.Dir = sdkDir
	// The SDK reads its key from the environment; nothing else of a developer's OpenAI
	// setup (OPENAI_BASE_URL, OPENAI_ORG_ID...) may reach it.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OPENAI_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "OPENAI_API_KEY="+key)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("node client.mjs: %v", err)
	}
	var results []sdkResult
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r sdkResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("client.mjs printed %q: %v\nstderr: %s", sc.Bytes(), err, stderr.Bytes())
		}
		results = append(results, r)
	}
	if len(results) == 0 {
		t.Fatalf("client.mjs printed nothing (%v)\nstderr: %s", err, stderr.Bytes())
	}
	return results, err == nil
}

// TestOpenAISDK calls the example pipeline with the official OpenAI SDK (npm "openai")
// at baseURL = http://127.0.0.1:PORT/p/{id}/v1, as Mini App backends do: the SDK must
// read the same text, finish reason and usage from a stream as from a whole answer, the
// same as the server sent, and must raise the server's 401 for a wrong key. The host
// attests, so every answer is signed: the SDK must pass over a stream's signature event.
func TestOpenAISDK(t *testing.T) {
	f, _ := attested(t)
	id := pushExample(t, f)
	baseURL := f.http.URL + "/p/" + id + "/v1"
	if !strings.HasPrefix(baseURL, "http://127.0.0.1:") {
		t.Fatalf("the server is not on loopback: %s", baseURL)
	}
	const prompt, maxTokens = "Once upon a time, ann@example.com", 40

	// What the server sends, read without the SDK.
	res := f.do("POST", "/p/"+id+"/v1/chat/completions", ownerKey, map[string]any{
		"messages":   []map[string]string{{"role": "user", "content": prompt}},
		"max_tokens": maxTokens, "temperature": 0,
	})
	if res.status != http.StatusOK {
		t.Fatalf("plain HTTP: %d %s", res.status, res.body)
	}
	var want completion
	res.json(t, &want)
	if len(want.Choices) != 1 || want.Choices[0].Message.Content == "" {
		t.Fatalf("plain HTTP: no text in %s", res.body)
	}
	served := <-f.backend.ended

	results, ok := runSDK(t, baseURL, ownerKey, prompt, maxTokens, "create", "stream")
	if !ok || len(results) != 2 {
		t.Fatalf("the SDK failed: %+v", results)
	}
	for _, r := range results {
		if r.Error != nil {
			t.Fatalf("%s: %+v", r.Mode, *r.Error)
		}
		gen := <-f.backend.ended
		if gen.err != nil {
			t.Fatalf("%s: the backend failed: %v", r.Mode, gen.err)
		}
		u := gen.result.Usage
		reported := usageJSON{u.PromptTokens, u.CompletionTokens, u.PromptTokens + u.CompletionTokens}
		switch {
		case r.Text != want.Choices[0].Message.Content:
			t.Errorf("%s: the SDK read %q, the server sent %q", r.Mode, r.Text, want.Choices[0].Message.Content)
		case r.FinishReason != gen.result.FinishReason || r.FinishReason != want.Choices[0].FinishReason:
			t.Errorf("%s: finish_reason %q, the backend ended with %q, plain HTTP read %q",
				r.Mode, r.FinishReason, gen.result.FinishReason, want.Choices[0].FinishReason)
		case r.Usage == nil:
			t.Errorf("%s: no usage", r.Mode)
		case *r.Usage != reported || *r.Usage != want.Usage:
			t.Errorf("%s: usage %+v, the backend reported %+v, plain HTTP read %+v", r.Mode, *r.Usage, reported, want.Usage)
		}
		if gen.result != served.result {
			t.Errorf("%s: the generation differs from the plain HTTP one: %+v, %+v", r.Mode, gen.result, served.result)
		}
	}
	if n := results[1].Chunks; n < 4 {
		t.Errorf("the SDK got the text in %d chunks: it was not streamed", n)
	}
	if got := f.backend.last().Messages[0].Content; got != "Once upon a time, [email]" {
		t.Errorf("the backend got %q: the SDK's request did not go through the pipeline", got)
	}

	// A wrong key: the SDK must raise an AuthenticationError carrying the server's words.
	denied := f.do("POST", "/p/"+id+"/v1/chat/completions", "sk-wrong", `{}`)
	if denied.status != http.StatusUnauthorized {
		t.Fatalf("wrong key, plain HTTP: %d %s", denied.status, denied.body)
	}
	deniedErr := denied.apiErr(t)
	requests := len(f.backend.requests)
	for _, mode := range []string{"create", "stream"} {
		results, ok := runSDK(t, baseURL, "sk-wrong", prompt, maxTokens, mode)
		if ok || len(results) != 1 || results[0].Error == nil {
			t.Fatalf("%s with a wrong key: the SDK did not fail: %+v", mode, results)
		}
		e := results[0].Error
		if e.Name != "AuthenticationError" || e.Status != http.StatusUnauthorized ||
			!strings.Contains(e.Message, deniedErr.Message) || e.Type != deniedErr.Type || e.Code != deniedErr.Code {
			t.Errorf("%s with a wrong key: the SDK raised %+v, the server answers %+v", mode, *e, deniedErr)
		}
	}
	if len(f.backend.requests) != requests {
		t.Error("the backend ran for a request with a wrong key")
	}
}
