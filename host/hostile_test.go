package host

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/internal/proctest"
	"github.com/cocoonhost/cocoon/internal/wasmtest"
)

// The hostile-module suite: every attack of issue 10 on the sandbox, performed by a
// module written against SPEC.md (host/testdata/hostile/*.wat, built by make plugins,
// or built byte by byte below where the text would be megabytes). Each attack runs
// while well-behaved requests keep running on the same sandbox, and the test asserts
// the error code, that the attack ended promptly, and that the well-behaved requests
// were served all along.

// benignLoad runs well-behaved requests on two goroutines, as other clients of the same
// host would, and records how many were served and the slowest. Each goroutine waits a
// millisecond between two requests: what is measured is how long a request waits while
// an attack runs, and two goroutines sending requests back to back kept two of the
// process's threads busy, which on a loaded 2-core machine took from the attack the
// processor time it needs to reach the limit it is about (8 modules of 256 MiB: 2 s of
// page faults, within the request's module time of 10 s of wall time).
type benignLoad struct {
	served  atomic.Int64
	slowest atomic.Int64 // ns
	failed  atomic.Pointer[error]
	stop    chan struct{}
	wg      sync.WaitGroup
}

// startBenign starts the load; stop ends it and waits for it.
func startBenign(t *testing.T, s *Sandbox) *benignLoad {
	t.Helper()
	// The well-behaved requests get a generous time limit: what is tested is that they
	// are served while the attack runs, on a loaded 2-core machine.
	p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: compile(t, s, "spec_example"), Limits: abi.Limits{CallTimeout: abi.Duration(5 * time.Second)}}}})
	l := &benignLoad{stop: make(chan struct{})}
	for range 2 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				case <-time.After(time.Millisecond):
				}
				start := time.Now()
				if _, err := p.Run(context.Background(), []byte(testRequest), storyteller, nil); err != nil {
					l.failed.Store(&err)
					return
				}
				took := int64(time.Since(start))
				for old := l.slowest.Load(); took > old && !l.slowest.CompareAndSwap(old, took); old = l.slowest.Load() {
				}
				l.served.Add(1)
			}
		}()
	}
	return l
}

// check stops the load and fails t unless requests were served throughout: none
// failed, and none took longer than 3 s (tens of milliseconds alone, about a second on
// a loaded 2-core machine; an attack that held a processor would hold them for the
// whole attack).
func (l *benignLoad) check(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	if err := l.failed.Load(); err != nil {
		t.Errorf("a well-behaved request failed during the attack: %v", *err)
	}
	if l.served.Load() == 0 {
		t.Error("no well-behaved request was served during the attack")
	}
	if slowest := time.Duration(l.slowest.Load()); slowest > 3*time.Second {
		t.Errorf("a well-behaved request took %s during the attack", slowest)
	}
}

// hostileModule compiles host/testdata/hostile/NAME.wasm.
func hostileModule(t testing.TB, s *Sandbox, name string) *Module {
	t.Helper()
	return compile(t, s, "hostile/"+name)
}

