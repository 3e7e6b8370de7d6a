package meter

// addedTypes are the types Instrument appends to the type section, by the index they
// get, and their encodings in that order.
type addedTypes struct {
	void          uint32 // () -> (): tick, overflow
	i32Void       uint32 // (i32) -> (): memory_refused
	tableGrowHost uint32 // (i32, i32, i64) -> (i32): table_grow
	i32I32        uint32 // (i32) -> (i32): the charging functions, memory.grow
	i32x3Void     uint32 // (i32, i32, i32) -> (): memory.fill, memory.copy
	growFuncref   uint32 // (funcref, i32) -> (i32): table.grow of a funcref table
	growExternref uint32 // (externref, i32) -> (i32): table.grow of an externref table
	encoded       [][]byte
}

func newAddedTypes(first uint32) addedTypes {
	a := addedTypes{}
	for _, t := range []struct {
		index *uint32
		enc   []byte
	}{
		{&a.void, []byte{0x60, 0, 0}},
		{&a.i32Void, []byte{0x60, 1, valI32, 0}},
		{&a.tableGrowHost, []byte{0x60, 3, valI32, valI32, valI64, 1, valI32}},
		{&a.i32I32, []byte{0x60, 1, valI32, 1, valI32}},
		{&a.i32x3Void, []byte{0x60, 3, valI32, valI32, valI32, 0}},
		{&a.growFuncref, []byte{0x60, 2, refFunc, valI32, 1, valI32}},
		{&a.growExternref, []byte{0x60, 2, refExtern, valI32, 1, valI32}},
	} {
		*t.index = first + uint32(len(a.encoded))
		a.encoded = append(a.encoded, t.enc)
	}
	return a
}

// helpers are the functions Instrument adds to the module, after the module's own.
// An index of 0 means the module does not get that function (no memory, for the
// memory functions): 0 is never the index of an added function, which come after the
// four added imports.
type helpers struct {
	chargeBytes, chargeElems uint32
	fill, copy, memoryGrow   uint32
	tableGrow                []uint32 // by table index

	types   []uint32                 // type index of each, in order
	bodies  []func(in *instrumenter) // writes the body of each, in order
	indices []*uint32                // where each index is kept, relative until resolve
}

// addHelpers decides which functions to add: the charging functions, the memory
// functions if the module has a memory, a table.grow function per table. Their indices
// are relative until resolve; the bodies are written last in the code section.
func (in *instrumenter) addHelpers() {
	h := &in.helpers
	h.tableGrow = make([]uint32, len(in.tables))
	add := func(index *uint32, typ uint32, body func(*instrumenter)) {
		*index = uint32(len(h.types))
		h.indices = append(h.indices, index)
		h.types = append(h.types, typ)
		h.bodies = append(h.bodies, body)
	}
	add(&h.chargeBytes, in.added.i32I32, func(in *instrumenter) { in.chargeBody(BytesPerPointShift) })
	add(&h.chargeElems, in.added.i32I32, func(in *instrumenter) { in.chargeBody(0) })
	if in.hasMemory {
		add(&h.fill, in.added.i32x3Void, (*instrumenter).fillBody)
		add(&h.copy, in.added.i32x3Void, (*instrumenter).copyBody)
		add(&h.memoryGrow, in.added.i32I32, (*instrumenter).memoryGrowBody)
	}
	for i, t := range in.tables {
		typ := in.added.growFuncref
		if t.refType == refExtern {
			typ = in.added.growExternref
		}
		add(&h.tableGrow[i], typ, func(in *instrumenter) { in.tableGrowBody(uint32(i), t.max) })
	}
}

// resolve makes the helpers' indices function indices, the first being first.
func (h *helpers) resolve(first uint32) {
	for _, p := range h.indices {
		*p += first
	}
}

// A small assembler for the bodies of the added functions.

func (in *instrumenter) op(ops ...byte) { in.out = append(in.out, ops...) }

