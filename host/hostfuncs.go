package host

import (
	"context"
	"errors"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

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

// instantiateHostModule defines module "cocoon" (SPEC.md §4). Each function finds the
// instance whose call is running in the context wazero hands it.
func instantiateHostModule(ctx context.Context, rt wazero.Runtime) error {
	i32 := api.ValueTypeI32
	b := rt.NewHostModuleBuilder("cocoon")
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostLog), []api.ValueType{i32, i32, i32}, nil).
		WithParameterNames("level", "ptr", "len").Export("log")
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostReject), []api.ValueType{i32, i32, i32}, nil).
		WithParameterNames("status", "ptr", "len").Export("reject")
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(hostConfig), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("ptr", "cap").Export("config")
	if _, err := b.Instantiate(ctx); err != nil {
		return err
	}
	_, err := rt.NewHostModuleBuilder(meter.TickModule).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(hostTick), nil, nil).Export(meter.TickName).
		Instantiate(ctx)
	return err
}

// fuelQuantum is how many metering points (loop iterations and function entries) a
// module runs between two ticks: about 10 µs of a tight loop, for about 1% overhead.
const fuelQuantum = 10_000

// hostTick is called by metered code when its fuel runs out: it ends the call if its
// time limit has passed or the request is gone, else refills the fuel. It is also the
// point where the Go scheduler can preempt a long-running module.
func hostTick(ctx context.Context, m api.Module, _ []uint64) {
	if err := ctx.Err(); err != nil {
		code := sys.ExitCodeDeadlineExceeded
		if errors.Is(err, context.Canceled) {
			code = sys.ExitCodeContextCanceled
		}
		panic(sys.NewExitError(code))
	}
	inst := ctx.Value(instanceKey{}).(*instance)
	if inst.fuel == nil {
		inst.fuel = m.ExportedGlobal(meter.FuelExport).(api.MutableGlobal)
	}
	inst.fuel.Set(fuelQuantum)
}

// read returns the module's bytes at ptr/len, or records an out_of_bounds fault and
// aborts the call.
func (inst *instance) read(m api.Module, fn string, ptr, n uint32) []byte {
	b, ok := m.Memory().Read(ptr, n)
	if !ok {
		inst.fault = inst.errorf(CodeOutOfBounds, "%s was given %d bytes at %d, outside the module's memory", fn, n, ptr)
		panic(errAbort)
	}
	return b
}

func hostLog(ctx context.Context, m api.Module, stack []uint64) {
	inst := ctx.Value(instanceKey{}).(*instance)
	level, ptr, n := int32(stack[0]), uint32(stack[1]), uint32(stack[2])
	inst.log("log", levelOf(level), inst.read(m, "cocoon.log", ptr, n))
}

func hostReject(ctx context.Context, m api.Module, stack []uint64) {
	inst := ctx.Value(instanceKey{}).(*instance)
	status, ptr, n := int32(stack[0]), uint32(stack[1]), uint32(stack[2])
	msg := inst.read(m, "cocoon.reject", ptr, n)
	if inst.rejection != nil {
		return // the first rejection of a call wins
	}
	if !rejectStatuses[int(status)] {
		inst.fault = inst.errorf(CodeModuleError, "cocoon.reject was given status %d, which is not one a module may use", status)
		panic(errAbort)
	}
	e := inst.errorf(CodeRejected, "%s", validUTF8(msg, abi.MaxRejectMessageBytes))
	e.Status = int(status)
	inst.rejection = e
}

func hostConfig(ctx context.Context, m api.Module, stack []uint64) {
	inst := ctx.Value(instanceKey{}).(*instance)
	ptr, capacity := uint32(stack[0]), uint32(stack[1])
	cfg := inst.spec.config
	if n := min(int(capacity), len(cfg)); n > 0 && !m.Memory().Write(ptr, cfg[:n]) {
		inst.fault = inst.errorf(CodeOutOfBounds, "cocoon.config was given %d bytes at %d, outside the module's memory", n, ptr)
		panic(errAbort)
	}
	stack[0] = uint64(len(cfg))
}
