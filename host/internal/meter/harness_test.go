package meter

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// This file is a minimal stand-in for the host: a wazero runtime with the "cocoon"
// imports of SPEC.md §4, WASI, an "env.base" function for testdata/shift.wat, and the
// functions of HostModule as the host is meant to implement them.

// testMaxDepth and testFrameLocals are the call depth limit the tests instrument with.
const (
	testMaxDepth    = 1000
	testFrameLocals = 16
)

// callState is what the host functions see of one instance.
type callState struct {
	config  []byte
	quantum int64 // fuel a tick refills
	ticks   int
	logs    []string
	reject  string // "<status> <message>" of the first cocoon.reject
	// tableLimit is the most elements table_grow lets a table have (0: no limit).
	tableLimit uint64
	// refusals lists "memory <delta>" and "table <size>+<delta>" for every growth
	// refused, by the module's memory maximum or by table_grow.
	refusals []string
}

// errOverflow is what the stand-in's overflow function panics with.
var errOverflow = errors.New("call stack too deep")

type stateKey struct{}

func stateOf(ctx context.Context) *callState {
	s, _ := ctx.Value(stateKey{}).(*callState)
	if s == nil {
		panic("no callState in the context")
	}
	return s
}

// tick is cocoon_meter.tick as the host implements it: it stops the call once its
// context is done, with the exit codes wazero's WithCloseOnContextDone uses, and
// otherwise refills the fuel.
func tick(ctx context.Context, m api.Module, _ []uint64) {
	s := stateOf(ctx)
	s.ticks++
	switch ctx.Err() {
	case nil:
	case context.DeadlineExceeded:
		panic(sys.NewExitError(sys.ExitCodeDeadlineExceeded))
	default:
		panic(sys.NewExitError(sys.ExitCodeContextCanceled))
	}
	m.ExportedGlobal(FuelExport).(api.MutableGlobal).Set(uint64(s.quantum))
}

