// Package meter rewrites a WebAssembly module so that it counts down a fuel global at
// every function entry and loop iteration and calls a host function when the fuel runs
// out. That host function is the host's preemption point: it can stop a call that ran
// past its deadline, for a cost of a few instructions per iteration, where wazero's
// WithCloseOnContextDone exits to Go at every loop iteration to look.
package meter

import "errors"

// Names the instrumented module uses to talk to the host. They start with "cocoon_",
// a prefix abi.Validate reserves, so no uploaded module can already use them.
const (
	// TickModule and TickName name the function of type () -> () the module imports
	// and calls whenever its fuel is zero or below. The host either stops the call (by
	// panicking, as wazero host functions do) or refills the fuel and returns.
	TickModule = "cocoon_meter"
	TickName   = "tick"
	// FuelExport names the mutable i64 global the module exports: the fuel left
	// before the next tick. It starts at 0, so the first metering point ticks.
	FuelExport = "cocoon_meter.fuel"
)

// Instrument returns a copy of wasm, a WebAssembly 2.0 binary module, that behaves the
// same except that it imports TickModule.TickName, defines and exports the global
// FuelExport, and at the start of every function body and of every loop iteration runs
//
//	global.get $fuel  i64.const 1  i64.sub  global.set $fuel
//	global.get $fuel  i64.const 0  i64.le_s  if  call $tick  end
//
// The tick import comes after the module's other function imports, so every index of a
// function the module defines grows by one, and Instrument rewrites all of them: calls,
// ref.func, exports, the start function, element segments, global initializers and the
// function names of the "name" custom section.
//
// It makes one pass over wasm, decoding every instruction of every body, in time linear
// in len(wasm) (about 14 ms for a 4 MB Go guest), and allocates little beyond the
// result, which is a few percent larger than wasm for compiled code. It does not
// validate the module: a module wazero refuses may give a result wazero refuses too. It
// returns an error for bytes that do not decode as a module, for instructions and
// sections that are not part of WebAssembly 2.0, and for a module that already exports
// FuelExport; it never panics.
func Instrument(wasm []byte) ([]byte, error) {
	if len(wasm) < 8 || string(wasm[:8]) != "\x00asm\x01\x00\x00\x00" {
		return nil, errors.New("meter: not a WebAssembly 1.0/2.0 binary module")
	}
	in := &instrumenter{
		r:   reader{b: wasm, pos: 8, end: len(wasm)},
		out: make([]byte, 0, len(wasm)+len(wasm)/8+64),
	}
	in.out = append(in.out, wasm[:8]...)
	if err := in.module(); err != nil {
		return nil, err
	}
	return in.out, nil
}

// Section ids.
const (
	secCustom  = 0
	secType    = 1
	secImport  = 2
	secGlobal  = 6
	secExport  = 7
	secStart   = 8
	secElement = 9
	secCode    = 10
)

// sectionOrder ranks the non-custom section ids in the order a module must have them:
// the data count section (12) sits between element (9) and code (10).
var sectionOrder = [...]int{1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 10}

// The sections Instrument adds to, which it creates when the module has none.
var addedSections = [...]byte{secType, secImport, secGlobal, secExport}

// instrumenter holds the state of one Instrument call.
type instrumenter struct {
	r   reader
	out []byte

	tickType      uint32 // type index of () -> ()
	importedFuncs uint32 // function imports; the tick import's index
	fuelGlobal    uint32 // index of the fuel global
	meter         []byte // the metering sequence
	written       [13]bool
}

func (in *instrumenter) module() error {
	r := &in.r
	last := 0 // order rank of the last non-custom section
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
			return r.fail(start, "section %d of %d bytes overruns the module", id, size)
		}
		body := reader{b: r.b, pos: r.pos, end: r.pos + int(size)}
		r.pos = body.end
		if id == secCustom {
			if err := in.custom(body); err != nil {
				return err
			}
			continue
		}
		if int(id) >= len(in.written) {
			return r.fail(start, "section id %d is not part of WebAssembly 2.0", id)
		}
		rank := sectionOrder[id-1]
		if rank <= last {
			return r.fail(start, "section %d is out of order or repeated", id)
		}
		last = rank
		if err := in.addSectionsBefore(rank); err != nil {
			return err
		}
		in.written[id] = true
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
		empty := reader{b: []byte{0}, end: 1} // a vector of no entries
		if err := in.section(id, empty); err != nil {
			return err
		}
	}
	return nil
}

