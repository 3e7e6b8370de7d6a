// Package wasmbin decodes WebAssembly binary modules for validation: Decode reads the
// parts that describe a module's interface (types, imports, functions, memories and
// exports) and checks the structure of the whole module (header, section order and
// sizes, every vector count, indices, UTF-8 names) down to the local declarations of
// function bodies; Body.Instructions then decodes their instructions one by one, with
// their immediates, and checks their encoding and block structure. It does not
// type-check anything beyond the signatures of the start function and of what the
// caller asks for.
//
// It is written for hostile input: it never panics, reads nothing outside the section
// being decoded, checks every count against the bytes left before allocating for it,
// does not recurse, and caps counts at the limits of the WebAssembly JavaScript API, so
// that the memory it allocates is a small multiple of the input size in the worst case,
// and its time is linear in it. Those checks also protect a runtime that allocates in
// proportion to the counts it reads (wazero v1.12.0 does): a module Decode accepts
// declares no vector or local count larger than its bytes or those limits can back.
package wasmbin

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// ErrNotModule is wrapped by the error Decode returns when the input does not start
// with the header of a WebAssembly core module.
var ErrNotModule = errors.New("not a WebAssembly module")

// Error reports why a module is malformed, or uses a construct this package does not
// support.
type Error struct {
	Section string // the section at fault, e.g. "import"; empty for the section headers
	Offset  int    // byte offset in the module where the fault starts
	Reason  string
	// Unsupported is set when the bytes may be valid under a WebAssembly proposal this
	// package does not implement (exception handling, GC, ...), or exceed one of its
	// limits, rather than being malformed.
	Unsupported bool
}

func (e *Error) Error() string {
	if e.Section == "" {
		return fmt.Sprintf("at offset %#x: %s", e.Offset, e.Reason)
	}
	return fmt.Sprintf("%s section at offset %#x: %s", e.Section, e.Offset, e.Reason)
}

// Implementation limits, those of the WebAssembly JavaScript API
// (https://webassembly.github.io/spec/js-api/#limits).
const (
	maxTypes     = 1_000_000
	maxFunctions = 1_000_000
	maxImports   = 100_000
	maxExports   = 100_000
	maxGlobals   = 1_000_000
	maxTables    = 100_000
	maxMemories  = 100
	maxParams    = 1_000
	maxResults   = 1_000
	maxLocals    = 50_000
	maxElements  = 10_000_000
	maxData      = 100_000
)

// ValType is a value type.
type ValType byte

// The value types of WebAssembly 2.0.
const (
	I32       ValType = 0x7f
	I64       ValType = 0x7e
	F32       ValType = 0x7d
	F64       ValType = 0x7c
	V128      ValType = 0x7b
	FuncRef   ValType = 0x70
	ExternRef ValType = 0x6f
)

// FuncType is a function signature.
type FuncType struct {
	Params, Results []ValType
}

// ExternKind is the kind of an import or export.
type ExternKind byte

// The kinds of imports and exports.
const (
	KindFunc   ExternKind = 0
	KindTable  ExternKind = 1
	KindMemory ExternKind = 2
	KindGlobal ExternKind = 3
)

// String returns the kind as the text format spells it: "func", "table", ...
func (k ExternKind) String() string {
	switch k {
	case KindFunc:
		return "func"
	case KindTable:
		return "table"
	case KindMemory:
		return "memory"
	case KindGlobal:
		return "global"
	}
	return fmt.Sprintf("kind(%#x)", byte(k))
}

// Limits are the limits of a memory or table type.
type Limits struct {
	Min, Max uint64
	HasMax   bool
	Shared   bool // threads proposal
	Is64     bool // memory64 proposal
}

// Import is one entry of the import section.
type Import struct {
	Module, Name string
	Kind         ExternKind
	Type         uint32  // type index of a KindFunc import
	Limits       Limits  // of a KindMemory or KindTable import
	ElemType     ValType // of a KindTable import: FuncRef or ExternRef
}

// Export is one entry of the export section.
type Export struct {
	Name  string
	Kind  ExternKind
	Index uint32 // in the index space of Kind, checked to be in range
}

// Module is what Decode extracts from a module.
type Module struct {
	Imports  []Import
	Funcs    []uint32 // type index of each function the module defines, in order
	Memories []Limits // memories the module defines
	Tables   []Limits // tables the module defines
	Exports  []Export

	// typeSection is the type section, kept to decode types on demand: it is smaller
	// than their decoded form. typeOffsets[i] is the offset of type i in it.
	typeSection []byte
	typeOffsets []uint32

	importedFuncs, importedTables, importedMemories, importedGlobals uint32
	tables, globals                                                  uint32 // defined
	codeCount                                                        int
	code                                                             Reader // the code section, for Bodies
}

