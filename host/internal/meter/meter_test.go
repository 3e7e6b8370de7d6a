package meter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/sys"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/internal/wasmbin"
)

// A tiny builder for hand-made modules.

func module(sections ...[]byte) []byte {
	return append([]byte("\x00asm\x01\x00\x00\x00"), slices.Concat(sections...)...)
}

func section(id byte, content ...byte) []byte {
	return append(appendU32([]byte{id}, uint32(len(content))), content...)
}

func name(s string) []byte { return appendName(nil, s) }

// code returns a code section of the given bodies (locals and instructions).
func code(bodies ...[]byte) []byte {
	content := appendU32(nil, uint32(len(bodies)))
	for _, b := range bodies {
		content = append(appendU32(content, uint32(len(b))), b...)
	}
	return section(wasmbin.SecCode, content...)
}

// The sequences Instrument writes, for fuel global g (the depth global is g+1) and
// the added imports starting at function index f (both below 128).

// fixed is the five-byte encoding Instrument patches costs and weights into.
func fixed(v uint64) []byte {
	b := slices.Clone(fixedPlaceholder)
	patchFixed(b, v)
	return b
}

// meterSeq is a metering point of the given cost.
func meterSeq(g, f byte, cost uint64) []byte {
	return slices.Concat([]byte{0x23, g, 0x42}, fixed(cost), []byte{0x7d, 0x24, g}, fuelCheck(g, f))
}

func fuelCheck(g, f byte) []byte {
	return []byte{0x23, g, 0x42, 0, 0x57, 0x04, 0x40, 0x10, f + importTick, 0x0b}
}

// prologue adds weight w to the depth and calls overflow past testMaxDepth.
func prologue(g, f byte, w uint64) []byte {
	return slices.Concat(depthSeq(g, 0x6a, w), []byte{0x23, g + 1, 0x41}, appendS64(nil, testMaxDepth),
		[]byte{0x4b, 0x04, 0x40, 0x10, f + importOverflow, 0x0b})
}

// depthSeq adds (op 0x6a) or takes off (0x6b) weight w.
func depthSeq(g byte, op byte, w uint64) []byte {
	return slices.Concat([]byte{0x23, g + 1, 0x41}, fixed(w), []byte{op, 0x24, g + 1})
}

// chargeBodies are the bodies of the two charging functions every module with code gets.
func chargeBodies(g, f byte) [][]byte {
	return [][]byte{
		slices.Concat([]byte{0, 0x23, g, 0x20, 0, 0xad, 0x42, 4, 0x88, 0x7d, 0x24, g}, fuelCheck(g, f), []byte{0x20, 0, 0x0b}),
		slices.Concat([]byte{0, 0x23, g, 0x20, 0, 0xad, 0x7d, 0x24, g}, fuelCheck(g, f), []byte{0x20, 0, 0x0b}),
	}
}

// wantTypes are the types every module gets, at the end of its type section.
var wantTypes = slices.Concat(
	[]byte{0x60, 0, 0}, []byte{0x60, 1, 0x7f, 0}, []byte{0x60, 3, 0x7f, 0x7f, 0x7e, 1, 0x7f},
	[]byte{0x60, 1, 0x7f, 1, 0x7f}, []byte{0x60, 3, 0x7f, 0x7f, 0x7f, 0},
	[]byte{0x60, 2, 0x70, 0x7f, 1, 0x7f}, []byte{0x60, 2, 0x6f, 0x7f, 1, 0x7f})

// wantImports are the imports of HostModule, whose types start at type index t.
func wantImports(t byte) []byte {
	imp := func(n string, typ byte) []byte { return slices.Concat(name(HostModule), name(n), []byte{0, typ}) }
	return slices.Concat(imp(TickName, t), imp(MemoryRefusedName, t+1), imp(TableGrowName, t+2), imp(OverflowName, t))
}

var (
	fuelExport   = name("cocoon_meter.fuel")
	addedGlobals = []byte{0x7e, 1, 0x42, 0, 0x0b, 0x7f, 1, 0x41, 0, 0x0b}
)

