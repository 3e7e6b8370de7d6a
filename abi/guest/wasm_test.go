package guest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// These tests build the modules in internal/testguests for wasip1 and run them in
// wazero behind a minimal host written here, so the SDK is tested as modules use it:
// through the ABI, with real memory, real JSON and the real Go runtime.

// memoryLimitPages is the host's default memory limit (abi.DefaultLimits).
const memoryLimitPages = 1024

var (
	wasmRuntime wazero.Runtime
	buildDir    string
	guests      sync.Map // name -> *guestModule
)

type guestModule struct {
	once     sync.Once
	compiled wazero.CompiledModule
	size     int
	err      error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cocoon-guest-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	ctx := context.Background()
	wasmRuntime = wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithMemoryLimitPages(memoryLimitPages))
	wasi_snapshot_preview1.MustInstantiate(ctx, wasmRuntime)
	_, err = wasmRuntime.NewHostModuleBuilder("cocoon").
		NewFunctionBuilder().WithFunc(hostLog).Export("log").
		NewFunctionBuilder().WithFunc(hostReject).Export("reject").
		NewFunctionBuilder().WithFunc(hostConfig).Export("config").
		Instantiate(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	wasmRuntime.Close(ctx)
	os.RemoveAll(dir)
	os.Exit(code)
}

// host is one instance's view of the cocoon imports: what it logged and rejected, and
// its config. It travels in the context of every call.
type host struct {
	config []byte
	logs   []logRecord
	status int32 // of the first rejection, 0 if none
	reason string
}

type logRecord struct {
	level int32
	msg   string
}

type hostKey struct{}

func hostOf(ctx context.Context) *host { return ctx.Value(hostKey{}).(*host) }

func read(m api.Module, ptr, n uint32) string {
	b, ok := m.Memory().Read(ptr, n)
	if !ok {
		panic(fmt.Sprintf("out of bounds: %d bytes at %#x", n, ptr))
	}
	return string(b)
}

func hostLog(ctx context.Context, m api.Module, level int32, ptr, n uint32) {
	h := hostOf(ctx)
	h.logs = append(h.logs, logRecord{level, read(m, ptr, n)})
}

func hostReject(ctx context.Context, m api.Module, status int32, ptr, n uint32) {
	if h := hostOf(ctx); h.status == 0 {
		h.status, h.reason = status, read(m, ptr, n)
	}
}

func hostConfig(ctx context.Context, m api.Module, ptr, capacity uint32) uint32 {
	c := hostOf(ctx).config
	if capacity > 0 && !m.Memory().Write(ptr, c[:min(int(capacity), len(c))]) {
		panic("out of bounds")
	}
	return uint32(len(c))
}

// compile builds and compiles the test guest name once per test binary.
func compile(t testing.TB, name string) *guestModule {
	t.Helper()
	if testing.Short() {
		t.Skip("builds wasm modules")
	}
	v, _ := guests.LoadOrStore(name, &guestModule{})
	g := v.(*guestModule)
	g.once.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			g.err = err
			return
		}
		out := filepath.Join(buildDir, name+".wasm")
		cmd := exec.Command(gobin, "build", "-trimpath", "-buildmode=c-shared", "-ldflags=-buildid=",
			"-o", out, "./internal/testguests/"+name)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if msg, err := cmd.CombinedOutput(); err != nil {
			g.err = fmt.Errorf("go build: %v\n%s", err, msg)
			return
		}
		wasm, err := os.ReadFile(out)
		if err != nil {
			g.err = err
			return
		}
		g.size = len(wasm)
		g.compiled, g.err = wasmRuntime.CompileModule(context.Background(), wasm)
	})
	if g.err != nil {
		t.Fatal(g.err)
	}
	return g
}

// instance is one fresh instance of a test guest, as the host makes per request.
type instance struct {
	t   testing.TB
	ctx context.Context
	h   *host
	mod api.Module
}

