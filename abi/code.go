package abi

import (
	"errors"
	"math"

	"github.com/cocoonhost/cocoon/internal/wasmbin"
)

// Limits on function bodies (SPEC.md §7). Compiling a module to native code costs time
// and memory that grow faster than its size in several ways (RATIONALE.md, "Compile
// limits"); Validate refuses a function that crosses one of these lines before anything
// is compiled. Each is at least four times what the largest real guest we measured
// needs.
const (
	// MaxFunctionBytes bounds the size of one function body. The compiler's memory
	// grows with the largest function: 256 KiB of calls take about 190 MiB.
	MaxFunctionBytes = 256 * KiB
	// MaxNestingDepth bounds how deep blocks, loops and ifs nest in one function.
	MaxNestingDepth = 4096
	// MaxBranches bounds the blocks and branches of one function: each block, if,
	// else and br_if, and each label of a br_table, counts 1; each loop counts 4, for
	// the time check the host adds to it. Compile time grows with its square.
	MaxBranches = 12_000
	// MaxFunctionLocals bounds the parameters and declared locals of one function.
	MaxFunctionLocals = 4096
	// MaxLocalBranches bounds the product of a function's parameters and locals and its
	// blocks and branches: the compiler may track every local at every branch.
	MaxLocalBranches = 1 << 20
	// MaxBlockTypeValues bounds the parameters, and the results, of the type of a block,
	// loop or if: every branch carries them.
	MaxBlockTypeValues = 16
	// MaxReadWork bounds FuncStats.ReadWork of one function: the compiler looks a
	// value up through every block of a run of br_if, or of blocks no branch targets,
	// for every read of a local, a global or memory after them (see flow). 1 << 26
	// such steps take about a second.
	MaxReadWork = 1 << 26
)

// CodeStats counts what a module's function bodies hold; the host estimates the cost
// of compiling the module from them.
type CodeStats struct {
	// Functions is the number of functions the module defines.
	Functions int
	// Globals is the number of globals: the compiler tracks each in every function.
	Globals int
	// Total holds the sum of each count over the functions. Max holds the largest
	// value of each count, which may come from different functions.
	Total, Max FuncStats
}

// FuncStats are the counts of one function body (or their sums or maxima, see
// CodeStats).
type FuncStats struct {
	Bytes        int // body size, local declarations included
	Instructions int
	Calls        int // call and call_indirect
	Branches     int // blocks and branches, counted as MaxBranches says
	Labels       int // labels of br_table, defaults included (counted in Branches too)
	Locals       int // parameters and declared locals
	Depth        int // deepest nesting of blocks
	// LocalBranches is Locals times Branches: the compiler may track every local
	// through every branch.
	LocalBranches int64
	// DominatorWork and ReadWork bound steps of the compiler's analyses of control
	// flow; see flow.
	DominatorWork int64
	ReadWork      int64
}

// add adds f's counts to the totals in s and raises its maxima.
func (s *CodeStats) add(f FuncStats) {
	t, m := &s.Total, &s.Max
	t.Bytes += f.Bytes
	t.Instructions += f.Instructions
	t.Calls += f.Calls
	t.Branches += f.Branches
	t.Labels += f.Labels
	t.Locals += f.Locals
	t.Depth += f.Depth
	t.LocalBranches += f.LocalBranches
	t.DominatorWork += f.DominatorWork
	t.ReadWork += f.ReadWork
	m.Bytes = max(m.Bytes, f.Bytes)
	m.Instructions = max(m.Instructions, f.Instructions)
	m.Calls = max(m.Calls, f.Calls)
	m.Branches = max(m.Branches, f.Branches)
	m.Labels = max(m.Labels, f.Labels)
	m.Locals = max(m.Locals, f.Locals)
	m.Depth = max(m.Depth, f.Depth)
	m.LocalBranches = max(m.LocalBranches, f.LocalBranches)
	m.DominatorWork = max(m.DominatorWork, f.DominatorWork)
	m.ReadWork = max(m.ReadWork, f.ReadWork)
	s.Functions++
}

// loopBranches is what a loop counts in FuncStats.Branches.
const loopBranches = 4

