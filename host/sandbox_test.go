package host

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/internal/wasmtest"
)

// testdataWasm reads host/testdata/NAME.wasm, built from NAME.wat by `make plugins`.
func testdataWasm(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".wasm"))
	if err != nil {
		t.Fatalf("%v: run `make plugins` first (it builds host/testdata/*.wat)", err)
	}
	return b
}

func newTestSandbox(t testing.TB) *Sandbox {
	t.Helper()
	s, err := NewSandbox(context.Background(), NewSandboxConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func compile(t testing.TB, s *Sandbox, name string) *Module {
	t.Helper()
	m, err := s.Compile(context.Background(), testdataWasm(t, name))
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	return m
}

func pipeline(t testing.TB, s *Sandbox, spec PipelineSpec) *Pipeline {
	t.Helper()
	p, err := s.NewPipeline(spec)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const testRequest = `{"model":"m","messages":[{"role":"user","content":"Tell me a story"}],"stream":false}`

// storyteller is a GenerateFunc that emits a fixed story in three deltas.
func storyteller(ctx context.Context, request []byte, emit func(string) error) (Generation, error) {
	for _, d := range []string{"Once upon", " a time", " there was a cat."} {
		if err := emit(d); err != nil {
			return Generation{}, err
		}
	}
	return Generation{ID: "chatcmpl-1", Created: 1, Model: "m", FinishReason: "stop", PromptTokens: 5, CompletionTokens: 9}, nil
}

func TestSpecExampleRunsUnchanged(t *testing.T) {
	s := newTestSandbox(t)
	m := compile(t, s, "spec_example")
	if m.Info.ABIVersion != 1 || m.Info.Hooks != abi.HookPre {
		t.Fatalf("info = %+v", m.Info)
	}
	p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: m}}})
	res, err := p.Run(context.Background(), []byte(testRequest), storyteller, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Request) != testRequest {
		t.Errorf("request after pre = %s, want it unchanged", res.Request)
	}
	if !strings.Contains(string(res.Response), `"content":"Once upon a time there was a cat."`) {
		t.Errorf("response = %s", res.Response)
	}
}

func TestUploadErrors(t *testing.T) {
	s := newTestSandbox(t)
	tests := []struct {
		name   string
		wasm   []byte
		reason abi.ErrorCode
		want   string
	}{
		{"not wasm", []byte("hello, this is not wasm"), abi.ErrNotWasm, "not a WebAssembly module"},
		{"wrong ABI version", testdataWasm(t, "wrong_abi"), abi.ErrUnsupportedABIVersion, "ABI v2"},
		{"unknown import", testdataWasm(t, "unknown_import"), abi.ErrUnknownImport, `"env"."fetch_url"`},
		{"too large", make([]byte, abi.MaxModuleBytes+1), abi.ErrTooLarge, "limit"},
		{"too many tables", plainModule(1, make([]uint64, abi.MaxTables+1)...), abi.ErrBadTable, "defines 9 tables; the host allows at most 8"},
		{"table minimum over the ceiling", plainModule(1, uint64(abi.CeilingLimits.TableElements)+1), abi.ErrBadTable, "minimum of 1048577 elements, above the ceiling of 1048576"},
		// The engine refuses it, but never sees it: the host writes active data
		// segments itself (meter.InstrumentDetached).
		{"data segment for a second memory", dataForMemory1(), abi.ErrMalformed, "data segment 0 is for memory 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Compile(context.Background(), tt.wasm)
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeInvalidModule || e.Status != 400 {
				t.Fatalf("err = %#v, want an invalid_module *Error", err)
			}
			if !strings.Contains(e.Message, tt.want) || e.Reason != string(tt.reason) {
				t.Errorf("reason %s, message %q; want %s mentioning %q", e.Reason, e.Message, tt.reason, tt.want)
			}
		})
	}
}