func (in *instrumenter) localGet(i byte) { in.op(opLocalGet, i) }
func (in *instrumenter) localSet(i byte) { in.op(opLocalSet, i) }
func (in *instrumenter) i32Const(v int32) {
	in.out = appendS64(append(in.out, opI32Const), int64(v))
}
func (in *instrumenter) i64Const(v int64) {
	in.out = appendS64(append(in.out, opI64Const), v)
}

// chargeLocal takes the fuel for local i (an i32 count of bytes or elements) shifted
// right by shift, or left by -shift, then ticks if the fuel is zero or below.
func (in *instrumenter) chargeLocal(i byte, shift int) {
	in.out = appendU32(append(in.out, opGlobalGet), in.fuelGlobal)
	in.localGet(i)
	in.op(opI64ExtendI32U)
	switch {
	case shift > 0:
		in.i64Const(int64(shift))
		in.op(opI64ShrU)
	case shift < 0:
		in.i64Const(int64(-shift))
		in.op(opI64Shl)
	}
	in.out = appendU32(append(in.out, opI64Sub, opGlobalSet), in.fuelGlobal)
	in.checkFuel()
}

// chargeBody: (n: i32) -> i32 charges n (bytes or elements, shifted) and returns it,
// for the instruction after the call, whose last operand n is.
func (in *instrumenter) chargeBody(shift int) {
	in.op(0) // no locals
	in.chargeLocal(0, shift)
	in.localGet(0)
	in.op(opEnd)
}

// The instructions the bulk functions perform, with their reserved memory indices.
var (
	memoryFill = []byte{opMisc, miscMemoryFill, 0}
	memoryCopy = []byte{opMisc, miscMemoryCopy, 0, 0}
)

// bulk writes the instruction op on locals a, b and n.
func (in *instrumenter) bulk(op []byte, a, b, n byte) {
	in.localGet(a)
	in.localGet(b)
	in.localGet(n)
	in.op(op...)
}

// bulkStart writes how the bulk functions start, for op on locals a, b and n: up to
// ChunkBytes, charge n bytes and run op at once; past that, if the region at any of
// the locals in starts, n bytes long, ends past the memory (computed in 64 bits, so
// that it cannot wrap around), run op, which traps before writing anything.
func (in *instrumenter) bulkStart(op []byte, a, b, n byte, starts ...byte) {
	in.localGet(n)
	in.i32Const(ChunkBytes)
	in.op(opI32LeU, opIf, blockEmpty)
	in.chargeLocal(n, BytesPerPointShift)
	in.bulk(op, a, b, n)
	in.op(opReturn, opEnd)
	for i, start := range starts {
		in.localGet(start)
		in.op(opI64ExtendI32U)
		in.localGet(n)
		in.op(opI64ExtendI32U, opI64Add)
		in.op(opMemorySize, 0, opI64ExtendI32U)
		in.i64Const(16)
		in.op(opI64Shl, opI64GtU)
		if i > 0 {
			in.op(opI32Or)
		}
	}
	in.op(opIf, blockEmpty)
	in.bulk(op, a, b, n)
	in.op(opReturn, opEnd)
}

// chunk writes the start of a loop iteration of the bulk functions: local c becomes
// min(local n, ChunkBytes), and c bytes are charged.
func (in *instrumenter) chunk(n, c byte) {
	in.localGet(n)
	in.i32Const(ChunkBytes)
	in.localGet(n)
	in.i32Const(ChunkBytes)
	in.op(opI32LtU, opSelect)
	in.localSet(c)
	in.chargeLocal(c, BytesPerPointShift)
}

// advance adds local c to each of the locals ps.
func (in *instrumenter) advance(c byte, ps ...byte) {
	for _, p := range ps {
		in.localGet(p)
		in.localGet(c)
		in.op(opI32Add)
		in.localSet(p)
	}
}

