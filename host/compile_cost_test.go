package host

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/host/internal/meter"
	"github.com/cocoonhost/cocoon/internal/proctest"
	"github.com/cocoonhost/cocoon/internal/wasmtest"
)

// Modules whose compile cost the tests measure. Each pushes one count of abi.CodeStats
// to its limit (or a real guest), so that together they calibrate EstimateCompile, the
// coefficients of which are the worst cost per unit they show.

var i32b = []byte{wasmtest.I32}

// costShape is a module to compile and measure.
type costShape struct {
	name string
	wasm func(t testing.TB) []byte
}

// abiModule returns an ABI v1 module with the functions add adds after the ABI's.
func abiModule(add func(m *wasmtest.Module)) []byte {
	m := &wasmtest.Module{}
	m.ABI()
	add(m)
	return m.Bytes()
}

// oneFunction returns an ABI v1 module with one more function, of type (i32) -> () with
// two i32 locals, whose code is code.
func oneFunction(code []byte) []byte {
	return abiModule(func(m *wasmtest.Module) { m.FuncBody(i32b, nil, [][2]byte{{2, wasmtest.I32}}, code) })
}

// maxBody is how much code fits in one function under the limit, with room for the
// local declarations and the final end.
const maxBody = abi.MaxFunctionBytes - 16

// locals returns local declarations of n i32 locals.
func locals(n int) [][2]byte {
	var l [][2]byte
	for ; n > 0; n -= 100 {
		l = append(l, [2]byte{byte(min(n, 100)), wasmtest.I32})
	}
	return l
}