// checkCode decodes every instruction of every function body, refuses a body over one
// of the limits above, and counts the rest into CodeStats. It stops at the first fault,
// so a function far over a limit costs no more than reaching the limit. The stack of
// open blocks it keeps is bounded by MaxNestingDepth.
func checkCode(m *wasmbin.Module) (CodeStats, error) {
	s := CodeStats{Globals: m.NumGlobals()}
	var fl flow
	for b := range m.Bodies() {
		f, err := checkBody(m, b, &fl)
		if err != nil {
			return CodeStats{}, err
		}
		s.add(f)
	}
	return s, nil
}

func checkBody(m *wasmbin.Module, b wasmbin.Body, fl *flow) (FuncStats, error) {
	f := FuncStats{Bytes: b.Size, Locals: len(m.FuncType(b.Func).Params) + int(b.Locals)}
	switch {
	case f.Bytes > MaxFunctionBytes:
		return f, errorf(ErrFunctionTooLarge, "function %d is %d bytes; the limit is %d bytes per function: split it", b.Func, f.Bytes, MaxFunctionBytes)
	case f.Locals > MaxFunctionLocals:
		return f, errorf(ErrTooManyLocals, "function %d has %d parameters and locals; the limit is %d per function", b.Func, f.Locals, MaxFunctionLocals)
	}
	fl.start(b)
	for in, err := range b.Instructions() {
		if err != nil {
			return f, decodeError(err)
		}
		f.Instructions++
		f.Depth = max(f.Depth, in.Depth)
		switch in.Op {
		case wasmbin.OpCall, wasmbin.OpCallIndirect:
			f.Calls++
		case wasmbin.OpLoop:
			f.Branches += loopBranches
		case wasmbin.OpBlock, wasmbin.OpIf, wasmbin.OpElse, wasmbin.OpBrIf:
			f.Branches++
		case wasmbin.OpBrTable:
			f.Labels += int(in.Labels) + 1
			f.Branches += int(in.Labels) + 1
		}
		if t, ok := in.Block.TypeIndex(); ok && (in.Op == wasmbin.OpBlock || in.Op == wasmbin.OpLoop || in.Op == wasmbin.OpIf) {
			if ft := m.Type(t); len(ft.Params) > MaxBlockTypeValues || len(ft.Results) > MaxBlockTypeValues {
				return f, errorf(ErrBlockTypeTooLarge, "function %d: the block at offset %#x has type %d with %d parameters and %d results; a block type may have at most %d of each",
					b.Func, in.Offset, t, len(ft.Params), len(ft.Results), MaxBlockTypeValues)
			}
		}
		switch {
		case in.Depth > MaxNestingDepth:
			return f, errorf(ErrNestingTooDeep, "function %d nests blocks more than %d deep (at offset %#x); the limit is %d", b.Func, MaxNestingDepth, in.Offset, MaxNestingDepth)
		case f.Branches > MaxBranches:
			return f, errorf(ErrTooManyBranches, "function %d has more than %d blocks and branches (block, if, else, br_if and each br_table label count 1, loop 4); the limit is %d per function: split it",
				b.Func, MaxBranches, MaxBranches)
		}
		fl.step(in)
	}
	f.LocalBranches = int64(f.Locals) * int64(f.Branches)
	f.DominatorWork, f.ReadWork = fl.dominatorWork, fl.readWork
	switch {
	case f.LocalBranches > MaxLocalBranches:
		return f, errorf(ErrFunctionTooComplex, "function %d has %d parameters and locals and %d blocks and branches; their product, %d, is over the limit of %d: use fewer locals or split the function",
			b.Func, f.Locals, f.Branches, f.LocalBranches, MaxLocalBranches)
	case f.ReadWork > MaxReadWork:
		return f, errorf(ErrFunctionTooComplex, "function %d looks locals, globals and memory up %d times through runs of br_if or of blocks no branch targets (once per such block passed since the last join of branches, for every read); the limit is %d: join the branches or split the function",
			b.Func, f.ReadWork, MaxReadWork)
	}
	return f, nil
}