// section writes the section id whose content is in body, rewritten.
func (in *instrumenter) section(id byte, body reader) error {
	in.out = append(in.out, id)
	at := in.beginSized()
	var err error
	switch id {
	case secType:
		err = in.typeSection(&body)
	case secImport:
		err = in.importSection(&body)
	case secGlobal:
		err = in.globalSection(&body)
	case secExport:
		err = in.exportSection(&body)
	case secStart:
		err = in.startSection(&body)
	case secElement:
		err = in.elementSection(&body)
	case secCode:
		err = in.codeSection(&body)
	default:
		in.out = append(in.out, body.b[body.pos:body.end]...)
		body.pos = body.end
	}
	if err == nil && body.pos != body.end {
		err = body.fail(body.pos, "section %d has %d bytes after its content", id, body.remaining())
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
func (in *instrumenter) vector(r *reader, extra uint32, entry func() error) (uint32, error) {
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	if uint64(n)+uint64(extra) > 1<<32-1 {
		return 0, r.fail(r.pos, "vector of %d entries is too long", n)
	}
	in.out = appendU32(in.out, n+extra)
	for range n {
		if err := entry(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// typeSection finds or appends the type () -> ().
func (in *instrumenter) typeSection(r *reader) error {
	start := r.pos
	n, err := r.u32()
	if err != nil {
		return err
	}
	entries := r.pos
	found := false
	for i := range n {
		at := r.pos
		if form, err := r.byte(); err != nil {
			return err
		} else if form != 0x60 {
			return r.fail(at, "type %d is not a function type", i)
		}
		params, err := r.skipValTypes()
		if err != nil {
			return err
		}
		results, err := r.skipValTypes()
		if err != nil {
			return err
		}
		if !found && params == 0 && results == 0 {
			in.tickType, found = i, true
		}
	}
	if found {
		in.out = append(in.out, r.b[start:r.pos]...)
		return nil
	}
	if n == 1<<32-1 {
		return r.fail(start, "too many types")
	}
	in.tickType = n
	in.out = appendU32(in.out, n+1)
	in.out = append(in.out, r.b[entries:r.pos]...)
	in.out = append(in.out, 0x60, 0, 0)
	return nil
}

// importSection counts the imports and appends the tick import.
func (in *instrumenter) importSection(r *reader) error {
	_, err := in.vector(r, 1, func() error {
		start := r.pos
		for range 2 { // module and name
			if _, err := r.name(); err != nil {
				return err
			}
		}
		at := r.pos
		kind, err := r.byte()
		if err != nil {
			return err
		}
		switch kind {
		case 0: // func
			_, err = r.u32()
			in.importedFuncs++
		case 1: // table
			if _, err = r.byte(); err == nil {
				err = r.skipLimits()
			}
		case 2: // memory
			err = r.skipLimits()
		case 3: // global
			if _, err = r.byte(); err == nil {
				_, err = r.byte()
			}
			in.fuelGlobal++
		default:
			return r.fail(at, "import of kind %#x is not part of WebAssembly 2.0", kind)
		}
		in.out = append(in.out, r.b[start:r.pos]...)
		return err
	})
	if err != nil {
		return err
	}
	in.out = appendName(in.out, TickModule)
	in.out = appendName(in.out, TickName)
	in.out = append(in.out, 0)
	in.out = appendU32(in.out, in.tickType)
	return nil
}

// globalSection rewrites the initializers and appends the fuel global.
func (in *instrumenter) globalSection(r *reader) error {
	n, err := in.vector(r, 1, func() error {
		in.out = append(in.out, r.b[r.pos:min(r.pos+2, r.end)]...) // type and mutability
		if err := r.skip(2); err != nil {
			return err
		}
		return in.constExpr(r)
	})
	if err != nil {
		return err
	}
	in.fuelGlobal += n
	in.out = append(in.out, 0x7e, 1, 0x42, 0, 0x0b) // (mut i64) (i64.const 0)
	return nil
}

// exportSection shifts function indices and appends the fuel export.
func (in *instrumenter) exportSection(r *reader) error {
	_, err := in.vector(r, 1, func() error {
		start := r.pos
		name, err := r.name()
		if err != nil {
			return err
		}
		if string(name) == FuelExport {
			return r.fail(start, "the module already exports %q", FuelExport)
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		in.out = append(in.out, r.b[start:r.pos]...)
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
	return nil
}

func (in *instrumenter) startSection(r *reader) error { return in.funcIndex(r) }

// elementSection shifts the function indices of every segment, in all eight encodings.
func (in *instrumenter) elementSection(r *reader) error {
	_, err := in.vector(r, 0, func() error {
		at := r.pos
		flags, err := r.u32()
		if err != nil {
			return err
		}
		if flags > 7 {
			return r.fail(at, "element segment flags %d are not part of WebAssembly 2.0", flags)
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
			in.out = append(in.out, r.b[r.pos:min(r.pos+1, r.end)]...)
			if err := r.skip(1); err != nil {
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
func (in *instrumenter) custom(body reader) error {
	start := body.pos
	name, err := body.name()
	if err != nil {
		return err
	}
	in.out = append(in.out, secCustom)
	at := in.beginSized()
	if string(name) != "name" {
		in.out = append(in.out, body.b[start:body.end]...)
		in.endSized(at)
		return nil
	}
	in.out = append(in.out, body.b[start:body.pos]...)
	// Before the import section (nothing makes names come last) the number of
	// imported functions is not known yet.
	if !in.written[secImport] || in.names(&body) != nil {
		in.out = in.out[:at-6]
		return nil
	}
	in.endSized(at)
	return nil
}
