package wasmbin

import (
	"fmt"
	"iter"
)

// Opcode is the first byte of an instruction. Instructions with a prefix byte (0xfc,
// 0xfd) carry their second opcode in Instr.Sub.
type Opcode byte

// The opcodes callers look for. Every instruction of WebAssembly 2.0 is decoded; only
// those with a meaning for the structure of code, or a prefix, are named here.
const (
	OpUnreachable  Opcode = 0x00
	OpBlock        Opcode = 0x02
	OpLoop         Opcode = 0x03
	OpIf           Opcode = 0x04
	OpElse         Opcode = 0x05
	OpEnd          Opcode = 0x0b
	OpBr           Opcode = 0x0c
	OpBrIf         Opcode = 0x0d
	OpBrTable      Opcode = 0x0e
	OpReturn       Opcode = 0x0f
	OpCall         Opcode = 0x10
	OpCallIndirect Opcode = 0x11
	OpSelectTyped  Opcode = 0x1c
	OpMemorySize   Opcode = 0x3f
	OpMemoryGrow   Opcode = 0x40
	OpI32Const     Opcode = 0x41
	OpI64Const     Opcode = 0x42
	OpF32Const     Opcode = 0x43
	OpF64Const     Opcode = 0x44
	OpRefNull      Opcode = 0xd0
	OpRefFunc      Opcode = 0xd2
	// OpPrefixMisc prefixes saturating truncations, bulk memory and table instructions.
	OpPrefixMisc Opcode = 0xfc
	// OpPrefixSIMD prefixes the 128-bit SIMD instructions.
	OpPrefixSIMD Opcode = 0xfd
)

// Sub-opcodes of OpPrefixMisc that touch memory or tables in bulk.
const (
	MiscMemoryInit uint32 = 8
	MiscMemoryCopy uint32 = 10
	MiscMemoryFill uint32 = 11
	MiscTableInit  uint32 = 12
	MiscTableCopy  uint32 = 14
	MiscTableGrow  uint32 = 15
	MiscTableFill  uint32 = 17
)

// BlockType is the type of a block, loop or if: BlockEmpty, the negated byte of a
// single result's value type (see Result), or, when non-negative, a type index.
type BlockType int64

// BlockEmpty is the block type of a block with no parameters and no results.
const BlockEmpty BlockType = -0x40

// Result returns the value type of a block type with one result and no parameters.
func (t BlockType) Result() (ValType, bool) {
	if t < 0 && t != BlockEmpty {
		return ValType(0x80 + t), true
	}
	return 0, false
}

// TypeIndex returns the index of a block type given as a function type.
func (t BlockType) TypeIndex() (uint32, bool) { return uint32(t), t >= 0 }

// Instr is one decoded instruction. Which immediates are set depends on the opcode; the
// others are zero.
type Instr struct {
	Op  Opcode
	Sub uint32 // the second opcode of an instruction with a prefix byte
	// Offset and End delimit the instruction's bytes in the module, immediates included.
	Offset, End int
	// Imm is the offset of its immediates: after the opcode and any sub-opcode.
	Imm int
	// Depth is the number of blocks (block, loop, if) the instruction stands in. The
	// opcodes that open or close a block (block, loop, if, else, end) count as inside
	// it; the function body itself is not a block, so its final end is at depth 0.
	Depth int

	// Block is the type of block, loop and if.
	Block BlockType
	// Index is the first index immediate: the label of br and br_if, the default label
	// of br_table, the function of call and ref.func, the type of call_indirect, the
	// local, global, table, memory, data or element segment the instruction names.
	Index uint32
	// Index2 is the second index immediate: the table of call_indirect, the memory or
	// table of memory.init and table.init, the source of memory.copy and table.copy.
	Index2 uint32
	// Labels is the number of labels of br_table besides its default.
	Labels uint32
	// Types is the number of value types of a typed select.
	Types uint32
	// Align and MemOffset are the memory argument of loads and stores.
	Align     uint32
	MemOffset uint32
	// Lane is the lane index of SIMD lane instructions.
	Lane byte
	// Value is the constant of i32.const and i64.const (sign-extended) and the bits of
	// f32.const and f64.const. The 16 bytes of v128.const and i8x16.shuffle are the
	// last 16 of the instruction.
	Value uint64
}

// Body is one function body of the code section.
type Body struct {
	Func   uint32 // the function's index, imported functions first
	Offset int    // module offset of the body, after its size
	Size   int    // bytes of the body: local declarations and instructions
	Locals uint32 // locals the body declares, parameters not included
	code   Reader // its instructions
	m      *Module
}

