package abi

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/cocoonhost/cocoon/internal/wasmtest"
)

var (
	i32   = []byte{wasmtest.I32}
	i64   = []byte{wasmtest.I64}
	i32x2 = []byte{wasmtest.I32, wasmtest.I32}
)

// part adds something to a module under construction. Parts that import must come
// before parts that define functions.
type part func(*wasmtest.Module)

func build(parts ...part) []byte {
	m := &wasmtest.Module{}
	for _, p := range parts {
		p(m)
	}
	return m.Bytes()
}

func fn(name string, params, results []byte) part {
	return func(m *wasmtest.Module) { m.ExportFunc(name, params, results) }
}

func imp(module, name string, params, results []byte) part {
	return func(m *wasmtest.Module) { m.ImportFunc(module, name, params, results) }
}

func mem(flags byte, min, max uint64) part {
	return func(m *wasmtest.Module) { m.Memory(flags, min, max) }
}

func export(name string, kind byte, index uint32) part {
	return func(m *wasmtest.Module) { m.Export(name, kind, index) }
}

// global defines an i32 global and exports it as name.
func global(name string) part {
	return func(m *wasmtest.Module) {
		m.Global(wasmtest.I32, false, []byte{0x41, 0x00})
		m.Export(name, wasmtest.KindGlobal, 0)
	}
}

var (
	memory = func(m *wasmtest.Module) { m.Memory(0, 1, 0); m.Export("memory", wasmtest.KindMemory, 0) }
	marker = fn("cocoon_abi_v1", nil, nil)
	alloc  = fn("cocoon_alloc", i32, i32)
	pre    = fn("cocoon_pre", i32x2, i64)
	post   = fn("cocoon_post", i32x2, i64)
	chunk  = fn("cocoon_chunk", i32x2, i64)
	end    = fn("cocoon_end", nil, i64)
)

// minimal returns the smallest valid pre module, with before added first (imports go
// there) and after added last.
func minimal(before []part, after ...part) []byte {
	return build(slices.Concat(before, []part{(*wasmtest.Module).ABI}, after)...)
}

// withBody returns the smallest valid pre module with what add adds: its functions
// come after the ABI's three, so the first is function 3.
func withBody(add part) []byte { return minimal(nil, add) }

// withCode returns the smallest valid pre module with function 3, of type (i32) -> (),
// whose code is code.
func withCode(code []byte) []byte {
	return withBody(func(m *wasmtest.Module) { m.FuncBody(i32, nil, nil, code) })
}

// localDecls returns declarations of n i32 locals.
func localDecls(n int) [][2]byte {
	var l [][2]byte
	for ; n > 0; n -= 127 {
		l = append(l, [2]byte{byte(min(n, 127)), wasmtest.I32})
	}
	return l
}

// raw returns a module made of the header and the given sections.
func raw(sections ...[]byte) []byte {
	return slices.Concat(append([][]byte{wasmtest.Header}, sections...)...)
}

// goStyle returns a module shaped like a Go wasip1 c-shared build: it imports every
// WASI function and every host function, exports _initialize and non-ABI functions,
// has a memory maximum, a start section and a data section.
func goStyle() ([]byte, []Import) {
	var imports []Import
	var parts []part
	for _, fs := range []struct {
		module string
		funcs  map[string]FuncType
	}{{WASIModule, WASIFunctions}, {HostModule, HostFunctions}} {
		names := make([]string, 0, len(fs.funcs))
		for n := range fs.funcs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			t := fs.funcs[n]
			parts = append(parts, imp(fs.module, n, encodeTypes(t.Params), encodeTypes(t.Results)))
			imports = append(imports, Import{fs.module, n})
		}
	}
	parts = append(parts,
		func(m *wasmtest.Module) { m.Start(m.Func(nil, nil)) },
		mem(1, 17, 1024), export("memory", wasmtest.KindMemory, 0),
		fn("_initialize", nil, nil), marker, alloc, pre, post, chunk, end,
		fn("go_helper", i64, i32), global("__stack_pointer"),
		func(m *wasmtest.Module) { m.Data([]byte("runtime data")) },
		func(m *wasmtest.Module) { m.Custom("producers", []byte{0}) })
	return build(parts...), imports
}

func encodeTypes(vs []ValueType) []byte {
	b := make([]byte, len(vs))
	for i, v := range vs {
		b[i] = byte(v)
	}
	return b
}

