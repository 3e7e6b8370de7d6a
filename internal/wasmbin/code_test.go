package wasmbin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/cocoonhost/cocoon/internal/wasmtest"
)

// bodyModule returns a module with one function of type (i32) -> () with one i32
// local, whose code is code and the final end, with a memory, a table, a global and a
// data segment for the instructions that need them, and type 1 = (i32, i32) -> (i64)
// for block types.
func bodyModule(code []byte) []byte { return rawBody(slices.Concat(code, []byte{0x0b})) }

// rawBody is bodyModule with code as it is: no end is added.
func rawBody(code []byte) []byte {
	S := wasmtest.Section
	return slices.Concat(wasmtest.Header,
		S(wasmtest.SecType, wasmtest.Vec(wasmtest.FuncType([]byte{wasmtest.I32}, nil),
			wasmtest.FuncType([]byte{wasmtest.I32, wasmtest.I32}, []byte{wasmtest.I64}))),
		S(wasmtest.SecFunction, []byte{1, 0}),
		S(wasmtest.SecTable, []byte{1, 0x70, 0x00, 0x01}),
		S(wasmtest.SecMemory, []byte{1, 0x00, 0x01}),
		S(wasmtest.SecGlobal, []byte{1, wasmtest.I32, 1, 0x41, 0x00, 0x0b}),
		S(wasmtest.SecExport, wasmtest.Vec(slices.Concat(wasmtest.Name("f"), []byte{wasmtest.KindFunc, 0}))),
		S(12, []byte{1}), // data count, for memory.init and data.drop
		S(wasmtest.SecCode, wasmtest.Vec(wasmtest.Name(string(slices.Concat([]byte{1, 1, wasmtest.I32}, code))))),
		S(wasmtest.SecData, wasmtest.Vec([]byte{1, 0})),
	)
}

// instructions decodes the one body of wasm.
func instructions(t *testing.T, wasm []byte) ([]Instr, error) {
	t.Helper()
	m, err := Decode(wasm)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	var out []Instr
	for b := range m.Bodies() {
		for in, err := range b.Instructions() {
			if err != nil {
				return out, err
			}
			out = append(out, *in)
		}
	}
	return out, nil
}

