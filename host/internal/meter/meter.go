// Package meter rewrites a WebAssembly module so that the host can bound the time, the
// call depth and the growth of what it runs, without wazero's WithCloseOnContextDone
// (which exits to Go at every loop iteration to look).
//
// The rewritten module counts down a fuel global and calls the host's tick function
// whenever the fuel runs out. Fuel is charged in proportion to work: every function
// entry and loop iteration costs the instructions of the straight-line code it starts,
// and every bulk instruction (memory.fill, memory.copy, memory.init, table.fill,
// table.copy, table.init, memory.grow, table.grow) the bytes or elements it touches.
// memory.fill and memory.copy larger than ChunkBytes run in chunks with the fuel
// checked between chunks, so no single instruction runs for long without a tick. The
// tick is where the host stops a call past its deadline, and where the Go scheduler
// can preempt the goroutine: native code compiled by wazero cannot be preempted, and a
// goroutine that does not reach a tick blocks every stop-the-world of the garbage
// collector.
package meter

import (
	"errors"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/internal/wasmbin"
)

// Names the instrumented module uses to talk to the host. They start with "cocoon_",
// a prefix abi.Validate reserves, so no uploaded module can already use them. The
// host module HostModule defines the four functions; the module imports them after
// its own imports, so no function of the module can call them directly.
const (
	HostModule = "cocoon_meter"

	// TickName is a function () -> () the module calls whenever its fuel is zero or
	// below. The host either stops the call (by panicking, as wazero host functions
	// do) or refills the fuel and returns.
	TickName = "tick"
	// MemoryRefusedName is a function (delta: i32) -> () the module calls when
	// memory.grow by delta pages returned -1, whoever refused it (the module's own
	// declared maximum, or the host's memory allocator).
	MemoryRefusedName = "memory_refused"
	// TableGrowName is a function (size: i32, delta: i32, max: i64) -> (allowed: i32)
	// the module calls before table.grow, with the table's current size, the growth,
	// and the table's declared maximum (NoTableMax if it has none). The host returns
	// 0 to refuse (table.grow then returns -1 without growing) or 1 to let it grow;
	// the table's declared maximum is already checked when it allows.
	TableGrowName = "table_grow"
	// OverflowName is a function () -> () the module calls when a call would nest
	// deeper than MaxDepth frames. The host must not return from it: it stops the call
	// and reports a stack overflow.
	OverflowName = "overflow"

	// FuelExport names the mutable i64 global the module exports: the fuel left
	// before the next tick. It starts at 0, so the first metering point ticks.
	FuelExport = "cocoon_meter.fuel"
)

// NoTableMax is the max TableGrowName gets for a table without a declared maximum.
const NoTableMax = 1 << 32

// Costs, in fuel points. A point is about a nanosecond of work on the machines this
// was measured on (README.md, "Performance"): a tight loop iteration runs in about
// 1 ns, memset and memmove move 10-60 bytes per ns, and a ChaCha8 stream makes about
// one byte per ns.
const (
	// InstructionsPerPoint: a function entry or loop iteration costs 1 point plus one
	// per this many instructions of the straight-line code it starts (wazero runs
	// 3-10 simple instructions per ns).
	InstructionsPerPoint = 8
	// MaxStraightLine is the most instructions between two metering points: longer
	// straight-line code gets a metering point after every MaxStraightLine
	// instructions, about 1 µs of simple instructions (10 of divisions).
	MaxStraightLine = 1024
	// BytesPerPointShift: memory.fill, memory.copy and memory.init cost one point per
	// 1<<BytesPerPointShift bytes, and memory.grow the bytes of the pages it adds
	// (which the kernel zeroes when the module first touches them). table.fill,
	// table.copy, table.init and table.grow cost one point per element (8 bytes,
	// copied or allocated by wazero's Go code).
	BytesPerPointShift = 4
	// ChunkBytes is the largest piece of a memory.fill or memory.copy that runs without
	// a check of the fuel between pieces: 10-25 µs of memset or memmove at RAM speed.
	// Its cost is above the fuel quantum, so every piece ticks.
	ChunkBytes = 256 << 10
)