func TestValidateAccepts(t *testing.T) {
	goModule, goImports := goStyle()
	tests := []struct {
		name string
		wasm []byte
		want ModuleInfo
	}{
		{"minimal pre", minimal(nil), ModuleInfo{ABIVersion: 1, Hooks: HookPre, MemoryMinPages: 1, Imports: []Import{}}},
		{"post only", build(memory, marker, alloc, post), ModuleInfo{ABIVersion: 1, Hooks: HookPost, MemoryMinPages: 1, Imports: []Import{}}},
		{"stream only, end first", build(memory, marker, end, alloc, chunk), ModuleInfo{ABIVersion: 1, Hooks: HookStream, MemoryMinPages: 1, Imports: []Import{}}},
		{"all hooks, memory max, logging",
			build(imp("cocoon", "log", []byte{wasmtest.I32, wasmtest.I32, wasmtest.I32}, nil), mem(1, 2, 3),
				export("memory", wasmtest.KindMemory, 0), marker, alloc, pre, post, chunk, end),
			ModuleInfo{ABIVersion: 1, Hooks: HookPre | HookPost | HookStream, MemoryMinPages: 2, MemoryMaxPages: 3,
				HasMemoryMax: true, Imports: []Import{{"cocoon", "log"}}}},
		{"memory of 0 to 65536 pages", build(mem(1, 0, 65536), export("memory", wasmtest.KindMemory, 0), marker, alloc, pre),
			ModuleInfo{ABIVersion: 1, Hooks: HookPre, MemoryMaxPages: 65536, HasMemoryMax: true, Imports: []Import{}}},
		{"memory exported twice", minimal(nil, export("heap", wasmtest.KindMemory, 0)),
			ModuleInfo{ABIVersion: 1, Hooks: HookPre, MemoryMinPages: 1, Imports: []Import{}}},
		{"hook re-exported under a non-ABI name", minimal(nil, export("other", wasmtest.KindFunc, 2)),
			ModuleInfo{ABIVersion: 1, Hooks: HookPre, MemoryMinPages: 1, Imports: []Import{}}},
		{"Go style", goModule, ModuleInfo{ABIVersion: 1, Hooks: HookPre | HookPost | HookStream, MemoryMinPages: 17,
			MemoryMaxPages: 1024, HasMemoryMax: true, HasInitialize: true, Imports: goImports}},
		{"SPEC §10 example", specExample(), ModuleInfo{ABIVersion: 1, Hooks: HookPre, MemoryMinPages: 1, Imports: []Import{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Validate(tt.wasm)
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			info.Code = CodeStats{} // TestCodeStats checks it
			if !reflect.DeepEqual(*info, tt.want) {
				t.Errorf("Validate = %+v, want %+v", *info, tt.want)
			}
			// The modules must be valid WebAssembly, or the test proves nothing.
			compile(t, tt.wasm)
		})
	}
}

func compile(t testing.TB, wasm []byte) {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	if _, err := r.CompileModule(ctx, wasm); err != nil {
		t.Fatalf("wazero cannot compile the module: %v", err)
	}
}

func TestValidateRefuses(t *testing.T) {
	header := wasmtest.Header
	tooLarge := make([]byte, MaxModuleBytes+1)
	copy(tooLarge, minimal(nil))
	tests := []struct {
		name string
		wasm []byte
		code ErrorCode
		msg  string // the exact message, or with a leading "~" a part of it
	}{
		// Size and header.
		{"too large", tooLarge, ErrTooLarge, "module is 16777217 bytes; the limit is 16777216"},
		{"empty", nil, ErrNotWasm, "not a WebAssembly module: bad magic number"},
		{"text", []byte("(module)"), ErrNotWasm, "not a WebAssembly module: bad magic number"},
		{"truncated header", header[:6], ErrNotWasm, "not a WebAssembly module: truncated header"},
		{"version 2", []byte{0, 'a', 's', 'm', 2, 0, 0, 0}, ErrNotWasm, "not a WebAssembly module: unsupported binary version 2"},
		{"component", []byte{0, 'a', 's', 'm', 0x0d, 0, 1, 0}, ErrNotWasm,
			"not a WebAssembly module: this is a WebAssembly component, not a core module"},

		// Structure.
		{"truncated section", raw([]byte{wasmtest.SecType, 5, 1}), ErrMalformed,
			"malformed module: at offset 0x8: section of 5 bytes does not fit in the 1 bytes left in the module"},
		{"section size overflows 32 bits", raw([]byte{wasmtest.SecType, 0xff, 0xff, 0xff, 0xff, 0x7f}), ErrMalformed,
			"malformed module: at offset 0x9: LEB128 number overflows 32 bits"},
		{"unterminated LEB128", raw([]byte{wasmtest.SecType, 0x80}), ErrMalformed,
			"malformed module: at offset 0x9: unexpected end of section in LEB128 number"},
		{"count larger than the section", raw(wasmtest.Section(wasmtest.SecType, []byte{0xff, 0xff, 0x03, 0x60})), ErrMalformed,
			"malformed module: type section at offset 0xa: 65535 types do not fit in the 1 bytes left in the section"},
		{"parameter count larger than the section", raw(wasmtest.Section(wasmtest.SecType, []byte{1, 0x60, 0xff, 0x7f})), ErrMalformed,
			"malformed module: type section at offset 0xc: 16383 parameters do not fit in the 0 bytes left in the section"},
		{"invalid value type", raw(wasmtest.Section(wasmtest.SecType, []byte{1, 0x60, 1, 0x01, 0})), ErrMalformed,
			"malformed module: type section at offset 0xd: invalid value type 0x1"},
		{"not a function type", raw(wasmtest.Section(wasmtest.SecType, []byte{1, 0x5f, 0, 0})), ErrMalformed,
			"~type form 0x5f is not a function type"},
		{"bytes left in section", raw(wasmtest.Section(wasmtest.SecType, []byte{1, 0x60, 0, 0, 0})), ErrMalformed,
			"malformed module: type section at offset 0xe: 1 unexpected bytes at the end of the section"},
		{"sections out of order",
			raw(wasmtest.Section(wasmtest.SecFunction, []byte{0}), wasmtest.Section(wasmtest.SecType, []byte{0})), ErrMalformed,
			"malformed module: at offset 0xb: type section is out of order or repeated"},
		{"section repeated",
			raw(wasmtest.Section(wasmtest.SecType, []byte{0}), wasmtest.Section(wasmtest.SecType, []byte{0})), ErrMalformed,
			"~type section is out of order or repeated"},
		{"unknown section", raw(wasmtest.Section(14, nil)), ErrMalformed, "malformed module: at offset 0x8: unknown section id 14"},
		{"function type index out of range", raw(wasmtest.Section(wasmtest.SecFunction, []byte{1, 0})), ErrMalformed,
			"malformed module: function section at offset 0xb: function 0 has type 0, but there are 0 types"},
		{"import type index out of range",
			raw(wasmtest.Section(wasmtest.SecImport, wasmtest.Vec(slices.Concat(wasmtest.Name("cocoon"), wasmtest.Name("log"), []byte{0, 3})))),
			ErrMalformed, `~import "cocoon"."log" has type 3, but there are 0 types`},
		{"export function index out of range", minimal(nil, export("f", wasmtest.KindFunc, 3)), ErrMalformed,
			`~export "f" refers to func 3, but the module has 3`},
		{"export memory index out of range", minimal(nil, export("m", wasmtest.KindMemory, 1)), ErrMalformed,
			`~export "m" refers to memory 1, but the module has 1`},
		{"duplicate export", minimal(nil, export("cocoon_pre", wasmtest.KindFunc, 0)), ErrMalformed,
			`~export name "cocoon_pre" is repeated`},
		{"export name not UTF-8", minimal(nil, export("\xff", wasmtest.KindFunc, 0)), ErrMalformed, "~export name is not valid UTF-8"},
		{"custom section name not UTF-8", raw(wasmtest.Section(wasmtest.SecCustom, wasmtest.Name("\xc3"))), ErrMalformed,
			"~custom section name is not valid UTF-8"},
		{"invalid export kind", minimal(nil, export("x", 7, 0)), ErrMalformed, `~export "x" has invalid kind 0x7`},
		{"missing code section", raw(
			wasmtest.Section(wasmtest.SecType, wasmtest.Vec(wasmtest.FuncType(nil, nil))),
			wasmtest.Section(wasmtest.SecFunction, []byte{1, 0})), ErrMalformed,
			"~the function section declares 1 functions but the code section has 0 bodies"},
		{"code count mismatch", raw(
			wasmtest.Section(wasmtest.SecType, wasmtest.Vec(wasmtest.FuncType(nil, nil))),
			wasmtest.Section(wasmtest.SecFunction, []byte{2, 0, 0}),
			wasmtest.Section(wasmtest.SecCode, []byte{1, 2, 0, 0x0b})), ErrMalformed,
			"~the function section declares 2 functions but the code section has 1 bodies"},
		{"start function out of range", raw(wasmtest.Section(wasmtest.SecStart, []byte{0})), ErrMalformed,
			"~start function 0 does not exist"},
		{"start function with results", minimal(nil, func(m *wasmtest.Module) { m.Start(2) }), ErrMalformed,
			"~start function 2 must have no parameters and no results"},
		{"invalid limits", raw(wasmtest.Section(wasmtest.SecMemory, []byte{1, 0x08, 0})), ErrMalformed, "~invalid limits flags 0x8"},

		// Proposals the host does not run.
		{"tag section", raw(wasmtest.Section(13, []byte{0})), ErrUnsupportedFeature, "~tag section (exception handling proposal)"},
		{"rec group", raw(wasmtest.Section(wasmtest.SecType, []byte{1, 0x4e, 1, 0x60, 0, 0})), ErrUnsupportedFeature, "~GC proposal"},
		{"exnref", raw(wasmtest.Section(wasmtest.SecType, []byte{1, 0x60, 1, 0x69, 0})), ErrUnsupportedFeature, "~value type 0x69"},

		// ABI version marker.
		{"no marker", build(memory, alloc, pre), ErrNoABIVersion,
			"module does not declare an ABI version: export a function named cocoon_abi_v1"},
		{"marker with a leading zero", build(memory, fn("cocoon_abi_v01", nil, nil), alloc, pre), ErrNoABIVersion,
			`module does not declare an ABI version: export a function named cocoon_abi_v1 (export "cocoon_abi_v01" is not one: the version is a decimal number without leading zeros)`},
		{"version 2", build(memory, fn("cocoon_abi_v2", nil, nil), alloc, pre), ErrUnsupportedABIVersion,
			"module targets ABI v2; this host supports v1"},
		{"huge version", build(memory, fn("cocoon_abi_v99999999999999999999", nil, nil), alloc, pre), ErrUnsupportedABIVersion,
			"module targets ABI v99999999999999999999; this host supports v1"},
		{"two markers", minimal(nil, fn("cocoon_abi_v2", nil, nil)), ErrMultipleABIVersions,
			`module declares more than one ABI version (exports "cocoon_abi_v1", "cocoon_abi_v2"); export exactly one cocoon_abi_v<N>`},
		{"many markers", minimal(nil, fn("cocoon_abi_v2", nil, nil), fn("cocoon_abi_v3", nil, nil), fn("cocoon_abi_v4", nil, nil)),
			ErrMultipleABIVersions,
			`module declares more than one ABI version (exports "cocoon_abi_v1", "cocoon_abi_v2" and 2 more); export exactly one cocoon_abi_v<N>`},
		{"very long version", build(memory, fn("cocoon_abi_v"+strings.Repeat("9", 1000), nil, nil), alloc, pre), ErrUnsupportedABIVersion,
			"module targets ABI v99999999999999999999...; this host supports v1"},
		{"marker with parameters", build(memory, fn("cocoon_abi_v1", i32, nil), alloc, pre), ErrBadExportSignature,
			`export "cocoon_abi_v1" has signature (i32) -> (), want () -> ()`},
		{"marker is a global", build(memory, global("cocoon_abi_v1"), alloc, pre), ErrBadExportSignature,
			`export "cocoon_abi_v1" is a global, want a function () -> ()`},
		{"invalid marker next to a valid one", minimal(nil, fn("cocoon_abi_vx", nil, nil)), ErrUnknownExport,
			`~export "cocoon_abi_vx" is not part of ABI v1`},

		// Imports.
		{"imported memory", minimal([]part{func(m *wasmtest.Module) { m.ImportMemory("env", "memory", 1) }}), ErrImportedMemory,
			`import "env"."memory" is a memory: the module must define its own memory and export it as "memory"`},
		{"imported table", minimal([]part{func(m *wasmtest.Module) { m.ImportTable("env", "table") }}), ErrUnknownImport,
			`import "env"."table" is a table: modules may import only functions`},
		{"imported global", minimal([]part{func(m *wasmtest.Module) { m.ImportGlobal("cocoon", "sp") }}), ErrUnknownImport,
			`import "cocoon"."sp" is a global: modules may import only functions`},
		{"import from env", minimal([]part{imp("env", "foo", nil, nil)}), ErrUnknownImport,
			`import "env"."foo" is not provided by the host: modules may import only from "cocoon" and "wasi_snapshot_preview1"`},
		{"unknown host function", minimal([]part{imp("cocoon", "logg", nil, nil)}), ErrUnknownImport,
			`import "cocoon"."logg" is not provided by the host: module "cocoon" has no function "logg"`},
		{"unknown WASI function", minimal([]part{imp("wasi_snapshot_preview1", "sock_open", nil, nil)}), ErrUnknownImport,
			`import "wasi_snapshot_preview1"."sock_open" is not provided by the host: module "wasi_snapshot_preview1" has no function "sock_open"`},
		{"host function signature", minimal([]part{imp("cocoon", "log", i32x2, nil)}), ErrBadImportSignature,
			`import "cocoon"."log" has signature (i32, i32) -> (), want (i32, i32, i32) -> ()`},
		{"WASI function signature", minimal([]part{imp("wasi_snapshot_preview1", "clock_time_get", []byte{wasmtest.I32, wasmtest.I32, wasmtest.I32}, i32)}),
			ErrBadImportSignature,
			`import "wasi_snapshot_preview1"."clock_time_get" has signature (i32, i32, i32) -> i32, want (i32, i64, i32) -> i32`},
		{"hostile import name", minimal([]part{imp("env\n", strings.Repeat("é", 100), nil, nil)}), ErrUnknownImport,
			`import "env\n"."` + strings.Repeat("é", 32) + `"... is not provided by the host: modules may import only from "cocoon" and "wasi_snapshot_preview1"`},

		// Memory.
		{"no memory", build(marker, alloc, pre), ErrNoMemory, `module defines no memory: define one and export it as "memory"`},
		{"memory not exported", build(mem(0, 1, 0), marker, alloc, pre), ErrNoMemory, `module does not export its memory: export it as "memory"`},
		{"memory exported as mem", build(mem(0, 1, 0), export("mem", wasmtest.KindMemory, 0), marker, alloc, pre), ErrNoMemory,
			`module exports its memory as "mem"; export it as "memory"`},
		{"memory is a function", build(fn("memory", nil, nil), marker, alloc, pre), ErrBadExportSignature,
			`export "memory" is a func, want the module's memory`},
		{"two memories", build(mem(0, 1, 0), memory, marker, alloc, pre), ErrBadMemory, "module defines 2 memories; ABI v1 modules have exactly one"},
		{"memory64", build(mem(4, 1, 0), export("memory", wasmtest.KindMemory, 0), marker, alloc, pre), ErrBadMemory,
			"memory is 64-bit (memory64); ABI v1 needs a 32-bit memory"},
		{"shared memory", build(mem(3, 1, 2), export("memory", wasmtest.KindMemory, 0), marker, alloc, pre), ErrBadMemory,
			"memory is shared (threads); ABI v1 needs an unshared memory"},
		{"minimum too large", build(mem(0, 65537, 0), export("memory", wasmtest.KindMemory, 0), marker, alloc, pre), ErrBadMemory,
			"memory minimum of 65537 pages is above the 65536 pages a 32-bit memory can have"},
		{"maximum too large", build(mem(1, 1, 65537), export("memory", wasmtest.KindMemory, 0), marker, alloc, pre), ErrBadMemory,
			"memory maximum of 65537 pages is above the 65536 pages a 32-bit memory can have"},
		{"maximum below minimum", build(mem(1, 2, 1), export("memory", wasmtest.KindMemory, 0), marker, alloc, pre), ErrBadMemory,
			"memory maximum of 1 pages is below its minimum of 2 pages"},

		// Exports.
		{"no alloc", build(memory, marker, pre), ErrMissingAlloc,
			"module does not export cocoon_alloc: export a function cocoon_alloc (i32) -> i32"},
		{"alloc signature", build(memory, marker, fn("cocoon_alloc", i32, i64), pre), ErrBadExportSignature,
			`export "cocoon_alloc" has signature (i32) -> i64, want (i32) -> i32`},
		{"pre signature", build(memory, marker, alloc, fn("cocoon_pre", i32, i64)), ErrBadExportSignature,
			`export "cocoon_pre" has signature (i32) -> i64, want (i32, i32) -> i64`},
		{"end signature", build(memory, marker, alloc, chunk, fn("cocoon_end", nil, []byte{wasmtest.I64, wasmtest.I32})), ErrBadExportSignature,
			`export "cocoon_end" has signature () -> (i64, i32), want () -> i64`},
		{"hook is a global", build(memory, marker, alloc, global("cocoon_post")), ErrBadExportSignature,
			`export "cocoon_post" is a global, want a function (i32, i32) -> i64`},
		{"hook is the memory", build(memory, marker, alloc, export("cocoon_pre", wasmtest.KindMemory, 0)), ErrBadExportSignature,
			`export "cocoon_pre" is a memory, want a function (i32, i32) -> i64`},
		{"unknown cocoon_ export", minimal(nil, fn("cocoon_preprocess", i32x2, i64)), ErrUnknownExport,
			`export "cocoon_preprocess" is not part of ABI v1: exports named cocoon_* must be one of cocoon_abi_v1, cocoon_alloc, cocoon_pre, cocoon_post, cocoon_chunk, cocoon_end`},
		{"command", minimal(nil, fn("_start", nil, nil)), ErrCommandModule, `~module exports "_start", so it is a WASI command`},
		{"_initialize signature", minimal(nil, fn("_initialize", nil, i32)), ErrBadExportSignature,
			`export "_initialize" has signature () -> i32, want () -> ()`},
		{"no hooks", build(memory, marker, alloc), ErrNoHooks,
			"module implements no hook: export cocoon_pre, cocoon_post, or cocoon_chunk with cocoon_end"},
		{"chunk without end", build(memory, marker, alloc, chunk), ErrIncompleteStream,
			"module exports cocoon_chunk without cocoon_end: the streaming hook needs both"},
		{"end without chunk", build(memory, marker, alloc, pre, end), ErrIncompleteStream,
			"module exports cocoon_end without cocoon_chunk: the streaming hook needs both"},

		// Function bodies (§7): each limit, one past it.
		{"malformed code", withCode([]byte{0x27}), ErrMalformed, "malformed module: code section at offset 0x73: function 3: invalid opcode 0x27"},
		{"threads in code", withCode([]byte{0xfe, 0x03, 0x00}), ErrUnsupportedFeature,
			"module uses what the host does not support: code section at offset 0x73: function 3: opcode 0xfe (threads proposal) is not supported"},
		{"function too large", withCode(wasmtest.Sequence([]byte{0x01}, MaxFunctionBytes)), ErrFunctionTooLarge,
			"function 3 is 262146 bytes; the limit is 262144 bytes per function: split it"},
		{"nesting too deep", withCode(wasmtest.Nest(wasmtest.Block, MaxNestingDepth+1)), ErrNestingTooDeep,
			"~function 3 nests blocks more than 4096 deep (at offset 0x"},
		{"too many branches", withCode(bytes.Repeat([]byte{wasmtest.Block, wasmtest.Empty, wasmtest.End}, MaxBranches+1)), ErrTooManyBranches,
			"function 3 has more than 12000 blocks and branches (block, if, else, br_if and each br_table label count 1, loop 4); the limit is 12000 per function: split it"},
		{"loops count 4", withCode(bytes.Repeat([]byte{wasmtest.Loop, wasmtest.Empty, wasmtest.End}, MaxBranches/4+1)), ErrTooManyBranches,
			"~function 3 has more than 12000 blocks and branches"},
		{"br_table labels count", withCode(slices.Concat([]byte{wasmtest.Block, wasmtest.Empty, wasmtest.LocalGet, 0, 0x0e},
			wasmtest.U32(MaxBranches), make([]byte, MaxBranches+1), []byte{wasmtest.End})), ErrTooManyBranches,
			"~function 3 has more than 12000 blocks and branches"},
		{"too many locals", withBody(func(m *wasmtest.Module) { m.FuncBody(i32, nil, localDecls(MaxFunctionLocals), nil) }),
			ErrTooManyLocals, "function 3 has 4097 parameters and locals; the limit is 4096 per function"},
		{"locals times branches", withBody(func(m *wasmtest.Module) {
			m.FuncBody(i32, nil, localDecls(127), bytes.Repeat([]byte{wasmtest.Block, wasmtest.Empty, wasmtest.End}, MaxLocalBranches/128+1))
		}), ErrFunctionTooComplex,
			"function 3 has 128 parameters and locals and 8193 blocks and branches; their product, 1048704, is over the limit of 1048576: use fewer locals or split the function"},
		{"reads after a run of br_if", withCode(slices.Concat([]byte{wasmtest.Block, wasmtest.Empty},
			bytes.Repeat([]byte{wasmtest.I32Const, 0, wasmtest.BrIf, 0}, 8192), bytes.Repeat([]byte{wasmtest.LocalGet, 0, wasmtest.Drop}, 8193),
			[]byte{wasmtest.End})), ErrFunctionTooComplex,
			"function 3 looks locals, globals and memory up 67117056 times through runs of br_if or of blocks no branch targets (once per such block passed since the last join of branches, for every read); the limit is 67108864: join the branches or split the function"},
		{"wide block type", withBody(func(m *wasmtest.Module) {
			t := m.Type(bytes.Repeat(i32, MaxBlockTypeValues+1), nil)
			m.FuncBody(nil, nil, nil, slices.Concat(bytes.Repeat([]byte{wasmtest.I32Const, 0}, MaxBlockTypeValues+1),
				[]byte{wasmtest.Block}, wasmtest.U32(uint64(t)), bytes.Repeat([]byte{wasmtest.Drop}, MaxBlockTypeValues+1), []byte{wasmtest.End}))
		}), ErrBlockTypeTooLarge,
			"~with 17 parameters and 0 results; a block type may have at most 16 of each"},

		// Precedence: the version is checked before anything a later version may change.
		{"version 2 with unknown imports", build(imp("env", "x", nil, nil), fn("cocoon_abi_v2", nil, nil)), ErrUnsupportedABIVersion,
			"module targets ABI v2; this host supports v1"},
	}
	codes := map[ErrorCode]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := Validate(tt.wasm)
			if info != nil {
				t.Errorf("Validate returned %+v with error %v", info, err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Validate error = %#v, want an *Error", err)
			}
			if e.Code != tt.code {
				t.Errorf("Code = %q, want %q (message %q)", e.Code, tt.code, e.Message)
			}
			if want, ok := strings.CutPrefix(tt.msg, "~"); ok {
				if !strings.Contains(e.Message, want) {
					t.Errorf("Message = %q, want it to contain %q", e.Message, want)
				}
			} else if e.Message != tt.msg {
				t.Errorf("Message = %q\nwant      %q", e.Message, tt.msg)
			}
			if e.Error() != e.Message {
				t.Errorf("Error() = %q, want the message", e.Error())
			}
		})
		codes[tt.code] = true
	}
	for _, c := range allCodes {
		if !codes[c] {
			t.Errorf("no test case for %s", c)
		}
	}
}

