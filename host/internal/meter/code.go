package meter

// codeSection instruments every function body and appends the bodies of the added
// functions.
func (in *instrumenter) codeSection(r *reader) error {
	start := r.pos
	n, err := r.u32()
	if err != nil {
		return err
	}
	if int64(n) != int64(len(in.funcTypes)) {
		return r.fail(start, "code section has %d bodies for %d functions", n, len(in.funcTypes))
	}
	in.out = appendU32(in.out, n+uint32(len(in.helpers.types)))
	for i := range n {
		at := r.pos
		size, err := r.u32()
		if err != nil {
			return err
		}
		if int64(size) > int64(r.remaining()) {
			return r.fail(at, "function body of %d bytes overruns its section", size)
		}
		body := reader{b: r.b, pos: r.pos, end: r.pos + int(size)}
		r.pos = body.end
		t := in.funcTypes[i]
		if int64(t) >= int64(len(in.types)) {
			return r.fail(at, "function %d has type %d, out of range", i, t)
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
func (in *instrumenter) body(r *reader, t funcShape) error {
	start := r.pos
	groups, err := r.u32()
	if err != nil {
		return err
	}
	locals := uint64(t.params)
	for range groups {
		n, err := r.u32()
		if err != nil {
			return err
		}
		if err := r.skip(1); err != nil {
			return err
		}
		locals += uint64(n)
	}
	in.out = append(in.out, r.b[start:r.pos]...)

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
func (in *instrumenter) constExpr(r *reader) error {
	copied := r.pos
	for r.pos < r.end {
		op := r.b[r.pos]
		r.pos++
		switch op {
		case opRefFunc:
			in.out = append(in.out, r.b[copied:r.pos]...)
			if err := in.funcIndex(r); err != nil {
				return err
			}
			copied = r.pos
		case opEnd:
			in.out = append(in.out, r.b[copied:r.pos]...)
			return nil
		default:
			if err := r.immediates(op); err != nil {
				return err
			}
		}
	}
	return r.fail(r.pos, "constant expression has no end")
}

// instructions copies the instructions of a function body after its locals, up to and
// including its final end, shifting function indices, metering loops, taking the
// frame's weight off the depth before every return, rewriting bulk instructions, and
// following the operand stack's height. Runs of instructions it leaves alone are
// copied in one append.
func (in *instrumenter) instructions(r *reader) error {
	copied := r.pos
	// flush copies what is pending before the instruction at.
	flush := func(at int) { in.out = append(in.out, r.b[copied:at]...) }
	s := &in.stack
	for r.pos < r.end {
		at := r.pos
		op := r.b[r.pos]
		r.pos++
		in.regions[len(in.regions)-1].instructions++
		if op == opTableSet {
			in.changesTables = true
		}
		switch op {
		case opBlock, opIf, opLoop:
			params, results, err := in.blockType(r)
			if err != nil {
				return err
			}
			if op == opIf {
				s.apply(1, 0)
			}
			s.open(op, params, results)
			if op == opLoop {
				flush(r.pos)
				in.regions = append(in.regions, region{})
				in.meteringPoint()
				copied = r.pos
			}
		case opElse:
			s.height = s.top().entry + s.top().params
		case opEnd:
			f := *s.top()
			if len(s.frames) == 1 { // the body's end: it closes the block around the body
				flush(r.pos)
				if r.pos != r.end {
					return r.fail(r.pos, "function body has %d bytes after its end", r.remaining())
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
		case opUnreachable, opReturn, opBr:
			if op == opReturn {
				flush(at)
				in.adjustDepth(opI32Sub)
				copied = at
			}
			if err := r.immediates(op); err != nil {
				return err
			}
			s.unreachable()
		case opBrIf:
			if _, err := r.u32(); err != nil {
				return err
			}
			s.apply(1, 0)
		case opBrTable:
			if err := r.immediates(op); err != nil {
				return err
			}
			s.unreachable()
		case opCall:
			flush(r.pos)
			f, err := r.u32()
			if err != nil {
				return err
			}
			in.out = appendU32(in.out, in.shiftFunc(f))
			copied = r.pos
			params, results := in.funcArity(f)
			s.call(params, results, 0)
		case opCallIndirect:
			t, err := r.u32()
			if err != nil {
				return err
			}
			if _, err := r.u32(); err != nil {
				return err
			}
			params, results := in.arity(t)
			s.call(params, results, 1)
		case opRefFunc:
			flush(r.pos)
			if err := in.funcIndex(r); err != nil {
				return err
			}
			copied = r.pos
			s.apply(0, 1)
		case opMemoryGrow:
			if r.pos < r.end && r.b[r.pos] == 0 && in.helpers.memoryGrow != 0 {
				r.pos++
				flush(at)
				in.call(in.helpers.memoryGrow)
				copied = r.pos
			} else if err := r.immediates(op); err != nil {
				return err
			}
		case opMisc:
			rewrite, err := in.misc(r, at, flush)
			switch {
			case err != nil:
				return err
			case rewrite == replaced:
				copied = r.pos
			case rewrite == prefixed:
				copied = at // the instruction follows the call just written
			}
			s.apply(effect(op, r.b[at+1:r.pos]))
		default:
			if err := r.immediates(op); err != nil {
				return err
			}
			s.apply(effect(op, r.b[at+1:r.pos]))
		}
		if in.regions[len(in.regions)-1].instructions >= MaxStraightLine {
			// A long stretch of code without loops or calls gets metering points
			// of its own: a function of 100,000 divisions would otherwise run
			// hundreds of microseconds between two.
			flush(r.pos)
			in.patchCost(in.regions[len(in.regions)-1])
			in.regions[len(in.regions)-1] = region{}
			in.meteringPoint()
			copied = r.pos
		}
	}
	return r.fail(r.pos, "function body has no end")
}

// A rewrite is what misc did to an instruction.
type rewrite int

const (
	unchanged rewrite = iota
	replaced          // by a call
	prefixed          // with a call before it
)

// misc handles a 0xfc instruction starting at at: memory.fill, memory.copy and
// table.grow are replaced by calls; memory.init and the table instructions that touch
// many elements get a charging call before them; the others are left alone. When it
// writes a call it first flushes what is pending before at. Instructions whose
// immediates are not those of WebAssembly 2.0 (a memory index other than the single
// byte 0, a table the module does not have) are left for wazero to refuse.
func (in *instrumenter) misc(r *reader, at int, flush func(int)) (rewrite, error) {
	sub, err := r.u32()
	if err != nil {
		return unchanged, err
	}
	switch sub {
	case miscDataDrop, miscTableInit, miscElemDrop, miscTableCopy, miscTableGrow, miscTableFill:
		in.changesTables = true
	}
	after := r.pos
	reserved := func(n int) bool { // the reserved memory index bytes, each exactly 0
		for i := range n {
			if after+i >= r.end || r.b[after+i] != 0 {
				return false
			}
		}
		return true
	}
	switch {
	case sub == miscMemoryFill && in.helpers.fill != 0 && reserved(1):
		r.pos = after + 1
		flush(at)
		in.call(in.helpers.fill)
		return replaced, nil
	case sub == miscMemoryCopy && in.helpers.copy != 0 && reserved(2):
		r.pos = after + 2
		flush(at)
		in.call(in.helpers.copy)
		return replaced, nil
	case sub == miscTableGrow:
		t, err := r.u32()
		if err != nil || int64(t) >= int64(len(in.tables)) {
			return unchanged, err
		}
		flush(at)
		in.call(in.helpers.tableGrow[t])
		return replaced, nil
	}
	if err := r.miscImmediates(sub, at); err != nil {
		return unchanged, err
	}
	switch sub {
	case miscMemoryInit:
		flush(at)
		in.call(in.helpers.chargeBytes)
		return prefixed, nil
	case miscTableFill, miscTableCopy, miscTableInit:
		flush(at)
		in.call(in.helpers.chargeElems)
		return prefixed, nil
	}
	return unchanged, nil
}

// call writes a call of the function with index fn.
func (in *instrumenter) call(fn uint32) { in.out = appendU32(append(in.out, opCall), fn) }

// funcIndex copies a function index, shifted past the added imports.
func (in *instrumenter) funcIndex(r *reader) error {
	i, err := r.u32()
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
func (in *instrumenter) copyU32(r *reader) error {
	start := r.pos
	_, err := r.u32()
	in.out = append(in.out, r.b[start:r.pos]...)
	return err
}

// names copies the subsections of the "name" custom section, shifting the function
// indices of function, local and label names (subsections 1, 2 and 3).
func (in *instrumenter) names(r *reader) error {
	name := func(r *reader) error {
		start := r.pos
		_, err := r.name()
		in.out = append(in.out, r.b[start:r.pos]...)
		return err
	}
	for r.pos < r.end {
		id, sub, err := r.part("name subsection", "its section")
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
			in.out = append(in.out, sub.b[sub.pos:sub.end]...)
			sub.pos = sub.end
		}
		if err == nil && sub.pos != sub.end {
			err = sub.fail(sub.pos, "name subsection %d has trailing bytes", id)
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

// immediates skips the immediates of the instruction whose first byte op was just
// read. Every instruction of WebAssembly 2.0 is known; any other is an error.
func (r *reader) immediates(op byte) error {
	at := r.pos - 1
	var err error
	switch {
	case op <= 0x01, op == 0x05, op == 0x0b, op == 0x0f, op == 0x1a, op == 0x1b, op == 0xd1,
		op >= 0x45 && op <= 0xc4: // unreachable, nop, else, end, return, drop, select, ref.is_null, numeric
	case op == 0x02, op == 0x04: // block, if: a block type, an s33
		err = r.skipSigned(33)
	case op == 0x0c, op == 0x0d, op >= 0x20 && op <= 0x26, op == 0x3f, op == 0x40:
		// br, br_if, local.*, global.*, table.get/set, memory.size/grow: one index
		_, err = r.u32()
	case op == 0x0e: // br_table: a vector of labels and a default label
		var n uint32
		if n, err = r.u32(); err == nil {
			err = r.skipU32s(uint64(n) + 1)
		}
	case op == 0x11: // call_indirect: type and table
		err = r.skipU32s(2)
	case op == 0x1c: // select t*
		_, err = r.skipValTypes()
	case op >= 0x28 && op <= 0x3e: // loads and stores
		err = r.memarg()
	case op == 0x41: // i32.const
		err = r.skipSigned(32)
	case op == 0x42: // i64.const
		err = r.skipSigned(64)
	case op == 0x43: // f32.const
		err = r.skip(4)
	case op == 0x44: // f64.const
		err = r.skip(8)
	case op == 0xd0: // ref.null
		err = r.skip(1)
	case op == 0xfc:
		var sub uint32
		if sub, err = r.u32(); err == nil {
			err = r.miscImmediates(sub, at)
		}
	case op == 0xfd:
		err = r.simdImmediates(at)
	default:
		return r.fail(at, "opcode %#x is not part of WebAssembly 2.0", op)
	}
	return err
}

// miscImmediates skips the immediates of the 0xfc instruction sub that starts at at.
func (r *reader) miscImmediates(sub uint32, at int) error {
	switch {
	case sub <= 7: // saturating truncations
		return nil
	case sub == 9, sub == 11, sub == 13, sub >= 15 && sub <= 17:
		// data.drop, memory.fill, elem.drop, table.grow/size/fill: one index
		return r.skipU32s(1)
	case sub == 8, sub == 10, sub == 12, sub == 14:
		// memory.init, memory.copy, table.init, table.copy: two indices
		return r.skipU32s(2)
	}
	return r.fail(at, "opcode 0xfc %d is not part of WebAssembly 2.0", sub)
}

// simdImmediates skips the immediates of a 0xfd instruction.
func (r *reader) simdImmediates(at int) error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 11, sub == 92, sub == 93: // v128 loads and stores
		return r.memarg()
	case sub == 12, sub == 13: // v128.const, i8x16.shuffle
		return r.skip(16)
	case sub >= 21 && sub <= 34: // extract_lane, replace_lane
		return r.skip(1)
	case sub >= 84 && sub <= 91: // load/store lane
		if err := r.memarg(); err != nil {
			return err
		}
		return r.skip(1)
	case sub <= 255 && !simdReserved(sub):
		return nil
	}
	return r.fail(at, "opcode 0xfd %d is not part of WebAssembly 2.0", sub)
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