func instantiate(t testing.TB, name string, config []byte) *instance {
	t.Helper()
	g := compile(t, name)
	h := &host{config: config}
	ctx := context.WithValue(context.Background(), hostKey{}, h)
	mod, err := wasmRuntime.InstantiateModule(ctx, g.compiled,
		wazero.NewModuleConfig().WithName("").WithStartFunctions("_initialize"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mod.Close(ctx) })
	return &instance{t: t, ctx: ctx, h: h, mod: mod}
}

// call calls hook with in as the host does (SPEC.md §3.1, §3.2) and returns its result
// and output. A result < 0 returns nil output.
func (i *instance) call(hook string, in []byte) (int64, []byte) {
	i.t.Helper()
	var params []uint64
	if hook != "cocoon_end" {
		var ptr uint32
		if len(in) > 0 {
			res, err := i.mod.ExportedFunction("cocoon_alloc").Call(i.ctx, uint64(len(in)))
			if err != nil {
				i.t.Fatalf("cocoon_alloc: %v", err)
			}
			ptr = uint32(res[0])
			if ptr == 0 || !i.mod.Memory().Write(ptr, in) {
				i.t.Fatalf("cocoon_alloc(%d) returned %#x", len(in), ptr)
			}
		}
		params = []uint64{uint64(ptr), uint64(len(in))}
	}
	res, err := i.mod.ExportedFunction(hook).Call(i.ctx, params...)
	if err != nil {
		i.t.Fatalf("%s: %v", hook, err)
	}
	r := int64(res[0])
	if r < 0 {
		return r, nil
	}
	out, ok := i.mod.Memory().Read(uint32(uint64(r)>>32), uint32(r))
	if !ok {
		i.t.Fatalf("%s: output out of bounds: %#x", hook, r)
	}
	return r, bytes.Clone(out)
}

// mustCall calls hook and fails the test unless it succeeds.
func (i *instance) mustCall(hook string, in []byte) []byte {
	i.t.Helper()
	r, out := i.call(hook, in)
	if r < 0 {
		i.t.Fatalf("%s failed: logs %q", hook, i.h.logs)
	}
	return out
}

// errorLogs returns the messages logged at error level.
func (i *instance) errorLogs() []string {
	var msgs []string
	for _, l := range i.h.logs {
		if l.level == 3 {
			msgs = append(msgs, l.msg)
		}
	}
	return msgs
}

func jsonEqual(t testing.TB, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("output is not JSON: %v: %.200s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want: %v", err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Errorf("got  %s\nwant %s", gb, wb)
	}
}

func TestWasmPreRoundTrip(t *testing.T) {
	in := `{"model":"m","messages":[{"role":"system","content":"be <brief> & kind"},
	 {"role":"user","content":[{"type":"text","text":"héllo \ud83d\ude00","x":{"y":[1,null]}},{"type":"image_url","image_url":{"url":"data:x"}}],"name":"ann"},
	 {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
	 {"role":"tool","tool_call_id":"c1","content":""}],
	 "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
	 "response_format":{"type":"json_object"},"stream":true,"stream_options":{"include_usage":true},
	 "temperature":0.25,"seed":12345678901,"x_vendor":{"nested":{"deep":[true,false,null,"s",1e-7]}}}`
	want := `{"model":"m","messages":[{"role":"system","content":"BE <BRIEF> & KIND"},
	 {"role":"user","content":[{"type":"text","text":"HÉLLO 😀","x":{"y":[1,null]}},{"type":"image_url","image_url":{"url":"data:x"}}],"name":"ann"},
	 {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
	 {"role":"tool","tool_call_id":"c1","content":""}],
	 "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
	 "response_format":{"type":"json_object"},"stream":true,"stream_options":{"include_usage":true},
	 "temperature":0.25,"seed":12345678901,"x_vendor":{"nested":{"deep":[true,false,null,"s",1e-7]}}}`
	i := instantiate(t, "typed", nil)
	out := i.mustCall("cocoon_pre", []byte(in))
	jsonEqual(t, out, want)
	if bytes.Contains(out, []byte(`\u003c`)) {
		t.Errorf("output escapes HTML: %s", out)
	}
}

