package wasmbin

import (
	"context"
	"errors"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/cocoonhost/cocoon/internal/wasmtest"
)

func TestLEB128(t *testing.T) {
	tests := []struct {
		in     []byte
		bits   uint
		signed bool
		want   uint64 // sign-extended to 64 bits when signed
		err    string
	}{
		{[]byte{0x00}, 32, false, 0, ""},
		{[]byte{0x7f}, 32, false, 127, ""},
		{[]byte{0x80, 0x01}, 32, false, 128, ""},
		{[]byte{0x80, 0x80, 0x00}, 32, false, 0, ""}, // not minimal, but valid
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 32, false, 1<<32 - 1, ""},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x1f}, 32, false, 0, "overflows 32 bits"},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 32, false, 0, "overflows 32 bits"},
		{[]byte{0x80, 0x80}, 32, false, 0, "unexpected end"},
		{[]byte{}, 32, false, 0, "unexpected end"},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 64, false, 1<<64 - 1, ""},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, 64, false, 0, "overflows 64 bits"},

		{[]byte{0x00}, 32, true, 0, ""},
		{[]byte{0x7f}, 32, true, 1<<64 - 1, ""}, // -1
		{[]byte{0x3f}, 32, true, 63, ""},
		{[]byte{0x40}, 32, true, 1<<64 - 64, ""},        // -64
		{[]byte{0x80, 0x7f}, 32, true, 1<<64 - 128, ""}, // -128
		{[]byte{0xff, 0x00}, 32, true, 127, ""},         // not minimal, but valid
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x78}, 32, true, 1<<64 - 1<<31, ""},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x07}, 32, true, 1<<31 - 1, ""},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 32, true, 0, "overflows 32 bits"}, // bit 32 set, sign bit clear
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x70}, 32, true, 0, "overflows 32 bits"},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 32, true, 0, "overflows 32 bits"},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x70}, 33, true, 1<<64 - 1<<32, ""},
		{[]byte{0x40}, 33, true, 1<<64 - 64, ""}, // the empty block type
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f}, 64, true, 1 << 63, ""},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00}, 64, true, 1<<63 - 1, ""},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 64, true, 0, "overflows 64 bits"},
		{[]byte{0x80}, 32, true, 0, "unexpected end"},
	}
	for _, tt := range tests {
		r := Reader{B: tt.in, End: len(tt.in), Section: "test"}
		got, err := r.varint(tt.bits, tt.signed)
		switch {
		case tt.err == "" && (err != nil || got != tt.want || r.Pos != len(tt.in)):
			t.Errorf("varint(%x, %d, signed %v) = %#x, %v at %d, want %#x", tt.in, tt.bits, tt.signed, got, err, r.Pos, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("varint(%x, %d, signed %v) error = %v, want %q", tt.in, tt.bits, tt.signed, err, tt.err)
		}
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"memory":                      `"memory"`,
		"a\"b\n\x00\xff":              `"a\"b\n\x00\xff"`,
		strings.Repeat("x", 64):       `"` + strings.Repeat("x", 64) + `"`,
		strings.Repeat("x", 65):       `"` + strings.Repeat("x", 64) + `"...`,
		"x" + strings.Repeat("é", 40): `"x` + strings.Repeat("é", 31) + `"...`, // not cut inside é
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestDecode(t *testing.T) {
	var m wasmtest.Module
	i32 := []byte{wasmtest.I32}
	m.ImportMemory("env", "mem", 2)
	m.ImportFunc("cocoon", "config", []byte{wasmtest.I32, wasmtest.I32}, i32)
	m.ImportTable("env", "table")
	m.ImportGlobal("env", "g")
	m.ImportFunc("wasi_snapshot_preview1", "proc_exit", i32, nil)
	f := m.Func(nil, []byte{wasmtest.I64})
	m.Memory(5, 1, 2)
	m.Export("f", wasmtest.KindFunc, f)
	m.Export("imported", wasmtest.KindFunc, 1)
	m.Export("g", wasmtest.KindGlobal, 0)
	m.Export("m", wasmtest.KindMemory, 1)
	mod, err := Decode(m.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	wantImports := []Import{
		{Module: "env", Name: "mem", Kind: KindMemory, Limits: Limits{Min: 2}},
		{Module: "cocoon", Name: "config", Kind: KindFunc, Type: 0},
		{Module: "env", Name: "table", Kind: KindTable, ElemType: FuncRef},
		{Module: "env", Name: "g", Kind: KindGlobal},
		{Module: "wasi_snapshot_preview1", Name: "proc_exit", Kind: KindFunc, Type: 1},
	}
	if !reflect.DeepEqual(mod.Imports, wantImports) {
		t.Errorf("Imports = %+v, want %+v", mod.Imports, wantImports)
	}
	if want := []Limits{{Min: 1, Max: 2, HasMax: true, Is64: true}}; !reflect.DeepEqual(mod.Memories, want) {
		t.Errorf("Memories = %+v, want %+v", mod.Memories, want)
	}
	wantExports := []Export{{"f", KindFunc, 2}, {"imported", KindFunc, 1}, {"g", KindGlobal, 0}, {"m", KindMemory, 1}}
	if !reflect.DeepEqual(mod.Exports, wantExports) {
		t.Errorf("Exports = %+v, want %+v", mod.Exports, wantExports)
	}
	if mod.NumTypes() != 3 || !slices.Equal(mod.Funcs, []uint32{2}) {
		t.Errorf("NumTypes() = %d, Funcs = %v, want 3, [2]", mod.NumTypes(), mod.Funcs)
	}
	for i, want := range []FuncType{
		{Params: []ValType{I32, I32}, Results: []ValType{I32}},
		{Params: []ValType{I32}},
		{Results: []ValType{I64}},
	} {
		if got := mod.FuncType(uint32(i)); !reflect.DeepEqual(got, want) {
			t.Errorf("FuncType(%d) = %+v, want %+v", i, got, want)
		}
	}
}

// TestDecodeSegments checks that the decoder walks every kind of element and data
// segment, global and table as wazero reads them.
func TestDecodeSegments(t *testing.T) {
	S := wasmtest.Section
	end := byte(0x0b)
	wasm := slices.Concat(wasmtest.Header,
		S(wasmtest.SecType, wasmtest.Vec(wasmtest.FuncType(nil, nil))),
		S(wasmtest.SecImport, wasmtest.Vec(slices.Concat(wasmtest.Name("env"), wasmtest.Name("g"), []byte{3, wasmtest.I32, 0}))),
		S(wasmtest.SecFunction, []byte{1, 0}),
		S(wasmtest.SecTable, []byte{1, 0x70, 0x00, 0x02}),
		S(wasmtest.SecMemory, []byte{1, 0x00, 0x01}),
		S(wasmtest.SecGlobal, wasmtest.Vec(
			[]byte{wasmtest.I32, 0, 0x41, 0x80, 0x80, 0x80, 0x80, 0x78, end}, // i32.const -2^31
			[]byte{wasmtest.I64, 1, 0x42, 0x7f, end},
			[]byte{wasmtest.F32, 0, 0x43, 0, 0, 0, 0, end},
			[]byte{wasmtest.F64, 0, 0x44, 0, 0, 0, 0, 0, 0, 0, 0, end},
			[]byte{0x70, 0, 0xd2, 0x00, end}, // ref.func 0
			[]byte{0x6f, 0, 0xd0, 0x6f, end}, // ref.null extern
			[]byte{0x7b, 0, 0xfd, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, end},
			[]byte{wasmtest.I32, 0, 0x23, 0x00, end}, // global.get 0
		)),
		S(9, wasmtest.Vec( // element segments, flags 0 to 7
			[]byte{0, 0x41, 0x00, end, 1, 0},
			[]byte{1, 0, 1, 0},
			[]byte{2, 0, 0x41, 0x01, end, 0, 1, 0},
			[]byte{3, 0, 1, 0},
			[]byte{4, 0x41, 0x00, end, 1, 0xd2, 0, end},
			[]byte{5, 0x70, 1, 0xd0, 0x70, end},
			[]byte{6, 0, 0x41, 0x00, end, 0x70, 1, 0xd2, 0, end},
			[]byte{7, 0x70, 2, 0xd0, 0x70, end, 0xd2, 0, end},
		)),
		S(12, []byte{2}), // data count
		S(wasmtest.SecCode, wasmtest.Vec([]byte{4, 1, 2, wasmtest.I64, end})),
		S(wasmtest.SecData, wasmtest.Vec(
			[]byte{0, 0x41, 0x00, end, 3, 'a', 'b', 'c'},
			[]byte{1, 2, 'd', 'e'},
		)),
	)
	if _, err := Decode(wasm); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	if _, err := r.CompileModule(ctx, wasm); err != nil {
		t.Fatalf("wazero cannot compile the module, so the test proves nothing: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	S := wasmtest.Section
	typ := S(wasmtest.SecType, wasmtest.Vec(wasmtest.FuncType(nil, nil)))
	fn := S(wasmtest.SecFunction, []byte{1, 0})
	tests := []struct {
		name        string
		sections    [][]byte
		err         string
		unsupported bool
	}{
		{"4G locals", [][]byte{typ, fn, S(wasmtest.SecCode, []byte{1, 7, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x7f})},
			"code section at offset 0x17: function 0 declares more than 50000 locals", true},
		{"locals across declarations", [][]byte{typ, fn, S(wasmtest.SecCode, []byte{1, 8, 2, 0xd0, 0x86, 0x03, 0x7f, 1, 0x7e, 0x0b})},
			"function 0 declares more than 50000 locals", true},
		{"body larger than the section", [][]byte{typ, fn, S(wasmtest.SecCode, []byte{1, 9, 0, 0x0b})},
			"body of function 0 is 9 bytes, more than the 2 bytes left", false},
		{"data segment larger than the section", [][]byte{S(wasmtest.SecData, []byte{1, 1, 0xff, 0x01, 0})},
			"data segment 0 of 255 bytes does not fit", false},
		{"data segment flags", [][]byte{S(wasmtest.SecData, []byte{1, 3, 0})}, "invalid data segment flags 0x3", false},
		{"data segment for memory 1", [][]byte{S(wasmtest.SecData, []byte{1, 2, 1, 0x41, 0, 0x0b, 0})},
			"data segment 0 is for memory 1; WebAssembly 2.0 has only memory 0", false},
		{"element segment flags", [][]byte{S(9, []byte{1, 8, 0})}, "invalid element segment flags 0x8", false},
		{"element kind", [][]byte{S(9, []byte{1, 1, 1, 0})}, "invalid element kind 0x1", false},
		{"instruction in a constant expression", [][]byte{S(wasmtest.SecGlobal, []byte{1, wasmtest.I32, 0, 0x20, 0, 0x0b})},
			"instruction 0x20 is not allowed in a constant expression", false},
		{"unterminated constant expression", [][]byte{S(wasmtest.SecGlobal, []byte{1, wasmtest.I32, 0, 0x41, 0})},
			"unexpected end of section", false},
		{"global mutability", [][]byte{S(wasmtest.SecGlobal, []byte{1, wasmtest.I32, 2, 0x41, 0, 0x0b})},
			"invalid global mutability 0x2", false},
		{"table element type", [][]byte{S(wasmtest.SecTable, []byte{1, wasmtest.I32, 0, 0})},
			"table element type 0x7f is not a reference type", false},
		{"too many parameters", [][]byte{S(wasmtest.SecType, slices.Concat([]byte{1, 0x60, 0xe9, 0x07}, make([]byte, 1001), []byte{0}))},
			"1001 parameters are more than the limit of 1000", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(slices.Concat(append([][]byte{wasmtest.Header}, tt.sections...)...))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Decode error = %v, want an *Error", err)
			}
			if !strings.Contains(e.Error(), tt.err) || e.Unsupported != tt.unsupported {
				t.Errorf("Decode error = %q (unsupported: %v), want %q (unsupported: %v)", e, e.Unsupported, tt.err, tt.unsupported)
			}
		})
	}
}

// TestDecodeTruncated decodes every prefix of a module: none may panic, and Decode
// must accept exactly the prefixes wazero compiles (those that end between sections
// and do not separate functions from their code).
func TestDecodeTruncated(t *testing.T) {
	var m wasmtest.Module
	m.ImportFunc("cocoon", "log", []byte{wasmtest.I32, wasmtest.I32, wasmtest.I32}, nil)
	m.Memory(1, 1, 2)
	m.Global(wasmtest.I32, true, []byte{0x41, 0x00})
	m.ExportFunc("f", []byte{wasmtest.I32}, []byte{wasmtest.I64})
	m.Export("memory", wasmtest.KindMemory, 0)
	m.Data([]byte("data"))
	m.Custom("producers", []byte{0})
	wasm := m.Bytes()
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	accepted := 0
	for n := 0; n <= len(wasm); n++ {
		_, err := Decode(wasm[:n])
		_, werr := r.CompileModule(ctx, wasm[:n])
		if (err == nil) != (werr == nil) {
			t.Errorf("first %d of %d bytes: Decode error %v, wazero error %v", n, len(wasm), err, werr)
		}
		if err == nil {
			accepted++
		}
	}
	if accepted < 3 {
		t.Errorf("only %d prefixes are valid modules: the test proves little", accepted)
	}
}

// TestDecodeAllocations checks that lying counts do not make Decode allocate: this
// 56-byte module makes wazero v1.12.0 allocate gigabytes.
func TestDecodeAllocations(t *testing.T) {
	wasm := []byte("\x00asm\x01\x00\x00\x00\a0\x94\x94\x940000000000000000000000000000000000000000")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Decode(wasm)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("Decode accepts the module")
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("Decode allocated %d bytes for a %d-byte module", n, len(wasm))
	}
}