var costShapes = []costShape{
	{"go-guest", func(t testing.TB) []byte { return wasmtest.Plugin(t, "pii-redactor/go/pii-redactor.wasm") }},
	{"c-guest", func(t testing.TB) []byte { return wasmtest.Plugin(t, "output-guard/c/output-guard.wasm") }},
	// The largest function, of calls: the most working memory per byte.
	{"calls", func(testing.TB) []byte {
		return abiModule(func(m *wasmtest.Module) {
			f := m.Func(nil, nil)
			m.FuncBody(nil, nil, nil, wasmtest.Sequence([]byte{wasmtest.Call, byte(f)}, maxBody))
		})
	}},
	// The largest function, of additions: the most instructions per byte.
	{"adds", func(testing.TB) []byte {
		return abiModule(func(m *wasmtest.Module) {
			code := append([]byte{wasmtest.LocalGet, 0}, wasmtest.Sequence([]byte{wasmtest.LocalGet, 0, wasmtest.I32Add}, maxBody-3)...)
			m.FuncBody(i32b, i32b, nil, code)
		})
	}},
	// The most branches one function may have, as br_if, ifs, loops, blocks nested to
	// the limit, and br_table labels: compile time grows with their square.
	{"br_if", func(testing.TB) []byte {
		code := []byte{wasmtest.Block, wasmtest.Empty}
		code = append(code, bytes.Repeat([]byte{wasmtest.I32Const, 0, wasmtest.BrIf, 0}, abi.MaxBranches-1)...)
		return oneFunction(append(code, wasmtest.End))
	}},
	{"ifs", func(testing.TB) []byte {
		return oneFunction(bytes.Repeat([]byte{wasmtest.LocalGet, 0, wasmtest.If, wasmtest.Empty, wasmtest.End}, abi.MaxBranches))
	}},
	{"loops", func(testing.TB) []byte {
		return oneFunction(bytes.Repeat([]byte{wasmtest.Loop, wasmtest.Empty, wasmtest.End}, abi.MaxBranches/4))
	}},
	{"nested-blocks", func(testing.TB) []byte { return oneFunction(wasmtest.Nest(wasmtest.Block, abi.MaxNestingDepth)) }},
	{"br_table", func(testing.TB) []byte {
		code := []byte{wasmtest.Block, wasmtest.Empty, wasmtest.LocalGet, 0, 0x0e}
		code = append(code, wasmtest.U32(abi.MaxBranches-2)...)
		code = append(code, make([]byte, abi.MaxBranches-1)...) // every label 0
		return oneFunction(append(code, wasmtest.End))
	}},
	// Many small br_table: the cost per label with few branches to each target.
	{"br_tables", func(testing.TB) []byte {
		const labels = 63
		table := []byte{wasmtest.Block, wasmtest.Empty, wasmtest.LocalGet, 0, 0x0e, labels}
		table = append(append(table, make([]byte, labels+1)...), wasmtest.End)
		return oneFunction(bytes.Repeat(table, abi.MaxBranches/(labels+2)))
	}},
	// Blocks whose type carries the most values a block type may.
	{"wide-blocks", func(testing.TB) []byte {
		return abiModule(func(m *wasmtest.Module) {
			n := abi.MaxBlockTypeValues
			typ := m.Type(bytes.Repeat(i32b, n), bytes.Repeat(i32b, n))
			code := bytes.Repeat([]byte{wasmtest.I32Const, 0}, n)
			code = append(code, bytes.Repeat(append(append([]byte{wasmtest.Block}, wasmtest.U32(uint64(typ))...), wasmtest.End), abi.MaxBranches)...)
			m.FuncBody(nil, nil, nil, append(code, bytes.Repeat([]byte{wasmtest.Drop}, n)...))
		})
	}},
	// Locals times branches at the limit: each if sets a local, and the end reads them
	// all, so the compiler tracks every local through every branch.
	{"local-branches", func(testing.TB) []byte {
		const n = 256
		branches := abi.MaxLocalBranches / (n + 1)
		var code []byte
		for i := range branches {
			code = append(code, wasmtest.LocalGet, 0, wasmtest.If, wasmtest.Empty, wasmtest.LocalGet, 0, 0x21)
			code = append(append(code, wasmtest.U32(uint64(1+i%n))...), wasmtest.End)
		}
		for i := 1; i <= n; i++ {
			code = append(append(append(code, wasmtest.LocalGet), wasmtest.U32(uint64(i))...), wasmtest.Drop)
		}
		return abiModule(func(m *wasmtest.Module) { m.FuncBody(i32b, nil, locals(n), code) })
	}},
	// Reads of locals after long runs of blocks no branch targets, and of br_if: the
	// compiler looks each up through the whole run.
	{"block-reads", func(testing.TB) []byte {
		const run = 4096
		code := bytes.Repeat([]byte{wasmtest.Block, wasmtest.Empty, wasmtest.End}, run)
		return oneFunction(append(code, bytes.Repeat([]byte{wasmtest.LocalGet, 0, wasmtest.Drop}, abi.MaxReadWork/(run+2))...))
	}},
	{"br_if-reads", func(testing.TB) []byte {
		const run = 8192
		code := append([]byte{wasmtest.Block, wasmtest.Empty}, bytes.Repeat([]byte{wasmtest.I32Const, 0, wasmtest.BrIf, 0}, run)...)
		code = append(code, bytes.Repeat([]byte{wasmtest.LocalGet, 0, wasmtest.Drop}, abi.MaxReadWork/(run+2))...)
		return oneFunction(append(code, wasmtest.End))
	}},
	// Bytes that are not code: data.
	{"data", func(testing.TB) []byte {
		return abiModule(func(m *wasmtest.Module) { m.Data(make([]byte, 15<<20)) })
	}},
	// Totals: many functions with the most locals, many functions of calls, many
	// functions, many functions and globals.
	{"locals", func(testing.TB) []byte {
		return abiModule(func(m *wasmtest.Module) {
			for range 2000 {
				m.FuncBody(nil, nil, locals(abi.MaxFunctionLocals), nil)
			}
		})
	}},
	{"call-functions", func(testing.TB) []byte {
		return abiModule(func(m *wasmtest.Module) {
			f := m.Func(nil, nil)
			for range 4000 {
				m.FuncBody(nil, nil, nil, bytes.Repeat([]byte{wasmtest.Call, byte(f)}, 500))
			}
		})
	}},
	{"functions", func(testing.TB) []byte {
		return abiModule(func(m *wasmtest.Module) {
			for range 100_000 {
				m.FuncBody(nil, nil, nil, nil)
			}
		})
	}},
	{"globals", func(testing.TB) []byte {
		return abiModule(func(m *wasmtest.Module) {
			for range 1000 {
				m.Global(wasmtest.I32, true, []byte{wasmtest.I32Const, 0})
			}
			for range 10_000 {
				m.FuncBody(nil, nil, nil, nil)
			}
		})
	}},
}