// Instrument returns a copy of wasm, a WebAssembly 2.0 binary module, that computes
// the same results except that:
//
//   - it imports the four functions of HostModule after its own imports, so that the
//     index of every function the module defines grows by four, and Instrument
//     rewrites all of them: calls, ref.func, exports, the start function, element
//     segments, global initializers and the function names of the "name" section;
//
//   - it defines and exports the fuel global FuelExport and defines a call depth
//     global;
//
//   - every function body first adds its frame's weight to the depth, calling
//     OverflowName past the limit, and takes it off again on every way out (the end of
//     the body, return, and branches to the body's label, which now target a block
//     around the body). The weight is 1 + (parameters + locals + the most values the
//     body can hold on its operand stack + the most arguments and results of a call
//     it makes) / abi.CallFrameLocals (see frame.go). A call that fails leaves the
//     depth where it was: the host never calls such an instance again;
//
//   - every function body and every loop body starts with a metering point, and so
//     does every MaxStraightLine instructions of code that has none, that charges
//     the cost of the code up to the next one and ticks when the fuel is zero or
//     below:
//
//     global.get $fuel  i64.const cost  i64.sub  global.set $fuel
//     global.get $fuel  i64.const 0  i64.le_s  if  call $tick  end
//
//   - memory.fill and memory.copy become calls of added functions that charge the
//     bytes and run in chunks (with exact WebAssembly semantics: bounds are checked
//     before anything is written, and an out-of-bounds operation traps as before);
//     memory.init, table.fill, table.copy and table.init are preceded by a call that
//     charges their bytes or elements; memory.grow and table.grow become calls of
//     added functions that charge the growth, let the host refuse or record a
//     refusal, and then grow as before.
//
// The call depth limit is abi.MaxCallDepth.
//
// It makes one pass over wasm after a pass over its section headers, decoding every
// instruction of every body, in time linear in len(wasm) (about 20 ms for a 4 MB Go
// guest), and allocates little beyond the result, which is a fifth or so larger than
// wasm for compiled code. It does not validate the module: a module wazero refuses
// gives a result wazero refuses too. It returns an error for bytes that do not decode
// as a module, for instructions and sections that are not part of WebAssembly 2.0, and
// for a module that already exports FuelExport; it never panics.
func Instrument(wasm []byte) ([]byte, error) {
	return instrument(wasm, abi.MaxCallDepth, abi.CallFrameLocals)
}

// instrument is Instrument with a call depth limit of maxDepth frames (below 2^30) of
// callFrameLocals (positive) values each.
func instrument(wasm []byte, maxDepth, callFrameLocals uint32) ([]byte, error) {
	in, err := run(wasm, maxDepth, callFrameLocals, false)
	if err != nil {
		return nil, err
	}
	return in.out, nil
}

// run instruments wasm, detaching its initialization if detach is set
// (InstrumentDetached), and returns the instrumenter with the result in out.
func run(wasm []byte, maxDepth, callFrameLocals uint32, detach bool) (*instrumenter, error) {
	if len(wasm) < 8 || string(wasm[:8]) != "\x00asm\x01\x00\x00\x00" {
		return nil, errors.New("meter: not a WebAssembly 1.0/2.0 binary module")
	}
	in := &instrumenter{
		r:               wasmbin.Reader{B: wasm, Pos: 8, End: len(wasm)},
		out:             make([]byte, 0, len(wasm)+len(wasm)/4+256),
		maxDepth:        maxDepth,
		callFrameLocals: callFrameLocals,
		detach:          detach,
	}
	if err := in.scan(); err != nil {
		return nil, err
	}
	in.out = append(in.out, wasm[:8]...)
	if err := in.module(); err != nil {
		return nil, err
	}
	return in, nil
}

// sectionOrder ranks the non-custom section ids in the order a module must have them:
// the data count section (12) sits between element (9) and code (10).
var sectionOrder = [...]int{1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 10}

// The sections Instrument adds to, which it creates when the module has none.
var addedSections = [...]byte{wasmbin.SecType, wasmbin.SecImport, wasmbin.SecGlobal, wasmbin.SecExport}

// addedImports is how many functions Instrument imports; the module's own functions
// move up by as many. Their order is that of the import indices below.
const addedImports = 4

// Indices of the added imports, relative to the module's function imports.
const (
	importTick = iota
	importMemoryRefused
	importTableGrow
	importOverflow
)