// compileBytes compiles a module built in the test.
func compileBytes(t testing.TB, s *Sandbox, wasm []byte) *Module {
	t.Helper()
	m, err := s.Compile(context.Background(), wasm)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// tenSeconds is the call time limit of the attacks that must not be stopped by it.
var tenSeconds = abi.Limits{CallTimeout: abi.Duration(10 * time.Second)}

// ended bounds the module time (Result.ModuleTime) a hostile request may take to end
// with a limit of 250 ms: about 260 ms however loaded the machine, while each of these
// attacks, unfixed, ran for 9 s to minutes without reaching a check of its deadline.
// Module time, what the limit is on, is a call's wall time less its waits for a
// processor after yielding (RATIONALE.md, "A call's time leaves out its waits after
// yielding"); the request's wall time is not bounded by the limit on a loaded machine,
// and it reached 5-55 s with the 2 cores loaded to 6 runnable threads each.
const ended = 5 * time.Second

// TestHostileModules performs each attack against a pipeline and checks the code, the
// message, the module time it took, and that well-behaved requests went on being
// served.
func TestHostileModules(t *testing.T) {
	s := newTestSandbox(t)
	fast := abi.Limits{CallTimeout: abi.Duration(250 * time.Millisecond)}
	one := func(m *Module, limits abi.Limits, config string) PipelineSpec {
		return PipelineSpec{Pre: []ModuleSpec{{Module: m, Limits: limits, Config: []byte(config)}}}
	}
	total := make([]ModuleSpec, 8)
	for i := range total {
		total[i] = ModuleSpec{Module: hostileModule(t, s, "memory_total"), Limits: abi.Limits{MemoryPages: 4096, CallTimeout: abi.Duration(10 * time.Second)}}
	}
	tests := []struct {
		name   string
		spec   PipelineSpec
		code   ErrorCode
		index  int    // of the module at fault in its stage
		msg    string // in the error
		within time.Duration
	}{
		// Issue 10, attack 1: work inside one instruction, and host calls, were not
		// bounded by the time limit.
		{"loop of 64 MiB memory.fill", one(hostileModule(t, s, "fill"), fast, ""), CodeTimeout, 0, "time limit of 250ms", ended},
		{"loop of 32 MiB memory.copy", one(hostileModule(t, s, "copy"), fast, ""), CodeTimeout, 0, "time limit of 250ms", ended},
		{"loop of 64 MiB random_get", one(hostileModule(t, s, "random"), fast, ""), CodeTimeout, 0, "time limit of 250ms", ended},
		{"loop of cocoon.config", one(hostileModule(t, s, "host_calls"), fast, "c"), CodeTimeout, 0, "time limit of 250ms", ended},
		{"loop of clock_time_get", one(hostileModule(t, s, "host_calls"), fast, "w"), CodeTimeout, 0, "time limit of 250ms", ended},
		{"loop of long straight-line code", one(compileBytes(t, s, straightLineModule(25_000)), fast, ""), CodeTimeout, 0, "time limit of 250ms", ended},
		// Log records are bounded in number as well as in bytes (ten seconds to reach
		// the bound: this is not about time, and 1,025 records take long on a loaded machine).
		{"loop of empty cocoon.log records", one(hostileModule(t, s, "host_calls"), tenSeconds, "l"), CodeLogLimit, 0, "more than 1024 log records", ended},
		{"loop of empty writes to stdout", one(hostileModule(t, s, "host_calls"), tenSeconds, "p"), CodeLogLimit, 0, "more than 1024 log records", ended},
		// Attack 2: tables had no limit.
		{"table.grow by 1M elements", one(hostileModule(t, s, "table_grow"), fast, ""), CodeMemoryLimit, 0,
			"table.grow by 1000000 elements was refused: past its limit of 65536 elements", ended},
		// Attack 4: memory summed over a pipeline was unbounded.
		{"8 modules of 256 MiB", PipelineSpec{Pre: total}, CodeMemoryLimit, 2,
			"past the request's total of 512 MiB", 10 * time.Second},
		// Deviations 5: the code of each is the one SPEC.md gives.
		{"memory.grow past the declared maximum, then a trap", one(hostileModule(t, s, "grow_past_max"), fast, ""), CodeMemoryLimit, 0,
			"memory.grow by 5 pages was refused: past its declared maximum of 2 pages", ended},
		{"recursion in a start section", one(hostileModule(t, s, "start_recursion"), fast, ""), CodeStackOverflow, 0, "during instantiation", ended},
		{"proc_exit(0) in _initialize", one(hostileModule(t, s, "exit_initialize"), fast, ""), CodeModuleExit, 0, "exited with code 0 during instantiation", ended},
		// Issue 12's red team: initialization runs under the time limit to
		// instantiate also when the host tries to run it once for a snapshot (the
		// first request pays for that try and for its own).
		{"loop in _initialize", one(compileBytes(t, s, initLoopModule()), fast, ""), CodeTimeout, 0,
			"instantiation ran past the module's time limit of 1s", 2 * ended},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pipeline(t, s, tt.spec)
			load := startBenign(t, s)
			defer load.check(t)
			// Attacks that fail fast are repeated for a while, so that well-behaved
			// requests run during them.
			for until, tries := time.Now().Add(300*time.Millisecond), 1; ; {
				start := time.Now()
				res, err := p.Run(context.Background(), []byte(testRequest), storyteller, nil)
				took := res.ModuleTime
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("err = %v, want *Error", err)
				}
				// The modules before the one at fault take seconds of processor time
				// (8 modules of 256 MiB: 2 s of page faults), and the request's module
				// time is wall time: on a loaded machine it can run out before the
				// request reaches the module the attack is about, which says nothing
				// of the limit. That request is tried again; a timeout in the module at
				// fault or after it is a failure.
				if e.Code == CodeTimeout && e.Index < tt.index && strings.Contains(e.Message, "the request's module time") && tries < 3 {
					t.Logf("try %d: %s at pre[%d] after %s of module time, %s of wall time: the machine is too loaded to reach pre[%d]; trying again", tries, e.Code, e.Index, took, time.Since(start), tt.index)
					tries++
					continue
				}
				if e.Code != tt.code || e.Stage != StagePre || e.Index != tt.index || !strings.Contains(e.Message, tt.msg) {
					t.Fatalf("got %s at %s[%d]: %s\nwant %s at pre[%d] saying %q", e.Code, e.Stage, e.Index, e.Message, tt.code, tt.index, tt.msg)
				}
				if took > tt.within {
					t.Fatalf("the request ended after %s of module time (%s of wall time), want within %s", took, time.Since(start), tt.within)
				}
				if time.Now().After(until) {
					return
				}
			}
		})
	}
}

