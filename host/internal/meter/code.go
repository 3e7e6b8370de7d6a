package meter

import "github.com/cocoonhost/cocoon/internal/wasmbin"

// codeSection instruments every function body and appends the bodies of the added
// functions.
func (in *instrumenter) codeSection(r *wasmbin.Reader) error {
	start := r.Pos
	n, err := r.U32()
	if err != nil {
		return err
	}
	if int64(n) != int64(len(in.funcTypes)) {
		return r.Fail(start, "code section has %d bodies for %d functions", n, len(in.funcTypes))
	}
	in.out = appendU32(in.out, n+uint32(len(in.helpers.types)))
	for i := range n {
		at := r.Pos
		size, err := r.U32()
		if err != nil {
			return err
		}
		if int64(size) > int64(r.Remaining()) {
			return r.Fail(at, "function body of %d bytes overruns its section", size)
		}
		body := wasmbin.Reader{B: r.B, Pos: r.Pos, End: r.Pos + int(size), Section: r.Section}
		r.Pos = body.End
		t := in.funcTypes[i]
		if int64(t) >= int64(len(in.types)) {
			return r.Fail(at, "function %d has type %d, out of range", i, t)
		}
		sized := in.beginSized()
		if err := in.body(&body, in.types[t]); err != nil {
			return err
		}
		in.endSized(sized)
	}
	for _, emit := range in.helpers.bodies {
		sized := in.beginSized()
		emit(in)
		in.endSized(sized)
	}
	return nil
}

// body copies a function body of type t, with its call depth accounting, its metering
// points and its bulk instructions rewritten (see Instrument).
func (in *instrumenter) body(r *wasmbin.Reader, t funcShape) error {
	start := r.Pos
	groups, err := r.U32()
	if err != nil {
		return err
	}
	locals := uint64(t.params)
	for range groups {
		n, err := r.U32()
		if err != nil {
			return err
		}
		if err := r.Skip(1); err != nil {
			return err
		}
		locals += uint64(n)
	}
	in.out = append(in.out, r.B[start:r.Pos]...)

	// The frame's weight is known at the body's end: it is patched in then.
	in.weightAt = in.weightAt[:0]
	in.adjustDepth(opI32Add)
	in.out = appendU32(append(in.out, opGlobalGet), in.depthGlobal())
	in.out = appendS64(append(in.out, opI32Const), int64(in.maxDepth))
	in.out = append(in.out, opI32GtU, opIf, blockEmpty, opCall)
	in.out = append(appendU32(in.out, in.importedFuncs+importOverflow), opEnd)

	in.regions = append(in.regions[:0], region{})
	in.meteringPoint()
	// Branches to the body's label now leave this block, so that the depth is taken
	// off on their way out too.
	in.out = append(append(in.out, opBlock), t.blockType...)
	in.stack.reset(int64(t.results))
	if err := in.instructions(r); err != nil {
		return err
	}
	in.adjustDepth(opI32Sub)
	in.out = append(in.out, opEnd)
	in.patchCost(in.regions[0])

	// Clamped so that a function heavier than the whole depth always overflows, and
	// the depth stays far from 2^31.
	values := locals + uint64(in.stack.max) + uint64(in.stack.callArgs)
	weight := min(1+values/uint64(in.callFrameLocals), uint64(in.maxDepth)+1)
	for _, at := range in.weightAt {
		patchFixed(in.out[at:at+5], weight)
	}
	return nil
}

// adjustDepth adds the frame's weight to the depth global (op i32.add) or takes it off
// (i32.sub).
func (in *instrumenter) adjustDepth(op byte) {
	in.out = appendU32(append(in.out, opGlobalGet), in.depthGlobal())
	in.out = append(in.out, opI32Const)
	in.weightAt = append(in.weightAt, len(in.out))
	in.out = append(in.out, fixedPlaceholder...)
	in.out = appendU32(append(in.out, op, opGlobalSet), in.depthGlobal())
}

// fixedPlaceholder is where a number patched later goes: five LEB128 bytes, which
// hold any value below 2^34 as an i32 or i64 constant.
var fixedPlaceholder = []byte{0x80, 0x80, 0x80, 0x80, 0}

