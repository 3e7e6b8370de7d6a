package meter

import (
	"strconv"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/internal/wasmbin"
)

// Names of what InstrumentDetached exports, reserved like the others by abi.Validate's
// "cocoon_" prefix.
const (
	// StartExport names the module's start function, which InstrumentDetached takes out
	// of the start section, so that the host decides whether it runs.
	StartExport = "cocoon_meter.start"
	// globalExportPrefix and the global's index name each mutable global of the module.
	globalExportPrefix = "cocoon_meter.global."
)

// GlobalExport returns the name InstrumentDetached exports the module's global index
// under.
func GlobalExport(index uint32) string {
	return globalExportPrefix + strconv.FormatUint(uint64(index), 10)
}

// Detached is a module instrumented with its initialization taken out of
// instantiation, so that the host can either run it (a fresh instance) or replace it
// with a state it captured after running it once (a snapshot): instantiating Wasm
// writes no memory and runs no code.
type Detached struct {
	// Wasm is the instrumented module.
	Wasm []byte
	// Data is the content of the module's active data segments, in order, which Wasm
	// does not write (see dataSection): a fresh instance must have each written at its
	// offset, and each checked to fit in memory, before any code runs. Bytes alias
	// the wasm given to InstrumentDetached.
	Data []DataSegment
	// HasStart says whether the module had a start section, whose function Wasm
	// exports as StartExport.
	HasStart bool
	// Globals are the module's mutable globals, each exported as GlobalExport(Index).
	Globals []Global
	// ChangesTables says whether the module's code has an instruction that changes a
	// table or drops a segment (table.set, table.grow, table.fill, table.copy,
	// table.init, elem.drop, data.drop): without one, every instance's tables and
	// segments are what instantiation makes them, whatever code ran.
	ChangesTables bool
}

// DataSegment is the content of an active data segment and where it goes.
type DataSegment struct {
	Offset uint32
	Bytes  []byte
}

// Global is a mutable global of the module: its index and value type (0x7f i32, 0x7e
// i64, 0x7d f32, 0x7c f64, 0x7b v128, 0x70 funcref, 0x6f externref).
type Global struct {
	Index uint32
	Type  byte
}

// InstrumentDetached is Instrument, and also: the start section is dropped and its
// function exported as StartExport; every mutable global of the module is exported as
// GlobalExport(index); and the active data segments are taken out, returned in Data.
// Their offsets must be i32.const expressions (WebAssembly 2.0 allows only those and
// global.get of an imported global, which abi.Validate refuses). It costs
// what Instrument costs and fails where it fails, and also on a data segment it
// cannot read.
func InstrumentDetached(wasm []byte) (*Detached, error) {
	in, err := run(wasm, abi.MaxCallDepth, abi.CallFrameLocals, true)
	if err != nil {
		return nil, err
	}
	return &Detached{Wasm: in.out, Data: in.data, HasStart: in.hasStart, Globals: in.mutableGlobals,
		ChangesTables: in.changesTables}, nil
}

// detachedExports appends the exports InstrumentDetached adds: the mutable globals
// and the start function.
func (in *instrumenter) detachedExports() {
	for _, g := range in.mutableGlobals {
		in.out = appendName(in.out, GlobalExport(g.Index))
		in.out = append(in.out, 3)
		in.out = appendU32(in.out, g.Index)
	}
	if in.hasStart {
		in.out = appendName(in.out, StartExport)
		in.out = append(in.out, 0)
		in.out = appendU32(in.out, in.shiftFunc(in.start))
	}
}

// detachedExportCount is how many exports detachedExports appends.
func (in *instrumenter) detachedExportCount() uint32 {
	n := uint32(len(in.mutableGlobals))
	if in.hasStart {
		n++
	}
	return n
}

// dataSection records the offsets and bytes of the active data segments. Without a
// data count section the code cannot name a segment (memory.init and data.drop need
// one), so it writes no segments at all; with one, it keeps every segment's index:
// passive segments as they are, and each active one as an empty passive segment,
// which behaves as the dropped segment an active one is after instantiation
// (memory.init of no bytes from offset 0 succeeds, of any more traps; data.drop does
// nothing). Either way instantiation neither writes memory nor evaluates an offset
// for it, and, wazero keeping a slice per segment, a module with tens of thousands
// of segments (a Go guest's) costs nothing per instance.
func (in *instrumenter) dataSection(r *wasmbin.Reader) error {
	n, err := r.U32()
	if err != nil {
		return err
	}
	if !in.hasDataCount {
		in.out = append(in.out, 0)
	} else {
		in.out = appendU32(in.out, n)
	}
	for range n {
		at := r.Pos
		flags, err := r.U32()
		if err != nil {
			return err
		}
		const passive, explicitMemory = 1, 2
		switch flags {
		case passive:
			start := r.Pos
			size, err := r.U32()
			if err == nil {
				err = r.Skip(int(size))
			}
			if err != nil {
				return err
			}
			if in.hasDataCount {
				in.out = appendU32(in.out, flags)
				in.out = append(in.out, r.B[start:r.Pos]...)
			}
			continue
		case 0:
		case explicitMemory:
			// The segment is written to memory 0 by the host, not by the engine,
			// which would refuse any other memory: so refuse it here as well.
			memAt := r.Pos
			if memory, err := r.U32(); err != nil {
				return err
			} else if memory != 0 {
				return r.Fail(memAt, "data segment for memory %d: WebAssembly 2.0 has only memory 0", memory)
			}
		default:
			return r.Fail(at, "data segment flags %d are not part of WebAssembly 2.0", flags)
		}
		exprAt := r.Pos
		if op, err := r.Byte(); err != nil || op != opI32Const {
			return r.Fail(exprAt, "data segment offset is not an i32.const")
		}
		offset, err := r.Sleb(32)
		if err != nil {
			return err
		}
		if end, err := r.Byte(); err != nil || end != opEnd {
			return r.Fail(exprAt, "data segment offset is not an i32.const")
		}
		size, err := r.U32()
		if err != nil {
			return err
		}
		bytesAt := r.Pos
		if err := r.Skip(int(size)); err != nil {
			return err
		}
		in.data = append(in.data, DataSegment{Offset: uint32(offset), Bytes: r.B[bytesAt:r.Pos]})
		if in.hasDataCount {
			in.out = append(in.out, passive, 0) // no bytes
		}
	}
	return nil
}