func TestInstructions(t *testing.T) {
	for _, tt := range []struct {
		name string
		code []byte
		want Instr // Offset, End and Depth are checked separately
	}{
		{"nop", []byte{0x01}, Instr{Op: 0x01}},
		{"block empty", []byte{0x02, 0x40, 0x0b}, Instr{Op: OpBlock, Block: BlockEmpty}},
		{"loop i64", []byte{0x03, 0x7e, 0x42, 0x00, 0x0b, 0x1a}, Instr{Op: OpLoop, Block: -2}},
		{"if with type index", []byte{0x41, 0x00, 0x41, 0x00, 0x20, 0x00, 0x04, 0x01, 0x1a, 0x1a, 0x42, 0x00, 0x05, 0x1a, 0x1a, 0x42, 0x01, 0x0b, 0x1a}, Instr{Op: OpI32Const}},
		{"br", []byte{0x02, 0x40, 0x0c, 0x00, 0x0b}, Instr{Op: OpBlock, Block: BlockEmpty}},
		{"br_table", []byte{0x02, 0x40, 0x20, 0x00, 0x0e, 0x02, 0x00, 0x01, 0x00, 0x0b}, Instr{Op: OpBlock, Block: BlockEmpty}},
		{"call_indirect", []byte{0x20, 0x00, 0x20, 0x00, 0x11, 0x00, 0x00}, Instr{Op: 0x20}},
		{"typed select", []byte{0x41, 0x01, 0x41, 0x02, 0x20, 0x00, 0x1c, 0x01, 0x7f, 0x1a}, Instr{Op: OpI32Const, Value: 1}},
		{"i32.const -2^31", []byte{0x41, 0x80, 0x80, 0x80, 0x80, 0x78, 0x1a}, Instr{Op: OpI32Const, Value: 0xffffffff80000000}},
		{"i64.const -1", []byte{0x42, 0x7f, 0x1a}, Instr{Op: OpI64Const, Value: 0xffffffffffffffff}},
		{"f32.const", []byte{0x43, 0x00, 0x00, 0x80, 0x3f, 0x1a}, Instr{Op: OpF32Const, Value: 0x3f800000}},
		{"f64.const", []byte{0x44, 1, 2, 3, 4, 5, 6, 7, 8, 0x1a}, Instr{Op: OpF64Const, Value: 0x0807060504030201}},
		{"load", []byte{0x20, 0x00, 0x28, 0x02, 0x10, 0x1a}, Instr{Op: 0x20}},
		{"memory.grow", []byte{0x20, 0x00, 0x40, 0x00, 0x1a}, Instr{Op: 0x20}},
		{"ref.null", []byte{0xd0, 0x70, 0x1a}, Instr{Op: OpRefNull}},
		{"ref.func", []byte{0xd2, 0x00, 0x1a}, Instr{Op: OpRefFunc}},
		{"memory.fill", []byte{0x20, 0x00, 0x20, 0x00, 0x20, 0x00, 0xfc, 0x0b, 0x00}, Instr{Op: 0x20}},
		{"v128.const", append(append([]byte{0xfd, 0x0c}, bytes.Repeat([]byte{7}, 16)...), 0x1a), Instr{Op: OpPrefixSIMD, Sub: 12}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wasm := bodyModule(tt.code)
			got, err := instructions(t, wasm)
			if err != nil {
				t.Fatal(err)
			}
			first := got[0]
			// The immediates follow the opcode and the sub-opcode, if any.
			imm := first.Offset + 1
			if first.Op == OpPrefixMisc || first.Op == OpPrefixSIMD {
				imm += lebSize(first.Sub)
			}
			if first.Imm != imm {
				t.Errorf("immediates at %d, want %d", first.Imm, imm)
			}
			first.Offset, first.End, first.Imm, first.Depth = 0, 0, 0, 0
			if !reflect.DeepEqual(first, tt.want) {
				t.Errorf("first instruction = %+v, want %+v", first, tt.want)
			}
			// The instructions tile the code exactly, and the last is the final end.
			m, _ := Decode(wasm)
			var start int
			for b := range m.Bodies() {
				start = b.Offset + 3 // after the local declarations
			}
			at := start
			for _, in := range got {
				if in.Offset != at || in.End <= in.Offset {
					t.Fatalf("instruction %s spans [%#x, %#x), want it to start at %#x", in, in.Offset, in.End, at)
				}
				at = in.End
			}
			if last := got[len(got)-1]; at != start+len(tt.code)+1 || last.Op != OpEnd || last.Depth != 0 {
				t.Errorf("last instruction %+v ends at %#x, want the final end at %#x", last, at, start+len(tt.code))
			}
			compiles(t, wasm)
		})
	}
}

// compiles fails t if wazero does not compile wasm: a test of what the decoder accepts
// proves nothing on a module that is not valid.
func compiles(t *testing.T, wasm []byte) {
	t.Helper()
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithCoreFeatures(api.CoreFeaturesV2))
	defer r.Close(ctx)
	if _, err := r.CompileModule(ctx, wasm); err != nil {
		t.Fatalf("wazero does not compile the module: %v", err)
	}
}