// patchFixed writes v (below 2^34) into a fixedPlaceholder b.
func patchFixed(b []byte, v uint64) {
	for i := range 4 {
		b[i] = byte(v>>(7*i))&0x7f | 0x80
	}
	b[4] = byte(v>>28) & 0x3f
}

// meteringPoint writes a metering point whose cost is patched when its region ends,
// and makes the last region of in.regions start here.
func (in *instrumenter) meteringPoint() {
	in.out = appendU32(append(in.out, opGlobalGet), in.fuelGlobal)
	in.out = append(in.out, opI64Const)
	in.regions[len(in.regions)-1].costAt = len(in.out)
	in.out = append(in.out, fixedPlaceholder...)
	in.out = appendU32(append(in.out, opI64Sub, opGlobalSet), in.fuelGlobal)
	in.checkFuel()
}

// checkFuel writes the test that calls tick when the fuel is zero or below.
func (in *instrumenter) checkFuel() {
	in.out = appendU32(append(in.out, opGlobalGet), in.fuelGlobal)
	in.out = append(in.out, opI64Const, 0, opI64LeS, opIf, blockEmpty, opCall)
	in.out = append(appendU32(in.out, in.importedFuncs+importTick), opEnd)
}

// patchCost writes the cost of a region that ended: one point for the entry or
// iteration, and one per InstructionsPerPoint instructions of its straight-line code.
// A body of at most 2^32 bytes costs less than 2^34.
func (in *instrumenter) patchCost(reg region) {
	patchFixed(in.out[reg.costAt:reg.costAt+5], 1+reg.instructions/InstructionsPerPoint)
}

// constExpr copies a constant expression up to its end, shifting the index of
// ref.func. Constant expressions have no blocks and are not metered.
func (in *instrumenter) constExpr(r *wasmbin.Reader) error {
	copied := r.Pos
	ins := &in.instr
	for {
		if err := r.Instr(len(in.types), ins); err != nil {
			return err
		}
		switch ins.Op {
		case wasmbin.OpRefFunc:
			in.out = append(in.out, r.B[copied:ins.Imm]...)
			in.out = appendU32(in.out, in.shiftFunc(ins.Index))
			copied = r.Pos
		case wasmbin.OpEnd:
			in.out = append(in.out, r.B[copied:r.Pos]...)
			return nil
		}
	}
}

// instructions copies the instructions of a function body after its locals, up to and
// including its final end, shifting function indices, metering loops, taking the
// frame's weight off the depth before every return, rewriting bulk instructions, and
// following the operand stack's height. Runs of instructions it leaves alone are
// copied in one append. Instructions are decoded by wasmbin, exactly as abi.Validate
// decodes them.
func (in *instrumenter) instructions(r *wasmbin.Reader) error {
	copied := r.Pos
	// flush copies what is pending before the instruction at.
	flush := func(at int) { in.out = append(in.out, r.B[copied:at]...) }
	s := &in.stack
	ins := &in.instr
	for r.Pos < r.End {
		if err := r.Instr(len(in.types), ins); err != nil {
			return err
		}
		at, op := ins.Offset, byte(ins.Op)
		in.regions[len(in.regions)-1].instructions++
		if op == opTableSet {
			in.changesTables = true
		}
		switch op {
		case opBlock, opIf, opLoop:
			params, results := in.blockType(ins.Block)
			if op == opIf {
				s.apply(1, 0)
			}
			s.open(op, params, results)
			if op == opLoop {
				flush(r.Pos)
				in.regions = append(in.regions, region{})
				in.meteringPoint()
				copied = r.Pos
			}
		case opElse:
			s.height = s.top().entry + s.top().params
		case opEnd:
			f := *s.top()
			if len(s.frames) == 1 { // the body's end: it closes the block around the body
				flush(r.Pos)
				if r.Pos != r.End {
					return r.Fail(r.Pos, "function body has %d bytes after its end", r.Remaining())
				}
				return nil
			}
			if f.op == opLoop {
				in.patchCost(in.regions[len(in.regions)-1])
				in.regions = in.regions[:len(in.regions)-1]
			}
			s.frames = s.frames[:len(s.frames)-1]
			s.height = f.entry
			s.apply(0, f.results)
		case opUnreachable, opReturn, opBr, opBrTable:
			if op == opReturn {
				flush(at)
				in.adjustDepth(opI32Sub)
				copied = at
			}
			s.unreachable()
		case opBrIf:
			s.apply(1, 0)
		case opCall:
			flush(ins.Imm)
			in.out = appendU32(in.out, in.shiftFunc(ins.Index))
			copied = r.Pos
			params, results := in.funcArity(ins.Index)
			s.call(params, results, 0)
		case opCallIndirect:
			params, results := in.arity(ins.Index)
			s.call(params, results, 1)
		case opRefFunc:
			flush(ins.Imm)
			in.out = appendU32(in.out, in.shiftFunc(ins.Index))
			copied = r.Pos
			s.apply(0, 1)
		case opMemoryGrow:
			if zeroImmediates(r.B, ins) && in.helpers.memoryGrow != 0 {
				flush(at)
				in.call(in.helpers.memoryGrow)
				copied = r.Pos
			}
		case opMisc:
			switch in.misc(r.B, ins, flush) {
			case replaced:
				copied = r.Pos
			case prefixed:
				copied = at // the instruction follows the call just written
			}
			s.apply(effect(ins))
		default:
			s.apply(effect(ins))
		}
		if in.regions[len(in.regions)-1].instructions >= MaxStraightLine {
			// A long stretch of code without loops or calls gets metering points
			// of its own: a function of 100,000 divisions would otherwise run
			// hundreds of microseconds between two.
			flush(r.Pos)
			in.patchCost(in.regions[len(in.regions)-1])
			in.regions[len(in.regions)-1] = region{}
			in.meteringPoint()
			copied = r.Pos
		}
	}
	return r.Fail(r.Pos, "function body has no end")
}