// Bodies iterates over the function bodies of the code section, in order. Decode
// checked their sizes and local declarations; Body.Instructions decodes the rest.
func (m *Module) Bodies() iter.Seq[Body] {
	return func(yield func(Body) bool) {
		s := m.code
		s.count("function bodies", 2, maxFunctions) // checked by Decode
		for i := 0; i < m.codeCount; i++ {
			b, _ := m.body(&s, i) // checked by Decode
			if !yield(b) {
				return
			}
		}
	}
}

// body reads the size and local declarations of body i and leaves s after it.
func (m *Module) body(s *Reader, i int) (Body, error) {
	at := s.Pos
	size, err := s.U32()
	if err != nil {
		return Body{}, err
	}
	f := m.importedFuncs + uint32(i)
	if uint64(size) > uint64(s.Remaining()) {
		return Body{}, s.Fail(at, "body of function %d is %d bytes, more than the %d bytes left in the section", f, size, s.Remaining())
	}
	b := Body{Func: f, Offset: s.Pos, Size: int(size), m: m, code: Reader{B: s.B, Pos: s.Pos, End: s.Pos + int(size), Section: s.Section}}
	s.Pos = b.code.End
	decls, err := b.code.count("local declarations", 2, maxLocals)
	if err != nil {
		return Body{}, err
	}
	locals := uint64(0)
	for j := 0; j < decls; j++ {
		at := b.code.Pos
		c, err := b.code.U32()
		if err != nil {
			return Body{}, err
		}
		if locals += uint64(c); locals > maxLocals {
			return Body{}, b.code.unsupported(at, "function %d declares more than %d locals", f, maxLocals)
		}
		if _, err := b.code.ValType(); err != nil {
			return Body{}, err
		}
	}
	b.Locals = uint32(locals)
	return b, nil
}

// Instructions decodes the instructions of the body one by one, checking their
// encoding: every opcode is one of WebAssembly 2.0 (others are refused, as unsupported
// when a later proposal defines them), immediates are well-formed, block types name
// existing types, and blocks nest: the body ends with the end that closes it, and
// nothing follows. It does not type-check anything, nor check indices other than those
// of block types: the runtime validates those. An error names the function and ends
// the iteration. The *Instr it yields is the same each time, overwritten by the next
// instruction: copy it to keep it.
//
// It costs about ten nanoseconds per instruction and allocates one Instr per walk.
func (b Body) Instructions() iter.Seq2[*Instr, error] {
	return func(yield func(*Instr, error) bool) {
		r := b.code
		depth := 0
		in := new(Instr)
		fail := func(err error) {
			if e, ok := err.(*Error); ok {
				e.Reason = fmt.Sprintf("function %d: %s", b.Func, e.Reason)
			}
			yield(nil, err)
		}
		for r.Pos < r.End {
			if err := r.Instr(b.m.NumTypes(), in); err != nil {
				fail(err)
				return
			}
			in.Depth = depth
			switch in.Op {
			case OpBlock, OpLoop, OpIf:
				depth++
				in.Depth = depth
			case OpEnd:
				if depth == 0 && r.Pos != r.End {
					fail(r.Fail(r.Pos, "%d bytes after the end of the body", r.End-r.Pos))
					return
				}
				depth--
			}
			if !yield(in, nil) || depth < 0 {
				return
			}
		}
		fail(r.Fail(r.End, "the body ends inside %d blocks, without its final end", depth))
	}
}

// Labels iterates over the labels of in, a br_table that b's Instructions yielded:
// Labels of them, then the default.
func (b Body) Labels(in *Instr) iter.Seq[uint32] {
	return func(yield func(uint32) bool) {
		r := Reader{B: b.code.B, Pos: in.Offset + 1, End: in.End}
		n, _ := r.U32() // decoded by Instructions
		for range n + 1 {
			l, _ := r.U32()
			if !yield(l) {
				return
			}
		}
	}
}