// NumGlobals returns the number of globals, imported and defined.
func (m *Module) NumGlobals() int { return int(m.importedGlobals + m.globals) }

// NumTypes returns the number of types in the type section.
func (m *Module) NumTypes() int { return len(m.typeOffsets) }

// Type returns the type with index i, which must be below NumTypes.
func (m *Module) Type(i uint32) FuncType {
	// The type section was fully checked by Decode, so this cannot fail.
	r := Reader{B: m.typeSection, Pos: int(m.typeOffsets[i]), End: len(m.typeSection), Section: "type"}
	ft, _ := r.FuncType()
	return ft
}

// FuncType returns the type of the function with index i in the function index space
// (imported functions first), which must be an index Decode checked, such as that of
// an export of KindFunc.
func (m *Module) FuncType(i uint32) FuncType {
	if i < m.importedFuncs {
		n := uint32(0)
		for _, im := range m.Imports {
			if im.Kind != KindFunc {
				continue
			}
			if n == i {
				return m.Type(im.Type)
			}
			n++
		}
	}
	return m.Type(m.Funcs[i-m.importedFuncs])
}

// Section ids, as the binary format numbers them.
const (
	SecCustom    = 0
	SecType      = 1
	SecImport    = 2
	SecFunction  = 3
	SecTable     = 4
	SecMemory    = 5
	SecGlobal    = 6
	SecExport    = 7
	SecStart     = 8
	SecElement   = 9
	SecCode      = 10
	SecData      = 11
	SecDataCount = 12
	SecTag       = 13
)

var sectionNames = [...]string{"custom", "type", "import", "function", "table", "memory", "global", "export",
	"start", "element", "code", "data", "data count", "tag"}

// sectionRank orders the non-custom sections as a module must: data count comes
// between element and code.
var sectionRank = [...]int{SecType: 1, SecImport: 2, SecFunction: 3, SecTable: 4, SecMemory: 5, SecGlobal: 6,
	SecExport: 7, SecStart: 8, SecElement: 9, SecDataCount: 10, SecCode: 11, SecData: 12}

var header = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// Decode decodes the interface of the module b in one pass over its bytes. It returns
// an error wrapping ErrNotModule if b does not start with a core module header, and an
// *Error if the module is malformed or uses what this package does not support. The
// returned Module refers to b: b must not change while the Module is in use.
func Decode(b []byte) (*Module, error) {
	if err := checkHeader(b); err != nil {
		return nil, err
	}
	m := &Module{}
	r := Reader{B: b, Pos: len(header), End: len(b)}
	lastRank := 0
	for r.Pos < len(b) {
		start := r.Pos
		id, s, err := r.Part(sectionNames[:])
		if err != nil {
			return nil, err
		}
		switch {
		case id == SecTag:
			return nil, r.unsupported(start, "tag section (exception handling proposal) is not supported")
		case int(id) >= len(sectionRank):
			return nil, r.Fail(start, "unknown section id %d", id)
		case id != SecCustom && sectionRank[id] <= lastRank:
			return nil, r.Fail(start, "%s section is out of order or repeated", sectionNames[id])
		case id != SecCustom:
			lastRank = sectionRank[id]
		}
		if err := m.decodeSection(id, &s); err != nil {
			return nil, err
		}
		if s.Pos != s.End {
			return nil, s.Fail(s.Pos, "%d unexpected bytes at the end of the section", s.End-s.Pos)
		}
	}
	if len(m.Funcs) != m.codeCount {
		return nil, &Error{Section: "code", Offset: len(b), Reason: fmt.Sprintf(
			"the function section declares %d functions but the code section has %d bodies", len(m.Funcs), m.codeCount)}
	}
	return m, nil
}

func checkHeader(b []byte) error {
	switch {
	case len(b) < 4 || string(b[:4]) != string(header[:4]):
		return fmt.Errorf("%w: bad magic number", ErrNotModule)
	case len(b) < len(header):
		return fmt.Errorf("%w: truncated header", ErrNotModule)
	case b[6] == 0x01 && b[7] == 0x00:
		// Layer 1 is the component model.
		return fmt.Errorf("%w: this is a WebAssembly component, not a core module", ErrNotModule)
	case string(b[4:8]) != string(header[4:8]):
		return fmt.Errorf("%w: unsupported binary version %d", ErrNotModule,
			uint32(b[4])|uint32(b[5])<<8|uint32(b[6])<<16|uint32(b[7])<<24)
	}
	return nil
}

