package plugins_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/host"
)

// agreeingImplementations returns the Go and AssemblyScript builds of the prompt
// template: the AssemblyScript SDK decodes and encodes JSON itself, and must give what
// the Go SDK gives on anything the host lets through to a module.
func agreeingImplementations(t testing.TB, s *host.Sandbox) (goImpl, asImpl implementation) {
	t.Helper()
	return built(t, s, "prompt-template", "go"), built(t, s, "prompt-template", "as")
}

// built compiles plugins/plugin/lang/plugin.wasm, as make plugins built it.
func built(t testing.TB, s *host.Sandbox, plugin, lang string) implementation {
	t.Helper()
	wasm, err := os.ReadFile(filepath.Join(plugin, lang, plugin+".wasm"))
	if err != nil {
		t.Fatalf("%v: run `make plugins` first", err)
	}
	m, err := s.Compile(context.Background(), wasm)
	if err != nil {
		t.Fatalf("%s/%s: %v", plugin, lang, err)
	}
	return implementation{plugin, lang, m}
}

// outcome is what one pre call gave, comparable across languages.
type outcome struct {
	out  []byte
	code host.ErrorCode
	msg  string
}

// runHook runs impl's pre or post hook (hook "pre" or "post") on input, in a fresh
// session.
func runHook(t *testing.T, s *host.Sandbox, impl implementation, hook string, config, input []byte) outcome {
	t.Helper()
	sess := session(t, s, impl, hook, config)
	run := sess.Pre
	if hook == "post" {
		run = sess.Post
	}
	out, err := run(input)
	var e *host.Error
	switch {
	case errors.As(err, &e):
		o := outcome{code: e.Code}
		if e.Code == host.CodeRejected {
			o.msg = e.Message // other messages name the module, which differs
		}
		return o
	case err != nil:
		// The host refused the input before any module saw it: the same for every
		// implementation.
		return outcome{code: "refused by the host", msg: err.Error()}
	}
	return outcome{out: out}
}

func sameOutcome(a, b outcome) bool {
	return a.code == b.code && a.msg == b.msg && (a.out != nil) == (b.out != nil) && (a.out == nil || jsonEqual(a.out, b.out))
}

// TestAssemblyScriptHostileRequests sends requests built to break a JSON decoder
// written by hand (nesting as deep as the host allows, escapes of unpaired
// surrogates, huge strings, thousands of members, duplicates, numbers at the edges)
// through the AssemblyScript and Go builds of the prompt template in the real
// sandbox: both must give the same result, and the AssemblyScript one must not trap,
// overflow its stack or run out of memory.
func TestAssemblyScriptHostileRequests(t *testing.T) {
	s := newSandbox(t)
	goImpl, asImpl := agreeingImplementations(t, s)
	config := []byte(`{"system":"S","user_template":"<{{content}}>"}`)
	many := new(strings.Builder)
	for i := range 5000 {
		many.WriteString(`"x` + strings.Repeat("y", i%7) + string(rune('a'+i%26)) + `_` + strings.Repeat("z", i/26) + `":[1,{"a":null}],`)
	}
	tests := []struct {
		name string
		req  string
	}{
		// 998 levels inside the request object: the host accepts up to 1,000 (its
		// jsonscan.MaxDepth), and so must the module, which passes the member on
		// verbatim. A decoder with a lower nesting limit, or one whose recursion
		// takes more than a frame per level (SPEC §7.5 allows 1,024), fails here.
		{"nesting as deep as the host allows", `{"messages":[{"role":"user","content":"hi"}],"x_vendor":` +
			strings.Repeat("[", 998) + strings.Repeat("]", 998) + `}`},
		{"deep nesting inside a message", `{"messages":[{"role":"user","content":"hi","x":` +
			strings.Repeat(`{"a":`, 990) + `1` + strings.Repeat("}", 990) + `}]}`},
		{"unpaired surrogate escapes", `{"messages":[{"role":"user","content":"a\ud800b\udc00c\ud83d\ude00d\ud800\u0041"}]}`},
		{"escaped member names", `{"m\u006fdel":"x","messages":[{"r\u006fle":"\u0075ser","content":"\u00e9\/\b\f\n\r\t\"\\"}]}`},
		{"a 1 MiB string", `{"messages":[{"role":"user","content":"` + strings.Repeat("é日😀x", 1<<18/4) + `"}]}`},
		{"5,000 unknown members", `{` + many.String() + `"messages":[{"role":"user","content":"hi"}]}`},
		{"duplicate members", `{"messages":[{"role":"system","content":"x"}],"messages":[{"role":"user","content":"a","content":"b","role":"user"}],"n":1,"n":1}`},
		{"numbers at the edges", `{"messages":[{"role":"user","content":"x"}],"seed":-9223372036854775808,"x":[1e308,-0.0,1E-7,123456789012345678901234567890]}`},
		{"null members", `{"model":null,"messages":[{"role":"user","content":[{"type":"text","text":null}],"name":null},{"role":"assistant","content":null}]}`},
		{"whitespace everywhere", " \t\n{ \"messages\" : [ { \"role\" : \"user\" , \"content\" : [ ] } ] } \r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := runHook(t, s, goImpl, "pre", config, []byte(tt.req))
			got := runHook(t, s, asImpl, "pre", config, []byte(tt.req))
			if !sameOutcome(got, want) {
				t.Fatalf("AssemblyScript: %.300s %s %q\nGo:             %.300s %s %q", got.out, got.code, got.msg, want.out, want.code, want.msg)
			}
			if got.code != "" {
				t.Fatalf("both failed with %s; the request is one the module should serve", got.code)
			}
		})
	}
}