func TestInstrumentBytes(t *testing.T) {
	tests := []struct {
		name     string
		in, want []byte
	}{{
		name: "empty module gets every section it needs",
		in:   module(),
		want: module(
			section(wasmbin.SecType, slices.Concat([]byte{7}, wantTypes)...),
			section(wasmbin.SecImport, slices.Concat([]byte{4}, wantImports(0))...),
			section(wasmbin.SecGlobal, slices.Concat([]byte{2}, addedGlobals)...),
			section(wasmbin.SecExport, slices.Concat([]byte{1}, fuelExport, []byte{3, 0})...),
		),
	}, {
		// (func (local i32 i32) (loop (br 0))): the body's region holds loop and the
		// final end, the loop's br and its end: one point each. Weight 1 + 2 locals / 16.
		name: "function entry and loop are metered, the depth is counted",
		in: module(
			section(wasmbin.SecType, 2, 0x60, 1, 0x7f, 0, 0x60, 0, 0),
			section(3, 1, 1),
			code([]byte{1, 2, 0x7f, 0x03, 0x40, 0x0c, 0, 0x0b, 0x0b}),
		),
		want: module(
			section(wasmbin.SecType, slices.Concat([]byte{9, 0x60, 1, 0x7f, 0, 0x60, 0, 0}, wantTypes)...),
			section(wasmbin.SecImport, slices.Concat([]byte{4}, wantImports(2))...),
			section(3, 3, 1, 5, 5),
			section(wasmbin.SecGlobal, slices.Concat([]byte{2}, addedGlobals)...),
			section(wasmbin.SecExport, slices.Concat([]byte{1}, fuelExport, []byte{3, 0})...),
			code(slices.Concat([]byte{1, 2, 0x7f}, prologue(0, 0, 1), meterSeq(0, 0, 1),
				[]byte{0x02, 0x40, 0x03, 0x40}, meterSeq(0, 0, 1), []byte{0x0c, 0, 0x0b, 0x0b}, depthSeq(0, 0x6b, 1), []byte{0x0b}),
				chargeBodies(0, 0)[0], chargeBodies(0, 0)[1]),
		),
	}, {
		name: "defined function indices shift, imported ones do not",
		in: module(
			section(wasmbin.SecType, 1, 0x60, 0, 0),
			section(wasmbin.SecImport, slices.Concat([]byte{2}, name("m"), name("f"), []byte{0, 0}, name("m"), name("g"), []byte{3, 0x7f, 0})...),
			section(3, 2, 0, 0),
			section(wasmbin.SecGlobal, slices.Concat([]byte{1, 0x70, 0, 0xd2, 2, 0x0b})...), // funcref = ref.func 2
			section(wasmbin.SecExport, slices.Concat([]byte{2}, name("a"), []byte{0, 1}, name("b"), []byte{0, 0})...),
			section(wasmbin.SecStart, 2),
			section(wasmbin.SecElement, 2, 0, 0x41, 0, 0x0b, 2, 0, 1, 7, 0x70, 1, 0xd2, 1, 0x0b),
			// call 0; call 2; ref.func 1; drop
			code([]byte{0, 0x10, 0, 0x10, 2, 0xd2, 1, 0x1a, 0x0b}, []byte{0, 0x0b}),
		),
		want: module(
			section(wasmbin.SecType, slices.Concat([]byte{8, 0x60, 0, 0}, wantTypes)...),
			section(wasmbin.SecImport, slices.Concat([]byte{6}, name("m"), name("f"), []byte{0, 0}, name("m"), name("g"), []byte{3, 0x7f, 0}, wantImports(1))...),
			section(3, 4, 0, 0, 4, 4),
			section(wasmbin.SecGlobal, slices.Concat([]byte{3, 0x70, 0, 0xd2, 6, 0x0b}, addedGlobals)...),
			section(wasmbin.SecExport, slices.Concat([]byte{3}, name("a"), []byte{0, 5}, name("b"), []byte{0, 0}, fuelExport, []byte{3, 2})...),
			section(wasmbin.SecStart, 6),
			section(wasmbin.SecElement, 2, 0, 0x41, 0, 0x0b, 2, 0, 5, 7, 0x70, 1, 0xd2, 5, 0x0b),
			code(slices.Concat([]byte{0}, prologue(2, 1, 1), meterSeq(2, 1, 1), []byte{0x02, 0x40, 0x10, 0, 0x10, 6, 0xd2, 5, 0x1a, 0x0b}, depthSeq(2, 0x6b, 1), []byte{0x0b}),
				slices.Concat([]byte{0}, prologue(2, 1, 1), meterSeq(2, 1, 1), []byte{0x02, 0x40, 0x0b}, depthSeq(2, 0x6b, 1), []byte{0x0b}),
				chargeBodies(2, 1)[0], chargeBodies(2, 1)[1]),
		),
	}, {
		name: "function names shift, other custom sections are kept",
		in: module(
			section(wasmbin.SecCustom, slices.Concat(name("x"), []byte{1, 2, 3})...),
			section(wasmbin.SecType, 1, 0x60, 0, 0),
			section(wasmbin.SecImport, slices.Concat([]byte{1}, name("m"), name("f"), []byte{0, 0})...),
			section(3, 1, 0),
			code([]byte{0, 0x0b}),
			section(wasmbin.SecCustom, slices.Concat(name("name"),
				section(1, slices.Concat([]byte{2, 0}, name("f"), []byte{1}, name("g"))...),
				section(2, 1, 1, 1, 0, 1, 'p'))...),
		),
		want: module(
			section(wasmbin.SecCustom, slices.Concat(name("x"), []byte{1, 2, 3})...),
			section(wasmbin.SecType, slices.Concat([]byte{8, 0x60, 0, 0}, wantTypes)...),
			section(wasmbin.SecImport, slices.Concat([]byte{5}, name("m"), name("f"), []byte{0, 0}, wantImports(1))...),
			section(3, 3, 0, 4, 4),
			section(wasmbin.SecGlobal, slices.Concat([]byte{2}, addedGlobals)...),
			section(wasmbin.SecExport, slices.Concat([]byte{1}, fuelExport, []byte{3, 0})...),
			code(slices.Concat([]byte{0}, prologue(0, 1, 1), meterSeq(0, 1, 1), []byte{0x02, 0x40, 0x0b}, depthSeq(0, 0x6b, 1), []byte{0x0b}),
				chargeBodies(0, 1)[0], chargeBodies(0, 1)[1]),
			section(wasmbin.SecCustom, slices.Concat(name("name"),
				section(1, slices.Concat([]byte{2, 0}, name("f"), []byte{5}, name("g"))...),
				section(2, 1, 5, 1, 0, 1, 'p'))...),
		),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := instrument(tt.in, testMaxDepth, testFrameLocals)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("got  %x\nwant %x", got, tt.want)
			}
		})
	}
}