// decodeSection decodes the section id from s, which spans exactly its payload.
func (m *Module) decodeSection(id byte, s *Reader) error {
	switch id {
	case SecCustom:
		_, err := s.Name("custom section name")
		s.Pos = s.End // the payload is opaque
		return err
	case SecType:
		return m.decodeTypes(s)
	case SecImport:
		return m.decodeImports(s)
	case SecFunction:
		return m.decodeFunctions(s)
	case SecTable:
		n, err := s.count("tables", 3, maxTables)
		m.Tables = make([]Limits, n)
		for i := 0; i < n && err == nil; i++ {
			if _, err = s.refType(); err == nil {
				m.Tables[i], err = s.Limits()
			}
		}
		m.tables = uint32(n)
		return err
	case SecMemory:
		n, err := s.count("memories", 2, maxMemories)
		if err != nil {
			return err
		}
		m.Memories = make([]Limits, n)
		for i := range m.Memories {
			if m.Memories[i], err = s.Limits(); err != nil {
				return err
			}
		}
		return nil
	case SecGlobal:
		n, err := s.count("globals", 3, maxGlobals)
		for i := 0; i < n && err == nil; i++ {
			if _, err = s.ValType(); err == nil {
				if err = s.mutability(); err == nil {
					err = s.skipConstExpr()
				}
			}
		}
		m.globals = uint32(n)
		return err
	case SecExport:
		return m.decodeExports(s)
	case SecStart:
		at := s.Pos
		i, err := s.U32()
		if err != nil {
			return err
		}
		if i >= m.numFuncs() {
			return s.Fail(at, "start function %d does not exist (the module has %d functions)", i, m.numFuncs())
		}
		if ft := m.FuncType(i); len(ft.Params)+len(ft.Results) != 0 {
			return s.Fail(at, "start function %d must have no parameters and no results", i)
		}
		return nil
	case SecCode:
		return m.decodeCode(s)
	case SecElement:
		return s.skipElements()
	case SecData:
		return s.skipData()
	default: // data count
		_, err := s.U32()
		return err
	}
}

func (m *Module) numFuncs() uint32 { return m.importedFuncs + uint32(len(m.Funcs)) }

func (m *Module) decodeTypes(s *Reader) error {
	n, err := s.count("types", 3, maxTypes)
	if err != nil {
		return err
	}
	// Offsets are relative to the start of the payload.
	base := s.Pos
	m.typeSection = s.B[base:s.End]
	m.typeOffsets = make([]uint32, n)
	for i := range m.typeOffsets {
		m.typeOffsets[i] = uint32(s.Pos - base)
		if _, err := s.FuncType(); err != nil {
			return err
		}
	}
	return nil
}

// FuncType reads a function type. It allocates only for the value types it reads.
func (r *Reader) FuncType() (FuncType, error) {
	at := r.Pos
	form, err := r.Byte()
	if err != nil {
		return FuncType{}, err
	}
	switch form {
	case 0x60:
	case 0x4e, 0x4f, 0x50:
		return FuncType{}, r.unsupported(at, "recursive and sub types (GC proposal) are not supported")
	default:
		return FuncType{}, r.Fail(at, "type form %#x is not a function type (0x60)", form)
	}
	params, err := r.valTypes("parameters", maxParams)
	if err != nil {
		return FuncType{}, err
	}
	results, err := r.valTypes("results", maxResults)
	return FuncType{Params: params, Results: results}, err
}

func (r *Reader) valTypes(what string, limit int) ([]ValType, error) {
	n, err := r.count(what, 1, limit)
	if err != nil || n == 0 {
		return nil, err
	}
	vs := make([]ValType, n)
	for i := range vs {
		if vs[i], err = r.ValType(); err != nil {
			return nil, err
		}
	}
	return vs, nil
}

// ValType reads a value type.
func (r *Reader) ValType() (ValType, error) {
	at := r.Pos
	c, err := r.Byte()
	if err != nil {
		return 0, err
	}
	switch v := ValType(c); v {
	case I32, I64, F32, F64, V128, FuncRef, ExternRef:
		return v, nil
	case 0x69, 0x63, 0x64:
		return 0, r.unsupported(at, "value type %#x (exception handling or GC proposal) is not supported", c)
	}
	return 0, r.Fail(at, "invalid value type %#x", c)
}

