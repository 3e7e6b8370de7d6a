package meter

import "github.com/cocoonhost/cocoon/internal/wasmbin"

// A frame's weight in the call depth stands for the stack wazero gives it. wazero's
// compiler keeps the parameters, the locals and the operand stack values live across a
// call in the frame, and reserves room for the arguments and results of the functions
// it calls: a recursion that holds 1,000 values across each call took 84 MiB of stack
// for 9,000 frames (8 KiB a frame), which a plain count of frames would have allowed.
// So the weight is 1 + (parameters + locals + the most operand values the body can
// hold + the most arguments and results of a call it makes) / callFrameLocals, and the
// instrumenter bounds the operand values from above as it copies the body.

// controlFrame is an open block, loop or if of the body being copied, or the body.
type controlFrame struct {
	op byte
	// entry is the operand stack height below the frame's values; params and results
	// are the counts its type takes and leaves.
	entry, params, results int64
}

// operandStack follows the height of a function body's operand stack, instruction by
// instruction, as an upper bound: pops never go below the innermost frame's entry,
// and after an instruction that does not fall through (br, return, unreachable, ...)
// the height restarts at that entry, although the code that follows never runs.
type operandStack struct {
	height, max int64
	callArgs    int64 // the most arguments and results of one call
	frames      []controlFrame
}

func (s *operandStack) reset(results int64) {
	*s = operandStack{frames: append(s.frames[:0], controlFrame{op: opBlock, results: results})}
}

func (s *operandStack) top() *controlFrame { return &s.frames[len(s.frames)-1] }

// apply pops pop values and pushes push.
func (s *operandStack) apply(pop, push int64) {
	s.height = max(s.top().entry, s.height-pop) + push
	s.max = max(s.max, s.height)
}

// open starts a frame of op whose type takes params and leaves results, after an if
// has popped its condition.
func (s *operandStack) open(op byte, params, results int64) {
	entry := max(s.top().entry, s.height-params)
	s.frames = append(s.frames, controlFrame{op: op, entry: entry, params: params, results: results})
	s.height = entry + params
}

// unreachable marks the rest of the frame's code as not falling through.
func (s *operandStack) unreachable() { s.height = s.top().entry }

// call accounts for a call that takes params and leaves results (plus extra operands,
// the table index of call_indirect).
func (s *operandStack) call(params, results, extra int64) {
	s.apply(params+extra, results)
	s.callArgs = max(s.callArgs, params+results)
}

// arity returns the parameter and result counts of type t, or 0, 0 for an index out of
// range (a module wazero refuses).
func (in *instrumenter) arity(t uint32) (params, results int64) {
	if int64(t) >= int64(len(in.types)) {
		return 0, 0
	}
	return int64(in.types[t].params), int64(in.types[t].results)
}

// funcArity returns the parameter and result counts of function f, by its index in
// the module as uploaded.
func (in *instrumenter) funcArity(f uint32) (params, results int64) {
	switch {
	case f < in.importedFuncs:
		return in.arity(in.importTypes[f])
	case int64(f-in.importedFuncs) < int64(len(in.funcTypes)):
		return in.arity(in.funcTypes[f-in.importedFuncs])
	}
	return 0, 0
}

// blockType returns the counts a block of type t takes and leaves.
func (in *instrumenter) blockType(t wasmbin.BlockType) (params, results int64) {
	if i, ok := t.TypeIndex(); ok {
		return in.arity(i)
	}
	if _, ok := t.Result(); ok {
		return 0, 1
	}
	return 0, 0
}

// effect returns how many values the instruction ins pops and pushes, for the instructions that are not control instructions and not calls (those
// are handled where they are decoded). SIMD instructions other than v128.const, the
// loads and the stores count as replacing their operands by one value, which bounds
// them all from above.
func effect(ins *wasmbin.Instr) (pop, push int64) {
	switch op := byte(ins.Op); {
	case op == 0x1a, op == 0x21, op == 0x24: // drop, local.set, global.set
		return 1, 0
	case op == 0x1b, op == 0x1c: // select
		return 3, 1
	case op == 0x20, op == 0x23, op >= 0x41 && op <= 0x44, op == 0x3f, op == 0xd0, op == 0xd2:
		// local.get, global.get, constants, memory.size, ref.null, ref.func
		return 0, 1
	case op == 0x26, op >= 0x36 && op <= 0x3e: // table.set, stores
		return 2, 0
	case op >= 0x46 && op <= 0x4f, op >= 0x51 && op <= 0x5a, op >= 0x5b && op <= 0x66,
		op >= 0x6a && op <= 0x78, op >= 0x7c && op <= 0x8a, op >= 0x92 && op <= 0x98, op >= 0xa0 && op <= 0xa6:
		return 2, 1 // comparisons and binary operators
	case op == 0xfc:
		return miscEffect(ins.Sub)
	case op == 0xfd:
		return simdEffect(ins.Sub)
	}
	// local.tee, table.get, loads, memory.grow, unary operators and conversions,
	// ref.is_null, nop: one value in, one out, or none.
	return 0, 0
}

func miscEffect(sub uint32) (pop, push int64) {
	switch {
	case sub == miscMemoryInit, sub == miscMemoryCopy, sub == miscMemoryFill,
		sub == miscTableInit, sub == miscTableCopy, sub == miscTableFill:
		return 3, 0
	case sub == miscTableGrow:
		return 2, 1
	case sub == miscTableSize:
		return 0, 1
	}
	return 0, 0 // saturating truncations, data.drop, elem.drop
}

func simdEffect(sub uint32) (pop, push int64) {
	switch {
	case sub == 11: // v128.store
		return 2, 0
	case sub == 12: // v128.const
		return 0, 1
	case sub >= 84 && sub <= 87: // load lane
		return 2, 1
	case sub >= 88 && sub <= 91: // store lane
		return 2, 0
	}
	return 1, 1
}