func TestInstrumentErrors(t *testing.T) {
	typ := section(wasmbin.SecType, 1, 0x60, 0, 0)
	fn := section(3, 1, 0)
	body := func(instrs ...byte) []byte { return module(typ, fn, code(append([]byte{0}, instrs...))) }
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"not wasm", []byte("\x00asm\x0d\x00\x01\x00"), "not a WebAssembly"},
		{"section overruns", append(module(), 1, 10, 0), "left in the module"},
		{"section out of order", module(fn, typ), "out of order"},
		{"tag section", module(section(13, 0)), "section id 13"},
		{"fuel export taken", module(section(wasmbin.SecExport, slices.Concat([]byte{1}, fuelExport, []byte{2, 0})...)), "already exports"},
		{"shared memory import", module(section(wasmbin.SecImport, slices.Concat([]byte{1}, name("m"), name("x"), []byte{2, 3, 1, 1})...)), "limits flags"},
		// Imports are read by the decoder validation uses (wasmbin.Reader.Import), once:
		// the meter's own reader skipped a global import's two bytes unread.
		{"global import of mutability 2", module(section(wasmbin.SecImport, slices.Concat([]byte{1}, name("m"), name("g"), []byte{3, 0x7f, 2})...)), "invalid global mutability"},
		{"global import of no value type", module(section(wasmbin.SecImport, slices.Concat([]byte{1}, name("m"), name("g"), []byte{3, 0x00, 0})...)), "invalid value type"},
		{"tag import", module(section(wasmbin.SecImport, slices.Concat([]byte{1}, name("m"), name("t"), []byte{4, 0, 0})...)), "tag import"},
		{"bytes after the imports", module(section(wasmbin.SecImport, slices.Concat([]byte{1}, name("m"), name("f"), []byte{0, 0, 0x0b})...)), "after its 1 entries"},
		{"return_call", body(0x12, 0, 0x0b), "opcode 0x12"},
		{"try_table", body(0x1f, 0x40, 0, 0x0b, 0x0b), "opcode 0x1f"},
		{"atomics", body(0xfe, 0, 0, 0, 0x0b), "opcode 0xfe"},
		{"0xfc 18", body(0xfc, 18, 0x0b), "0xfc 18"},
		{"reserved simd opcode", body(0xfd, 0x9a, 1, 0x0b), "0xfd 154"},
		{"relaxed simd", body(0xfd, 0x80, 2, 0x0b), "0xfd 256"},
		{"multi-memory memarg", body(0x41, 0, 0x28, 0x42, 1, 0, 0x1a, 0x0b), "memory index"},
		{"truncated immediate", body(0x41, 0x80), "unexpected end"},
		{"overlong LEB", body(0x0c, 0x80, 0x80, 0x80, 0x80, 0x10, 0x0b), "overflows"},
		{"body overruns", module(typ, fn, section(wasmbin.SecCode, 1, 9, 0, 0x0b)), "overruns its section"},
		{"br_table count lies", body(0x0e, 0xff, 0xff, 0x03, 0x0b), "does not fit"},
		{"constant expression without end", module(section(wasmbin.SecGlobal, 1, 0x7f, 0, 0x41, 0)), "unexpected end"},
		// wazero v1.12.0 reads a SIMD sub-opcode as one byte: 0xfd 0x8c 0x00 would be
		// v128.const (and 16 bytes of immediates) to a LEB128 reader, and to wazero
		// i8x16.narrow_i16x8_s, unreachable and 16 bytes of code nothing metered.
		{"padded simd opcode", body(0xfd, 0x8c, 0x00, 0x41, 0x00, 0x1a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x1a, 0x0b), "pad no SIMD opcode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := instrument(tt.in, testMaxDepth, testFrameLocals)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestTermination runs guests that only tick can stop.
func TestTermination(t *testing.T) {
	rt := newRuntime(t, false)
	loops := mustInstrument(t, testModule(t, "loops"))
	for _, tt := range []struct {
		fn   string
		args []uint64
	}{
		{"spin", nil},
		{"explode", []uint64{64}}, // 2^64 calls without a loop
	} {
		t.Run(tt.fn+" times out", func(t *testing.T) {
			g := instantiate(t, rt, loops, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := g.mod.ExportedFunction(tt.fn).Call(g.ctx(ctx), tt.args...)
			var exit *sys.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != sys.ExitCodeDeadlineExceeded {
				t.Fatalf("got %v, want exit code %d", err, sys.ExitCodeDeadlineExceeded)
			}
			if d := time.Since(start); d > 5*time.Second { // about 50 ms; without the deadline, never
				t.Errorf("a 50 ms deadline stopped it after %s", d)
			}
		})
		t.Run(tt.fn+" is cancelled", func(t *testing.T) {
			g := instantiate(t, rt, loops, nil)
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			_, err := g.mod.ExportedFunction(tt.fn).Call(g.ctx(ctx), tt.args...)
			var exit *sys.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != sys.ExitCodeContextCanceled {
				t.Fatalf("got %v, want exit code %d", err, sys.ExitCodeContextCanceled)
			}
		})
	}
	t.Run("long finite loop", func(t *testing.T) {
		// The function entry costs 2 points (9 instructions outside the loop), each of
		// the n iterations 3 (17 instructions). Fuel starts at 0, so the entry ticks;
		// then a tick comes every ceil(quantum/3) iterations.
		for _, tt := range []struct{ n, quantum, ticks int }{
			{n: 1_000_000, quantum: 10_000, ticks: 1 + 1_000_000/3334},
			{n: 3333, quantum: 10_000, ticks: 1},
			{n: 3334, quantum: 10_000, ticks: 2},
			{n: 3, quantum: 1, ticks: 4},
		} {
			g := instantiate(t, rt, loops, nil)
			g.state.quantum = int64(tt.quantum)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			r, err := g.mod.ExportedFunction("sum").Call(g.ctx(ctx), uint64(tt.n))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if want := uint64(tt.n) * uint64(tt.n-1) / 2; r[0] != want {
				t.Errorf("sum(%d) = %d, want %d", tt.n, r[0], want)
			}
			if g.state.ticks != tt.ticks {
				t.Errorf("sum(%d) with quantum %d ticked %d times, want %d", tt.n, tt.quantum, g.state.ticks, tt.ticks)
			}
		}
	})
}

// TestShift checks that every function index still reaches its function.
func TestShift(t *testing.T) {
	rt := newRuntime(t, false)
	orig := testModule(t, "shift")
	const want = 9 + 100000000 + 1 + 1 + 20 + 50000 + 300 + 600000 + 7000000 + 50000 + 4000 + 7000000
	for _, tt := range []struct {
		name string
		wasm []byte
	}{{"original", orig}, {"instrumented", mustInstrument(t, orig)}} {
		g := instantiate(t, rt, tt.wasm, nil)
		r, err := g.mod.ExportedFunction("run").Call(g.ctx(context.Background()))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if r[0] != want {
			t.Errorf("%s: run() = %d, want %d", tt.name, r[0], want)
		}
		if r, err := g.mod.ExportedFunction("f3").Call(g.ctx(context.Background())); err != nil || r[0] != 300 {
			t.Errorf("%s: f3() = %v, %v; want 300", tt.name, r, err)
		}
	}
	// The name section follows the shift: the compiled module names every function
	// as before.
	names := func(wasm []byte) []string {
		m, err := rt.CompileModule(context.Background(), wasm)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, f := range m.ExportedFunctions() {
			out = append(out, f.ExportNames()[0]+"="+f.Name())
		}
		slices.Sort(out)
		return out
	}
	if a, b := names(orig), names(mustInstrument(t, orig)); !slices.Equal(a, b) || !slices.Contains(a, "f3=f3") {
		t.Errorf("exported function names changed:\n%v\n%v", a, b)
	}
}

// TestOpcodes runs a module that uses instructions of every immediate shape.
func TestOpcodes(t *testing.T) {
	rt := newRuntime(t, false)
	orig := testModule(t, "opcodes")
	metered := mustInstrument(t, orig)
	for _, input := range []string{"", "a", "hello, world", strings.Repeat("\xff\x00xyz", 100)} {
		want := instantiate(t, rt, orig, nil).hook(context.Background(), "cocoon_pre", []byte(input))
		got := instantiate(t, rt, metered, nil).hook(context.Background(), "cocoon_pre", []byte(input))
		if !strings.HasPrefix(want, "ok ") || got != want {
			t.Errorf("input %q: instrumented gives %q, original %q", input, got, want)
		}
	}
}

// realModules returns the paths of the modules make plugins builds.
func realModules(tb testing.TB) []string {
	tb.Helper()
	var paths []string
	for _, pattern := range []string{"../../../plugins/*/*/*.wasm", "../../testdata/*.wasm"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			tb.Fatal(err)
		}
		paths = append(paths, m...)
	}
	if len(paths) == 0 {
		tb.Skip("no built modules: run make plugins")
	}
	return paths
}

// exchange is one run of a module: config, then hooks in order with their inputs.
type exchange struct {
	name   string
	config []byte
	calls  [][2]string // hook, input
}

// exchanges returns what to run on the module at path: its plugin's test cases, or for
// the host's testdata modules every hook it has on a few inputs.
func exchanges(t *testing.T, path string, info *abi.ModuleInfo) []exchange {
	t.Helper()
	if plugin, ok := strings.CutPrefix(filepath.ToSlash(path), "../../../plugins/"); ok {
		dir := filepath.Join("../../../plugins", strings.Split(plugin, "/")[0], "testdata")
		files, _ := filepath.Glob(filepath.Join(dir, "*cases.json"))
		var out []exchange
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var cases []struct {
				Name   string          `json:"name"`
				Config json.RawMessage `json:"config"`
				Hook   string          `json:"hook"`
				Input  json.RawMessage `json:"input"`
				Chunks []string        `json:"chunks"`
			}
			if err := json.Unmarshal(b, &cases); err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				e := exchange{name: c.Name, config: c.Config}
				if c.Hook == "stream" {
					for _, chunk := range c.Chunks {
						e.calls = append(e.calls, [2]string{"cocoon_chunk", chunk})
					}
					e.calls = append(e.calls, [2]string{"cocoon_end", ""})
				} else {
					e.calls = append(e.calls, [2]string{"cocoon_" + c.Hook, string(c.Input)})
				}
				out = append(out, e)
			}
		}
		if len(out) == 0 {
			t.Fatalf("no test cases in %s", dir)
		}
		return out
	}
	request, err := os.ReadFile("../../../plugins/example-request.json")
	if err != nil {
		t.Fatal(err)
	}
	var hooks [][2]string
	for _, input := range []string{"", "hello", string(request)} {
		if info.Hooks&abi.HookPre != 0 {
			hooks = append(hooks, [2]string{"cocoon_pre", input})
		}
		if info.Hooks&abi.HookPost != 0 {
			hooks = append(hooks, [2]string{"cocoon_post", input})
		}
		if info.Hooks&abi.HookStream != 0 {
			hooks = append(hooks, [2]string{"cocoon_chunk", input}, [2]string{"cocoon_end", ""})
		}
	}
	out := []exchange{{name: "no config", calls: hooks}}
	if filepath.Base(path) == "misbehave.wasm" {
		// The modes of misbehave.wat that end on their own, quickly, without the host's limits.
		for _, mode := range "TZXrBEJGHODCAW" {
			out = append(out, exchange{name: "mode " + string(mode), config: []byte{byte(mode)}, calls: hooks})
		}
	}
	return out
}

