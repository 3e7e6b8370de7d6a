package meter

// codeSection instruments every function body.
//
// The metering sequence decrements before it tests, so a tick runs exactly every
// quantum points once the host refills the fuel to quantum, and tests with i64.le_s
// rather than i64.eqz so that fuel the host sets to 0 or below means "tick at the next
// point" instead of wrapping around. wazero compiles it to a load, a subtract, a store,
// a load, a compare and a branch not taken: about 0.2 ns per loop iteration.
func (in *instrumenter) codeSection(r *reader) error {
	// global.get $fuel; i64.const 1; i64.sub; global.set $fuel
	in.meter = appendU32(append(in.meter, opGlobalGet), in.fuelGlobal)
	in.meter = append(in.meter, opI64Const, 1, opI64Sub, opGlobalSet)
	in.meter = appendU32(in.meter, in.fuelGlobal)
	// global.get $fuel; i64.const 0; i64.le_s; if; call $tick; end
	in.meter = appendU32(append(in.meter, opGlobalGet), in.fuelGlobal)
	in.meter = append(in.meter, opI64Const, 0, opI64LeS, opIf, blockEmpty, opCall)
	in.meter = append(appendU32(in.meter, in.importedFuncs), opEnd)

	_, err := in.vector(r, 0, func() error {
		start := r.pos
		size, err := r.u32()
		if err != nil {
			return err
		}
		if int64(size) > int64(r.remaining()) {
			return r.fail(start, "function body of %d bytes overruns its section", size)
		}
		body := reader{b: r.b, pos: r.pos, end: r.pos + int(size)}
		r.pos = body.end
		at := in.beginSized()
		if err := in.body(&body); err != nil {
			return err
		}
		in.endSized(at)
		return nil
	})
	return err
}

// body copies a function body, metering its entry and its loops.
func (in *instrumenter) body(r *reader) error {
	start := r.pos
	n, err := r.u32()
	if err != nil {
		return err
	}
	for range n {
		if _, err := r.u32(); err != nil {
			return err
		}
		if err := r.skip(1); err != nil {
			return err
		}
	}
	in.out = append(in.out, r.b[start:r.pos]...)
	in.out = append(in.out, in.meter...)
	return in.instructions(r, true)
}

// constExpr copies a constant expression, shifting the index of ref.func.
func (in *instrumenter) constExpr(r *reader) error { return in.instructions(r, false) }

// instructions copies instructions, shifting function indices, up to the end of r for
// a function body, or up to the first end for a constant expression (which has no
// blocks). It meters loops in bodies. Runs of instructions are copied in one append.
func (in *instrumenter) instructions(r *reader, body bool) error {
	copied := r.pos
	for r.pos < r.end {
		op := r.b[r.pos]
		r.pos++
		switch op {
		case opCall, opRefFunc:
			in.out = append(in.out, r.b[copied:r.pos]...)
			if err := in.funcIndex(r); err != nil {
				return err
			}
			copied = r.pos
		case opLoop:
			if err := r.skipSigned(33); err != nil {
				return err
			}
			if body {
				in.out = append(in.out, r.b[copied:r.pos]...)
				in.out = append(in.out, in.meter...)
				copied = r.pos
			}
		case opEnd:
			if !body {
				in.out = append(in.out, r.b[copied:r.pos]...)
				return nil
			}
		default:
			if err := r.immediates(op); err != nil {
				return err
			}
		}
	}
	if !body {
		return r.fail(r.pos, "constant expression has no end")
	}
	in.out = append(in.out, r.b[copied:r.pos]...)
	return nil
}

// funcIndex copies a function index, shifted past the tick import.
func (in *instrumenter) funcIndex(r *reader) error {
	at := r.pos
	i, err := r.u32()
	if err != nil {
		return err
	}
	if i >= in.importedFuncs {
		if i == 1<<32-1 {
			return r.fail(at, "function index %d is out of range", i)
		}
		i++
	}
	in.out = appendU32(in.out, i)
	return nil
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
		start := r.pos
		id, err := r.byte()
		if err != nil {
			return err
		}
		size, err := r.u32()
		if err != nil {
			return err
		}
		if int64(size) > int64(r.remaining()) {
			return r.fail(start, "name subsection of %d bytes overruns its section", size)
		}
		sub := reader{b: r.b, pos: r.pos, end: r.pos + int(size)}
		r.pos = sub.end
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
	opIf        = 0x04
	opLoop      = 0x03
	opEnd       = 0x0b
	opCall      = 0x10
	opGlobalGet = 0x23
	opGlobalSet = 0x24
	opI64Const  = 0x42
	opI64LeS    = 0x57
	opI64Sub    = 0x7d
	opRefFunc   = 0xd2
	blockEmpty  = 0x40
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
		err = r.miscImmediates(at)
	case op == 0xfd:
		err = r.simdImmediates(at)
	default:
		return r.fail(at, "opcode %#x is not part of WebAssembly 2.0", op)
	}
	return err
}

// miscImmediates skips the immediates of a 0xfc instruction.
func (r *reader) miscImmediates(at int) error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
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
