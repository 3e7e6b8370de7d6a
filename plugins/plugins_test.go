// Package plugins_test runs every example module, in every language it is written in,
// through the host's real sandbox against the shared test vectors of its folder
// (testdata/cases.json and testdata/extra-cases.json): the implementations must agree
// with each other and with the vectors, as the host will run them.
package plugins_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/host"
)

// testCase is one entry of a plugin's testdata/*cases.json.
type testCase struct {
	Name   string          `json:"name"`
	Config json.RawMessage `json:"config"`
	Hook   string          `json:"hook"` // pre, post or stream
	Input  json.RawMessage `json:"input"`
	Chunks []string        `json:"chunks"`
	// Outputs, when present, is what each cocoon_chunk call and then cocoon_end emit.
	Outputs []string        `json:"outputs"`
	Want    json.RawMessage `json:"want"`
	Reject  *struct {
		Status  int    `json:"status"`
		Message string `json:"message"`
	} `json:"reject"`
	Error bool `json:"error"`
	// HostRefuses marks a case whose Want holds members the host does not serve (see
	// guesttest.Case.HostRefuses).
	HostRefuses bool `json:"host_refuses"`
}

// implementation is one build of an example: plugins/NAME/LANG/NAME.wasm.
type implementation struct {
	plugin, lang string
	module       *host.Module
}

func loadCases(t testing.TB, plugin string) []testCase {
	t.Helper()
	var all []testCase
	for _, file := range []string{"cases.json", "extra-cases.json"} {
		b, err := os.ReadFile(filepath.Join(plugin, "testdata", file))
		if errors.Is(err, os.ErrNotExist) && file != "cases.json" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		var cases []testCase
		if err := dec.Decode(&cases); err != nil {
			t.Fatalf("%s/testdata/%s: %v", plugin, file, err)
		}
		all = append(all, cases...)
	}
	return all
}

// implementations compiles every built language version of plugin.
func implementations(t *testing.T, s *host.Sandbox, plugin string) []implementation {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(plugin, "*"))
	var impls []implementation
	for _, dir := range dirs {
		lang := filepath.Base(dir)
		if lang == "testdata" {
			continue
		}
		if !isImplementation(dir) {
			continue
		}
		impls = append(impls, built(t, s, plugin, lang))
	}
	return impls
}

// isImplementation reports whether dir holds the source of a module: Go (main.go), C
// (*.c), AssemblyScript (assembly/index.ts) or Rust (lib.rs).
func isImplementation(dir string) bool {
	for _, source := range []string{"main.go", "*.c", filepath.Join("assembly", "index.ts"), "lib.rs"} {
		if files, _ := filepath.Glob(filepath.Join(dir, source)); len(files) > 0 {
			return true
		}
	}
	return false
}