// TestRealModules instruments every module make plugins builds and checks that wazero
// compiles the result and that it answers as the original does.
func TestRealModules(t *testing.T) {
	rt := newRuntime(t, false)
	for _, path := range realModules(t) {
		t.Run(strings.TrimLeft(strings.TrimPrefix(filepath.ToSlash(path), "../../"), "./"), func(t *testing.T) {
			orig, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			metered := mustInstrument(t, orig)
			if _, err := rt.CompileModule(context.Background(), metered); err != nil {
				t.Fatalf("wazero refuses the instrumented module: %v", err)
			}
			info, err := abi.Validate(orig)
			if err != nil {
				return // e.g. unknown_import.wasm: compiling is all there is to check
			}
			for _, e := range exchanges(t, path, info) {
				a := instantiate(t, rt, orig, e.config)
				b := instantiate(t, rt, metered, e.config)
				for _, call := range e.calls {
					want := a.hook(context.Background(), call[0], []byte(call[1]))
					got := b.hook(context.Background(), call[0], []byte(call[1]))
					if got != want {
						t.Errorf("%s: %s(%.40q): instrumented gives %.200q, original %.200q", e.name, call[0], call[1], got, want)
					}
				}
				if !slices.Equal(a.state.logs, b.state.logs) {
					t.Errorf("%s: instrumented logs %q, original %q", e.name, b.state.logs, a.state.logs)
				}
				if b.state.ticks == 0 {
					t.Errorf("%s: the instrumented module never ticked", e.name)
				}
			}
		})
	}
}