// TestHostileClientLeaves: when the client goes away, the request's context is done and
// a module in a loop of bulk operations or host calls stops at once, whatever its time
// limit. The loop of random_get kept running for 6 minutes after its client left.
func TestHostileClientLeaves(t *testing.T) {
	s := newTestSandbox(t)
	for _, name := range []string{"fill", "random", "copy"} {
		t.Run(name, func(t *testing.T) {
			p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: hostileModule(t, s, name), Limits: tenSeconds}}})
			ctx, cancel := context.WithCancel(context.Background())
			var left atomic.Int64 // when the client left, in ns since 1970
			time.AfterFunc(100*time.Millisecond, func() { left.Store(time.Now().UnixNano()); cancel() })
			_, err := p.Run(ctx, []byte(testRequest), storyteller, nil)
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeCancelled {
				t.Fatalf("err = %v, want cancelled", err)
			}
			// Timed from when the client left, not from the start: on a loaded machine
			// the timer that makes it leave fires late, which is not the host's doing.
			// About 10 ms alone; generous for a loaded CI machine, and far below the
			// ten seconds the module would run if leaving did not stop it.
			if took := time.Since(time.Unix(0, left.Load())); took > ended {
				t.Errorf("the module stopped %s after its client left", took)
			}
		})
	}
}

// TestRequestModuleTime: a post module that stays under its time limit on every
// streamed chunk cannot hold a request, and its generation slot, for longer than the
// request's module time (abi.RequestModuleTime).
func TestRequestModuleTime(t *testing.T) {
	s := newTestSandbox(t)
	burn := hostileModule(t, s, "burn")
	iterations := calibrateBurn(t, s, burn, 50*time.Millisecond)
	config := binary.LittleEndian.AppendUint32(nil, iterations)
	// Each chunk burns about 50 ms, under a limit generous enough for a loaded machine.
	p := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{{Module: burn, Config: config, Limits: abi.Limits{CallTimeout: abi.Duration(5 * time.Second)}}}})
	chunks := 0
	endless := func(ctx context.Context, _ []byte, emit func(string) error) (Generation, error) {
		for {
			if err := emit("more "); err != nil {
				return Generation{}, err
			}
			chunks++
		}
	}
	start := time.Now()
	res, err := p.Run(context.Background(), []byte(testRequest), endless, func(string) error { return nil })
	took := time.Since(start)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeTimeout || !strings.Contains(e.Message, "the request's module time of 10s") {
		t.Fatalf("err = %v, want the request's module time to run out", err)
	}
	if chunks < 10 {
		t.Errorf("only %d chunks went through: the calls should each have stayed within their limit", chunks)
	}
	if res.ModuleTime > abi.RequestModuleTime+time.Second || took > abi.RequestModuleTime+5*time.Second {
		t.Errorf("the request ran %s of module time in %s, want it stopped at %s", res.ModuleTime, took, abi.RequestModuleTime)
	}
}