// flow follows the control flow of one function body as the host's compiler (wazero's
// optimizing compiler, with the time check the host adds at every function entry and
// loop) turns it into basic blocks, to bound the work of two of its steps that grow
// faster than the code:
//
//   - dominatorWork: building the dominator tree and finding loops walk from blocks up
//     the tree, so they cost up to the sum of the depths of the blocks and of the
//     sources of the edges. Depths grow by one at each block with one predecessor; a
//     block that joins several takes the smallest of their depths, plus one (the
//     depth of their nearest common dominator is no larger).
//   - readWork: a read of a local, a global or memory's bounds (a load or store) looks
//     its value up through the chain of single-predecessor blocks above it, with no
//     memory of earlier look-ups, up to a block that joins branches or starts a loop.
//     The chain grows by one at each br_if and at the end of a block no branch
//     targets.
//
// Both are upper bounds: flow counts every read as looking through the whole chain.
// Unreachable code (after br, br_table, return or unreachable, up to the end of its
// block), which the compiler skips, is skipped. The zero value is ready for start.
type flow struct {
	dominatorWork, readWork int64

	body         wasmbin.Body
	depth, chain int  // of the block being compiled
	reach        bool // whether the code being read is reachable
	frames       []frame
}

// frame is an open block, loop or if.
type frame struct {
	op        wasmbin.Opcode
	reach     bool // whether its start was reachable; if not, it is skipped whole
	hasElse   bool
	d0, c0    int // depth and chain where it starts (for an if, of its condition)
	preds     int // edges into the block after it
	predDepth int // the smallest depth of their sources
	predChain int // the largest chain of their sources
}

// start resets fl for the function body b, counting the time check at its entry.
func (fl *flow) start(b wasmbin.Body) {
	*fl = flow{frames: fl.frames[:0], reach: true, body: b}
	fl.check()
}

// block counts a new block at the given depth.
func (fl *flow) block(depth int) { fl.dominatorWork += int64(depth) }

// check counts the time check the host adds: an if without else around a call.
func (fl *flow) check() {
	fl.step(&wasmbin.Instr{Op: wasmbin.OpIf})
	fl.step(&wasmbin.Instr{Op: wasmbin.OpEnd})
}

// enter moves to a new block whose one predecessor is the block being compiled.
func (fl *flow) enter() {
	fl.dominatorWork += int64(fl.depth) // the edge
	fl.depth++
	fl.chain++
	fl.block(fl.depth)
}

// open pushes a frame for a block, loop or if starting in the block being compiled.
func (fl *flow) open(op wasmbin.Opcode) {
	fl.frames = append(fl.frames, frame{op: op, reach: true, d0: fl.depth, c0: fl.chain, predDepth: math.MaxInt})
}

// branch counts an edge to label l from a block at the given depth and chain.
func (fl *flow) branch(l uint32, depth, chain int) {
	if int(l) >= len(fl.frames) {
		return // to the function's end: a return, outside the analyses
	}
	fl.into(&fl.frames[len(fl.frames)-1-int(l)], depth, chain)
}

// into counts an edge into the block after t, or to the start of t if it is a loop,
// from a block at the given depth and chain.
func (fl *flow) into(t *frame, depth, chain int) {
	fl.dominatorWork += int64(depth)
	if t.op == wasmbin.OpLoop {
		return // its start block is already there
	}
	t.preds++
	t.predDepth = min(t.predDepth, depth)
	t.predChain = max(t.predChain, chain)
}

func (fl *flow) step(in *wasmbin.Instr) {
	if !fl.reach {
		fl.skip(in)
		return
	}
	switch in.Op {
	case wasmbin.OpBlock:
		fl.open(in.Op)
	case wasmbin.OpLoop:
		fl.open(in.Op)
		fl.enter()
		fl.chain = 0 // look-ups stop at the loop's start
		fl.check()
	case wasmbin.OpIf:
		fl.open(in.Op)
		fl.dominatorWork += int64(fl.depth) // the edge to the else block, always made
		fl.block(fl.depth + 1)
		fl.enter() // the then block
	case wasmbin.OpElse:
		if len(fl.frames) > 0 { // else outside an if: the compiler refuses the module
			fl.elseBlock(&fl.frames[len(fl.frames)-1])
		}
	case wasmbin.OpEnd:
		if len(fl.frames) > 0 {
			fl.end()
		}
	case wasmbin.OpBr:
		fl.branch(in.Index, fl.depth, fl.chain)
		fl.reach = false
	case wasmbin.OpBrIf:
		fl.branch(in.Index, fl.depth, fl.chain)
		fl.enter()
	case wasmbin.OpBrTable:
		// One block per label, which jumps on to the label's target.
		for l := range fl.body.Labels(in) {
			fl.dominatorWork += int64(2*fl.depth + 1)
			fl.branch(l, fl.depth+1, fl.chain+1)
		}
		fl.reach = false
	case wasmbin.OpReturn, wasmbin.OpUnreachable:
		fl.reach = false
	}
	fl.readWork += int64(reads(in)) * int64(fl.chain)
}

