package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/cocoonhost/cocoon/abi"
)

// instance is one module instantiated for one request. It is used by one goroutine at a
// time (the request's) and closed when the request ends.
type instance struct {
	spec    *stageModule
	request *requestState
	// ctx is the request's context carrying the instance, for host functions.
	ctx    context.Context
	mod    api.Module
	memory *limitedMemory
	alloc  api.Function
	// hooks caches exported functions: each ExportedFunction call builds a new call
	// engine in wazero, and a post module's hooks run once per streamed delta.
	hooks map[string]api.Function
	stack []uint64
	// fuel is the metering global (package meter), found at the first tick.
	fuel api.MutableGlobal
	// quantum is the fuel the last tick gave, and ticked when (refill).
	quantum uint64
	ticked  time.Time
	clock   fakeClock
	random  *rand.ChaCha8 // made at the first random_get
	// yielded is when the running call started or a tick last let other goroutines
	// run (yieldEvery).
	yielded time.Time
	// waited is how long the running call waited for a processor after yielding,
	// which counts neither against its limit nor against the request's module time.
	waited time.Duration

	// What the instance used of its per-request limits.
	logged, records int    // log bytes and records
	output          uint64 // bytes its hooks returned
	tableBytes      uint64 // its tables' share of request.memory

	// The running call: its deadline, and what host functions recorded during it.
	deadline time.Time
	// deadlineIsRequest: the request's module time, not the call's limit, set the
	// deadline.
	deadlineIsRequest bool
	rejection         *Error
	fault             *Error
	// broken is the failure of a call that was stopped part-way, which every later
	// call returns.
	broken        *Error
	growthRefused string // a memory or table growth was refused, and why
	overflowed    bool   // the call nested deeper than abi.MaxCallDepth
	exited        bool   // the module called proc_exit
	exitCode      uint32
	// ready: instantiation succeeded.
	ready bool
}

// errAbort is panicked by host functions to stop a call whose outcome is already
// recorded on the instance; wazero turns the panic into the call's error.
var errAbort = errors.New("call aborted by the host")

// abort records fault as the running call's outcome and stops the call.
func (inst *instance) abort(fault *Error) {
	inst.fault = fault
	panic(errAbort)
}

// moduleConfig has nothing a module could use to reach outside: wasi_snapshot_preview1
// is the host's own (wasi.go), which reads none of wazero's system settings. The
// random source is one of those settings: given one, wazero does not seed a math/rand
// source for every instance, which took a quarter of an instantiation's time.
// Instantiation runs no code: the host initializes the instance itself
// (instance.initialize) or restores a snapshot (instance.restore).
var moduleConfig = wazero.NewModuleConfig().
	WithName(""). // anonymous: many instances of one module may live at once
	WithStartFunctions().
	WithRandSource(unreadRandom{})

// unreadRandom is the random source of wazero's system context, which nothing reads.
type unreadRandom struct{}

func (unreadRandom) Read([]byte) (int, error) { return 0, io.EOF }

// instantiate creates a fresh instance of m for one request under the instantiation
// time limit: from m's snapshot when it has one (snapshot.go) and the snapshot's
// memory fits in what is left of the request's, else by writing its data segments and
// running its start function and _initialize. First it checks that the module's memory
// (the snapshot's, or its minimum) and table minimums fit in what is left of the
// request's memory, and, within the time limit, reserves its memory: a failure there
// is a memory_limit error, not a panic inside wazero.
//
// The snapshot was taken in a request of its own, where every growth initialization
// made fitted. In this request one of them may not, and a fresh initialization would
// see memory.grow return -1 where the snapshot's saw it succeed: the module would tell
// the two apart (SPEC.md §3). So a snapshot that does not fit is not used: the
// instance initializes itself, and sees the refusal a fresh instance sees. One that
// fits gives what a fresh initialization gives, since memory only grows and each of
// its growths then fits too.
func (s *Sandbox) instantiate(ctx context.Context, m *stageModule, request *requestState) (*instance, error) {
	snap := s.snapshotFor(m, request)
	if snap != nil && !request.fits(snap.memory.size+m.tableBytes()) {
		snap = nil
	}
	return s.instantiateFrom(ctx, m, request, snap)
}

