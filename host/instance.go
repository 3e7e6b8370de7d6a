package host

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/cocoonhost/cocoon/abi"
)

// instance is one module instantiated for one request. It is used by one goroutine at a
// time (the request's) and closed when the request ends.
type instance struct {
	spec   *stageModule
	logs   *requestLogs
	mod    api.Module
	memory *limitedMemory
	alloc  api.Function
	// hooks caches exported functions: each ExportedFunction call builds a new call
	// engine in wazero, and a post module's hooks run once per streamed delta.
	hooks map[string]api.Function
	stack []uint64
	// fuel is the metering global (package meter), found at the first tick.
	fuel api.MutableGlobal

	// logged counts the bytes this instance logged during the request.
	logged int
	// Per-call outcome recorded by host functions, cleared before each call.
	rejection *Error
	fault     *Error
}

// instanceKey carries the *instance whose call is running to the host functions.
type instanceKey struct{}

// errAbort is panicked by host functions to stop a call whose fault is already recorded
// on the instance; wazero turns the panic into the call's error.
var errAbort = errors.New("call aborted by the host")

// randomSeed seeds every instance's random stream (SPEC.md §6): deterministic, and the
// same in every instance so a module is a pure function of its inputs.
var randomSeed = sha256.Sum256([]byte("cocoon abi v1 random_get"))

// fakeEpoch is the first reading of the realtime clock: 2022-01-01T00:00:00Z.
const fakeEpoch = int64(1640995200) * int64(time.Second)

// fakeClock advances by one millisecond at each reading (SPEC.md §6).
type fakeClock struct{ wall, mono int64 }

func (c *fakeClock) walltime() (int64, int32) {
	t := fakeEpoch + c.wall
	c.wall += int64(time.Millisecond)
	return t / int64(time.Second), int32(t % int64(time.Second))
}

func (c *fakeClock) nanotime() int64 {
	t := c.mono
	c.mono += int64(time.Millisecond)
	return t
}

// baseModuleConfig has nothing a module could use to reach outside: no FS, no args, no
// env; stdin is empty. Clock, random and output are set per instance.
var baseModuleConfig = wazero.NewModuleConfig().
	WithName(""). // anonymous: many instances of one module may live at once
	WithStartFunctions("_initialize").
	WithNanosleep(func(int64) {}).
	WithOsyield(func() {})

// instantiate creates a fresh instance of m for one request, running its start function
// and _initialize under m's time limit.
func (s *Sandbox) instantiate(ctx context.Context, m *stageModule, logs *requestLogs) (*instance, error) {
	inst := &instance{
		spec:   m,
		logs:   logs,
		memory: &limitedMemory{limit: uint64(m.limits.MemoryPages) * abi.PageSize},
		hooks:  make(map[string]api.Function, 2),
		stack:  make([]uint64, 2),
	}
	clock := &fakeClock{}
	cfg := baseModuleConfig.
		WithStdout(logWriter{inst, "stdout", LevelInfo}).
		WithStderr(logWriter{inst, "stderr", LevelWarn}).
		WithWalltime(clock.walltime, 1).
		WithNanotime(clock.nanotime, 1).
		WithRandSource(rand.NewChaCha8(randomSeed))

	ctx = experimental.WithMemoryAllocator(ctx, inst.memory)
	err := inst.run(ctx, max(time.Duration(m.limits.CallTimeout), abi.MinInitTimeout), func(ctx context.Context) (err error) {
		inst.mod, err = s.runtime.InstantiateModule(ctx, m.module.compiled, cfg)
		return err
	})
	if err != nil || inst.rejection != nil {
		if inst.mod != nil {
			inst.mod.Close(context.Background())
		}
		if inst.rejection != nil {
			return nil, inst.rejection
		}
		return nil, inst.failure(ctx, err, "instantiation")
	}
	inst.alloc = inst.mod.ExportedFunction("cocoon_alloc")
	return inst, nil
}

// run calls f with a time limit and this instance visible to host functions, after
// clearing the previous call's outcome.
func (inst *instance) run(ctx context.Context, limit time.Duration, f func(context.Context) error) error {
	inst.rejection, inst.fault = nil, nil
	ctx, cancel := context.WithTimeout(context.WithValue(ctx, instanceKey{}, inst), limit)
	defer cancel()
	start := time.Now()
	err := f(ctx)
	inst.logs.moduleTime += time.Since(start)
	if err == nil && inst.fault != nil {
		err = errAbort
	}
	return err
}