// calibrateBurn returns the iterations per chunk that make burn take about d here.
func calibrateBurn(t *testing.T, s *Sandbox, burn *Module, d time.Duration) uint32 {
	t.Helper()
	const probe = 10_000_000
	p := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{{Module: burn, Config: binary.LittleEndian.AppendUint32(nil, probe), Limits: tenSeconds}}})
	sess := p.NewSession(context.Background())
	defer sess.Close()
	if _, err := sess.Chunk("x"); err != nil {
		t.Fatal(err)
	}
	return uint32(min(int64(probe)*int64(d)/int64(max(sess.request.moduleTime, time.Microsecond)), 1<<31))
}

// TestHeavyFrames: frames that hold many values count for more in the call depth, so
// that a recursion cannot make wazero's stack, which outlives the call, huge.
func TestHeavyFrames(t *testing.T) {
	s := newTestSandbox(t)
	p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: compileBytes(t, s, heavyFramesModule(1000, 9000)), Limits: tenSeconds}}})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu := proctest.CPU()
	_, err := p.Run(context.Background(), []byte(testRequest), storyteller, nil)
	// Processor time, which on a loaded machine wall time is many times: the
	// request is the only work of the process.
	took := proctest.CPU() - cpu
	runtime.ReadMemStats(&after)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeStackOverflow {
		t.Fatalf("err = %v, want stack_overflow", err)
	}
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 16*abi.MiB {
		t.Errorf("the recursion allocated %d MiB", allocated/abi.MiB)
	}
	if took > time.Second {
		t.Errorf("the recursion took %s of processor time", took)
	}
}

// TestOutputTotal: what a module returns is bounded over the whole request, not only
// per call.
func TestOutputTotal(t *testing.T) {
	s := newTestSandbox(t)
	p := pipeline(t, s, PipelineSpec{Post: []ModuleSpec{{Module: hostileModule(t, s, "output_total")}}})
	sess := p.NewSession(context.Background())
	defer sess.Close()
	for i := 1; i <= abi.RequestOutputBytes/abi.MiB; i++ {
		if out, err := sess.Chunk("x"); err != nil || len(out) != abi.MiB {
			t.Fatalf("chunk %d: %d bytes, %v", i, len(out), err)
		}
	}
	_, err := sess.Chunk("x")
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeOutputTooLarge || !strings.Contains(e.Message, "total of 16 MiB for one request") {
		t.Fatalf("err = %v, want output_too_large for the request's total", err)
	}
}

// TestRejectHugeMessage: a rejection's message is cut at 1 KiB without the host first
// copying a message as large as the module's memory.
func TestRejectHugeMessage(t *testing.T) {
	s := newTestSandbox(t)
	p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: hostileModule(t, s, "reject_huge"), Limits: abi.Limits{MemoryPages: 4096, CallTimeout: abi.Duration(10 * time.Second)}}}})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := p.Run(context.Background(), []byte(testRequest), storyteller, nil)
	runtime.ReadMemStats(&after)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeRejected || e.Status != 403 || e.Message != strings.Repeat("A", abi.MaxRejectMessageBytes) {
		t.Fatalf("err = %.80v, want a rejection with 1 KiB of its message", err)
	}
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 16*abi.MiB {
		t.Errorf("the rejection allocated %d MiB: the message was copied whole", allocated/abi.MiB)
	}
}