// allCodes are the error codes Validate may return.
var allCodes = []ErrorCode{ErrTooLarge, ErrNotWasm, ErrMalformed, ErrUnsupportedFeature, ErrNoABIVersion,
	ErrUnsupportedABIVersion, ErrMultipleABIVersions, ErrNoMemory, ErrImportedMemory, ErrBadMemory, ErrUnknownImport,
	ErrBadImportSignature, ErrBadExportSignature, ErrUnknownExport, ErrNoHooks, ErrIncompleteStream, ErrCommandModule,
	ErrMissingAlloc, ErrFunctionTooLarge, ErrNestingTooDeep, ErrTooManyBranches, ErrTooManyLocals, ErrFunctionTooComplex,
	ErrBlockTypeTooLarge}

// specWasm is SPEC.md §10's example as wat2wasm (wabt 1.0.32) compiles it.
const specWasm = "0061736d01000000010f0360000060017f017f60027f7f017e03040300010205030100010607017f014180080b073604" +
	"066d656d6f727902000d636f636f6f6e5f6162695f763100000c636f636f6f6e5f616c6c6f6300010a636f636f6f6e5f" +
	"70726500020a430302000b3101017f23002101230020006a240023003f00418080046c4b0440200041107641016a4000" +
	"417f46044041000f0b0b20010b0c002000ad4220862001ad840b"