// call runs hook with input and returns a copy of its output (SPEC.md §3.1-§3.2).
func (inst *instance) call(ctx context.Context, hook string, input []byte) ([]byte, error) {
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
	err := inst.run(ctx, time.Duration(lim.CallTimeout), func(ctx context.Context) error {
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
	if inst.rejection != nil {
		return nil, inst.rejection
	}
	if err != nil {
		return nil, inst.failure(ctx, err, hook)
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
	out, ok := inst.mod.Memory().Read(outPtr, outLen)
	if !ok {
		return nil, inst.errorf(CodeOutOfBounds, "%s returned %d bytes at %d, outside the module's memory of %d bytes", hook, outLen, outPtr, inst.mod.Memory().Size())
	}
	return append([]byte(nil), out...), nil
}

// failure turns the error of a failed call into the client-safe *Error of SPEC.md §9 and
// logs the full cause (which may hold the module's stack trace) for the module's owner.
func (inst *instance) failure(ctx context.Context, err error, what string) *Error {
	if inst.fault != nil {
		return inst.fault
	}
	inst.hostLog(fmt.Sprintf("%s failed: %v", what, err))
	lim := inst.spec.limits
	var exit *sys.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeDeadlineExceeded && ctx.Err() == nil:
		limit := time.Duration(lim.CallTimeout)
		if what == "instantiation" {
			limit = max(limit, abi.MinInitTimeout)
		}
		return inst.errorf(CodeTimeout, "%s ran past the module's time limit of %s", what, limit)
	case errors.As(err, &exit) && (exit.ExitCode() == sys.ExitCodeContextCanceled || exit.ExitCode() == sys.ExitCodeDeadlineExceeded):
		return inst.errorf(CodeCancelled, "the request was cancelled during %s", what)
	case inst.memory.refused:
		return inst.errorf(CodeMemoryLimit, "%s tried to grow memory past the module's limit of %d pages (%d MiB)", what, lim.MemoryPages, uint64(lim.MemoryPages)*abi.PageSize/abi.MiB)
	case errors.As(err, &exit):
		return inst.errorf(CodeModuleExit, "module exited with code %d during %s", exit.ExitCode(), what)
	}
	// wazero reports traps as "wasm error: <reason>" and a stack overflow of its compiler
	// as the bare reason; the reason names the kind of trap and nothing of the module.
	reason, trap := strings.CutPrefix(firstLine(err.Error()), "wasm error: ")
	switch {
	case reason == "stack overflow":
		return inst.errorf(CodeStackOverflow, "call stack overflow during %s", what)
	case trap:
		return inst.errorf(CodeTrap, "trapped during %s: %s", what, reason)
	}
	return inst.errorf(CodeTrap, "failed during %s", what)
}

func (inst *instance) errorf(code ErrorCode, format string, args ...any) *Error {
	m := inst.spec
	return &Error{Code: code, Status: statusOf(code), Stage: m.stage, Index: m.index, Module: m.module.Hash,
		Message: fmt.Sprintf(format, args...)}
}

func (inst *instance) close() {
	inst.mod.Close(context.Background())
}

// limitedMemory backs a module's linear memory and refuses to grow past the module's
// limit, remembering that it did so: that is how a memory bomb is told apart from any
// other trap. Buffers come from pools by power-of-two capacity and go back zeroed when
// the instance closes: a fresh instance per request would otherwise allocate, zero and
// collect its whole memory every time.
type limitedMemory struct {
	buf     []byte
	limit   uint64
	refused bool
}

// Allocate implements experimental.MemoryAllocator; each instance has its own.
func (m *limitedMemory) Allocate(capacity, _ uint64) experimental.LinearMemory {
	m.buf = getBuffer(min(capacity, m.limit))
	return m
}

// Reallocate implements experimental.LinearMemory. Bytes past the old length are zero:
// every buffer is zero when handed out and only ever grows.
func (m *limitedMemory) Reallocate(size uint64) []byte {
	if size > m.limit {
		m.refused = true
		return nil
	}
	if size > uint64(cap(m.buf)) {
		// The old buffer is left to the garbage collector rather than pooled: reusing
		// memory is only done once wazero has certainly let go of it, at Free.
		grown := getBuffer(min(max(size, 2*uint64(cap(m.buf))), m.limit))[:len(m.buf)]
		copy(grown, m.buf)
		m.buf = grown
	}
	m.buf = m.buf[:size]
	return m.buf
}

// Free implements experimental.LinearMemory. wazero calls it when the instance closes.
func (m *limitedMemory) Free() {
	putBuffer(m.buf)
	m.buf = nil
}

// Pooled buffer capacities: powers of two from one page up to 16 MiB.
const (
	minPooledShift = 16
	maxPooledShift = 24
)

var bufferPools [maxPooledShift - minPooledShift + 1]sync.Pool

// getBuffer returns a zeroed buffer of length 0 and capacity at least n.
func getBuffer(n uint64) []byte {
	shift := max(bits.Len64(n-1), minPooledShift)
	if n == 0 || shift > maxPooledShift {
		return make([]byte, 0, n)
	}
	if b, ok := bufferPools[shift-minPooledShift].Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, 1<<shift)
}

// putBuffer zeroes what b exposed and pools it if its capacity is a pooled class.
func putBuffer(b []byte) {
	c := uint64(cap(b))
	shift := bits.Len64(c - 1)
	if c == 0 || c != 1<<shift || shift < minPooledShift || shift > maxPooledShift {
		return
	}
	clear(b) // everything past len(b) was never written
	b = b[:0]
	bufferPools[shift-minPooledShift].Put(&b)
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