func TestInstructionImmediates(t *testing.T) {
	got, err := instructions(t, bodyModule([]byte{
		0x02, 0x40, // block
		0x20, 0x00, 0x0e, 0x03, 0x00, 0x01, 0x00, 0x01, // br_table 0 1 0 1
		0x0b,
		0x20, 0x00, 0x0d, 0x00, // br_if 0
		0x20, 0x00, 0x11, 0x01, 0x00, // call_indirect type 1 table 0 (never reached)
		0x1a,
		0x20, 0x00, 0x2d, 0x00, 0x81, 0x01, 0x1a, // i32.load8_u align 0 offset 129
		0x20, 0x00, 0x20, 0x00, 0x20, 0x00, 0xfc, 0x08, 0x00, 0x00, // memory.init 0 0
		0x20, 0x00, 0xfd, 0x11, 0xfd, 0x15, 0x03, 0x1a, // i8x16.splat; i8x16.extract_lane_s 3
	}))
	if err != nil {
		t.Fatal(err)
	}
	find := func(op Opcode, sub uint32) Instr {
		for _, in := range got {
			if in.Op == op && in.Sub == sub {
				return in
			}
		}
		t.Fatalf("no instruction %#x %d", byte(op), sub)
		return Instr{}
	}
	if in := find(OpBrTable, 0); in.Labels != 3 || in.Index != 1 || in.Depth != 1 {
		t.Errorf("br_table = %+v, want 3 labels, default 1, depth 1", in)
	}
	if in := find(OpBrIf, 0); in.Index != 0 || in.Depth != 0 {
		t.Errorf("br_if = %+v", in)
	}
	if in := find(OpCallIndirect, 0); in.Index != 1 || in.Index2 != 0 {
		t.Errorf("call_indirect = %+v", in)
	}
	if in := find(0x2d, 0); in.Align != 0 || in.MemOffset != 129 {
		t.Errorf("load = %+v", in)
	}
	if in := find(OpPrefixMisc, MiscMemoryInit); in.Index != 0 || in.Index2 != 0 || in.End-in.Offset != 4 {
		t.Errorf("memory.init = %+v", in)
	}
	if in := find(OpPrefixSIMD, 21); in.Lane != 3 {
		t.Errorf("extract_lane = %+v", in)
	}
	m, _ := Decode(bodyModule(nil))
	for b := range m.Bodies() {
		if b.Func != 0 || b.Locals != 1 || b.Size != 4 {
			t.Errorf("body = %+v, want function 0, 1 local, 4 bytes", b)
		}
	}
}

func TestLabels(t *testing.T) {
	wasm := bodyModule([]byte{0x02, 0x40, 0x02, 0x40, 0x20, 0x00, 0x0e, 0x04, 0x00, 0x01, 0x01, 0x80, 0x00, 0x01, 0x0b, 0x0b})
	m, _ := Decode(wasm)
	for b := range m.Bodies() {
		for in, err := range b.Instructions() {
			if err != nil {
				t.Fatal(err)
			}
			if in.Op == OpBrTable {
				if got := slices.Collect(b.Labels(in)); !slices.Equal(got, []uint32{0, 1, 1, 0, 1}) {
					t.Errorf("Labels = %v, want [0 1 1 0 1] (the last the default)", got)
				}
			}
		}
	}
	compiles(t, wasm)
}

func TestInstructionDepth(t *testing.T) {
	got, err := instructions(t, bodyModule([]byte{
		0x02, 0x40, // block       depth 1
		0x03, 0x40, // loop        depth 2
		0x20, 0x00, // local.get   depth 2
		0x04, 0x40, // if          depth 3
		0x01, // nop         depth 3
		0x05, // else        depth 3
		0x0b, // end (if)    depth 3
		0x0b, // end (loop)  depth 2
		0x0b, // end (block) depth 1
	}))
	if err != nil {
		t.Fatal(err)
	}
	var depths []int
	for _, in := range got {
		depths = append(depths, in.Depth)
	}
	if want := []int{1, 2, 2, 3, 3, 3, 3, 2, 1, 0}; !slices.Equal(depths, want) {
		t.Errorf("depths = %v, want %v", depths, want)
	}
}