// Limits reads the limits of a memory or table. The flags byte allows the encodings of
// the threads (shared) and memory64 proposals, so that callers can refuse them by name.
func (r *Reader) Limits() (Limits, error) {
	at := r.Pos
	flags, err := r.Byte()
	if err != nil {
		return Limits{}, err
	}
	if flags > 0x07 {
		return Limits{}, r.Fail(at, "invalid limits flags %#x", flags)
	}
	l := Limits{HasMax: flags&1 != 0, Shared: flags&2 != 0, Is64: flags&4 != 0}
	read := r.U64
	if !l.Is64 {
		read = func() (uint64, error) { v, err := r.U32(); return uint64(v), err }
	}
	if l.Min, err = read(); err != nil {
		return Limits{}, err
	}
	if l.HasMax {
		if l.Max, err = read(); err != nil {
			return Limits{}, err
		}
	}
	return l, nil
}

func (m *Module) decodeImports(s *Reader) error {
	n, err := s.count("imports", 4, maxImports)
	if err != nil {
		return err
	}
	m.Imports = make([]Import, n)
	for i := range m.Imports {
		at := s.Pos
		im := &m.Imports[i]
		if *im, err = s.Import(); err != nil {
			return err
		}
		switch im.Kind {
		case KindFunc:
			if int(im.Type) >= m.NumTypes() {
				return s.Fail(at, "import %s.%s has type %d, but there are %d types", Quote(im.Module), Quote(im.Name), im.Type, m.NumTypes())
			}
			m.importedFuncs++
		case KindTable:
			m.importedTables++
		case KindMemory:
			m.importedMemories++
		case KindGlobal:
			m.importedGlobals++
		}
	}
	return nil
}

// Import reads one entry of the import section: its names, its kind and its type (a
// function's type index, unchecked; a table's element type and limits; a memory's
// limits; a global's value type and mutability, checked and dropped). It refuses the
// tag imports of the exception handling proposal and kinds that do not exist.
func (r *Reader) Import() (Import, error) {
	var im Import
	var err error
	if im.Module, err = r.Name("import module name"); err != nil {
		return im, err
	}
	if im.Name, err = r.Name("import name"); err != nil {
		return im, err
	}
	at := r.Pos
	kind, err := r.Byte()
	if err != nil {
		return im, err
	}
	im.Kind = ExternKind(kind)
	switch im.Kind {
	case KindFunc:
		im.Type, err = r.U32()
	case KindTable:
		if im.ElemType, err = r.refType(); err == nil {
			im.Limits, err = r.Limits()
		}
	case KindMemory:
		im.Limits, err = r.Limits()
	case KindGlobal:
		if _, err = r.ValType(); err == nil {
			err = r.mutability()
		}
	case 0x04:
		return im, r.unsupported(at, "tag import %s.%s (exception handling proposal) is not supported", Quote(im.Module), Quote(im.Name))
	default:
		return im, r.Fail(at, "import %s.%s has invalid kind %#x", Quote(im.Module), Quote(im.Name), kind)
	}
	return im, err
}

func (r *Reader) refType() (ValType, error) {
	at := r.Pos
	v, err := r.ValType()
	if err == nil && v != FuncRef && v != ExternRef {
		return v, r.Fail(at, "table element type %#x is not a reference type", byte(v))
	}
	return v, err
}

func (r *Reader) mutability() error {
	at := r.Pos
	c, err := r.Byte()
	if err == nil && c > 1 {
		return r.Fail(at, "invalid global mutability %#x", c)
	}
	return err
}

func (m *Module) decodeFunctions(s *Reader) error {
	n, err := s.count("functions", 1, maxFunctions)
	if err != nil {
		return err
	}
	m.Funcs = make([]uint32, n)
	for i := range m.Funcs {
		at := s.Pos
		if m.Funcs[i], err = s.U32(); err != nil {
			return err
		}
		if int(m.Funcs[i]) >= m.NumTypes() {
			return s.Fail(at, "function %d has type %d, but there are %d types", m.importedFuncs+uint32(i), m.Funcs[i], m.NumTypes())
		}
	}
	return nil
}

func (m *Module) decodeExports(s *Reader) error {
	n, err := s.count("exports", 3, maxExports)
	if err != nil {
		return err
	}
	m.Exports = make([]Export, n)
	seen := make(map[string]struct{}, n)
	for i := range m.Exports {
		e := &m.Exports[i]
		at := s.Pos
		if e.Name, err = s.Name("export name"); err != nil {
			return err
		}
		if _, dup := seen[e.Name]; dup {
			return s.Fail(at, "export name %s is repeated", Quote(e.Name))
		}
		seen[e.Name] = struct{}{}
		kindAt := s.Pos
		kind, err := s.Byte()
		if err != nil {
			return err
		}
		e.Kind = ExternKind(kind)
		if e.Index, err = s.U32(); err != nil {
			return err
		}
		var count uint32
		switch e.Kind {
		case KindFunc:
			count = m.numFuncs()
		case KindTable:
			count = m.importedTables + m.tables
		case KindMemory:
			count = m.importedMemories + uint32(len(m.Memories))
		case KindGlobal:
			count = m.importedGlobals + m.globals
		case 0x04:
			return s.unsupported(kindAt, "tag export %s (exception handling proposal) is not supported", Quote(e.Name))
		default:
			return s.Fail(kindAt, "export %s has invalid kind %#x", Quote(e.Name), kind)
		}
		if e.Index >= count {
			return s.Fail(at, "export %s refers to %s %d, but the module has %d", Quote(e.Name), e.Kind, e.Index, count)
		}
	}
	return nil
}