// skip follows the structure of unreachable code, which the compiler skips up to the
// else or end of the block it is in.
func (fl *flow) skip(in *wasmbin.Instr) {
	switch in.Op {
	case wasmbin.OpBlock, wasmbin.OpLoop, wasmbin.OpIf:
		fl.frames = append(fl.frames, frame{op: in.Op})
	case wasmbin.OpElse:
		if len(fl.frames) > 0 && fl.frames[len(fl.frames)-1].reach {
			fl.elseBlock(&fl.frames[len(fl.frames)-1])
		}
	case wasmbin.OpEnd:
		switch {
		case len(fl.frames) == 0: // the function's end
		case fl.frames[len(fl.frames)-1].reach:
			fl.end()
		default:
			fl.frames = fl.frames[:len(fl.frames)-1]
		}
	}
}

// reads returns how many values the compiler looks up for in: locals, globals, and the
// base and size of memory for every instruction that touches it.
func reads(in *wasmbin.Instr) int {
	switch op := in.Op; {
	case op == 0x20 || op == 0x23: // local.get, global.get
		return 1
	case op >= 0x28 && op <= 0x40, op == wasmbin.OpPrefixMisc && in.Sub >= wasmbin.MiscMemoryInit && in.Sub <= wasmbin.MiscMemoryFill:
		return 2
	case op == wasmbin.OpPrefixSIMD && (in.Sub <= 11 || in.Sub >= 84 && in.Sub <= 93):
		return 2
	}
	return 0
}

// elseBlock moves from the then block of the if top to its else block.
func (fl *flow) elseBlock(top *frame) {
	if fl.reach {
		fl.into(top, fl.depth, fl.chain) // the then block's end jumps past the else
	}
	top.hasElse = true
	fl.depth, fl.chain, fl.reach = top.d0+1, top.c0+1, true
}

// end closes the innermost frame, which was reachable at its start, and moves to the
// block after it.
func (fl *flow) end() {
	t := &fl.frames[len(fl.frames)-1]
	defer func() { fl.frames = fl.frames[:len(fl.frames)-1] }()
	if t.op == wasmbin.OpLoop {
		// Only the loop's last block falls through; its branches go back to its start.
		if fl.reach {
			fl.enter()
		}
		return
	}
	if fl.reach {
		fl.into(t, fl.depth, fl.chain)
	}
	if t.op == wasmbin.OpIf && !t.hasElse {
		fl.into(t, t.d0+1, t.c0+1) // the empty else block jumps to the end
	}
	switch {
	case t.preds == 0:
		fl.reach = false
		return
	case t.preds == 1:
		fl.depth, fl.chain = t.predDepth+1, t.predChain+1
	case t.op == wasmbin.OpIf:
		fl.depth, fl.chain = t.d0+1, 0 // the condition dominates both ways
	default: // a join: look-ups stop here after the first
		fl.depth, fl.chain = t.predDepth+1, 0
	}
	fl.reach = true
	fl.block(fl.depth)
}

// decodeError turns an error of package wasmbin into an *Error.
func decodeError(err error) *Error {
	var de *wasmbin.Error
	switch {
	case errors.Is(err, wasmbin.ErrNotModule):
		return errorf(ErrNotWasm, "%v", err)
	case errors.As(err, &de) && de.Unsupported:
		return errorf(ErrUnsupportedFeature, "module uses what the host does not support: %v", err)
	default:
		return errorf(ErrMalformed, "malformed module: %v", err)
	}
}