func TestInstructionErrors(t *testing.T) {
	for _, tt := range []struct {
		name        string
		code        []byte
		err         string
		unsupported bool
	}{
		{"unknown opcode", []byte{0x27, 0x0b}, "function 0: invalid opcode 0x27", false},
		{"try", []byte{0x06, 0x40}, "opcode 0x6 (exception handling proposal) is not supported", true},
		{"return_call", []byte{0x12, 0x00}, "opcode 0x12 (tail calls proposal) is not supported", true},
		{"atomics", []byte{0xfe, 0x00}, "opcode 0xfe (threads proposal) is not supported", true},
		{"GC", []byte{0xfb, 0x00}, "(GC proposal)", true},
		{"relaxed SIMD", []byte{0xfd, 0x80, 0x02}, "opcode 0xfd 256 (relaxed SIMD proposal)", true},
		{"padded SIMD opcode", append([]byte{0xfd, 0x8c, 0x00}, make([]byte, 16)...), "opcode 0xfd 12 is encoded in 2 bytes", true},
		{"padded SIMD opcode past 127", []byte{0xfd, 0x80, 0x81, 0x00}, "opcode 0xfd 128 is encoded in 3 bytes", true},
		{"reserved SIMD opcode", []byte{0xfd, 0x9a, 0x01}, "invalid opcode 0xfd 154", false},
		{"misc opcode past 2.0", []byte{0xfc, 0x12}, "invalid opcode 0xfc 18", false},
		{"multi-memory load", []byte{0x20, 0x00, 0x28, 0x40, 0x00, 0x00}, "multi-memory proposal", true},
		{"block type out of range", []byte{0x02, 0x07, 0x0b}, "block type 7 does not exist (the module has 2 types)", false},
		{"invalid block type", []byte{0x02, 0x50, 0x0b}, "invalid block type -48", false},
		{"GC block type", []byte{0x02, 0x63, 0x0b}, "block type 0x63", true},
		{"i32.const too long", []byte{0x41, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, "LEB128 number overflows 32 bits", false},
		{"i32.const unused bits", []byte{0x41, 0x80, 0x80, 0x80, 0x80, 0x70}, "overflows 32 bits", false},
		{"truncated f64.const", []byte{0x44, 0x00}, "unexpected end", false},
		{"br_table too long", []byte{0x0e, 0xff, 0xff, 0x03}, "br_table of 65535 labels does not fit", false},
		{"unclosed block", []byte{0x02, 0x40}, "function 0: the body ends inside 1 blocks, without its final end", false},
		{"code after the end", []byte{0x0b, 0x01}, "function 0: 1 bytes after the end of the body", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := instructions(t, rawBody(tt.code))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error = %v, want an *Error", err)
			}
			if !strings.Contains(e.Error(), tt.err) || e.Unsupported != tt.unsupported || e.Section != "code" {
				t.Errorf("error = %q (unsupported: %v), want %q (unsupported: %v) in the code section", e, e.Unsupported, tt.err, tt.unsupported)
			}
		})
	}
}

// TestInstructionsOfRealGuests decodes every body of the example modules, which wazero
// compiles: the decoder must accept all of them, and tile each body exactly.
func TestInstructionsOfRealGuests(t *testing.T) {
	paths, _ := filepath.Glob("../../../plugins/*/*/*.wasm")
	if len(paths) == 0 {
		t.Skip("no plugins/*/*/*.wasm: run `make plugins`")
	}
	for _, p := range paths {
		wasm, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Decode(wasm)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		n := 0
		for b := range m.Bodies() {
			at := -1
			for in, err := range b.Instructions() {
				if err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				if at >= 0 && in.Offset != at {
					t.Fatalf("%s: function %d: instruction at %#x follows one that ended at %#x", p, b.Func, in.Offset, at)
				}
				at = in.End
				n++
			}
			if at != b.Offset+b.Size {
				t.Fatalf("%s: function %d: instructions end at %#x, the body at %#x", p, b.Func, at, b.Offset+b.Size)
			}
		}
		if n < 1000 {
			t.Errorf("%s: only %d instructions", p, n)
		}
	}
}

