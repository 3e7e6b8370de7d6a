package host

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/cocoonhost/cocoon/abi"
)

// The host's own wasi_snapshot_preview1: exactly the semantics of SPEC.md §6 for every
// function of abi.WASIFunctions, and nothing else. wazero's implementation would work
// too, but it gives modules a file system, real clocks and sleep unless each is turned
// off, and its functions neither check a call's deadline nor count what they do, so a
// loop of random_get calls ran for minutes past its limit.
//
// Every function first checks the call's deadline and cancellation (instance.enter),
// and charges fuel for the bytes it touches. Errors follow one order: a descriptor the
// function does not serve is EBADF, then an invalid argument is EINVAL, then a region
// of memory (pointer and length) outside the module's memory is EFAULT; a function
// that fails has no effect.

// wasiErrno is a WASI errno (wasi_snapshot_preview1's errno type).
type wasiErrno uint32

// The errnos the host returns.
const (
	errnoSuccess wasiErrno = 0
	errnoBadf    wasiErrno = 8
	errnoFault   wasiErrno = 21
	errnoInval   wasiErrno = 28
	errnoNosys   wasiErrno = 52
	errnoNotsup  wasiErrno = 58
)

// maxIOVecs is the most iovecs fd_read and fd_write take (IOV_MAX of wasi-libc);
// more is EINVAL, as writev(2) does.
const maxIOVecs = 1024

// wasiFunc implements one WASI function: it reads its parameters from stack and
// returns the errno (proc_exit, which returns nothing, never returns).
type wasiFunc func(inst *instance, mem api.Memory, stack []uint64) wasiErrno

// wasiFuncs are the implementations of the functions that do something, by name; the
// other functions of abi.WASIFunctions get unsupportedWASI's. Every name here is one of
// abi.WASIFunctions (TestWASIFunctionsImplemented), which gives the signatures.
var wasiFuncs = map[string]wasiFunc{
	"args_get":          argsGet,
	"args_sizes_get":    sizesGet,
	"environ_get":       argsGet,
	"environ_sizes_get": sizesGet,
	"clock_res_get":     clockResGet,
	"clock_time_get":    clockTimeGet,
	"fd_fdstat_get":     fdFdstatGet,
	"fd_read":           fdRead,
	"fd_write":          fdWrite,
	"poll_oneoff":       pollOneoff,
	"proc_exit":         procExit,
	"proc_raise":        func(*instance, api.Memory, []uint64) wasiErrno { return errnoNosys },
	"random_get":        randomGet,
	"sched_yield":       func(*instance, api.Memory, []uint64) wasiErrno { return errnoSuccess },
}

// unsupportedWASI returns what a function of abi.WASIFunctions without its own entry
// in wasiFuncs returns: EBADF for fd_* and path_* (there are no files and no
// pre-opened directories), ENOTSUP for sock_* (there is no network).
func unsupportedWASI(name string) wasiFunc {
	errno := errnoBadf
	if strings.HasPrefix(name, "sock_") {
		errno = errnoNotsup
	}
	return func(*instance, api.Memory, []uint64) wasiErrno { return errno }
}