// FuzzPromptTemplateAgree feeds arbitrary requests and configs to the Go and
// AssemblyScript builds of the prompt template: whatever the host lets through, the
// AssemblyScript SDK's JSON decoder and encoder must give what the Go SDK's give.
func FuzzPromptTemplateAgree(f *testing.F) {
	for _, c := range loadCases(f, "prompt-template") {
		f.Add([]byte(c.Input), []byte(c.Config))
	}
	s := newSandbox(f)
	goImpl, asImpl := agreeingImplementations(f, s)
	f.Fuzz(func(t *testing.T, req, config []byte) {
		want := runHook(t, s, goImpl, "pre", config, req)
		got := runHook(t, s, asImpl, "pre", config, req)
		if !sameOutcome(got, want) {
			t.Fatalf("request %q config %q\nAssemblyScript: %s %s %q\nGo:             %s %s %q", req, config, got.out, got.code, got.msg, want.out, want.code, want.msg)
		}
	})
}

// TestAssemblyScriptBuildIsReproducible rebuilds the AssemblyScript example in another
// directory, from its sources, lock file and the SDK only, and compares the bytes with
// what `make plugins` built: a reviewer who rebuilds a module from source must get the
// sha256 the host serves.
func TestAssemblyScriptBuildIsReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("installs the compiler and builds a module (about 20 s)")
	}
	want, err := os.ReadFile(filepath.Join("prompt-template", "as", "prompt-template.wasm"))
	if err != nil {
		t.Fatalf("%v: run `make plugins` first", err)
	}
	dir := copyExampleElsewhere(t)
	npm(t, dir, "ci", "--no-audit", "--no-fund", "--prefer-offline")
	npm(t, dir, "run", "build")
	got, err := os.ReadFile(filepath.Join(dir, "prompt-template.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("rebuilt elsewhere: sha256 %x, %d bytes; make plugins built sha256 %x, %d bytes", sha256.Sum256(got), len(got), sha256.Sum256(want), len(want))
	}
}

// copyExampleElsewhere copies the sources of the AssemblyScript prompt template and of
// the SDK into a temporary directory, in the same relative layout (plugins/NAME/as and
// plugins/as-sdk) under another name, and returns the module's directory there.
func copyExampleElsewhere(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "elsewhere")
	for _, src := range []string{"as-sdk", filepath.Join("prompt-template", "as")} {
		copySources(t, src, filepath.Join(root, src))
	}
	return filepath.Join(root, "prompt-template", "as")
}