func newSandbox(t testing.TB) *host.Sandbox {
	t.Helper()
	s, err := host.NewSandbox(context.Background(), host.NewSandboxConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

var plugins = []struct {
	name  string
	langs []string // languages that must be present
}{
	{"pii-redactor", []string{"go"}},
	{"prompt-template", []string{"as", "c", "go"}},
	{"output-guard", []string{"as", "c", "go", "rust"}},
}

func TestVectors(t *testing.T) {
	s := newSandbox(t)
	for _, p := range plugins {
		impls := implementations(t, s, p.name)
		var langs []string
		for _, impl := range impls {
			langs = append(langs, impl.lang)
		}
		if strings.Join(langs, ",") != strings.Join(p.langs, ",") {
			t.Fatalf("%s is built in %v, want %v", p.name, langs, p.langs)
		}
		cases := loadCases(t, p.name)
		if len(cases) < 5 {
			t.Fatalf("%s has only %d test vectors", p.name, len(cases))
		}
		for _, impl := range impls {
			for _, c := range cases {
				t.Run(p.name+"/"+impl.lang+"/"+c.Name, func(t *testing.T) {
					runCase(t, s, impl, c)
				})
			}
		}
	}
}

func session(t *testing.T, s *host.Sandbox, impl implementation, hook string, config []byte) *host.Session {
	t.Helper()
	// These tests are about what modules compute, not how fast: a generous time limit
	// keeps them steady on a loaded machine.
	spec := host.ModuleSpec{Module: impl.module, Config: config, Limits: abi.Limits{CallTimeout: abi.Duration(5 * time.Second)}}
	var ps host.PipelineSpec
	if hook == "pre" {
		ps.Pre = []host.ModuleSpec{spec}
	} else {
		ps.Post = []host.ModuleSpec{spec}
	}
	p, err := s.NewPipeline(ps)
	if err != nil {
		t.Fatal(err)
	}
	sess := p.NewSession(context.Background())
	t.Cleanup(sess.Close)
	return sess
}

func runCase(t *testing.T, s *host.Sandbox, impl implementation, c testCase) {
	sess := session(t, s, impl, c.Hook, c.Config)
	var got []byte
	var err error
	switch c.Hook {
	case "pre":
		got, err = sess.Pre(c.Input)
	case "post":
		got, err = sess.Post(c.Input)
	case "stream":
		var outputs []string
		outputs, err = streamCalls(sess, c.Chunks)
		got, _ = json.Marshal(strings.Join(outputs, ""))
		if err == nil && c.Outputs != nil && strings.Join(outputs, "|") != strings.Join(c.Outputs, "|") {
			t.Fatalf("the calls emitted %q, want %q", outputs, c.Outputs)
		}
	default:
		t.Fatalf("unknown hook %q", c.Hook)
	}
	defer func() {
		if t.Failed() {
			for _, l := range sess.Logs() {
				t.Log(l)
			}
		}
	}()
	var e *host.Error
	switch {
	case c.HostRefuses:
		// The module passed those members through (the native run checks its output
		// against Want); the host refuses to serve them.
		if host.CheckChatRequest(c.Want) == nil {
			t.Fatal("the vector's want passes the host's check, though host_refuses says it does not")
		}
		if !errors.As(err, &e) || e.Code != host.CodeInvalidOutput || !strings.Contains(e.Message, "not supported by this host") {
			t.Fatalf("got %s, %v; want invalid_output naming a member the host does not serve", got, err)
		}
	case c.Reject != nil:
		if !errors.As(err, &e) || e.Code != host.CodeRejected || e.Status != c.Reject.Status || e.Message != c.Reject.Message {
			t.Fatalf("got %s, %v; want rejection %d %q", got, err, c.Reject.Status, c.Reject.Message)
		}
	case c.Error:
		if !errors.As(err, &e) || e.Code != host.CodeModuleError {
			t.Fatalf("got %s, %v; want the hook to fail (module_error)", got, err)
		}
	case err != nil:
		t.Fatal(err)
	default:
		if !jsonEqual(got, c.Want) {
			t.Fatalf("got  %s\nwant %s", got, c.Want)
		}
	}
}

// streamCalls feeds chunks through cocoon_chunk, flushes with cocoon_end, and returns
// what each call emitted.
func streamCalls(sess *host.Session, chunks []string) ([]string, error) {
	var outputs []string
	for _, c := range chunks {
		s, err := sess.Chunk(c)
		if err != nil {
			return nil, err
		}
		outputs = append(outputs, s)
	}
	s, err := sess.End()
	return append(outputs, s), err
}

// stream is streamCalls' output as one text.
func stream(sess *host.Session, chunks []string) (string, error) {
	outputs, err := streamCalls(sess, chunks)
	return strings.Join(outputs, ""), err
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// TestStreamSplitsDoNotMatter re-splits the text of every stream vector at random
// places (never inside a UTF-8 sequence, as SPEC.md §5 promises modules) and checks that
// every implementation emits the same text, and the same as cocoon_post gives on the
// whole text.
func TestStreamSplitsDoNotMatter(t *testing.T) {
	s := newSandbox(t)
	rng := rand.New(rand.NewPCG(1, 2))
	impls := implementations(t, s, "output-guard")
	for _, c := range loadCases(t, "output-guard") {
		if c.Hook != "stream" || c.Reject != nil || c.Error {
			continue
		}
		var want string
		if err := json.Unmarshal(c.Want, &want); err != nil {
			t.Fatal(err)
		}
		whole := []rune(strings.Join(c.Chunks, ""))
		for i := range 20 {
			var chunks []string
			for rest := whole; len(rest) > 0; {
				n := 1 + rng.IntN(min(len(rest), 8))
				chunks = append(chunks, string(rest[:n]))
				rest = rest[n:]
			}
			for _, impl := range impls {
				got, err := stream(session(t, s, impl, "stream", c.Config), chunks)
				if err != nil || got != want {
					t.Fatalf("%s/%s %q split %d %q: got %q, %v; want %q", impl.plugin, impl.lang, c.Name, i, chunks, got, err, want)
				}
			}
		}
		for _, impl := range impls {
			resp, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"index": 0,
				"message": map[string]any{"role": "assistant", "content": string(whole)}}}})
			got, err := session(t, s, impl, "post", c.Config).Post(resp)
			wantResp, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"index": 0,
				"message": map[string]any{"role": "assistant", "content": want}}}})
			if err != nil || !jsonEqual(got, wantResp) {
				t.Fatalf("%s/%s %q: cocoon_post gave %s, %v; the stream gave %q", impl.plugin, impl.lang, c.Name, got, err, want)
			}
		}
	}
}