// instantiateWASI defines module wasi_snapshot_preview1 in rt.
func instantiateWASI(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(abi.WASIModule)
	for name, sig := range abi.WASIFunctions {
		fn, ok := wasiFuncs[name]
		if !ok {
			fn = unsupportedWASI(name)
		}
		b.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, stack []uint64) {
				inst := instanceOf(ctx)
				errno := fn(inst, m.Memory(), stack)
				if len(sig.Results) == 1 {
					stack[0] = uint64(errno)
				}
			}), valueTypes(sig.Params), valueTypes(sig.Results)).
			Export(name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

func valueTypes(ts []abi.ValueType) []api.ValueType {
	out := make([]api.ValueType, len(ts))
	for i, t := range ts {
		out[i] = api.ValueType(t)
	}
	return out
}

// inMemory reports whether the n bytes at ptr lie inside mem, with 64-bit arithmetic:
// the end of a region must not wrap around.
func inMemory(mem api.Memory, ptr uint32, n uint64) bool {
	return uint64(ptr)+n <= uint64(mem.Size())
}

// argsGet serves args_get and environ_get: there are none, so nothing is written.
func argsGet(*instance, api.Memory, []uint64) wasiErrno {
	return errnoSuccess
}

// sizesGet serves args_sizes_get and environ_sizes_get: a count and a size of 0.
func sizesGet(inst *instance, mem api.Memory, stack []uint64) wasiErrno {
	count, size := uint32(stack[0]), uint32(stack[1])
	if !inMemory(mem, count, 4) || !inMemory(mem, size, 4) {
		return errnoFault
	}
	mem.WriteUint32Le(count, 0)
	mem.WriteUint32Le(size, 0)
	return errnoSuccess
}

// Clock ids of WASI; the process and thread CPU-time clocks are not provided.
const (
	clockRealtime  = 0
	clockMonotonic = 1
)

func clockResGet(inst *instance, mem api.Memory, stack []uint64) wasiErrno {
	id, result := uint32(stack[0]), uint32(stack[1])
	if id != clockRealtime && id != clockMonotonic {
		return errnoInval
	}
	if !mem.WriteUint64Le(result, uint64(abi.ClockResolution)) {
		return errnoFault
	}
	return errnoSuccess
}

func clockTimeGet(inst *instance, mem api.Memory, stack []uint64) wasiErrno {
	id, result := uint32(stack[0]), uint32(stack[2])
	if id != clockRealtime && id != clockMonotonic {
		return errnoInval
	}
	if !inMemory(mem, result, 8) {
		return errnoFault // before the clock advances: a failed call has no effect
	}
	mem.WriteUint64Le(result, uint64(inst.clock.read(id == clockRealtime)))
	return errnoSuccess
}

// fakeClock is the clock of SPEC.md §6: realtime starts at abi.ClockEpochUnix,
// monotonic at 0, and each reading of either advances it by abi.ClockStep.
type fakeClock struct{ wall, mono time.Duration }

func (c *fakeClock) read(realtime bool) int64 {
	if realtime {
		t := abi.ClockEpochUnix*int64(time.Second) + int64(c.wall)
		c.wall += abi.ClockStep
		return t
	}
	t := int64(c.mono)
	c.mono += abi.ClockStep
	return t
}

// WASI file types and rights of the standard streams.
const (
	filetypeCharacterDevice = 2
	rightFdRead             = 1 << 1
	rightFdWrite            = 1 << 6
	rightPollFdReadwrite    = 1 << 27
)

// fdFdstatGet describes the standard streams as character devices: stdin readable,
// stdout and stderr writable, all blocking.
func fdFdstatGet(inst *instance, mem api.Memory, stack []uint64) wasiErrno {
	fd, result := uint32(stack[0]), uint32(stack[1])
	var rights uint64
	switch fd {
	case 0:
		rights = rightFdRead | rightPollFdReadwrite
	case 1, 2:
		rights = rightFdWrite | rightPollFdReadwrite
	default:
		return errnoBadf
	}
	buf, ok := mem.Read(result, 24)
	if !ok {
		return errnoFault
	}
	clear(buf)
	buf[0] = filetypeCharacterDevice // then fs_flags (u16 at 2): none
	binary.LittleEndian.PutUint64(buf[8:], rights)
	return errnoSuccess
}

// fdRead reads stdin, which is always at its end.
func fdRead(inst *instance, mem api.Memory, stack []uint64) wasiErrno {
	fd, iovs, n, result := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
	inst.enter(bytePoints(8*uint64(n) + 4))
	switch {
	case fd != 0:
		return errnoBadf
	case n > maxIOVecs:
		return errnoInval
	case !inMemory(mem, iovs, 8*uint64(n)) || !inMemory(mem, result, 4):
		return errnoFault
	}
	mem.WriteUint32Le(result, 0)
	return errnoSuccess
}

// fdWrite captures what a module writes to stdout (at info) and stderr (at warn) as
// one log record per call, counted against the module's log limits.
func fdWrite(inst *instance, mem api.Memory, stack []uint64) wasiErrno {
	fd, iovs, n, result := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
	inst.enter(bytePoints(8*uint64(n) + 4))
	source, level := "stdout", LevelInfo
	switch {
	case fd == 2:
		source, level = "stderr", LevelWarn
	case fd != 1:
		return errnoBadf
	}
	if n > maxIOVecs {
		return errnoInval
	}
	vecs, ok := mem.Read(iovs, 8*n)
	if !ok || !inMemory(mem, result, 4) {
		return errnoFault
	}
	var total uint64
	for i := range n {
		ptr, size := binary.LittleEndian.Uint32(vecs[8*i:]), binary.LittleEndian.Uint32(vecs[8*i+4:])
		if !inMemory(mem, ptr, uint64(size)) {
			return errnoFault
		}
		total += uint64(size)
	}
	inst.enter(bytePoints(total))
	inst.checkLog(total) // before anything is copied: a write may be as large as memory
	msg := make([]byte, 0, total)
	for i := range n {
		ptr, size := binary.LittleEndian.Uint32(vecs[8*i:]), binary.LittleEndian.Uint32(vecs[8*i+4:])
		b, _ := mem.Read(ptr, size)
		msg = append(msg, b...)
	}
	inst.log(source, level, msg)
	mem.WriteUint32Le(result, uint32(total))
	return errnoSuccess
}

// Sizes and offsets of poll_oneoff's subscriptions and events.
const (
	subscriptionBytes = 48
	eventBytes        = 32
	eventClock        = 0
	eventFdRead       = 1
	eventFdWrite      = 2
	// pollCheckEvery is how many subscriptions poll_oneoff handles between two checks
	// of the call's deadline.
	pollCheckEvery = 4096
)

// pollOneoff returns at once with every subscription ready: clocks have fired (nothing
// sleeps), stdin is at its end, stdout and stderr are writable, and any other
// descriptor gets an event with EBADF. An unknown event type is EINVAL for the whole
// call, which then writes nothing.
func pollOneoff(inst *instance, mem api.Memory, stack []uint64) wasiErrno {
	in, out, n, result := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
	if n == 0 {
		return errnoInval
	}
	if !inMemory(mem, in, subscriptionBytes*uint64(n)) || !inMemory(mem, out, eventBytes*uint64(n)) ||
		!inMemory(mem, result, 4) {
		return errnoFault
	}
	subs, _ := mem.Read(in, subscriptionBytes*n)
	events, _ := mem.Read(out, eventBytes*n)
	for i := range n {
		if tag := subs[subscriptionBytes*i+8]; tag > eventFdWrite {
			return errnoInval
		}
	}
	for i := range n {
		if i%pollCheckEvery == 0 {
			inst.enter(bytePoints((subscriptionBytes + eventBytes) * pollCheckEvery))
		}
		sub, ev := subs[subscriptionBytes*i:], events[eventBytes*i:eventBytes*(i+1)]
		tag := sub[8]
		errno := errnoSuccess
		if fd := binary.LittleEndian.Uint32(sub[16:]); tag == eventFdRead && fd != 0 ||
			tag == eventFdWrite && fd != 1 && fd != 2 {
			errno = errnoBadf
		}
		clear(ev)
		copy(ev, sub[:8]) // userdata
		binary.LittleEndian.PutUint16(ev[8:], uint16(errno))
		ev[10] = tag
	}
	mem.WriteUint32Le(result, n)
	return errnoSuccess
}

// procExit ends the call; the request fails with module_exit whatever the code.
func procExit(inst *instance, _ api.Memory, stack []uint64) wasiErrno {
	inst.exited, inst.exitCode = true, uint32(stack[0])
	panic(sys.NewExitError(inst.exitCode))
}

// randomChunk is how many random bytes random_get makes between two checks of the
// call's deadline: about 50 µs of ChaCha8.
const randomChunk = 64 * abi.KiB

// randomGet fills the buffer from the instance's ChaCha8 stream (abi.RandomSeed):
// reading the stream in chunks gives the same bytes as reading it at once.
func randomGet(inst *instance, mem api.Memory, stack []uint64) wasiErrno {
	ptr, n := uint32(stack[0]), uint32(stack[1])
	buf, ok := mem.Read(ptr, n)
	if !ok {
		return errnoFault
	}
	if inst.random == nil {
		inst.random = rand.NewChaCha8(abi.RandomSeed())
	}
	for len(buf) > 0 {
		chunk := buf[:min(len(buf), randomChunk)]
		inst.enter(uint64(len(chunk))) // ChaCha8 makes about a byte per ns: a point a byte
		inst.random.Read(chunk)
		buf = buf[len(chunk):]
	}
	return errnoSuccess
}