// dataForMemory1 is the smallest ABI module with an active data segment for memory 1,
// which it does not have.
func dataForMemory1() []byte {
	var m wasmtest.Module
	m.ABI()
	segment := []byte{2, 1, wasmtest.I32Const, 0, wasmtest.End, 2, 'h', 'i'} // memory 1, offset 0, "hi"
	return append(m.Bytes(), wasmtest.Section(wasmtest.SecData, wasmtest.Vec(segment))...)
}

// TestMisbehavingModules runs every kind of misbehaviour while well-behaved requests
// keep running on the same sandbox: each fails with its own code, and none of the
// others notice.
func TestMisbehavingModules(t *testing.T) {
	s := newTestSandbox(t)
	bad := compile(t, s, "misbehave")
	// The well-behaved requests get a generous time limit: what is tested is that they
	// succeed while bad modules run, and a loaded CI machine (race detector, a 400 MB
	// recursion stack to collect) can pause any request for a while.
	good := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: compile(t, s, "spec_example"), Limits: abi.Limits{CallTimeout: abi.Duration(5 * time.Second)}}}})

	stop := make(chan struct{})
	var served atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := good.Run(context.Background(), []byte(testRequest), storyteller, nil); err != nil {
					t.Errorf("a well-behaved request failed meanwhile: %v", err)
					return
				}
				served.Add(1)
			}
		}()
	}

	fast := abi.Limits{CallTimeout: abi.Duration(100 * time.Millisecond)}
	tests := []struct {
		name   string
		mode   string
		limits abi.Limits
		code   ErrorCode
		status int
		msg    string
	}{
		{"infinite loop", "L", fast, CodeTimeout, 504, "time limit of 100ms"},
		{"memory bomb", "M", abi.Limits{MemoryPages: 64, CallTimeout: abi.Duration(5 * time.Second)}, CodeMemoryLimit, 500, "limit of 64 pages"}, // time to spare on a loaded machine
		{"deep recursion", "R", abi.Limits{CallTimeout: abi.Duration(10 * time.Second)}, CodeStackOverflow, 500, "stack overflow"},
		{"huge output", "H", abi.Limits{}, CodeOutputTooLarge, 500, "returned 2097152 bytes"},
		{"output outside memory", "O", abi.Limits{}, CodeOutOfBounds, 500, "outside the module's memory"},
		{"unreachable", "T", abi.Limits{}, CodeTrap, 500, "unreachable"},
		{"divide by zero", "Z", abi.Limits{}, CodeTrap, 500, "integer divide by zero"},
		{"proc_exit", "X", abi.Limits{}, CodeModuleExit, 500, "code 3"},
		{"log spam", "S", abi.Limits{}, CodeLogLimit, 500, "16384 bytes"},
		{"stdout spam", "P", abi.Limits{}, CodeLogLimit, 500, "16384 bytes"},
		{"reject", "r", abi.Limits{}, CodeRejected, 403, "blocked by policy"},
		{"reject with a forbidden status", "B", abi.Limits{}, CodeModuleError, 500, "status 200"},
		{"error result", "E", abi.Limits{}, CodeModuleError, 500, "cocoon_pre returned an error"},
		{"output not JSON", "J", abi.Limits{}, CodeInvalidOutput, 500, "invalid JSON"},
		{"alloc returns 0", "A", abi.Limits{}, CodeAllocFailed, 500, "cocoon_alloc"},
		{"alloc outside memory", "W", abi.Limits{}, CodeOutOfBounds, 500, "cocoon_alloc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{
				{Module: compile(t, s, "spec_example")},
				{Module: bad, Config: []byte(tt.mode), Limits: tt.limits},
			}})
			res, err := p.Run(context.Background(), []byte(testRequest), storyteller, nil)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if e.Code != tt.code || e.Status != tt.status || e.Stage != StagePre || e.Index != 1 || e.Module != bad.Hash {
				t.Errorf("got %s/%d at %s[%d] %s, want %s/%d at pre[1] %s", e.Code, e.Status, e.Stage, e.Index, e.Module, tt.code, tt.status, bad.Hash)
			}
			if !strings.Contains(e.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", e.Error(), tt.msg)
			}
			if strings.Contains(e.Error(), "wasm stack trace") || strings.Contains(e.Error(), "$recurse") {
				t.Errorf("error %q leaks the module's internals", e.Error())
			}
			if res.Response != nil {
				t.Errorf("a failed request produced a response")
			}
		})
	}
	close(stop)
	wg.Wait()
	if served.Load() == 0 {
		t.Error("no well-behaved request completed while the bad ones ran")
	}
}