// fillBody: (d, v, n: i32) -> () is memory.fill d v n, charged by bytes; above
// ChunkBytes it checks the bounds first and then fills in chunks, charging and
// checking the fuel before each.
func (in *instrumenter) fillBody() {
	const d, v, n, c = 0, 1, 2, 3
	in.op(1, 1, valI32) // local c
	in.bulkStart(memoryFill, d, v, n, d)
	in.op(opLoop, blockEmpty)
	in.chunk(n, c)
	in.bulk(memoryFill, d, v, c)
	in.advance(c, d)
	in.localGet(n)
	in.localGet(c)
	in.op(opI32Sub, opLocalTee, n, opBrIf, 0, opEnd)
	in.op(opEnd)
}

// copyBody: (d, s, n: i32) -> () is memory.copy d s n, charged by bytes; above
// ChunkBytes it checks both bounds first, then copies in chunks, charging and checking
// the fuel before each: from the start when d <= s, from the end when d > s, so that
// an overlapping source is read before it is overwritten, as memmove does.
func (in *instrumenter) copyBody() {
	const d, s, n, c = 0, 1, 2, 3
	in.op(1, 1, valI32) // local c
	in.bulkStart(memoryCopy, d, s, n, d, s)
	in.localGet(d)
	in.localGet(s)
	in.op(opI32GtU, opIf, blockEmpty)
	{ // backwards: n counts down to 0, the chunk at n - c goes first
		in.op(opLoop, blockEmpty)
		in.chunk(n, c)
		in.localGet(n)
		in.localGet(c)
		in.op(opI32Sub)
		in.localSet(n)
		in.localGet(d)
		in.localGet(n)
		in.op(opI32Add)
		in.localGet(s)
		in.localGet(n)
		in.op(opI32Add)
		in.localGet(c)
		in.op(memoryCopy...)
		in.localGet(n)
		in.op(opBrIf, 0, opEnd)
		in.op(opReturn)
	}
	in.op(opEnd)
	in.op(opLoop, blockEmpty) // forwards
	in.chunk(n, c)
	in.bulk(memoryCopy, d, s, c)
	in.advance(c, d, s)
	in.localGet(n)
	in.localGet(c)
	in.op(opI32Sub, opLocalTee, n, opBrIf, 0, opEnd)
	in.op(opEnd)
}

// memoryGrowBody: (delta: i32) -> i32 is memory.grow delta, charged PagePoints per
// page, that tells the host when it returns -1.
func (in *instrumenter) memoryGrowBody() {
	const delta, r = 0, 1
	in.op(1, 1, valI32) // local r
	in.chargeLocal(delta, BytesPerPointShift-16)
	in.localGet(delta)
	in.op(opMemoryGrow, 0, opLocalTee, r)
	in.i32Const(-1)
	in.op(opI32Eq, opIf, blockEmpty)
	in.localGet(delta)
	in.call(in.importedFuncs + importMemoryRefused)
	in.op(opEnd)
	in.localGet(r)
	in.op(opEnd)
}

// tableGrowBody: (ref, delta: i32) -> i32 is table.grow of table t, charged by
// elements, that asks the host first: it returns -1 without growing when the host
// refuses.
func (in *instrumenter) tableGrowBody(t uint32, max uint64) {
	const ref, delta = 0, 1
	in.op(0) // no locals
	in.chargeLocal(delta, 0)
	in.out = appendU32(append(in.out, opMisc, miscTableSize), t)
	in.localGet(delta)
	in.i64Const(int64(max))
	in.call(in.importedFuncs + importTableGrow)
	in.op(opI32Eqz, opIf, blockEmpty)
	in.i32Const(-1)
	in.op(opReturn, opEnd)
	in.localGet(ref)
	in.localGet(delta)
	in.out = appendU32(append(in.out, opMisc, miscTableGrow), t)
	in.op(opEnd)
}