// npm runs npm with args in dir, failing the test with its output if it fails.
func npm(t *testing.T, dir string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("npm"); err != nil {
		t.Fatal("npm is not installed: make test needs it (apt-get install nodejs npm, as .ci/run does)")
	}
	cmd := exec.Command("npm", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestAssemblyScriptGlobals builds a module that uses Date, performance and console,
// whose standard versions import from "env" (which the host refuses at upload), and
// runs it: the SDK routes them to the sandbox's fixed clock and the request's log, so
// the module is accepted and logs the same in every instance. A module using crypto,
// which the SDK deliberately does not route (a fixed random stream would be a trap for
// anyone making secrets), is refused with the import named.
func TestAssemblyScriptGlobals(t *testing.T) {
	if testing.Short() {
		t.Skip("installs the compiler and builds modules (about 20 s)")
	}
	dir := copyExampleElsewhere(t)
	npm(t, dir, "ci", "--no-audit", "--no-fund", "--prefer-offline")
	build := func(source string) []byte {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "assembly", "index.ts"), []byte(source), 0o644); err != nil {
			t.Fatal(err)
		}
		npm(t, dir, "run", "build")
		wasm, err := os.ReadFile(filepath.Join(dir, "prompt-template.wasm"))
		if err != nil {
			t.Fatal(err)
		}
		return wasm
	}
	s := newSandbox(t)
	m, err := s.Compile(context.Background(), build(`import { ChatRequest, onPre } from "@cocoonhost/as-sdk";
export * from "@cocoonhost/as-sdk/pre";
onPre((req: ChatRequest): ChatRequest | null => {
  console.log("now " + Date.now().toString() + " " + new Date(Date.now()).toISOString());
  console.warn("performance " + performance.now().toString());
  console.time("t");
  console.timeEnd("t");
  console.assert(req.messages.length == 0, "has messages");
  console.debug("debug");
  console.error("error");
  return req;
});
`))
	if err != nil {
		t.Fatalf("the host refuses a module using Date, performance and console: %v", err)
	}
	want := []string{
		"info now 1640995200000 2022-01-01T00:00:00.001Z",
		"warn performance 0.0",
		"info t: 1.0 ms",
		"error Assertion failed: has messages",
		"debug debug",
		"error error",
	}
	for range 2 { // a fresh instance starts the clocks again
		impl := implementation{"globals", "as", m}
		sess := session(t, s, impl, "pre", nil)
		if _, err := sess.Pre([]byte(`{"messages":[{"role":"user","content":"hi"}]}`)); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range sess.Logs() {
			got = append(got, string(l.Level)+" "+l.Message)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("logs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}

	_, err = s.Compile(context.Background(), build(`import { ChatRequest, onPre } from "@cocoonhost/as-sdk";
export * from "@cocoonhost/as-sdk/pre";
onPre((req: ChatRequest): ChatRequest | null => {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return req;
});
`))
	if err == nil || !strings.Contains(err.Error(), `import "env"."crypto.getRandomValuesN" is not provided by the host`) {
		t.Fatalf("a module using crypto: %v; want the host to refuse its env import, named", err)
	}
}

// copySources copies the files under src to dst, leaving out what builds make:
// node_modules and .wasm files.
func copySources(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Name() == "node_modules" {
			return filepath.SkipDir
		}
		if e.IsDir() || strings.HasSuffix(path, ".wasm") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLongStreamMemoryIsBounded streams a long answer through the AssemblyScript and
// C output guards, each in a memory limit of 16 pages (1 MiB): 100,000 short chunks
// (2.3 MB of text, twice that as AssemblyScript's UTF-16 strings, before counting what
// each call allocates), then one 64 KiB word in 5-byte chunks. One instance serves the
// whole answer, so a module that does not reclaim what each call allocates
// (AssemblyScript with the stub runtime, a C module that never frees) runs out of
// memory and fails with memory_limit. The output must equal the masked whole text.
func TestLongStreamMemoryIsBounded(t *testing.T) {
	s := newSandbox(t)
	const pages = 16
	config := []byte(`{"words":["heck","darn"]}`)
	var chunks []string
	var whole strings.Builder
	pieces := []string{"Once upon a time ", "the heck ", "darné ", "日本語 ", "said: \"darn\"! ", "😀, "}
	for i := range 100_000 {
		c := pieces[i%len(pieces)] + pieces[(i/7)%len(pieces)] + "darn"[:i%5]
		chunks = append(chunks, c)
		whole.WriteString(c)
	}
	chunks = append(chunks, " ")
	long := strings.Repeat("wörd", 64<<10/5)
	for i := 0; i < len(long); i += 5 { // "ö" is 2 bytes: split between characters
		chunks = append(chunks, long[i:min(i+5, len(long))])
	}
	chunks = append(chunks, " heck")
	whole.WriteString(" " + long + " heck")
	want := maskHeckDarn(whole.String())

	for _, lang := range []string{"as", "c"} {
		t.Run(lang, func(t *testing.T) {
			p, err := s.NewPipeline(host.PipelineSpec{Post: []host.ModuleSpec{{Module: built(t, s, "output-guard", lang).module, Config: config,
				Limits: abi.Limits{MemoryPages: pages, CallTimeout: abi.Duration(5 * time.Second)}}}})
			if err != nil {
				t.Fatal(err)
			}
			sess := p.NewSession(context.Background())
			defer sess.Close()
			got, err := stream(sess, chunks)
			if err != nil {
				t.Fatalf("streaming %d chunks in %d pages: %v", len(chunks), pages, err)
			}
			if got != want {
				t.Fatalf("the stream gave %d bytes that differ from the masked text (%d bytes)", len(got), len(want))
			}
		})
	}
}

// maskHeckDarn is the output guard's rule for {"words":["heck","darn"]} written
// independently: every whole word (a maximal run of ASCII letters, digits, '_' and
// non-ASCII bytes) equal to heck or darn in any ASCII case becomes one '*' per
// character.
func maskHeckDarn(s string) string {
	isWord := func(b byte) bool {
		return b >= 0x80 || b == '_' || '0' <= b && b <= '9' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
	}
	var out strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && isWord(s[j]) {
			j++
		}
		if j == i {
			out.WriteByte(s[i])
			i++
			continue
		}
		if w := strings.ToLower(s[i:j]); w == "heck" || w == "darn" {
			out.WriteString("****")
		} else {
			out.WriteString(s[i:j])
		}
		i = j
	}
	return out.String()
}