func TestCancelledRequestStopsModule(t *testing.T) {
	s := newTestSandbox(t)
	p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: compile(t, s, "misbehave"), Config: []byte("L")}}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := p.Run(ctx, []byte(testRequest), storyteller, nil)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeCancelled {
		t.Fatalf("err = %v, want cancelled", err)
	}
}

// TestNoStateCrossesRequests: the module keeps each chunk it sees and prints the one it
// saw before, trying to leak one request's data into the next.
func TestNoStateCrossesRequests(t *testing.T) {
	s := newTestSandbox(t)
	p := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{{Module: compile(t, s, "misbehave"), Config: []byte("C")}}})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				secret := []string{"alice's secret", "bob's secret"}[(i+j)%2]
				sess := p.NewSession(context.Background())
				first, err := sess.Chunk(secret)
				if err != nil {
					t.Error(err)
					return
				}
				second, err := sess.Chunk("x")
				sess.Close()
				if err != nil {
					t.Error(err)
					return
				}
				// Within a request the instance is kept: it saw the first chunk.
				if first != "1:" || second != "2:"+secret {
					t.Errorf("request saw %q then %q, want %q then %q", first, second, "1:", "2:"+secret)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestDeterministicEnvironment(t *testing.T) {
	s := newTestSandbox(t)
	p := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{{Module: compile(t, s, "misbehave"), Config: []byte("D")}}})
	var outs [2]string
	for i := range outs {
		sess := p.NewSession(context.Background())
		out, err := sess.Chunk("?")
		sess.Close()
		if err != nil {
			t.Fatal(err)
		}
		outs[i] = out
	}
	if outs[0] != outs[1] {
		t.Errorf("two instances saw different clocks or random bytes: %x vs %x", outs[0], outs[1])
	}
	b := []byte(outs[0])
	if wall := int64(binary.LittleEndian.Uint64(b[0:])); wall != abi.ClockEpochUnix*int64(time.Second) {
		t.Errorf("realtime clock = %d, want %d (2022-01-01)", wall, abi.ClockEpochUnix*int64(time.Second))
	}
	if mono := binary.LittleEndian.Uint64(b[8:]); mono != 0 {
		t.Errorf("monotonic clock = %d, want 0", mono)
	}
	if bytes.Equal(b[16:32], make([]byte, 16)) {
		t.Error("random_get returned zeros")
	}
}

func TestModuleLogsAreCaptured(t *testing.T) {
	s := newTestSandbox(t)
	m := compile(t, s, "misbehave")
	p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: m, Config: []byte("G")}}})
	res, err := p.Run(context.Background(), []byte(testRequest), storyteller, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := LogRecord{Stage: StagePre, Index: 0, Module: m.Hash, Level: LevelInfo, Source: "log", Message: "pre ran"}
	if len(res.Logs) != 1 || res.Logs[0] != want {
		t.Errorf("logs = %+v, want [%+v]", res.Logs, want)
	}
	if res.ModuleTime <= 0 {
		t.Error("module time was not measured")
	}
}