// instantiateFrom is instantiate from snap, or by initializing if snap is nil.
func (s *Sandbox) instantiateFrom(ctx context.Context, m *stageModule, request *requestState, snap *snapshot) (*instance, error) {
	inst := &instance{
		spec:    m,
		request: request,
		hooks:   make(map[string]api.Function, 2),
		stack:   make([]uint64, 2),
	}
	inst.ctx = context.WithValue(ctx, instanceKey{}, inst)
	memoryBytes := uint64(m.module.Info.MemoryMinPages) * abi.PageSize
	var image *memoryImage
	if snap != nil {
		image = snap.memory
		memoryBytes = image.size
	}
	tableBytes := m.tableBytes()
	if !request.fits(memoryBytes + tableBytes) {
		return nil, inst.errorf(CodeMemoryLimit, "instantiation needs %s of memory and tables, past %s (%s in use)",
			formatBytes(memoryBytes+tableBytes), requestTotalText, formatBytes(request.memory))
	}
	limit := max(time.Duration(m.limits.CallTimeout), abi.MinInitTimeout)
	// Only instances of the snapshot are kept (idleInstances.put), for instances
	// from it. Restoring one is timed like any instantiation (SPEC.md §7.4).
	if idle := m.idle.takeFor(snap); idle != nil {
		inst.adopt(idle)
		if err := inst.run(limit, func(context.Context) error { return inst.restore(snap) }); err != nil {
			inst.close()
			return nil, inst.failure(err, "instantiation")
		}
		return inst, nil
	}
	err := inst.run(limit, func(ctx context.Context) (err error) {
		if inst.memory, err = newLimitedMemory(uint64(m.limits.MemoryPages)*abi.PageSize, request, memoryBytes, &inst.deadline, image); err != nil {
			inst.fault = inst.errorf(CodeMemoryLimit, "the host could not reserve memory for the module: %v", err)
			return errAbort
		}
		inst.tableBytes = tableBytes
		request.memory += tableBytes
		if snap == nil {
			for _, seg := range m.module.init.data {
				copy(inst.memory.mapping.mem[seg.Offset:], seg.Bytes) // in bounds: newModuleInit
			}
		}
		if inst.mod, err = s.runtime.InstantiateModule(experimental.WithMemoryAllocator(ctx, inst.memory), m.module.compiled, moduleConfig); err != nil {
			return err
		}
		if snap != nil {
			return inst.restore(snap)
		}
		return inst.initialize(ctx)
	})
	if err != nil || inst.rejection != nil || inst.exited {
		inst.close()
		return nil, inst.failure(err, "instantiation")
	}
	inst.alloc = inst.mod.ExportedFunction("cocoon_alloc")
	inst.ready = true
	return inst, nil
}

// run calls f with the instance's context, under a deadline of limit or of what is
// left of the request's module time, whichever comes first; it clears the previous
// call's outcome first and adds the call's wall time, less what it waited for a
// processor after yielding (meterTick), to the request's.
func (inst *instance) run(limit time.Duration, f func(context.Context) error) error {
	inst.rejection, inst.fault, inst.growthRefused, inst.overflowed = nil, nil, "", false
	start := time.Now()
	inst.yielded, inst.waited = start, 0
	inst.ticked, inst.quantum = start, fuelQuantum
	left := abi.RequestModuleTime - inst.request.moduleTime
	inst.deadline, inst.deadlineIsRequest = start.Add(min(limit, left)), left < limit
	if left <= 0 {
		return errAbort // no time left: failure reports the timeout
	}
	err := f(inst.ctx)
	inst.request.moduleTime += time.Since(start) - inst.waited
	return err
}

// call runs hook with input and returns a copy of its output (SPEC.md §3.1-§3.2). An
// instance whose call was stopped part-way (a trap, a limit, the host's abort) is left
// as it was then, so every later call fails with the same error.
func (inst *instance) call(hook string, input []byte) ([]byte, error) {
	if inst.broken != nil {
		return nil, inst.broken
	}
	lim := inst.spec.limits
	if len(input) > lim.InputBytes {
		return nil, inst.errorf(CodeInputTooLarge, "input of %d bytes to %s is over the module's limit of %d", len(input), hook, lim.InputBytes)
	}
	fn, ok := inst.hooks[hook]
	if !ok {
		fn = inst.mod.ExportedFunction(hook)
		inst.hooks[hook] = fn
	}
	var ptr uint32
	err := inst.run(time.Duration(lim.CallTimeout), func(ctx context.Context) error {
		if len(input) > 0 {
			inst.stack[0] = uint64(len(input))
			if err := inst.alloc.CallWithStack(ctx, inst.stack); err != nil {
				return err
			}
			ptr = uint32(inst.stack[0])
			if ptr == 0 {
				inst.fault = inst.errorf(CodeAllocFailed, "cocoon_alloc(%d) returned 0", len(input))
				return errAbort
			}
			if !inst.mod.Memory().Write(ptr, input) {
				inst.fault = inst.errorf(CodeOutOfBounds, "cocoon_alloc(%d) returned %d, outside the module's memory", len(input), ptr)
				return errAbort
			}
		}
		if hook == hookEnd {
			return fn.CallWithStack(ctx, inst.stack)
		}
		inst.stack[0], inst.stack[1] = uint64(ptr), uint64(len(input))
		return fn.CallWithStack(ctx, inst.stack)
	})
	if err != nil || inst.rejection != nil {
		e := inst.failure(err, hook)
		if err != nil {
			inst.broken = e
		}
		return nil, e
	}
	r := int64(inst.stack[0])
	if r < 0 {
		return nil, inst.errorf(CodeModuleError, "%s returned an error; the module's logs say why (a pipeline's owners read them with cocoon logs)", hook)
	}
	outPtr, outLen := uint32(r>>32), uint32(r)
	if outLen == 0 {
		return []byte{}, nil
	}
	if int64(outLen) > int64(lim.OutputBytes) {
		return nil, inst.errorf(CodeOutputTooLarge, "%s returned %d bytes, over the module's limit of %d", hook, outLen, lim.OutputBytes)
	}
	if inst.output += uint64(outLen); inst.output > abi.RequestOutputBytes {
		return nil, inst.errorf(CodeOutputTooLarge, "%s returned %d bytes, over the module's total of %s for one request", hook, inst.output, formatBytes(abi.RequestOutputBytes))
	}
	out, ok := inst.mod.Memory().Read(outPtr, outLen)
	if !ok {
		return nil, inst.errorf(CodeOutOfBounds, "%s returned %d bytes at %d, outside the module's memory of %d bytes", hook, outLen, outPtr, inst.mod.Memory().Size())
	}
	return append([]byte(nil), out...), nil
}