// table is what the instrumenter knows of a table: its element type and declared
// maximum, for the function that grows it.
type table struct {
	refType byte
	max     uint64 // NoTableMax if none
}

// instrumenter holds the state of one Instrument call.
type instrumenter struct {
	r   wasmbin.Reader
	out []byte

	maxDepth, callFrameLocals uint32
	detach                    bool // InstrumentDetached

	// Learnt by scan, before anything is written.
	hasMemory bool
	tables    []table // imported, then defined
	hasStart  bool
	start     uint32 // the start function's index, if hasStart
	// hasDataCount: the module has a data count section.
	hasDataCount bool
	// Learnt from the sections as they are rewritten.
	types         []funcShape // by type index
	importTypes   []uint32    // type index of each imported function
	funcTypes     []uint32    // type index of each defined function
	importedFuncs uint32      // the module's function imports; the first added import's index
	fuelGlobal    uint32      // index of the fuel global; the depth global follows it
	added         addedTypes
	helpers       helpers
	written       [13]bool
	// Learnt for InstrumentDetached.
	mutableGlobals []Global
	data           []DataSegment
	changesTables  bool

	// Per function body, reused.
	instr    wasmbin.Instr // the instruction being copied
	stack    operandStack
	regions  []region // the function body's region, then one per open loop
	weightAt []int    // offsets in out of the frame weight's fixed-width encodings
}

// funcShape is what the instrumenter needs of a function type.
type funcShape struct {
	params, results uint32
	// blockType encodes the block type of a block that yields the type's results: 0x40
	// for none, the value type for one, an added type's index for several.
	blockType []byte
}

// region is a stretch of code whose cost is charged by the metering point at its
// start: a function body or a loop body, without the loops nested in it.
type region struct {
	costAt       int // offset in out of the cost's fixed-width encoding
	instructions uint64
}