// TestTableWithinLimit: a table may grow within its limit, and its minimum is checked
// against the limit when the pipeline is created.
func TestTableWithinLimit(t *testing.T) {
	s := newTestSandbox(t)
	m := hostileModule(t, s, "table_grow")
	p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: m, Config: []byte("g")}}})
	sess := p.NewSession(context.Background())
	defer sess.Close()
	inst, err := sess.instance(StagePre, 0)
	if err != nil {
		t.Fatal(err)
	}
	out, err := inst.call(hookPre, []byte("{}"))
	if err != nil || string(out) != "0001" { // the table had 1 element
		t.Fatalf("table.grow by 1,000 returned %q, %v; want the old size 0001", out, err)
	}
	if want := uint64(1001 * abi.TableElementBytes); inst.tableBytes != want {
		t.Errorf("the table counts %d bytes against the request, want %d", inst.tableBytes, want)
	}
	_, err = s.NewPipeline(PipelineSpec{Pre: []ModuleSpec{{Module: compileBytes(t, s, plainModule(1, 70_000))}}})
	if err == nil || !strings.Contains(err.Error(), "needs 70000 elements in table 0 at start, over its table limit of 65536") {
		t.Errorf("a table minimum over the limit: %v", err)
	}
}

// Modules built byte by byte, where their text would be megabytes.

// callingModule returns an ABI v1 module with a memory of the given minimum (in
// pages), tables of the given minimums, and a function of type (i32) -> i32 with the
// given locals and code, which is function 0; its cocoon_pre calls it with arg and
// returns no output, and its cocoon_alloc returns 1024.
func callingModule(memoryPages uint64, tableMins []uint64, arg int32, locals [][2]byte, code []byte) []byte {
	m := &wasmtest.Module{}
	i32, i64 := []byte{wasmtest.I32}, []byte{wasmtest.I64}
	f := m.FuncBody(i32, i32, locals, code)
	alloc := m.FuncBody(i32, i32, nil, append([]byte{wasmtest.I32Const}, wasmtest.S32(1024)...))
	pre := m.FuncBody([]byte{wasmtest.I32, wasmtest.I32}, i64, nil,
		slices.Concat([]byte{wasmtest.I32Const}, wasmtest.S32(arg), []byte{wasmtest.Call, byte(f), wasmtest.Drop, 0x42, 0}))
	for _, min := range tableMins {
		m.Table(min)
	}
	m.Memory(0, memoryPages, 0)
	m.Export("memory", wasmtest.KindMemory, 0)
	m.ExportFunc("cocoon_abi_v1", nil, nil)
	m.Export("cocoon_alloc", wasmtest.KindFunc, alloc)
	m.Export("cocoon_pre", wasmtest.KindFunc, pre)
	return m.Bytes()
}

// plainModule returns an ABI v1 module with a memory of the given pages and tables of
// the given minimums, whose cocoon_pre returns no output.
func plainModule(memoryPages uint64, tableMins ...uint64) []byte {
	return callingModule(memoryPages, tableMins, 0, nil, []byte{wasmtest.I32Const, 0})
}

// straightLineModule: cocoon_pre calls a function that loops forever around n
// divisions in a chain, straight-line code of 4n instructions that takes about 10 ns a
// division. Before a loop iteration cost its instructions, 10,000 iterations ran
// between two checks of the time: with n = 25,000, seconds.
func straightLineModule(n int) []byte {
	// (local $x i64) (local $d i64): x = -1, d = 3
	code := []byte{0x42, 0x7f, 0x21, 1, 0x42, 3, 0x21, 2, wasmtest.Loop, wasmtest.Empty}
	for range n {
		code = append(code, wasmtest.LocalGet, 1, wasmtest.LocalGet, 2, 0x80, 0x21, 1) // x = x / d
	}
	code = append(code, 0x0c, 0, wasmtest.End, wasmtest.I32Const, 0) // br 0, end, i32.const 0
	return callingModule(1, nil, 0, [][2]byte{{2, wasmtest.I64}}, code)
}