// Instr decodes the instruction at r.Pos into in, leaving r after it: its opcode and
// immediates, checking their encoding as Body.Instructions describes, with block types
// checked against numTypes types. It leaves in.Depth zero: blocks are the caller's to
// follow. It fails with an *Error at the end of r or on an encoding
// Body.Instructions refuses; in is then partly written.
func (r *Reader) Instr(numTypes int, in *Instr) error {
	*in = Instr{} // cleared, not copied: this runs for every instruction
	in.Offset = r.Pos
	c, err := r.Byte()
	if err != nil {
		return err
	}
	in.Op = Opcode(c)
	in.Imm = r.Pos
	switch op := in.Op; {
	case op <= 0x01, op == OpElse, op == OpEnd, op == OpReturn, op == 0x1a, op == 0x1b, op == 0xd1,
		op >= 0x45 && op <= 0xc4:
		// unreachable, nop, else, end, return, drop, select, ref.is_null, numeric
	case op == OpBlock, op == OpLoop, op == OpIf:
		in.Block, err = r.blockType(numTypes)
	case op == OpBr, op == OpBrIf, op == OpCall, op == OpRefFunc, op >= 0x20 && op <= 0x26:
		// br, br_if, call, ref.func, local.*, global.*, table.get/set: one index
		in.Index, err = r.U32()
	case op == OpBrTable:
		in.Labels, in.Index, err = r.brTable()
	case op == OpCallIndirect:
		if in.Index, err = r.U32(); err == nil {
			in.Index2, err = r.U32()
		}
	case op == OpSelectTyped:
		in.Types, err = r.selectTypes()
	case op >= 0x28 && op <= 0x3e: // loads and stores
		in.Align, in.MemOffset, err = r.memarg()
	case op == OpMemorySize, op == OpMemoryGrow:
		in.Index, err = r.U32()
	case op == OpI32Const:
		var v int64
		v, err = r.Sleb(32)
		in.Value = uint64(v)
	case op == OpI64Const:
		var v int64
		v, err = r.Sleb(64)
		in.Value = uint64(v)
	case op == OpF32Const:
		in.Value, err = r.littleEndian(4)
	case op == OpF64Const:
		in.Value, err = r.littleEndian(8)
	case op == OpRefNull:
		_, err = r.refType()
	case op == OpPrefixMisc:
		err = r.miscInstr(in)
	case op == OpPrefixSIMD:
		err = r.simdInstr(in)
	default:
		err = r.unknownOpcode(in.Offset, op)
	}
	in.End = r.Pos
	return err
}

// unknownOpcode refuses an opcode outside WebAssembly 2.0, as unsupported when a later
// proposal gives it a meaning.
func (r *Reader) unknownOpcode(at int, op Opcode) error {
	var proposal string
	switch {
	case op >= 0x06 && op <= 0x0a, op == 0x18, op == 0x19, op == 0x1f:
		proposal = "exception handling"
	case op == 0x12, op == 0x13:
		proposal = "tail calls"
	case op == 0x14, op == 0x15, op >= 0xd3 && op <= 0xd6:
		proposal = "typed function references"
	case op == 0xfb:
		proposal = "GC"
	case op == 0xfe:
		proposal = "threads"
	default:
		return r.Fail(at, "invalid opcode %#x", byte(op))
	}
	return r.unsupported(at, "opcode %#x (%s proposal) is not supported", byte(op), proposal)
}

// blockType reads the type of a block, loop or if: a signed 33-bit number.
func (r *Reader) blockType(numTypes int) (BlockType, error) {
	at := r.Pos
	v, err := r.Sleb(33)
	if err != nil {
		return 0, err
	}
	t := BlockType(v)
	if i, ok := t.TypeIndex(); ok {
		if uint64(i) >= uint64(numTypes) {
			return 0, r.Fail(at, "block type %d does not exist (the module has %d types)", i, numTypes)
		}
		return t, nil
	}
	if t == BlockEmpty {
		return t, nil
	}
	if vt, ok := t.Result(); ok {
		switch vt {
		case I32, I64, F32, F64, V128, FuncRef, ExternRef:
			return t, nil
		case 0x69, 0x63, 0x64:
			return 0, r.unsupported(at, "block type %#x (exception handling or GC proposal) is not supported", byte(vt))
		}
	}
	return 0, r.Fail(at, "invalid block type %d", v)
}

// brTable reads the labels of br_table and returns their number and the default.
func (r *Reader) brTable() (labels, def uint32, err error) {
	at := r.Pos
	if labels, err = r.U32(); err != nil {
		return 0, 0, err
	}
	// Each label takes a byte at least: a count the body cannot hold is refused before
	// reading, so that a lying count costs nothing.
	if uint64(labels) >= uint64(r.Remaining()) {
		return 0, 0, r.Fail(at, "br_table of %d labels does not fit in the %d bytes left in the body", labels, r.Remaining())
	}
	for range labels {
		if _, err = r.U32(); err != nil {
			return 0, 0, err
		}
	}
	def, err = r.U32()
	return labels, def, err
}

func (r *Reader) selectTypes() (uint32, error) {
	n, err := r.count("select types", 1, maxResults)
	for i := 0; i < n && err == nil; i++ {
		_, err = r.ValType()
	}
	return uint32(n), err
}