// scan reads the section headers and the import, table and memory sections, to learn
// what the added functions need before the function section is written: whether the
// module has a memory, and its tables.
func (in *instrumenter) scan() error {
	r := in.r
	for r.Pos < r.End {
		id, s, err := r.Part(nil)
		if err != nil {
			return err
		}
		switch id {
		case wasmbin.SecImport:
			err = in.scanImports(&s)
		case wasmbin.SecTable:
			var n uint32
			if n, err = s.U32(); err == nil {
				err = in.scanTables(&s, n)
			}
		case wasmbin.SecMemory:
			var n uint32
			n, err = s.U32()
			in.hasMemory = in.hasMemory || n > 0
		case wasmbin.SecStart:
			in.start, err = s.U32()
			in.hasStart = err == nil
		case wasmbin.SecDataCount:
			in.hasDataCount = true
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// scanImports reads the import section, with the decoder validation uses
// (wasmbin.Reader.Import), once: it learns the module's function imports and their
// types, its imported tables and memory, and where the fuel global goes (after the
// imported globals); importSection then copies the entries as they are.
func (in *instrumenter) scanImports(r *wasmbin.Reader) error {
	n, err := r.U32()
	if err != nil {
		return err
	}
	for range n {
		at := r.Pos
		im, err := r.Import()
		if err != nil {
			return err
		}
		if (im.Kind == wasmbin.KindTable || im.Kind == wasmbin.KindMemory) && (im.Limits.Shared || im.Limits.Is64) {
			return r.Fail(at, "limits flags of a shared or 64-bit memory are not part of WebAssembly 2.0")
		}
		switch im.Kind {
		case wasmbin.KindFunc:
			in.importTypes = append(in.importTypes, im.Type)
			in.importedFuncs++
		case wasmbin.KindTable:
			t := table{refType: byte(im.ElemType), max: NoTableMax}
			if im.Limits.HasMax {
				t.max = im.Limits.Max
			}
			in.tables = append(in.tables, t)
		case wasmbin.KindMemory:
			in.hasMemory = true
		case wasmbin.KindGlobal:
			in.fuelGlobal++
		}
	}
	if r.Remaining() != 0 {
		return r.Fail(r.Pos, "import section has %d bytes after its %d entries", r.Remaining(), n)
	}
	return nil
}

// scanTables reads n table types.
func (in *instrumenter) scanTables(r *wasmbin.Reader, n uint32) error {
	if uint64(n) > uint64(r.Remaining()) {
		return r.Fail(r.Pos, "%d tables do not fit in the %d bytes left", n, r.Remaining())
	}
	for range n {
		at := r.Pos
		refType, err := r.Byte()
		if err != nil {
			return err
		}
		if refType != refFunc && refType != refExtern {
			return r.Fail(at, "table element type %#x is not a reference type", refType)
		}
		l, err := limits(r)
		if err != nil {
			return err
		}
		t := table{refType: refType, max: NoTableMax}
		if l.HasMax {
			t.max = l.Max
		}
		in.tables = append(in.tables, t)
	}
	return nil
}

// limits reads the limits of a table or memory type, refusing the flags of the threads
// and memory64 proposals.
func limits(r *wasmbin.Reader) (wasmbin.Limits, error) {
	at := r.Pos
	l, err := r.Limits()
	if err == nil && (l.Shared || l.Is64) {
		return l, r.Fail(at, "limits flags of a shared or 64-bit memory are not part of WebAssembly 2.0")
	}
	return l, err
}

func (in *instrumenter) module() error {
	r := &in.r
	last := 0 // order rank of the last non-custom section
	for r.Pos < r.End {
		start := r.Pos
		id, body, err := r.Part(nil)
		if err != nil {
			return err
		}
		if id == wasmbin.SecCustom {
			if err := in.custom(body); err != nil {
				return err
			}
			continue
		}
		if int(id) >= len(in.written) {
			return r.Fail(start, "section id %d is not part of WebAssembly 2.0", id)
		}
		rank := sectionOrder[id-1]
		if rank <= last {
			return r.Fail(start, "section %d is out of order or repeated", id)
		}
		last = rank
		if err := in.addSectionsBefore(rank); err != nil {
			return err
		}
		in.written[id] = true
		if id == wasmbin.SecStart && in.detach {
			continue // exported instead (detachedExports)
		}
		if err := in.section(id, body); err != nil {
			return err
		}
	}
	return in.addSectionsBefore(len(sectionOrder) + 1)
}

// addSectionsBefore writes the sections Instrument needs that the module lacks and that
// come before a section of order rank.
func (in *instrumenter) addSectionsBefore(rank int) error {
	for _, id := range addedSections {
		if in.written[id] || sectionOrder[id-1] >= rank {
			continue
		}
		in.written[id] = true
		empty := wasmbin.Reader{B: []byte{0}, End: 1} // a vector of no entries
		if err := in.section(id, empty); err != nil {
			return err
		}
	}
	return nil
}

// section writes the section id whose content is in body, rewritten.
func (in *instrumenter) section(id byte, body wasmbin.Reader) error {
	in.out = append(in.out, id)
	at := in.beginSized()
	var err error
	switch id {
	case wasmbin.SecType:
		err = in.typeSection(&body)
	case wasmbin.SecImport:
		err = in.importSection(&body)
	case wasmbin.SecFunction:
		err = in.functionSection(&body)
	case wasmbin.SecGlobal:
		err = in.globalSection(&body)
	case wasmbin.SecExport:
		err = in.exportSection(&body)
	case wasmbin.SecStart:
		err = in.startSection(&body)
	case wasmbin.SecElement:
		err = in.elementSection(&body)
	case wasmbin.SecCode:
		err = in.codeSection(&body)
	case wasmbin.SecData:
		if in.detach {
			err = in.dataSection(&body)
			break
		}
		fallthrough
	default:
		in.out = append(in.out, body.B[body.Pos:body.End]...)
		body.Pos = body.End
	}
	if err == nil && body.Pos != body.End {
		err = body.Fail(body.Pos, "section %d has %d bytes after its content", id, body.Remaining())
	}
	if err != nil {
		return err
	}
	in.endSized(at)
	return nil
}

// beginSized reserves room for the u32 size of what follows and returns where it is.
func (in *instrumenter) beginSized() int {
	in.out = append(in.out, 0, 0, 0, 0, 0)
	return len(in.out)
}

// endSized writes, in the room beginSized reserved at at, the size of what was written
// since, and moves that content down to follow the size's minimal encoding.
func (in *instrumenter) endSized(at int) {
	n := len(in.out) - at
	var size [5]byte
	enc := appendU32(size[:0], uint32(n))
	start := at - 5 + len(enc)
	copy(in.out[at-5:], enc)
	copy(in.out[start:], in.out[at:])
	in.out = in.out[:start+n]
}

// vector reads a vector's count, writes it plus extra, and calls entry for each entry.
func (in *instrumenter) vector(r *wasmbin.Reader, extra uint32, entry func() error) (uint32, error) {
	n, err := r.U32()
	if err != nil {
		return 0, err
	}
	if uint64(n)+uint64(extra) > 1<<32-1 {
		return 0, r.Fail(r.Pos, "vector of %d entries is too long", n)
	}
	in.out = appendU32(in.out, n+extra)
	for range n {
		if err := entry(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// typeSection copies the types, learning their shapes, and appends the types of the
// added functions and a type [] -> results for every type with several results.
func (in *instrumenter) typeSection(r *wasmbin.Reader) error {
	start := r.Pos
	n, err := r.U32()
	if err != nil {
		return err
	}
	if uint64(n) > uint64(r.Remaining()) {
		return r.Fail(start, "%d types do not fit in the %d bytes left", n, r.Remaining())
	}
	entries := r.Pos
	in.types = make([]funcShape, 0, n)
	var multi [][]byte   // result types (a vector) of the types with several results
	var multiTypes []int // the index in in.types of each
	for range n {
		ft, err := r.FuncType()
		if err != nil {
			return err
		}
		params, results := uint32(len(ft.Params)), uint32(len(ft.Results))
		shape := funcShape{params: params, results: results, blockType: []byte{blockEmpty}}
		switch {
		case results == 1:
			shape.blockType = []byte{byte(ft.Results[0])}
		case results > 1:
			encoded := appendU32(nil, results)
			for _, v := range ft.Results {
				encoded = append(encoded, byte(v))
			}
			multi = append(multi, encoded)
			multiTypes = append(multiTypes, len(in.types))
		}
		in.types = append(in.types, shape)
	}
	body := r.B[entries:r.Pos]
	next := uint64(n)
	in.added = newAddedTypes(uint32(next))
	next += uint64(len(in.added.encoded))
	for j, i := range multiTypes {
		in.types[i].blockType = appendS64(nil, int64(next)+int64(j))
	}
	total := next + uint64(len(multi))
	if total > 1<<32-1 {
		return r.Fail(start, "too many types")
	}
	in.out = appendU32(in.out, uint32(total))
	in.out = append(in.out, body...)
	for _, t := range in.added.encoded {
		in.out = append(in.out, t...)
	}
	for _, results := range multi {
		in.out = append(append(in.out, 0x60, 0), results...)
	}
	return nil
}

// importSection copies the imports, which scanImports read, and appends the host
// functions of HostModule.
func (in *instrumenter) importSection(r *wasmbin.Reader) error {
	n, err := r.U32()
	if err != nil {
		return err
	}
	if uint64(n)+addedImports > 1<<32-1 {
		return r.Fail(r.Pos, "vector of %d entries is too long", n)
	}
	in.out = appendU32(in.out, n+addedImports)
	in.out = append(in.out, r.B[r.Pos:r.End]...)
	r.Pos = r.End
	for _, im := range []struct {
		name string
		typ  uint32
	}{
		importTick:          {TickName, in.added.void},
		importMemoryRefused: {MemoryRefusedName, in.added.i32Void},
		importTableGrow:     {TableGrowName, in.added.tableGrowHost},
		importOverflow:      {OverflowName, in.added.void},
	} {
		in.out = appendName(in.out, HostModule)
		in.out = appendName(in.out, im.name)
		in.out = append(in.out, 0)
		in.out = appendU32(in.out, im.typ)
	}
	return nil
}

// functionSection copies the type index of every function, learning them, and appends
// those of the added functions.
func (in *instrumenter) functionSection(r *wasmbin.Reader) error {
	in.addHelpers()
	n, err := in.vector(r, uint32(len(in.helpers.types)), func() error {
		t, err := r.U32()
		if err != nil {
			return err
		}
		in.funcTypes = append(in.funcTypes, t)
		in.out = appendU32(in.out, t)
		return nil
	})
	if err != nil {
		return err
	}
	in.helpers.resolve(in.importedFuncs + addedImports + n)
	for _, t := range in.helpers.types {
		in.out = appendU32(in.out, t)
	}
	return nil
}

// globalSection rewrites the initializers and appends the fuel and depth globals.
func (in *instrumenter) globalSection(r *wasmbin.Reader) error {
	index := in.fuelGlobal // the imported globals come first
	n, err := in.vector(r, 2, func() error {
		in.out = append(in.out, r.B[r.Pos:min(r.Pos+2, r.End)]...) // type and mutability
		if err := r.Skip(2); err != nil {
			return err
		}
		if r.B[r.Pos-1] != 0 {
			in.mutableGlobals = append(in.mutableGlobals, Global{Index: index, Type: r.B[r.Pos-2]})
		}
		index++
		return in.constExpr(r)
	})
	if err != nil {
		return err
	}
	in.fuelGlobal += n
	in.out = append(in.out, 0x7e, 1, opI64Const, 0, opEnd) // fuel: (mut i64) (i64.const 0)
	in.out = append(in.out, 0x7f, 1, opI32Const, 0, opEnd) // depth: (mut i32) (i32.const 0)
	return nil
}

func (in *instrumenter) depthGlobal() uint32 { return in.fuelGlobal + 1 }

// exportSection shifts function indices and appends the fuel export.
func (in *instrumenter) exportSection(r *wasmbin.Reader) error {
	extra := uint32(1)
	if in.detach {
		extra += in.detachedExportCount()
	}
	_, err := in.vector(r, extra, func() error {
		start := r.Pos
		name, err := r.Name("name")
		if err != nil {
			return err
		}
		if string(name) == FuelExport {
			return r.Fail(start, "the module already exports %q", FuelExport)
		}
		kind, err := r.Byte()
		if err != nil {
			return err
		}
		in.out = append(in.out, r.B[start:r.Pos]...)
		if kind == 0 {
			return in.funcIndex(r)
		}
		return in.copyU32(r)
	})
	if err != nil {
		return err
	}
	in.out = appendName(in.out, FuelExport)
	in.out = append(in.out, 3)
	in.out = appendU32(in.out, in.fuelGlobal)
	if in.detach {
		in.detachedExports()
	}
	return nil
}

func (in *instrumenter) startSection(r *wasmbin.Reader) error { return in.funcIndex(r) }

// elementSection shifts the function indices of every segment, in all eight encodings.
func (in *instrumenter) elementSection(r *wasmbin.Reader) error {
	_, err := in.vector(r, 0, func() error {
		at := r.Pos
		flags, err := r.U32()
		if err != nil {
			return err
		}
		if flags > 7 {
			return r.Fail(at, "element segment flags %d are not part of WebAssembly 2.0", flags)
		}
		in.out = appendU32(in.out, flags)
		const passive, explicitTable, exprs = 1, 2, 4
		if flags&explicitTable != 0 && flags&passive == 0 {
			if err := in.copyU32(r); err != nil {
				return err
			}
		}
		if flags&passive == 0 {
			if err := in.constExpr(r); err != nil {
				return err
			}
		}
		if flags&(passive|explicitTable) != 0 { // elemkind or reftype
			in.out = append(in.out, r.B[r.Pos:min(r.Pos+1, r.End)]...)
			if err := r.Skip(1); err != nil {
				return err
			}
		}
		entry := func() error { return in.funcIndex(r) }
		if flags&exprs != 0 {
			entry = func() error { return in.constExpr(r) }
		}
		_, err = in.vector(r, 0, entry)
		return err
	})
	return err
}

// custom copies a custom section, rewriting the function indices of "name" and
// dropping it if it does not decode: it only serves debugging.
func (in *instrumenter) custom(body wasmbin.Reader) error {
	start := body.Pos
	name, err := body.Name("custom section name")
	if err != nil {
		return err
	}
	in.out = append(in.out, wasmbin.SecCustom)
	at := in.beginSized()
	if string(name) != "name" {
		in.out = append(in.out, body.B[start:body.End]...)
		in.endSized(at)
		return nil
	}
	in.out = append(in.out, body.B[start:body.Pos]...)
	// Before the import section (nothing makes names come last) the number of
	// imported functions is not known yet.
	if !in.written[wasmbin.SecImport] || in.names(&body) != nil {
		in.out = in.out[:at-6]
		return nil
	}
	in.endSized(at)
	return nil
}