// heavyFramesModule: cocoon_pre calls a function that recurses depth levels deep
// holding values loaded from memory across each call, then returns. Counted one frame
// each, 9,000 such frames of 1,000 values were allowed, and took 84 MiB of wazero's
// stack, which the instance kept after the call returned.
func heavyFramesModule(values int, depth int32) []byte {
	// (if (i32.eqz (local.get 0)) (then (return (i32.const 0))))
	code := []byte{wasmtest.LocalGet, 0, 0x45, wasmtest.If, wasmtest.Empty, wasmtest.I32Const, 0, 0x0f, wasmtest.End}
	for i := range values {
		code = append(code, wasmtest.I32Const, byte(4*(i%16)), 0x28, 2, 0) // i32.load of an address below 64
	}
	// (call 0 (i32.sub (local.get 0) (i32.const 1)))
	code = append(code, wasmtest.LocalGet, 0, wasmtest.I32Const, 1, 0x6b, wasmtest.Call, 0)
	for range values {
		code = append(code, wasmtest.I32Add)
	}
	return callingModule(1, nil, depth, nil, code)
}

func TestHostileModuleBuilders(t *testing.T) {
	// The byte-built modules are valid ABI modules that pass through their input.
	s := newTestSandbox(t)
	for name, wasm := range map[string][]byte{"plain": plainModule(1), "table": plainModule(1, 10)} {
		m := compileBytes(t, s, wasm)
		if _, err := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: m}}}).Run(context.Background(), []byte(testRequest), storyteller, nil); err == nil || !strings.Contains(err.Error(), "invalid JSON") {
			t.Errorf("%s: %v, want the empty output refused as JSON", name, fmt.Sprint(err))
		}
	}
}

// TestWhichCodeWins: a call that goes wrong in two ways gets the code SPEC.md §9.1
// puts first.
func TestWhichCodeWins(t *testing.T) {
	s := newTestSandbox(t)
	m := hostileModule(t, s, "precedence")
	for _, tt := range []struct {
		mode string
		code ErrorCode
		msg  string
	}{
		{"r", CodeRejected, "no"},
		{"l", CodeRejected, "no"},
		{"t", CodeTimeout, "time limit of 250ms"},
		{"s", CodeMemoryLimit, "past its declared maximum of 2 pages"},
		{"x", CodeMemoryLimit, "past its declared maximum of 2 pages"},
		{"o", CodeStackOverflow, "call stack overflow"},
	} {
		p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: m, Config: []byte(tt.mode)}}})
		_, err := p.Run(context.Background(), []byte(testRequest), storyteller, nil)
		var e *Error
		if !errors.As(err, &e) || e.Code != tt.code || !strings.Contains(e.Message, tt.msg) {
			t.Errorf("mode %s: %v, want %s saying %q", tt.mode, err, tt.code, tt.msg)
		}
	}
}

// TestModuleLeavesTheProcessor: with every processor running a module, other
// goroutines (an HTTP handler, /healthz, a timer) still run within about a
// millisecond. The Go scheduler preempts a goroutine only after 10 ms, and native code
// only at a tick; without the yield at ticks, a goroutine waking every millisecond on
// the one processor a looping module held woke 19 ms late at the median. The lateness
// is compared with the same goroutine's without the module, measured just before: on a
// loaded machine the kernel alone makes it wake milliseconds late.
func TestModuleLeavesTheProcessor(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s := newTestSandbox(t)
	p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: compile(t, s, "misbehave"), Config: []byte("L"), Limits: abi.Limits{CallTimeout: abi.Duration(time.Second)}}}})
	quiet := make(chan struct{})
	time.AfterFunc(500*time.Millisecond, func() { close(quiet) })
	alone := medianLateness(quiet)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(context.Background(), []byte(testRequest), storyteller, nil)
	}()
	if looping := medianLateness(done); looping > alone+5*time.Millisecond {
		t.Errorf("a goroutine waking every millisecond woke %s late at the median while a module looped, %s without it", looping, alone)
	}
}

// medianLateness wakes every millisecond until done and returns how late it woke at
// the median.
func medianLateness(done <-chan struct{}) time.Duration {
	late := []time.Duration{0}
	for {
		want := time.Now().Add(time.Millisecond)
		select {
		case <-done:
			slices.Sort(late)
			return late[len(late)/2]
		case <-time.After(time.Millisecond):
			late = append(late, time.Since(want))
		}
	}
}