// maxQuoted is how many bytes of a name Quote shows: names come from the module and
// may be megabytes long.
const maxQuoted = 64

// Quote returns name as a double-quoted Go string literal, safe to print whatever
// bytes it holds, cut to its first 64 bytes (at a UTF-8 boundary) followed by "..." if
// it is longer.
func Quote(name string) string {
	if len(name) <= maxQuoted {
		return strconv.Quote(name)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return strconv.Quote(name[:cut]) + "..."
}

// decodeCode reads the size and local declarations of each function body, skipping its
// instructions (Body.Instructions decodes those), and keeps the section for Bodies.
func (m *Module) decodeCode(s *Reader) error {
	m.code = *s
	n, err := s.count("function bodies", 2, maxFunctions)
	if err != nil {
		return err
	}
	m.codeCount = n
	for i := 0; i < n; i++ {
		if _, err := m.body(s, i); err != nil {
			return err
		}
	}
	return nil
}

// skipElements checks the structure of the element segments.
func (r *Reader) skipElements() error {
	n, err := r.count("element segments", 2, maxElements)
	for i := 0; i < n && err == nil; i++ {
		at := r.Pos
		var flags uint32
		if flags, err = r.U32(); err != nil {
			return err
		}
		if flags > 7 {
			return r.Fail(at, "invalid element segment flags %#x", flags)
		}
		// Bit 0: passive or declarative; bit 1: explicit table index (active) or
		// declarative (passive); bit 2: expressions rather than function indices.
		if flags&1 == 0 {
			if flags&2 != 0 {
				if _, err = r.U32(); err != nil {
					return err
				}
			}
			if err = r.skipConstExpr(); err != nil {
				return err
			}
		}
		if flags&3 != 0 { // an element type follows
			if err = r.elemType(flags&4 != 0); err != nil {
				return err
			}
		}
		var items int
		if items, err = r.count("element segment items", 1, maxElements); err != nil {
			return err
		}
		for j := 0; j < items && err == nil; j++ {
			if flags&4 != 0 {
				err = r.skipConstExpr()
			} else {
				_, err = r.U32()
			}
		}
	}
	return err
}

// elemType reads the element type of a segment: a reference type if exprs, else an
// element kind, of which 0x00 (funcref) is the only one.
func (r *Reader) elemType(exprs bool) error {
	if exprs {
		_, err := r.refType()
		return err
	}
	at := r.Pos
	kind, err := r.Byte()
	if err == nil && kind != 0 {
		return r.Fail(at, "invalid element kind %#x", kind)
	}
	return err
}

// skipData checks the structure of the data segments, and that each active one is
// for memory 0.
func (r *Reader) skipData() error {
	n, err := r.count("data segments", 2, maxData)
	for i := 0; i < n && err == nil; i++ {
		at := r.Pos
		var flags uint32
		if flags, err = r.U32(); err != nil {
			return err
		}
		switch flags {
		case 0: // active, memory 0
			err = r.skipConstExpr()
		case 1: // passive
		case 2: // active, explicit memory
			memAt := r.Pos
			var mem uint32
			if mem, err = r.U32(); err == nil && mem != 0 {
				// WebAssembly 2.0 has one memory. The host never gives this segment to
				// the engine (it writes active segments itself), so the engine, which
				// refuses it, would not.
				return r.Fail(memAt, "data segment %d is for memory %d; WebAssembly 2.0 has only memory 0", i, mem)
			}
			if err == nil {
				err = r.skipConstExpr()
			}
		default:
			return r.Fail(at, "invalid data segment flags %#x", flags)
		}
		if err != nil {
			return err
		}
		at = r.Pos
		var size uint32
		if size, err = r.U32(); err != nil {
			return err
		}
		if uint64(size) > uint64(r.Remaining()) {
			return r.Fail(at, "data segment %d of %d bytes does not fit in the %d bytes left in the section", i, size, r.Remaining())
		}
		r.Pos += int(size)
	}
	return err
}