func TestWasmPostRoundTrip(t *testing.T) {
	in := `{"id":"chatcmpl-1","object":"chat.completion","created":1764000000,"model":"m","system_fingerprint":null,
	 "choices":[{"index":0,"message":{"role":"assistant","content":"Once","refusal":null},"logprobs":null,"finish_reason":"stop"},
	            {"index":1,"message":{"role":"assistant","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},"finish_reason":null}],
	 "usage":{"prompt_tokens":9,"completion_tokens":0,"total_tokens":9,"prompt_tokens_details":{"cached_tokens":0}},"x":[{}]}`
	want := `{"id":"chatcmpl-1","object":"chat.completion","created":1764000000,"model":"m","system_fingerprint":null,
	 "choices":[{"index":0,"message":{"role":"assistant","content":"Once!","refusal":null},"logprobs":null,"finish_reason":"stop"},
	            {"index":1,"message":{"role":"assistant","content":[{"type":"text","text":"a!"},{"type":"text","text":"b!"}]},"finish_reason":null}],
	 "usage":{"prompt_tokens":9,"completion_tokens":0,"total_tokens":9,"prompt_tokens_details":{"cached_tokens":0}},"x":[{}]}`
	i := instantiate(t, "typed", nil)
	jsonEqual(t, i.mustCall("cocoon_post", []byte(in)), want)
}

func TestWasmRawPreReturnsItsInput(t *testing.T) {
	i := instantiate(t, "raw", nil)
	for _, in := range []string{`{"messages":[{"role":"user","content":"a"}]}`, `{"x":1}`, ""} {
		if out := i.mustCall("cocoon_pre", []byte(in)); string(out) != in {
			t.Errorf("got %q, want %q", out, in)
		}
	}
}