// failure turns the outcome of a call that failed or rejected into the client-safe
// *Error of SPEC.md §9, by the precedence of SPEC.md §9.1: the module's rejection in
// that call; else a fault the host recorded (out_of_bounds, log_limit, ...); else
// timeout if the call's or the request's time ran out; else cancelled if the request
// is gone; else memory_limit if a growth was refused during the call; else
// stack_overflow; else module_exit; else trap. The full cause, which may hold the
// module's stack trace, goes to the request's logs for the module's owner.
func (inst *instance) failure(err error, what string) *Error {
	switch {
	case inst.rejection != nil:
		return inst.rejection
	case inst.fault != nil:
		return inst.fault
	}
	cause := "the module exited"
	if err != nil {
		cause = err.Error()
	}
	inst.hostLog(fmt.Sprintf("%s failed: %s", what, cause))
	cause = firstLine(cause)
	lim := inst.spec.limits
	switch {
	case !time.Now().Before(inst.deadline) && inst.deadlineIsRequest:
		return inst.errorf(CodeTimeout, "%s ran past the request's module time of %s for all its modules", what, abi.RequestModuleTime)
	case !time.Now().Before(inst.deadline):
		limit := time.Duration(lim.CallTimeout)
		if what == "instantiation" {
			limit = max(limit, abi.MinInitTimeout)
		}
		return inst.errorf(CodeTimeout, "%s ran past the module's time limit of %s", what, limit)
	case inst.ctx.Err() != nil:
		return inst.errorf(CodeCancelled, "the request was cancelled during %s", what)
	case inst.growthRefused != "":
		return inst.errorf(CodeMemoryLimit, "%s failed after %s", what, inst.growthRefused)
	case inst.overflowed || strings.Contains(cause, "stack overflow"):
		return inst.errorf(CodeStackOverflow, "call stack overflow during %s (more than %d frames)", what, abi.MaxCallDepth)
	case inst.exited:
		return inst.errorf(CodeModuleExit, "module exited with code %d during %s", inst.exitCode, what)
	}
	// wazero reports traps as "wasm error: <reason>"; the reason names the kind of
	// trap and nothing of the module.
	if _, reason, ok := strings.Cut(cause, "wasm error: "); ok {
		return inst.errorf(CodeTrap, "trapped during %s: %s", what, reason)
	}
	return inst.errorf(CodeTrap, "failed during %s", what)
}

func (inst *instance) errorf(code ErrorCode, format string, args ...any) *Error {
	m := inst.spec
	return &Error{Code: code, Status: statusOf(code), Stage: m.stage, Index: m.index, Module: m.module.Hash,
		Message: fmt.Sprintf(format, args...)}
}

// close releases the instance: its memory goes back to the pool or the OS, and its
// memory and tables stop counting against the request's total; or, when it can be
// reset to its snapshot, it is reset and kept for the next request (idleInstances).
// Nothing reads the instance's memory afterwards: a pooled mapping may already serve
// another request.
func (inst *instance) close() {
	if inst.spec.idle.put(inst) {
		return
	}
	if inst.mod != nil {
		inst.mod.Close(context.Background())
		inst.mod = nil
	}
	if inst.memory != nil {
		inst.memory.Free()
	}
	inst.request.memory -= inst.tableBytes
	inst.tableBytes = 0
}

// formatBytes writes n in the largest unit that divides it: "512 MiB", "64 KiB".
func formatBytes(n uint64) string {
	switch {
	case n%abi.MiB == 0:
		return fmt.Sprintf("%d MiB", n/abi.MiB)
	case n%abi.KiB == 0:
		return fmt.Sprintf("%d KiB", n/abi.KiB)
	}
	return fmt.Sprintf("%d bytes", n)
}

// validUTF8 returns s with invalid UTF-8 replaced by U+FFFD, cut to at most max bytes at
// a rune boundary.
func validUTF8(b []byte, max int) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
