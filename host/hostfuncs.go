package host

import (
	"context"
	"fmt"
	"runtime"
	"time"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/host/internal/meter"
)

// Hook export names (SPEC.md §3).
const (
	hookPre   = "cocoon_pre"
	hookPost  = "cocoon_post"
	hookChunk = "cocoon_chunk"
	hookEnd   = "cocoon_end"
)

// instantiateHostModules defines the modules an instance imports from: "cocoon"
// (SPEC.md §4), wasi_snapshot_preview1 (SPEC.md §6, wasi.go) and the metering
// functions the instrumented copy of every module calls (package meter). Each function
// finds the instance whose call is running in the context wazero hands it.
func instantiateHostModules(ctx context.Context, rt wazero.Runtime) error {
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	_, err := rt.NewHostModuleBuilder(abi.HostModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostLog), []api.ValueType{i32, i32, i32}, nil).
		WithParameterNames("level", "ptr", "len").Export("log").
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostReject), []api.ValueType{i32, i32, i32}, nil).
		WithParameterNames("status", "ptr", "len").Export("reject").
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostConfig), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("ptr", "cap").Export("config").
		Instantiate(ctx)
	if err != nil {
		return err
	}
	if err := instantiateWASI(ctx, rt); err != nil {
		return err
	}
	_, err = rt.NewHostModuleBuilder(meter.HostModule).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(meterTick), nil, nil).Export(meter.TickName).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(meterMemoryRefused), []api.ValueType{i32}, nil).Export(meter.MemoryRefusedName).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(meterTableGrow), []api.ValueType{i32, i32, i64}, []api.ValueType{i32}).Export(meter.TableGrowName).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(meterOverflow), nil, nil).Export(meter.OverflowName).
		Instantiate(ctx)
	return err
}

// instanceKey carries the *instance whose call is running to the host functions.
type instanceKey struct{}

func instanceOf(ctx context.Context) *instance { return ctx.Value(instanceKey{}).(*instance) }

// fuelQuantum is how many fuel points a module runs between two ticks at the start of
// a call: about 10 µs of work (a point is about a nanosecond, see package meter), for
// about 1% overhead. The quantum then adapts to the module (refill).
const fuelQuantum = 10_000

// maxFuelQuantum bounds the quantum refill raises: at most 8 times fuelQuantum.
const maxFuelQuantum = 8 * fuelQuantum

// tickEvery is the wall time between two ticks that refill aims at: fuelQuantum's
// worth at a point per nanosecond.
const tickEvery = 10 * time.Microsecond

// refill returns the fuel the module gets until its next tick, at a tick at now. The
// meter's points overcharge some code: a Go guest's function sits in one loop whose
// whole body a call is charged for (package meter charges a loop iteration the
// instructions of its body), so 10,000 points of it run in about 1 µs, and a Go
// pipeline ticked 600 times a request, a tenth of its time. So the quantum doubles,
// up to maxFuelQuantum, while ticks come less than tickEvery/2 apart, and falls back to
// fuelQuantum at the first tick more than 2*tickEvery after the previous one. A call
// therefore ticks about every tickEvery whatever its code; what a module can gain by
// running cheap code first and then code that the points undercharge is one interval
// of maxFuelQuantum points, after which the quantum is back to fuelQuantum.
func (inst *instance) refill(now time.Time) uint64 {
	since := now.Sub(inst.ticked)
	inst.ticked = now
	switch {
	case since > 2*tickEvery:
		inst.quantum = fuelQuantum
	case since < tickEvery/2:
		inst.quantum = min(2*inst.quantum, maxFuelQuantum)
	}
	return inst.quantum
}

// enter is where every host function starts: it stops the call if its time is up or
// the request is gone (checkStop), and charges points of fuel for the work the
// function is about to do, so that the module's next metering point ticks sooner.
func (inst *instance) enter(points uint64) {
	inst.checkStop()
	if inst.fuel != nil && points > 0 {
		inst.fuel.Set(uint64(int64(inst.fuel.Get()) - int64(min(points, 1<<62))))
	}
}

// bytePoints is the fuel a host function charges for touching n bytes of memory, at
// the rate of memory.copy.
func bytePoints(n uint64) uint64 { return n >> meter.BytesPerPointShift }

// checkStop ends the running call, by panicking with errAbort as wazero host functions
// do, when its deadline has passed or the request's context is done (failure tells the
// two apart); otherwise it returns the time it checked.
func (inst *instance) checkStop() time.Time {
	now := time.Now()
	if inst.ctx.Err() != nil || now.After(inst.deadline) {
		panic(errAbort)
	}
	return now
}

// meterTick is called by metered code when its fuel is zero or below: it ends the call
// if its time is up or the request is gone, else refills the fuel. Being a call into
// Go, it is also where the Go scheduler can preempt a long-running module and where a
// garbage collection waiting to stop the world gets its turn.
func meterTick(ctx context.Context, m api.Module, _ []uint64) {
	inst := instanceOf(ctx)
	now := inst.checkStop()
	if inst.fuel == nil {
		inst.fuel = m.ExportedGlobal(meter.FuelExport).(api.MutableGlobal)
	}
	inst.fuel.Set(inst.refill(now))
	if now.Sub(inst.yielded) >= yieldEvery {
		runtime.Gosched()
		// The wait for a processor after yielding is not the module's time: behind
		// CPU-bound goroutines (generations, which Go preempts every 10 ms) it can
		// last hundreds of milliseconds, and it ran calls of a millisecond past
		// their limit under load (web's BenchmarkLoad).
		inst.yielded = time.Now()
		inst.ticked = inst.yielded // the wait says nothing of the module's code
		waited := inst.yielded.Sub(now)
		inst.deadline = inst.deadline.Add(waited)
		inst.waited += waited
	}
}