// compileMeasurement is what compiling one module took, measured in a child process.
type compileMeasurement struct {
	Bytes    int            // module size
	Stats    *abi.CodeStats // nil if abi.Validate refuses the module
	Validate time.Duration  // abi.Validate's wall time
	Wall     time.Duration  // metering and compiling, after validation
	CPU      time.Duration  // user and system time of the whole process for those
	Memory   int64          // peak resident memory above what the process had before
}

// costShapeEnv names the shape TestCompileCostChild measures.
const costShapeEnv = "COCOON_COMPILE_COST_SHAPE"

// measureCompile compiles shape in a child process, so that its peak resident memory
// (VmHWM) is the compile's alone.
func measureCompile(t testing.TB, shape string) compileMeasurement {
	t.Helper()
	var m compileMeasurement
	if err := json.Unmarshal([]byte(proctest.Child(t, "TestCompileCostChild", costShapeEnv+"="+shape)), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCompileCostChild is the child process of measureCompile: it compiles the shape
// named by $COCOON_COMPILE_COST_SHAPE as Sandbox.Compile does, but without its limits,
// so that it can measure modules over them too.
func TestCompileCostChild(t *testing.T) {
	if !proctest.IsChild("TestCompileCostChild") {
		t.Skip("run by measureCompile")
	}
	wasm := shapeWasm(t, os.Getenv(costShapeEnv))
	s := newTestSandbox(t)
	m := compileMeasurement{Bytes: len(wasm)}
	start := time.Now()
	if info, err := abi.Validate(wasm); err == nil {
		m.Stats = &info.Code
	}
	m.Validate = time.Since(start)
	runtime.GC()
	debug.FreeOSMemory()
	base, cpu := proctest.KiB(t, "VmRSS"), proctest.CPU()
	start = time.Now()
	metered, err := meter.Instrument(wasm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.runtime.CompileModule(context.Background(), metered); err != nil {
		t.Fatal(err)
	}
	m.Wall, m.CPU = time.Since(start), proctest.CPU()-cpu
	m.Memory = (proctest.KiB(t, "VmHWM") - base) << 10
	j, _ := json.Marshal(m)
	fmt.Printf("RESULT %s\n", j)
}

// shapeWasm builds the shape called name: one of costShapes, or "NAME@SCALE" for a
// generated shape of another size (see scaledShape).
func shapeWasm(t testing.TB, name string) []byte {
	if base, scale, ok := strings.Cut(name, "@"); ok {
		n, err := strconv.Atoi(scale)
		if err != nil {
			t.Fatal(err)
		}
		return scaledShape(t, base, n)
	}
	for _, s := range costShapes {
		if s.name == name {
			return s.wasm(t)
		}
	}
	t.Fatalf("no shape %q", name)
	return nil
}

// scaledShape builds the attacks of the issue at any size, over the limits too:
// "nested-loops" (n loops nested), "nested-blocks", "sequential-blocks" (n blocks one
// after the other), "br_if" (n br_if), "calls" (one function of n bytes of calls).
func scaledShape(t testing.TB, name string, n int) []byte {
	switch name {
	case "nested-loops":
		return oneFunction(wasmtest.Nest(wasmtest.Loop, n))
	case "nested-blocks":
		return oneFunction(wasmtest.Nest(wasmtest.Block, n))
	case "sequential-blocks":
		return oneFunction(bytes.Repeat([]byte{wasmtest.Block, wasmtest.Empty, wasmtest.End}, n))
	case "br_if":
		code := append([]byte{wasmtest.Block, wasmtest.Empty}, bytes.Repeat([]byte{wasmtest.LocalGet, 0, wasmtest.BrIf, 0}, n)...)
		return oneFunction(append(code, wasmtest.End))
	case "calls":
		return abiModule(func(m *wasmtest.Module) {
			f := m.Func(nil, nil)
			m.FuncBody(nil, nil, nil, wasmtest.Sequence([]byte{wasmtest.Call, byte(f)}, n))
		})
	}
	t.Fatalf("no scaled shape %q", name)
	return nil
}

// BenchmarkCompileCost compiles each shape in a child process and reports its processor
// time and peak memory beside the estimate, as a ratio to the Go guest measured in the
// same run, and the time abi.Validate took as a ratio to the compile's. Run it with
// -benchtime=1x: each iteration is a process.
//
//	go test -run '^$' -bench CompileCost -benchtime=1x ./host/
func BenchmarkCompileCost(b *testing.B) {
	var goGuest compileMeasurement
	for _, s := range costShapes {
		b.Run(s.name, func(b *testing.B) {
			var m compileMeasurement
			for b.Loop() {
				m = measureCompile(b, s.name)
			}
			if s.name == "go-guest" {
				goGuest = m
			}
			b.ReportMetric(float64(m.CPU.Milliseconds()), "cpu-ms")
			b.ReportMetric(float64(m.Validate)/float64(m.Wall), "validate-x-compile")
			b.ReportMetric(float64(m.Memory>>20), "peak-MiB")
			if m.Stats != nil {
				est := EstimateCompile(m.Bytes, *m.Stats)
				b.ReportMetric(float64(est.CPU.Milliseconds()), "est-cpu-ms")
				b.ReportMetric(float64(est.Memory>>20), "est-MiB")
			}
			if goGuest.CPU > 0 {
				b.ReportMetric(float64(m.CPU)/float64(goGuest.CPU), "cpu-x-go")
				b.ReportMetric(float64(m.Memory)/float64(goGuest.Memory), "mem-x-go")
			}
		})
	}
}

// BenchmarkCompileGrowth compiles the attacks of issue 10 item 3 at growing sizes,
// without the limits, each in a child process, and reports processor time and peak
// memory: how compiling grows faster than the code, which the limits stop. Each size's
// cpu-x-first and mem-x-first compare it with the smallest of its shape in the same run.
//
//	go test -run '^$' -bench CompileGrowth -benchtime=1x ./host/
func BenchmarkCompileGrowth(b *testing.B) {
	for _, g := range []struct {
		shape string
		sizes []int
	}{
		{"nested-loops", []int{1000, 2000, 4000}},
		{"sequential-blocks", []int{5000, 10000, 20000}},
		{"br_if", []int{4000, 8000, 16000}},
		{"calls", []int{256 << 10, 512 << 10, 1 << 20}},
	} {
		var first compileMeasurement
		for _, n := range g.sizes {
			b.Run(fmt.Sprintf("%s/%d", g.shape, n), func(b *testing.B) {
				var m compileMeasurement
				for b.Loop() {
					m = measureCompile(b, fmt.Sprintf("%s@%d", g.shape, n))
				}
				if first.CPU == 0 {
					first = m
				}
				b.ReportMetric(float64(m.CPU.Milliseconds()), "cpu-ms")
				b.ReportMetric(float64(m.Memory>>20), "peak-MiB")
				b.ReportMetric(float64(m.CPU)/float64(first.CPU), "cpu-x-first")
				b.ReportMetric(float64(m.Memory)/float64(first.Memory), "mem-x-first")
			})
		}
	}
}