func TestStreaming(t *testing.T) {
	s := newTestSandbox(t)
	echo := compile(t, s, "misbehave") // no config: echoes chunks
	hold := compile(t, s, "hold")
	postOnly := compile(t, s, "post_only")
	tests := []struct {
		name   string
		post   []*Module
		deltas []string
		log    string
	}{
		{"echo passes deltas through", []*Module{echo}, []string{"Once upon", " a time", " there was a cat."}, ""},
		{"held text is flushed at the end", []*Module{echo, hold}, []string{"ONCE UPON A TIME THERE WAS A CAT."}, ""},
		{"a flush feeds the next module", []*Module{hold, echo}, []string{"ONCE UPON A TIME THERE WAS A CAT."}, ""},
		{"post-only module answers in one delta", []*Module{echo, postOnly}, []string{"Once upon a time there was a cat."}, "post ran"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var spec PipelineSpec
			for _, m := range tt.post {
				spec.Post = append(spec.Post, ModuleSpec{Module: m})
			}
			p := pipeline(t, s, spec)
			var got []string
			res, err := p.Run(context.Background(), []byte(testRequest), storyteller, func(d string) error {
				got = append(got, d)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "|") != strings.Join(tt.deltas, "|") {
				t.Errorf("deltas = %q, want %q", got, tt.deltas)
			}
			if tt.log != "" && (len(res.Logs) == 0 || res.Logs[0].Message != tt.log) {
				t.Errorf("logs = %+v, want %q", res.Logs, tt.log)
			}
		})
	}
}

func TestNonStreamingPost(t *testing.T) {
	s := newTestSandbox(t)
	// hold has cocoon_post (identity) and stream hooks: post wins. A chunk-only module
	// gets the content as one chunk.
	p := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{{Module: compile(t, s, "hold")}}})
	res, err := p.Run(context.Background(), []byte(testRequest), storyteller, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(res.Response), `"content":"Once upon a time there was a cat."`) || res.Logs[0].Message != "post ran" {
		t.Errorf("response = %s, logs = %v", res.Response, res.Logs)
	}
	p = pipeline(t, s, PipelineSpec{Post: []ModuleSpec{{Module: compile(t, s, "misbehave"), Config: []byte("C")}}})
	res, err = p.Run(context.Background(), []byte(testRequest), storyteller, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(res.Response), `"content":"1:"`) || !strings.Contains(string(res.Response), `"usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}`) {
		t.Errorf("response = %s", res.Response)
	}
}

func TestPipelineChecks(t *testing.T) {
	s := newTestSandbox(t)
	pre := compile(t, s, "spec_example")
	postOnly := compile(t, s, "post_only")
	tests := []struct {
		name string
		spec PipelineSpec
		want string
	}{
		{"post module in pre", PipelineSpec{Pre: []ModuleSpec{{Module: postOnly}}}, "not cocoon_pre"},
		{"pre module in post", PipelineSpec{Post: []ModuleSpec{{Module: pre}}}, "neither cocoon_post nor cocoon_chunk"},
		{"memory over ceiling", PipelineSpec{Pre: []ModuleSpec{{Module: pre, Limits: abi.Limits{MemoryPages: 5000}}}}, "memory_pages 5000"},
		{"memory under module minimum", PipelineSpec{Pre: []ModuleSpec{{Module: pre}, {Module: compile(t, s, "big_memory"), Limits: abi.Limits{MemoryPages: 64}}}}, "needs 100 memory pages at start, over its memory limit of 64"},
		{"config too large", PipelineSpec{Pre: []ModuleSpec{{Module: pre, Config: make([]byte, abi.MaxConfigBytes+1)}}}, "config of 65537 bytes"},
		{"no module", PipelineSpec{Pre: []ModuleSpec{{}}}, "no module"},
		{"too many modules", PipelineSpec{Pre: slices.Repeat([]ModuleSpec{{Module: pre}}, abi.MaxStageModules+1)}, "17 pre modules, over the limit of 16"},
		{"minimums over the request's memory", PipelineSpec{Pre: slices.Repeat([]ModuleSpec{{Module: compileBytes(t, s, plainModule(4096)), Limits: abi.Limits{MemoryPages: 4096}}}, 3)},
			"the modules need 768 MiB of memory and tables at start, over the request's total of 512 MiB for all its modules"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.NewPipeline(tt.spec)
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeInvalidPipeline || !strings.Contains(e.Message, tt.want) {
				t.Fatalf("err = %v, want invalid_pipeline mentioning %q", err, tt.want)
			}
		})
	}
}