// yieldEvery is how long a module runs before it lets other goroutines have its
// processor. The Go scheduler only preempts a goroutine after 10 ms, and only at a
// tick when it runs native code: with every processor running modules, an HTTP
// handler or a well-behaved request would wait that long for one.
const yieldEvery = time.Millisecond

// meterMemoryRefused is called by metered code when memory.grow returned -1: whoever
// refused (the module's declared maximum, the module's limit or the request's total),
// a trap or exit that follows in this call is reported as memory_limit.
func meterMemoryRefused(ctx context.Context, _ api.Module, stack []uint64) {
	inst := instanceOf(ctx)
	inst.enter(1)
	delta := uint32(stack[0])
	by := inst.memory.refusal
	inst.memory.refusal = ""
	if by == "" { // wazero refused before asking the allocator
		info, pages := inst.spec.module.Info, inst.spec.limits.MemoryPages
		by = memoryLimitText(pages)
		if info.HasMemoryMax && info.MemoryMaxPages < pages {
			by = fmt.Sprintf("its declared maximum of %d pages", info.MemoryMaxPages)
		}
	}
	inst.growthRefused = fmt.Sprintf("memory.grow by %d pages was refused: past %s", delta, by)
}

// meterTableGrow is called by metered code before table.grow: it lets the table grow
// (1) unless that passes the table's declared maximum, the module's table limit or the
// request's memory total, in which case table.grow returns -1 (0). An allowed growth
// counts against the request's memory until the instance closes.
func meterTableGrow(ctx context.Context, _ api.Module, stack []uint64) {
	inst := instanceOf(ctx)
	inst.enter(1)
	size, delta, max := uint64(uint32(stack[0])), uint64(uint32(stack[1])), stack[2]
	limit := uint64(inst.spec.limits.TableElements)
	bytes := delta * abi.TableElementBytes
	var by string
	switch {
	case size+delta > max:
		by = fmt.Sprintf("its declared maximum of %d elements", max)
	case size+delta > limit:
		by = fmt.Sprintf("its limit of %d elements", limit)
	case !inst.request.fits(bytes):
		by = requestTotalText
	default:
		inst.request.memory += bytes
		inst.tableBytes += bytes
		stack[0] = 1
		return
	}
	inst.growthRefused = fmt.Sprintf("table.grow by %d elements was refused: past %s", delta, by)
	stack[0] = 0
}

// meterOverflow is called by metered code when a call would nest deeper than
// abi.MaxCallDepth frames: it ends the call with stack_overflow.
func meterOverflow(ctx context.Context, _ api.Module, _ []uint64) {
	inst := instanceOf(ctx)
	inst.overflowed = true
	panic(errAbort)
}

// read returns the module's n bytes at ptr, or records an out_of_bounds fault and
// aborts the call.
func (inst *instance) read(m api.Module, fn string, ptr, n uint32) []byte {
	b, ok := m.Memory().Read(ptr, n)
	if !ok {
		inst.abort(inst.errorf(CodeOutOfBounds, "%s was given %d bytes at %d, outside the module's memory", fn, n, ptr))
	}
	return b
}

func hostLog(ctx context.Context, m api.Module, stack []uint64) {
	inst := instanceOf(ctx)
	level, ptr, n := int32(stack[0]), uint32(stack[1]), uint32(stack[2])
	inst.enter(1 + bytePoints(uint64(n)))
	msg := inst.read(m, "cocoon.log", ptr, n)
	inst.checkLog(uint64(n))
	inst.log("log", levelOf(level), msg)
}

func hostReject(ctx context.Context, m api.Module, stack []uint64) {
	inst := instanceOf(ctx)
	status, ptr, n := int32(stack[0]), uint32(stack[1]), uint32(stack[2])
	inst.enter(1)
	msg := inst.read(m, "cocoon.reject", ptr, n)
	if inst.rejection != nil {
		return // the first rejection of a call wins
	}
	if !rejectStatuses[int(status)] {
		inst.abort(inst.errorf(CodeModuleError, "cocoon.reject was given status %d, which is not one a module may use", status))
	}
	// Only the bytes that can end up in the message are copied: a message may be as
	// large as the module's memory.
	e := inst.errorf(CodeRejected, "%s", validUTF8(msg[:min(len(msg), abi.MaxRejectMessageBytes+utf8.UTFMax)], abi.MaxRejectMessageBytes))
	e.Status = int(status)
	inst.rejection = e
}

func hostConfig(ctx context.Context, m api.Module, stack []uint64) {
	inst := instanceOf(ctx)
	ptr, capacity := uint32(stack[0]), uint32(stack[1])
	cfg := inst.spec.config
	n := min(int(capacity), len(cfg))
	inst.enter(1 + bytePoints(uint64(n)))
	if n > 0 && !m.Memory().Write(ptr, cfg[:n]) {
		inst.abort(inst.errorf(CodeOutOfBounds, "cocoon.config was given %d bytes at %d, outside the module's memory", n, ptr))
	}
	stack[0] = uint64(len(cfg))
}