// newRuntime returns a runtime with the imports every test module uses.
func newRuntime(tb testing.TB, closeOnContextDone bool) wazero.Runtime {
	tb.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().
		WithCloseOnContextDone(closeOnContextDone).
		WithCoreFeatures(api.CoreFeaturesV2))
	tb.Cleanup(func() { rt.Close(ctx) })
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	read := func(m api.Module, ptr, n uint32) string {
		b, ok := m.Memory().Read(ptr, n)
		if !ok {
			panic(errors.New("out of bounds"))
		}
		return string(b)
	}
	_, err := rt.NewHostModuleBuilder("cocoon").
		NewFunctionBuilder().WithFunc(func(ctx context.Context, m api.Module, level, ptr, n uint32) {
		s := stateOf(ctx)
		s.logs = append(s.logs, fmt.Sprintf("%d %s", level, read(m, ptr, n)))
	}).Export("log").
		NewFunctionBuilder().WithFunc(func(ctx context.Context, m api.Module, status, ptr, n uint32) {
		if s := stateOf(ctx); s.reject == "" {
			s.reject = fmt.Sprintf("%d %s", status, read(m, ptr, n))
		}
	}).Export("reject").
		NewFunctionBuilder().WithFunc(func(ctx context.Context, m api.Module, ptr, capacity uint32) uint32 {
		cfg := stateOf(ctx).config
		if !m.Memory().Write(ptr, cfg[:min(int(capacity), len(cfg))]) {
			panic(errors.New("out of bounds"))
		}
		return uint32(len(cfg))
	}).Export("config").
		Instantiate(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	_, err = rt.NewHostModuleBuilder(HostModule).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(tick), nil, nil).Export(TickName).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
		s := stateOf(ctx)
		s.refusals = append(s.refusals, fmt.Sprintf("memory %d", uint32(stack[0])))
	}), []api.ValueType{i32}, nil).Export(MemoryRefusedName).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
		s := stateOf(ctx)
		size, delta, max := uint64(uint32(stack[0])), uint64(uint32(stack[1])), stack[2]
		if size+delta > max || s.tableLimit != 0 && size+delta > s.tableLimit {
			s.refusals = append(s.refusals, fmt.Sprintf("table %d+%d", size, delta))
			stack[0] = 0
			return
		}
		stack[0] = 1
	}), []api.ValueType{i32, i32, i64}, []api.ValueType{i32}).Export(TableGrowName).
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {
		panic(errOverflow)
	}), nil, nil).Export(OverflowName).
		Instantiate(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = rt.NewHostModuleBuilder("env").
		NewFunctionBuilder().WithFunc(func() int32 { return 9 }).Export("base").
		Instantiate(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return rt
}

// guest is one instance and the state its host functions see.
type guest struct {
	mod   api.Module
	state *callState
}

// ctx returns a context for calls into g.
func (g *guest) ctx(parent context.Context) context.Context {
	return context.WithValue(parent, stateKey{}, g.state)
}

// mustInstrument instruments wasm with the test depth limit.
func mustInstrument(tb testing.TB, wasm []byte) []byte {
	tb.Helper()
	out, err := instrument(wasm, testMaxDepth, testFrameLocals)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// instantiate compiles and instantiates wasm, running _initialize if it exports it.
func instantiate(tb testing.TB, rt wazero.Runtime, wasm []byte, config []byte) *guest {
	tb.Helper()
	ctx := context.Background()
	compiled, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		tb.Fatal(err)
	}
	g := &guest{state: &callState{config: config, quantum: 10_000}}
	g.mod, err = rt.InstantiateModule(g.ctx(ctx), compiled, wazero.NewModuleConfig().WithName("").
		WithStartFunctions("_initialize"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { g.mod.Close(ctx) })
	return g
}

// hook calls an ABI hook with input as the host does (SPEC.md §3.1-§3.2) and returns
// its output, or a description of how it failed: "reject ...", "error", or the first
// line of wazero's error.
func (g *guest) hook(ctx context.Context, name string, input []byte) string {
	ctx = g.ctx(ctx)
	g.state.reject = ""
	var args []uint64
	if name != "cocoon_end" {
		args = []uint64{0, uint64(len(input))}
		if len(input) > 0 {
			r, err := g.mod.ExportedFunction("cocoon_alloc").Call(ctx, uint64(len(input)))
			if err != nil {
				return "alloc failed: " + firstLine(err)
			}
			if !g.mod.Memory().Write(uint32(r[0]), input) {
				return "alloc out of bounds"
			}
			args[0] = r[0]
		}
	}
	r, err := g.mod.ExportedFunction(name).Call(ctx, args...)
	switch {
	case g.state.reject != "":
		return "reject " + g.state.reject
	case err != nil:
		return "failed: " + firstLine(err)
	case int64(r[0]) < 0:
		return "error"
	}
	out, ok := g.mod.Memory().Read(uint32(r[0]>>32), uint32(r[0]))
	if !ok {
		return "output out of bounds"
	}
	return "ok " + string(out)
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

var update = flag.Bool("update", false, "rewrite testdata_test.go from testdata/*.wat with wat2wasm")

// testModule returns the binary of testdata/name.wat, kept in testdata_test.go since
// built modules are not committed.
func testModule(tb testing.TB, name string) []byte {
	tb.Helper()
	h, ok := testdataWasm[name]
	if !ok {
		tb.Fatalf("no testdata module %q: run go test -run TestTestdata -update", name)
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestTestdata checks that testdata_test.go holds what wat2wasm makes of testdata/*.wat,
// and rewrites it with -update.
func TestTestdata(t *testing.T) {
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		t.Fatal("wat2wasm is not installed: make test needs it (apt-get install wabt, as .ci/run does)")
	}
	sources, err := filepath.Glob("testdata/*.wat")
	if err != nil || len(sources) == 0 {
		t.Fatal("no testdata/*.wat", err)
	}
	built := map[string]string{}
	for _, src := range sources {
		out := filepath.Join(t.TempDir(), "m.wasm")
		if msg, err := exec.Command("wat2wasm", "--debug-names", "-o", out, src).CombinedOutput(); err != nil {
			t.Fatalf("wat2wasm %s: %v\n%s", src, err, msg)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		built[strings.TrimSuffix(filepath.Base(src), ".wat")] = hex.EncodeToString(b)
	}
	if *update {
		var sb strings.Builder
		sb.WriteString("// Code generated by go test -run TestTestdata -update; DO NOT EDIT.\n\npackage meter\n\n")
		sb.WriteString("// testdataWasm holds testdata/NAME.wat built by wat2wasm --debug-names, in hex, by NAME.\n")
		sb.WriteString("var testdataWasm = map[string]string{\n")
		for _, name := range slices.Sorted(maps.Keys(built)) {
			fmt.Fprintf(&sb, "\t%q: %q,\n", name, built[name])
		}
		sb.WriteString("}\n")
		src, err := format.Source([]byte(sb.String()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("testdata_test.go", src, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	for name, h := range built {
		if testdataWasm[name] != h {
			t.Errorf("testdata_test.go is stale for %s.wat: run go test -run TestTestdata -update", name)
		}
	}
	if len(testdataWasm) != len(built) {
		t.Errorf("testdata_test.go has %d modules, testdata has %d .wat files", len(testdataWasm), len(built))
	}
}