// specExample builds SPEC.md §10's example module.
func specExample() []byte {
	m := &wasmtest.Module{}
	m.Memory(0, 1, 0)
	m.Export("memory", wasmtest.KindMemory, 0)
	m.Global(wasmtest.I32, true, []byte{0x41, 0x80, 0x08}) // $heap = 1024
	m.ExportFunc("cocoon_abi_v1", nil, nil)
	m.Export("cocoon_alloc", wasmtest.KindFunc, m.FuncBody(i32, i32, [][2]byte{{1, wasmtest.I32}}, []byte{
		0x23, 0x00, 0x21, 0x01, // local.set $ptr (global.get $heap)
		0x23, 0x00, 0x20, 0x00, 0x6a, 0x24, 0x00, // global.set $heap (i32.add (global.get $heap) (local.get $size))
		0x23, 0x00, 0x3f, 0x00, 0x41, 0x80, 0x80, 0x04, 0x6c, 0x4b, // i32.gt_u $heap (i32.mul (memory.size) 65536)
		0x04, 0x40, // if
		0x20, 0x00, 0x41, 0x10, 0x76, 0x41, 0x01, 0x6a, 0x40, 0x00, // memory.grow (i32.add (i32.shr_u $size 16) 1)
		0x41, 0x7f, 0x46, 0x04, 0x40, // if (i32.eq ... -1)
		0x41, 0x00, 0x0f, // return 0
		0x0b, 0x0b, // end end
		0x20, 0x01, // local.get $ptr
	}))
	m.Export("cocoon_pre", wasmtest.KindFunc, m.FuncBody(i32x2, i64, nil, []byte{
		0x20, 0x00, 0xad, 0x42, 0x20, 0x86, // i64.shl (i64.extend_i32_u $ptr) 32
		0x20, 0x01, 0xad, 0x84, // i64.or ... (i64.extend_i32_u $len)
	}))
	return m.Bytes()
}