// TestImplementationsAgree feeds the same random texts to every language version of
// the output guard and compares what they emit.
func TestImplementationsAgree(t *testing.T) {
	s := newSandbox(t)
	impls := implementations(t, s, "output-guard")
	rng := rand.New(rand.NewPCG(3, 4))
	config := []byte(`{"words":["darn","heck","drat_it","ñoño"]}`)
	pieces := []string{"darn", "Darn", "HECK", "heck", "drat", "_it", "drat_it", "ñoño", "Ñoño", " ", ".", ",", "-", "\n", "é", "日本", "x", "1", "'", "darnit"}
	for i := range 200 {
		var chunks []string
		for range 1 + rng.IntN(12) {
			var b strings.Builder
			for range 1 + rng.IntN(4) {
				b.WriteString(pieces[rng.IntN(len(pieces))])
			}
			chunks = append(chunks, b.String())
		}
		var first string
		for j, impl := range impls {
			got, err := stream(session(t, s, impl, "stream", config), chunks)
			if err != nil {
				t.Fatalf("%s/%s on %q: %v", impl.plugin, impl.lang, chunks, err)
			}
			if j == 0 {
				first = got
			} else if got != first {
				t.Fatalf("text %d %q: %s gives %q, %s gives %q", i, chunks, impls[0].lang, first, impl.lang, got)
			}
		}
	}
}

// TestPromptTemplateImplementationsAgree sends the same random requests and configs to
// every language version of the prompt template: they must give equal JSON, or the
// same rejection, or both fail.
func TestPromptTemplateImplementationsAgree(t *testing.T) {
	s := newSandbox(t)
	impls := implementations(t, s, "prompt-template")
	rng := rand.New(rand.NewPCG(5, 6))
	configs := []string{
		`{"system":"You are a storyteller."}`,
		`{"system":"Be brief.","on_existing":"drop"}`,
		`{"system":"S","on_existing":"reject"}`,
		`{"user_template":"Story about: {{content}}!"}`,
		`{"system":"Ünïcode \"quoted\"\n","on_existing":"keep","user_template":"{{content}} / {{content}}"}`,
		`{"on_existing":"drop"}`,
		`{"user_template":"no placeholder"}`,
		`{"system":1}`,
	}
	roles := []string{"system", "developer", "user", "assistant", "tool"}
	texts := []string{"", "hi", "a \"quote\"", "line\nbreak", "é日本", "{{content}}", `\u0041`, "😀"}
	for i := range 300 {
		var messages []any
		for range rng.IntN(5) {
			m := map[string]any{"role": roles[rng.IntN(len(roles))]}
			switch rng.IntN(3) {
			case 0:
				m["content"] = texts[rng.IntN(len(texts))]
			case 1:
				m["content"] = []any{
					map[string]any{"type": "text", "text": texts[rng.IntN(len(texts))]},
					map[string]any{"type": "image_url", "image_url": map[string]any{"url": "https://example.com/cat.png"}},
				}
			default:
				m["content"] = texts[rng.IntN(len(texts))]
				m["name"] = "ann"
			}
			messages = append(messages, m)
		}
		req, _ := json.Marshal(map[string]any{"model": "m", "messages": messages, "temperature": 0.5, "tools": []any{}})
		config := []byte(configs[rng.IntN(len(configs))])
		type outcome struct {
			out  []byte
			code host.ErrorCode
			msg  string
		}
		var results []outcome
		for _, impl := range impls {
			out, err := session(t, s, impl, "pre", config).Pre(req)
			var o outcome
			var e *host.Error
			switch {
			case errors.As(err, &e):
				o.code, o.msg = e.Code, e.Message
				if e.Code != host.CodeRejected {
					o.msg = "" // failure messages name the module, which differs
				}
			case err != nil:
				t.Fatal(err)
			default:
				o.out = out
			}
			results = append(results, o)
		}
		for j, r := range results[1:] {
			a := results[0]
			if a.code != r.code || a.msg != r.msg || (a.out != nil) != (r.out != nil) || (a.out != nil && !jsonEqual(a.out, r.out)) {
				t.Fatalf("request %d %s with config %s:\n%s: %s %s %q\n%s: %s %s %q", i, req, config,
					impls[0].lang, a.out, a.code, a.msg, impls[j+1].lang, r.out, r.code, r.msg)
			}
		}
	}
}