func TestRejectionDuringInitialize(t *testing.T) {
	s := newTestSandbox(t)
	p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: compile(t, s, "reject_at_start")}}})
	_, err := p.Run(context.Background(), []byte(testRequest), storyteller, nil)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeRejected || e.Status != 429 || e.Message != "closed for maintenance" {
		t.Fatalf("err = %v, want the module's rejection 429", err)
	}
}

// TestRequestShape: the client's request must be a JSON object; pre modules may turn it
// into a chat request, and what leaves the pre stage must be one.
func TestRequestShape(t *testing.T) {
	s := newTestSandbox(t)
	echo := compile(t, s, "spec_example")
	tests := []struct {
		name    string
		pre     []ModuleSpec
		request string
		code    ErrorCode
		msg     string
	}{
		{"not JSON", nil, `{"messages":`, CodeInvalidRequest, "invalid JSON at byte 12"},
		{"not an object", []ModuleSpec{{Module: echo}}, `[1]`, CodeInvalidRequest, "array where an object is required"},
		{"no messages, no pre module", nil, `{"prompt":"hi"}`, CodeInvalidRequest, "messages: missing"},
		{"no messages after the pre stage", []ModuleSpec{{Module: echo}, {Module: echo}}, `{"prompt":"hi"}`, CodeInvalidOutput, "pre module 2"},
		{"a role that is not a string", nil, `{"messages":[{"role":1}]}`, CodeInvalidRequest, "messages[0].role: must be a string"},
		{"invalid UTF-8", nil, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", CodeInvalidRequest, "invalid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pipeline(t, s, PipelineSpec{Pre: tt.pre})
			_, err := p.Run(context.Background(), []byte(tt.request), storyteller, nil)
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code || !strings.Contains(e.Error(), tt.msg) {
				t.Fatalf("err = %v, want %s mentioning %q", err, tt.code, tt.msg)
			}
		})
	}
}

// TestStreamIsRestored: a pre module cannot switch streaming on or off.
func TestStreamIsRestored(t *testing.T) {
	out, err := checkRequest([]byte(`{"messages":[{"role":"user"}],"stream":true}`), &requestShape{Stream: []byte("false")}, true)
	if err != nil || !strings.Contains(string(out), `"stream":false`) {
		t.Fatalf("got %s, %v", out, err)
	}
	out, err = checkRequest([]byte(`{"messages":[{"role":"user"}],"stream":true}`), &requestShape{}, true)
	if err != nil || strings.Contains(string(out), "stream") {
		t.Fatalf("got %s, %v; want stream removed as the client had none", out, err)
	}
}

// TestUsageIsRestored: a post module cannot change what a request is billed.
func TestUsageIsRestored(t *testing.T) {
	host := &responseShape{Usage: []byte(`{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}`)}
	out, err := checkResponse([]byte(`{"choices":[],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}`), host)
	if err != nil || !strings.Contains(string(out), `"usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}`) {
		t.Fatalf("got %s, %v", out, err)
	}
	if _, err := checkResponse([]byte(`{"choices":{}}`), host); err == nil || !strings.Contains(err.Error(), "choices are a JSON object") {
		t.Fatalf("err = %v", err)
	}
}

// TestNoCallAfterAFailure: an instance whose call was stopped part-way is not called
// again: its state (an allocation, the call depth) is whatever it was then.
func TestNoCallAfterAFailure(t *testing.T) {
	s := newTestSandbox(t)
	p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: compile(t, s, "misbehave"), Config: []byte("T")}}})
	sess := p.NewSession(context.Background())
	defer sess.Close()
	inst, err := sess.instance(StagePre, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, first := inst.call(hookPre, []byte("{}"))
	records := len(sess.Logs())
	_, second := inst.call(hookPre, []byte("{}"))
	var e *Error
	if !errors.As(first, &e) || e.Code != CodeTrap || second != first {
		t.Fatalf("first call: %v; second: %v, want the same trap", first, second)
	}
	if len(sess.Logs()) != records {
		t.Error("the second call ran the module")
	}
}