// TestSpecExample checks that the builder reproduces SPEC.md §10's example exactly and
// that the example does what the SPEC says: cocoon_pre returns its input.
func TestSpecExample(t *testing.T) {
	want, _ := hex.DecodeString(specWasm)
	wasm := specExample()
	if !bytes.Equal(wasm, want) {
		t.Fatalf("specExample() =\n%x\nwant\n%x", wasm, want)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	mod, err := r.Instantiate(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	input := []byte(`{"messages":[]}`)
	res, err := mod.ExportedFunction("cocoon_alloc").Call(ctx, uint64(len(input)))
	if err != nil {
		t.Fatal(err)
	}
	ptr := uint32(res[0])
	if !mod.Memory().Write(ptr, input) {
		t.Fatalf("cocoon_alloc returned %d, outside memory", ptr)
	}
	res, err = mod.ExportedFunction("cocoon_pre").Call(ctx, uint64(ptr), uint64(len(input)))
	if err != nil {
		t.Fatal(err)
	}
	out, ok := mod.Memory().Read(uint32(res[0]>>32), uint32(res[0]))
	if !ok || !bytes.Equal(out, input) {
		t.Errorf("cocoon_pre returned %q (in memory: %v), want %q", out, ok, input)
	}
}

func TestHooksString(t *testing.T) {
	for h, want := range map[Hooks]string{
		0: "none", HookPre: "pre", HookPost | HookStream: "post+stream",
		HookPre | HookPost | HookStream: "pre+post+stream", HookPre | 0x80: "pre+0x80",
	} {
		if got := h.String(); got != want {
			t.Errorf("Hooks(%#x).String() = %q, want %q", uint8(h), got, want)
		}
	}
}

func TestFuncTypeString(t *testing.T) {
	for _, tt := range []struct {
		t    FuncType
		want string
	}{
		{FuncType{}, "() -> ()"},
		{FuncType{Params: []ValueType{I32, I32}, Results: []ValueType{I64}}, "(i32, i32) -> i64"},
		{FuncType{Params: []ValueType{F32, F64}, Results: []ValueType{I32, I64}}, "(f32, f64) -> (i32, i64)"},
		{FuncType{Params: []ValueType{0x7b, 0x70, 0x6f, 0x01}}, "(v128, funcref, externref, type(0x1)) -> ()"},
	} {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

// TestHookSignatures pins the signatures of SPEC.md §3 and §4, which v1 never changes.
func TestHookSignatures(t *testing.T) {
	got := map[string]string{}
	for n, s := range HookSignatures {
		got[n] = s.String()
	}
	for n, s := range HostFunctions {
		got["cocoon."+n] = s.String()
	}
	want := map[string]string{
		"cocoon_abi_v1": "() -> ()", "cocoon_alloc": "(i32) -> i32", "cocoon_pre": "(i32, i32) -> i64",
		"cocoon_post": "(i32, i32) -> i64", "cocoon_chunk": "(i32, i32) -> i64", "cocoon_end": "() -> i64",
		"cocoon.log": "(i32, i32, i32) -> ()", "cocoon.reject": "(i32, i32, i32) -> ()", "cocoon.config": "(i32, i32) -> i32",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("signatures = %v, want %v", got, want)
	}
}

// goSized returns a module of about 2 MiB shaped like a Go wasip1 guest: the imports
// and exports of goStyle, 8000 functions of 200 bytes of code, a 384 KiB data segment
// and a 64 KiB custom section.
func goSized() []byte {
	m := &wasmtest.Module{}
	for _, fs := range []struct {
		module string
		funcs  map[string]FuncType
	}{{WASIModule, WASIFunctions}, {HostModule, HostFunctions}} {
		for n, t := range fs.funcs {
			m.ImportFunc(fs.module, n, encodeTypes(t.Params), encodeTypes(t.Results))
		}
	}
	m.Memory(0, 40, 0)
	m.Export("memory", wasmtest.KindMemory, 0)
	for _, h := range []struct {
		name            string
		params, results []byte
	}{{"_initialize", nil, nil}, {"cocoon_abi_v1", nil, nil}, {"cocoon_alloc", i32, i32},
		{"cocoon_pre", i32x2, i64}, {"cocoon_post", i32x2, i64}, {"cocoon_chunk", i32x2, i64}, {"cocoon_end", nil, i64}} {
		m.ExportFunc(h.name, h.params, h.results)
	}
	params := [][]byte{nil, i32, i32x2, i64}
	nops := bytes.Repeat([]byte{0x01}, 190)
	for i := range 8000 {
		m.FuncBody(params[i%len(params)], nil, [][2]byte{{3, wasmtest.I32}, {2, wasmtest.I64}}, nops)
	}
	m.Data(bytes.Repeat([]byte("go runtime data "), 384<<10/16))
	m.Custom("name", bytes.Repeat([]byte{0}, 64<<10))
	return m.Bytes()
}

func BenchmarkValidate(b *testing.B) {
	wasm := goSized()
	if _, err := Validate(wasm); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(wasm)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Validate(wasm); err != nil {
			b.Fatal(err)
		}
	}
}