// A rewrite is what misc did to an instruction.
type rewrite int

const (
	unchanged rewrite = iota
	replaced          // by a call
	prefixed          // with a call before it
)

// misc handles a 0xfc instruction ins: memory.fill, memory.copy and table.grow are
// replaced by calls; memory.init and the table instructions that touch many elements
// get a charging call before them; the others are left alone. When it writes a call it
// first flushes what is pending before the instruction. Instructions whose immediates
// are not those of WebAssembly 2.0 (a memory index other than the single byte 0, a
// table the module does not have) are left for wazero to refuse.
func (in *instrumenter) misc(b []byte, ins *wasmbin.Instr, flush func(int)) rewrite {
	switch ins.Sub {
	case miscDataDrop, miscTableInit, miscElemDrop, miscTableCopy, miscTableGrow, miscTableFill:
		in.changesTables = true
	}
	var fn uint32 // the function that replaces or precedes the instruction
	how := prefixed
	switch ins.Sub {
	case miscMemoryFill, miscMemoryCopy:
		if fn, how = in.helpers.fill, replaced; ins.Sub == miscMemoryCopy {
			fn = in.helpers.copy
		}
		if !zeroImmediates(b, ins) {
			fn = 0
		}
	case miscTableGrow:
		if int64(ins.Index) < int64(len(in.tables)) {
			fn, how = in.helpers.tableGrow[ins.Index], replaced
		}
	case miscMemoryInit:
		fn = in.helpers.chargeBytes
	case miscTableFill, miscTableCopy, miscTableInit:
		fn = in.helpers.chargeElems
	}
	if fn == 0 {
		return unchanged
	}
	flush(ins.Offset)
	in.call(fn)
	return how
}

// zeroImmediates reports whether the immediates of ins, in b, are all the byte 0: the
// reserved memory indices of memory.grow, memory.fill and memory.copy in WebAssembly
// 2.0, each the single byte 0.
func zeroImmediates(b []byte, ins *wasmbin.Instr) bool {
	for _, c := range b[ins.Imm:ins.End] {
		if c != 0 {
			return false
		}
	}
	return true
}

// call writes a call of the function with index fn.
func (in *instrumenter) call(fn uint32) { in.out = appendU32(append(in.out, opCall), fn) }

// funcIndex copies a function index, shifted past the added imports.
func (in *instrumenter) funcIndex(r *wasmbin.Reader) error {
	i, err := r.U32()
	if err != nil {
		return err
	}
	in.out = appendU32(in.out, in.shiftFunc(i))
	return nil
}