// memarg reads the alignment and offset of a memory instruction.
func (r *Reader) memarg() (align, offset uint32, err error) {
	at := r.Pos
	if align, err = r.U32(); err != nil {
		return 0, 0, err
	}
	if align >= 64 { // bit 6 announces a memory index
		return 0, 0, r.unsupported(at, "memory index in a memory instruction (multi-memory proposal) is not supported")
	}
	offset, err = r.U32()
	return align, offset, err
}

// littleEndian reads an n-byte little-endian number.
func (r *Reader) littleEndian(n int) (uint64, error) {
	at := r.Pos
	if err := r.Skip(n); err != nil {
		return 0, err
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(r.B[at+i])
	}
	return v, nil
}

// miscInstr reads the sub-opcode and immediates of a 0xfc instruction.
func (r *Reader) miscInstr(in *Instr) (err error) {
	if in.Sub, err = r.U32(); err != nil {
		return err
	}
	in.Imm = r.Pos
	switch sub := in.Sub; {
	case sub <= 7: // saturating truncations
	case sub == 9, sub == MiscMemoryFill, sub == 13, sub >= MiscTableGrow && sub <= MiscTableFill:
		// data.drop, memory.fill, elem.drop, table.grow/size/fill: one index
		in.Index, err = r.U32()
	case sub == MiscMemoryInit, sub == MiscMemoryCopy, sub == MiscTableInit, sub == MiscTableCopy:
		// memory.init, memory.copy, table.init, table.copy: two indices
		if in.Index, err = r.U32(); err == nil {
			in.Index2, err = r.U32()
		}
	default:
		return r.Fail(in.Offset, "invalid opcode 0xfc %d", sub)
	}
	return err
}

// simdInstr reads the sub-opcode and immediates of a 0xfd instruction.
//
// The sub-opcode is a LEB128 number, which the spec lets an encoder pad with bytes it
// does not need; wazero (v1.12.0) reads it as one byte instead. A padded sub-opcode is
// therefore refused as unsupported: 0xfd 0x8c 0x00 is v128.const to this decoder and
// i8x16.narrow_i16x8_s, unreachable and 16 bytes of code to wazero, which would run
// instructions that no limit here counted. In its shortest form a sub-opcode under 128
// is one byte, which both read alike; one of 128 to 255 is that byte and 0x01, which
// wazero reads as the same instruction followed by a nop.
func (r *Reader) simdInstr(in *Instr) (err error) {
	start := r.Pos
	if in.Sub, err = r.U32(); err != nil {
		return err
	}
	if size := r.Pos - start; size != lebSize(in.Sub) {
		return r.unsupported(in.Offset, "opcode 0xfd %d is encoded in %d bytes, more than it needs: pad no SIMD opcode", in.Sub, size)
	}
	in.Imm = r.Pos
	switch sub := in.Sub; {
	case sub <= 11, sub == 92, sub == 93: // v128 loads and stores
		in.Align, in.MemOffset, err = r.memarg()
	case sub == 12, sub == 13: // v128.const, i8x16.shuffle
		err = r.Skip(16)
	case sub >= 21 && sub <= 34: // extract_lane, replace_lane
		in.Lane, err = r.Byte()
	case sub >= 84 && sub <= 91: // load/store lane
		if in.Align, in.MemOffset, err = r.memarg(); err == nil {
			in.Lane, err = r.Byte()
		}
	case sub <= 255 && !simdReserved(sub):
	case sub >= 0x100 && sub <= 0x113:
		return r.unsupported(in.Offset, "opcode 0xfd %d (relaxed SIMD proposal) is not supported", sub)
	default:
		return r.Fail(in.Offset, "invalid opcode 0xfd %d", sub)
	}
	return err
}

// lebSize is the length of v's shortest LEB128 encoding.
func lebSize(v uint32) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// simdReserved reports whether sub is one of the gaps in the 0xfd opcodes of
// WebAssembly 2.0 below 256.
func simdReserved(sub uint32) bool {
	switch sub {
	case 154, 162, 165, 166, 175, 176, 178, 179, 180, 187, 194, 197, 198, 207, 208, 210, 211, 212, 226, 238:
		return true
	}
	return false
}

// String returns the instruction's opcode in hex, with its sub-opcode if it has one.
func (in Instr) String() string {
	if in.Op == OpPrefixMisc || in.Op == OpPrefixSIMD {
		return fmt.Sprintf("%#x %d", byte(in.Op), in.Sub)
	}
	return fmt.Sprintf("%#x", byte(in.Op))
}