// FuzzInstructions decodes arbitrary function bodies: it must never panic, must tile
// the bytes it accepts, and must accept every body wazero compiles (so that the limits
// on code never refuse a valid module as malformed).
func FuzzInstructions(f *testing.F) {
	for _, code := range [][]byte{
		{0x01},
		{0x02, 0x40, 0x20, 0x00, 0x0e, 0x02, 0x00, 0x01, 0x00, 0x0b},
		{0x41, 0x00, 0x41, 0x00, 0x20, 0x00, 0x04, 0x01, 0x1a, 0x1a, 0x42, 0x00, 0x05, 0x1a, 0x1a, 0x42, 0x01, 0x0b, 0x1a},
		{0x41, 0x80, 0x80, 0x80, 0x80, 0x78, 0x1a},
		{0x20, 0x00, 0x20, 0x00, 0x20, 0x00, 0xfc, 0x0b, 0x00},
		append(append([]byte{0xfd, 0x0c}, bytes.Repeat([]byte{7}, 16)...), 0x1a),
		{0x03, 0x40, 0x20, 0x00, 0x0d, 0x00, 0x0b},
		// i64.const -2^63 with bit 6 of its last byte unset: malformed, yet wazero
		// compiles it (see wazeroIgnoresBit6).
		append(append([]byte{0x42}, bytes.Repeat([]byte{0x80}, 9)...), 0x3f, 0x1a),
	} {
		f.Add(code)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithCoreFeatures(api.CoreFeaturesV2))
	defer r.Close(ctx)
	f.Fuzz(func(t *testing.T, code []byte) {
		wasm := bodyModule(code)
		m, err := Decode(wasm)
		if err != nil {
			return // the body's bytes broke the section structure
		}
		var derr error
		misread := false // wazero reads some instruction otherwise (wazeroReadsOneSIMDByte)
		for b := range m.Bodies() {
			at := b.code.Pos // the first instruction, after the local declarations
			for in, err := range b.Instructions() {
				misread = misread || wazeroReadsOneSIMDByte(wasm, at)
				if err != nil {
					derr = err
					break
				}
				if in.Offset < at || in.End <= in.Offset || in.End > b.Offset+b.Size || in.Depth < 0 {
					t.Fatalf("instruction %+v out of place (previous end %#x, body [%#x, %#x))", in, at, b.Offset, b.Offset+b.Size)
				}
				at = in.End
			}
		}
		if derr != nil && !wazeroIgnoresBit6(wasm, derr) && !misread {
			if _, err := r.CompileModule(ctx, wasm); err == nil {
				t.Fatalf("wazero compiles a body the decoder refuses: %v", derr)
			}
		}
	})
}

// wazeroReadsOneSIMDByte reports whether the instruction at offset at is a 0xfd (SIMD)
// instruction whose sub-opcode, a LEB128 number, takes more than one byte. wazero
// v1.12.0 (internal/wasm/func_validation.go) reads the sub-opcode as one byte and the
// next byte as the next instruction (in the minimal encoding of the opcodes 128 to 255
// that byte is 0x01, a nop): from there on it reads another instruction stream, and
// compiles bodies the spec calls malformed and the decoder rightly refuses, such as
// 0xfd 0x84 0x0f (sub-opcode 1924), 0xfd 0x80 0x00 (v128.load without its memory
// argument) or 0x00 0xfd 0x99 0x00 0x0b (the end taken as a lane index);
// testdata/fuzz/FuzzInstructions keeps them.
func wazeroReadsOneSIMDByte(wasm []byte, at int) bool {
	return at+1 < len(wasm) && wasm[at] == 0xfd && wasm[at+1]&0x80 != 0
}

// wazeroIgnoresBit6 reports whether err refuses a signed LEB128 number of the longest
// length for its width whose last byte would be accepted with bit 6 flipped. The spec
// requires every bit of that byte above the width to copy the sign bit; wazero v1.12.0
// (internal/leb128) checks all of them but bit 6, so it compiles such a body, which the
// spec calls malformed and the decoder rightly refuses (testdata/fuzz/FuzzInstructions
// holds one, an i32.const).
func wazeroIgnoresBit6(wasm []byte, err error) bool {
	var e *Error
	var bits uint
	if !errors.As(err, &e) {
		return false
	}
	_, reason, _ := strings.Cut(e.Reason, ": ") // after "function N"
	if _, serr := fmt.Sscanf(reason, "LEB128 number overflows %d bits", &bits); serr != nil {
		return false
	}
	n := int(bits+6) / 7 // the longest encoding
	if e.Offset+n > len(wasm) {
		return false
	}
	flipped := bytes.Clone(wasm[e.Offset : e.Offset+n])
	flipped[n-1] ^= 0x40
	r := Reader{B: flipped, End: n, Section: e.Section}
	_, serr := r.Sleb(bits)
	return serr == nil && r.Pos == n
}