// shiftFunc returns the index function i of the module as uploaded has in the
// instrumented module. An index too large to shift names no function: wazero refuses
// it either way, as the maximum index does.
func (in *instrumenter) shiftFunc(i uint32) uint32 {
	if i >= in.importedFuncs && uint64(i)+addedImports <= 1<<32-1 {
		return i + addedImports
	}
	return i
}

// copyU32 copies a u32 as it is encoded.
func (in *instrumenter) copyU32(r *wasmbin.Reader) error {
	start := r.Pos
	_, err := r.U32()
	in.out = append(in.out, r.B[start:r.Pos]...)
	return err
}

// names copies the subsections of the "name" custom section, shifting the function
// indices of function, local and label names (subsections 1, 2 and 3).
func (in *instrumenter) names(r *wasmbin.Reader) error {
	name := func(r *wasmbin.Reader) error {
		start := r.Pos
		_, err := r.Name("name")
		in.out = append(in.out, r.B[start:r.Pos]...)
		return err
	}
	for r.Pos < r.End {
		id, sub, err := r.Part(nil)
		if err != nil {
			return err
		}
		in.out = append(in.out, id)
		at := in.beginSized()
		switch id {
		case 1: // function names: a name map
			_, err = in.vector(&sub, 0, func() error {
				if err := in.funcIndex(&sub); err != nil {
					return err
				}
				return name(&sub)
			})
		case 2, 3: // local and label names: name maps by function
			_, err = in.vector(&sub, 0, func() error {
				if err := in.funcIndex(&sub); err != nil {
					return err
				}
				_, err := in.vector(&sub, 0, func() error {
					if err := in.copyU32(&sub); err != nil {
						return err
					}
					return name(&sub)
				})
				return err
			})
		default: // names of types, tables, memories, globals, ...: no function index
			in.out = append(in.out, sub.B[sub.Pos:sub.End]...)
			sub.Pos = sub.End
		}
		if err == nil && sub.Pos != sub.End {
			err = sub.Fail(sub.Pos, "name subsection %d has trailing bytes", id)
		}
		if err != nil {
			return err
		}
		in.endSized(at)
	}
	return nil
}

// Opcodes and immediates the instrumenter writes or looks for.
const (
	opUnreachable   = 0x00
	opBlock         = 0x02
	opLoop          = 0x03
	opIf            = 0x04
	opElse          = 0x05
	opEnd           = 0x0b
	opBr            = 0x0c
	opBrIf          = 0x0d
	opBrTable       = 0x0e
	opReturn        = 0x0f
	opCall          = 0x10
	opCallIndirect  = 0x11
	opSelect        = 0x1b
	opLocalGet      = 0x20
	opLocalSet      = 0x21
	opLocalTee      = 0x22
	opGlobalGet     = 0x23
	opGlobalSet     = 0x24
	opMemorySize    = 0x3f
	opTableSet      = 0x26
	opMemoryGrow    = 0x40
	opI32Const      = 0x41
	opI64Const      = 0x42
	opI32Eqz        = 0x45
	opI32Eq         = 0x46
	opI32LtU        = 0x49
	opI32GtU        = 0x4b
	opI32LeU        = 0x4d
	opI64GtU        = 0x56
	opI64LeS        = 0x57
	opI32Add        = 0x6a
	opI32Sub        = 0x6b
	opI32Or         = 0x72
	opI64Add        = 0x7c
	opI64Sub        = 0x7d
	opI64Shl        = 0x86
	opI64ShrU       = 0x88
	opI64ExtendI32U = 0xad
	opRefFunc       = 0xd2
	opMisc          = 0xfc
	blockEmpty      = 0x40
	valI32          = 0x7f
	valI64          = 0x7e
	refFunc         = 0x70
	refExtern       = 0x6f
)

// Sub-opcodes of 0xfc the instrumenter rewrites.
const (
	miscMemoryInit = 8
	miscDataDrop   = 9
	miscMemoryCopy = 10
	miscMemoryFill = 11
	miscTableInit  = 12
	miscElemDrop   = 13
	miscTableCopy  = 14
	miscTableGrow  = 15
	miscTableSize  = 16
	miscTableFill  = 17
)