func TestWasmStream(t *testing.T) {
	i := instantiate(t, "typed", nil)
	var got []string
	for _, d := range []string{"once ", "", "upon é"} {
		got = append(got, string(i.mustCall("cocoon_chunk", []byte(d))))
	}
	got = append(got, string(i.mustCall("cocoon_end", nil)))
	if want := []string{"ONCE ", "", "UPON É", "<end>"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestWasmFailures(t *testing.T) {
	preReq := func(last string) []byte {
		return []byte(`{"messages":[{"role":"user","content":"` + last + `"}]}`)
	}
	tests := []struct {
		name       string
		guest      string
		hook       string
		in         []byte
		wantStatus int32  // 0: no rejection
		wantReason string // the rejection's message
		wantLog    string // substring of an error log, "" for none
	}{
		{name: "reject wrapped", guest: "typed", hook: "cocoon_pre", in: preReq("reject"),
			wantStatus: 403, wantReason: "blocked: café"},
		{name: "reject with a status the host does not accept", guest: "typed", hook: "cocoon_pre", in: preReq("reject-teapot"),
			wantLog: "cocoon_pre: rejected with status 418: teapot: the host only accepts statuses"},
		{name: "error", guest: "typed", hook: "cocoon_pre", in: preReq("error"), wantLog: "cocoon_pre: boom"},
		{name: "panic", guest: "typed", hook: "cocoon_pre", in: preReq("panic"), wantLog: "cocoon_pre: panic: kaboom\ngoroutine"},
		{name: "nil request", guest: "typed", hook: "cocoon_pre", in: preReq("nil"),
			wantLog: "cocoon_pre: the handler returned no request and no error"},
		{name: "input is not JSON", guest: "typed", hook: "cocoon_pre", in: []byte(`{"messages":`),
			wantLog: "cocoon_pre: decoding the request: unexpected end of JSON input"},
		{name: "content of the wrong type", guest: "typed", hook: "cocoon_post",
			in:      []byte(`{"choices":[{"index":0,"message":{"role":"assistant","content":5}}]}`),
			wantLog: "cocoon_post: decoding the response: choices: message: content: want a string or an array of parts"},
		{name: "stream error", guest: "typed", hook: "cocoon_chunk", in: []byte("error"), wantLog: "cocoon_chunk: bad delta"},
		{name: "stream reject", guest: "typed", hook: "cocoon_chunk", in: []byte("reject"), wantStatus: 451, wantReason: "no"},
		{name: "no post handler", guest: "raw", hook: "cocoon_post", in: []byte(`{}`),
			wantLog: "cocoon_post: no handler is registered"},
		{name: "no chunk handler", guest: "raw", hook: "cocoon_chunk", in: []byte(`x`),
			wantLog: "cocoon_chunk: no handler is registered"},
		{name: "no end handler", guest: "raw", hook: "cocoon_end", wantLog: "cocoon_end: no handler is registered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := instantiate(t, tt.guest, nil)
			if r, _ := i.call(tt.hook, tt.in); r != -1 {
				t.Fatalf("result %d, want -1", r)
			}
			if i.h.status != tt.wantStatus || i.h.reason != tt.wantReason {
				t.Errorf("rejection (%d, %q), want (%d, %q)", i.h.status, i.h.reason, tt.wantStatus, tt.wantReason)
			}
			logs := i.errorLogs()
			if tt.wantLog == "" {
				if len(logs) > 0 {
					t.Errorf("error logs %q, want none", logs)
				}
				return
			}
			if len(logs) != 1 || !strings.Contains(logs[0], tt.wantLog) {
				t.Errorf("error logs %q, want one containing %q", logs, tt.wantLog)
			}
		})
	}
}

func TestWasmPanicLogIsBounded(t *testing.T) {
	i := instantiate(t, "typed", nil)
	i.call("cocoon_pre", []byte(`{"messages":[{"role":"user","content":"panic"}]}`))
	// The instance keeps serving after a recovered panic.
	jsonEqual(t, i.mustCall("cocoon_pre", []byte(`{"messages":[{"role":"user","content":"a"}]}`)),
		`{"messages":[{"role":"user","content":"A"}]}`)
	if n := len(i.errorLogs()[0]); n > 2200 {
		t.Errorf("panic log is %d bytes", n)
	}
}

func TestWasmLogLevels(t *testing.T) {
	i := instantiate(t, "typed", nil)
	i.mustCall("cocoon_pre", []byte(`{"messages":[{"role":"user","content":"log"}]}`))
	want := []logRecord{{0, "d0"}, {1, "i1"}, {2, "w2"}, {3, "e3"}}
	if fmt.Sprint(i.h.logs) != fmt.Sprint(want) {
		t.Errorf("logs %v, want %v", i.h.logs, want)
	}
}

func TestWasmConfig(t *testing.T) {
	in := []byte(`{"messages":[{"role":"user","content":"config"}]}`)
	t.Run("read", func(t *testing.T) {
		i := instantiate(t, "typed", []byte(`{"greeting":"bonjour"}`))
		jsonEqual(t, i.mustCall("cocoon_pre", in),
			`{"messages":[{"role":"user","content":"config"},{"role":"assistant","content":"bonjour"}]}`)
	})
	t.Run("unknown field", func(t *testing.T) {
		i := instantiate(t, "typed", []byte(`{"greting":"bonjour"}`))
		if r, _ := i.call("cocoon_pre", in); r != -1 {
			t.Fatalf("result %d, want -1", r)
		}
		if logs := i.errorLogs(); len(logs) != 1 || logs[0] != `cocoon_pre: config: unknown field "greting"` {
			t.Errorf("error logs %q", logs)
		}
	})
	t.Run("none", func(t *testing.T) {
		i := instantiate(t, "typed", nil)
		if r, _ := i.call("cocoon_pre", in); r != -1 {
			t.Fatalf("result %d, want -1", r)
		}
		if logs := i.errorLogs(); len(logs) != 1 || logs[0] != "cocoon_pre: config: the module has no config" {
			t.Errorf("error logs %q", logs)
		}
	})
}

func TestWasmLargeInput(t *testing.T) {
	text := strings.Repeat("abcdefgh", 1<<17) // 1 MiB
	i := instantiate(t, "typed", nil)
	start := time.Now()
	out := i.mustCall("cocoon_pre", []byte(`{"messages":[{"role":"user","content":"`+text+`"}]}`))
	t.Logf("1 MiB pre call: %v", time.Since(start))
	jsonEqual(t, out, `{"messages":[{"role":"user","content":"`+strings.ToUpper(text)+`"}]}`)

	start = time.Now()
	out = i.mustCall("cocoon_chunk", []byte(text))
	t.Logf("1 MiB chunk call: %v", time.Since(start))
	if string(out) != strings.ToUpper(text) {
		t.Errorf("chunk output differs")
	}
}

// TestWasmMemoryStaysBounded streams 20000 deltas of 16 KiB (about 640 MiB through the
// module, counting the upper-cased copies) through one instance, as a long streamed
// answer does, and checks that the module's memory stops growing: without the SDK's
// collections it would pass the 64 MiB limit within a few thousand calls.
func TestWasmMemoryStaysBounded(t *testing.T) {
	const calls, size = 20000, 16 << 10
	i := instantiate(t, "typed", nil)
	delta := []byte(strings.Repeat("abcdefghijklmnop", size/16))
	want := strings.ToUpper(string(delta))
	start := time.Now()
	var pagesAt100 uint32
	for n := range calls {
		if out := i.mustCall("cocoon_chunk", delta); n%1000 == 0 && string(out) != want {
			t.Fatalf("call %d: wrong output", n)
		}
		if n == 100 {
			pagesAt100 = i.mod.Memory().Size() / 65536
		}
	}
	pages := i.mod.Memory().Size() / 65536
	t.Logf("%d calls of %d KiB: %v; memory %d pages after 100 calls, %d after %d", calls, size>>10,
		time.Since(start), pagesAt100, pages, calls)
	if pages > pagesAt100+160 { // 10 MiB of slack over GCThreshold's 4 MiB
		t.Errorf("memory grew from %d to %d pages", pagesAt100, pages)
	}
}

func TestWasmInstantiateAndCall(t *testing.T) {
	g := compile(t, "typed")
	in := []byte(`{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi, I am ann"}],"max_tokens":64}`)
	const n = 20
	start := time.Now()
	for range n {
		i := instantiate(t, "typed", nil)
		i.mustCall("cocoon_pre", in)
		i.mod.Close(i.ctx)
	}
	t.Logf("module %d bytes; instantiate + _initialize + one pre call: %v each", g.size, time.Since(start)/n)
}

// TestWasmRequestKeepsInitialMemory: a request of a few KiB through a typed pre and post
// hook leaves the memory at the size initialization left, which is what lets the host
// reset a Go module's instance for the next request instead of instantiating it again
// (host/snapshot.go, idleInstances). Without the spare heap the SDK frees at
// initialization, the Go runtime grows the memory in the first call of every instance.
func TestWasmRequestKeepsInitialMemory(t *testing.T) {
	for _, n := range []int{1, 100, 1200} { // 45 bytes to 54 KiB of content
		t.Run(fmt.Sprint(n), func(t *testing.T) { testRequestKeepsInitialMemory(t, n) })
	}
}

func testRequestKeepsInitialMemory(t *testing.T, n int) {
	content := strings.Repeat("a cat and a dog who find a big box, \"quoted\"\n", n)
	req, _ := json.Marshal(map[string]any{"model": "m", "max_tokens": 256,
		"messages": []map[string]string{{"role": "system", "content": "Be kind."}, {"role": "user", "content": content}}})
	resp, _ := json.Marshal(map[string]any{"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
		"choices": []any{map[string]any{"index": 0, "message": map[string]string{"role": "assistant", "content": content}, "finish_reason": "stop"}}})
	i := instantiate(t, "typed", nil)
	initial := i.mod.Memory().Size()
	i.mustCall("cocoon_pre", req)
	i.mustCall("cocoon_post", resp)
	if got := i.mod.Memory().Size(); got != initial {
		t.Errorf("a %d-byte request grew the memory from %d to %d bytes", len(req), initial, got)
	}
}
