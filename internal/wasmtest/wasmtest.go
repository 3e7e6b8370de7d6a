// Package wasmtest builds WebAssembly modules byte by byte for tests, so that tests do
// not depend on a toolchain. It encodes what it is told, valid or not.
package wasmtest

import (
	"bytes"
	"fmt"
)

// Value types, extern kinds and section ids of the binary format.
const (
	I32 byte = 0x7f
	I64 byte = 0x7e
	F32 byte = 0x7d
	F64 byte = 0x7c

	KindFunc   byte = 0
	KindTable  byte = 1
	KindMemory byte = 2
	KindGlobal byte = 3

	SecCustom   byte = 0
	SecType     byte = 1
	SecImport   byte = 2
	SecFunction byte = 3
	SecTable    byte = 4
	SecMemory   byte = 5
	SecGlobal   byte = 6
	SecExport   byte = 7
	SecStart    byte = 8
	SecCode     byte = 10
	SecData     byte = 11
)

// Header is the header of a core module.
var Header = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// U32 encodes v as unsigned LEB128.
func U32(v uint64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// S32 encodes v as signed LEB128, as i32.const takes it.
func S32(v int32) []byte {
	var b []byte
	for x := int64(v); ; {
		c := byte(x & 0x7f)
		x >>= 7
		if x == 0 && c&0x40 == 0 || x == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// Name encodes s as a length-prefixed name.
func Name(s string) []byte { return append(U32(uint64(len(s))), s...) }

// Vec encodes items as a vector.
func Vec(items ...[]byte) []byte {
	return append(U32(uint64(len(items))), bytes.Join(items, nil)...)
}

// Section encodes a section with the given id and payload.
func Section(id byte, payload []byte) []byte {
	return append(append([]byte{id}, U32(uint64(len(payload)))...), payload...)
}

// FuncType encodes a function type.
func FuncType(params, results []byte) []byte {
	b := append([]byte{0x60}, U32(uint64(len(params)))...)
	b = append(b, params...)
	b = append(b, U32(uint64(len(results)))...)
	return append(b, results...)
}

// Limits encodes limits with the given flags (bit 0: has max, bit 1: shared, bit 2:
// 64-bit); max is encoded only if flags has bit 0.
func Limits(flags byte, min, max uint64) []byte {
	b := append([]byte{flags}, U32(min)...)
	if flags&1 != 0 {
		b = append(b, U32(max)...)
	}
	return b
}

// Module is a module under construction. The zero value is an empty module. Imports
// must be added before functions, as they come first in the function index space.
type Module struct {
	types    [][]byte
	imports  [][]byte
	funcs    []uint32
	bodies   [][]byte
	tables   [][]byte
	memories [][]byte
	globals  [][]byte
	exports  [][]byte
	start    []byte
	data     [][]byte
	custom   [][]byte

	importedFuncs uint32
}

// Type adds the function type unless the module has it and returns its index.
func (m *Module) Type(params, results []byte) uint32 {
	t := FuncType(params, results)
	for i, have := range m.types {
		if bytes.Equal(have, t) {
			return uint32(i)
		}
	}
	m.types = append(m.types, t)
	return uint32(len(m.types) - 1)
}

func (m *Module) importEntry(module, name string, desc ...byte) {
	if len(m.funcs) > 0 {
		panic("wasmtest: imports must be added before functions")
	}
	m.imports = append(m.imports, append(append(Name(module), Name(name)...), desc...))
}

// ImportFunc imports a function and returns its function index.
func (m *Module) ImportFunc(module, name string, params, results []byte) uint32 {
	m.importEntry(module, name, append([]byte{KindFunc}, U32(uint64(m.Type(params, results)))...)...)
	m.importedFuncs++
	return m.importedFuncs - 1
}

// ImportMemory imports a memory with at least min pages.
func (m *Module) ImportMemory(module, name string, min uint64) {
	m.importEntry(module, name, append([]byte{KindMemory}, Limits(0, min, 0)...)...)
}

// ImportTable imports a funcref table.
func (m *Module) ImportTable(module, name string) {
	m.importEntry(module, name, KindTable, 0x70, 0x00, 0x00)
}

// ImportGlobal imports an immutable i32 global.
func (m *Module) ImportGlobal(module, name string) {
	m.importEntry(module, name, KindGlobal, I32, 0x00)
}

// Func defines a function whose body returns zero values of its results, and returns
// its function index.
func (m *Module) Func(params, results []byte) uint32 {
	var code []byte
	for _, r := range results {
		switch r {
		case I32:
			code = append(code, 0x41, 0x00)
		case I64:
			code = append(code, 0x42, 0x00)
		case F32:
			code = append(code, 0x43, 0, 0, 0, 0)
		case F64:
			code = append(code, 0x44, 0, 0, 0, 0, 0, 0, 0, 0)
		default:
			panic(fmt.Sprintf("wasmtest: no zero value for type %#x", r))
		}
	}
	return m.FuncBody(params, results, nil, code)
}

// FuncBody defines a function with the given local declarations (count, type pairs)
// and instructions, to which it appends the final end, and returns its function index.
func (m *Module) FuncBody(params, results []byte, locals [][2]byte, code []byte) uint32 {
	m.funcs = append(m.funcs, m.Type(params, results))
	body := U32(uint64(len(locals)))
	for _, l := range locals {
		body = append(body, l[0], l[1])
	}
	body = append(append(body, code...), 0x0b)
	m.bodies = append(m.bodies, append(U32(uint64(len(body))), body...))
	return m.importedFuncs + uint32(len(m.funcs)-1)
}

// Table defines a funcref table of min elements, without a maximum.
func (m *Module) Table(min uint64) {
	m.tables = append(m.tables, append([]byte{0x70}, Limits(0, min, 0)...))
}

// Memory defines a memory with the given limits (see Limits).
func (m *Module) Memory(flags byte, min, max uint64) {
	m.memories = append(m.memories, Limits(flags, min, max))
}

// Global defines a global of type t initialized by the constant instruction init.
func (m *Module) Global(t byte, mutable bool, init []byte) {
	mut := byte(0)
	if mutable {
		mut = 1
	}
	m.globals = append(m.globals, append(append([]byte{t, mut}, init...), 0x0b))
}

// Export exports the item of the given kind and index under name.
func (m *Module) Export(name string, kind byte, index uint32) {
	m.exports = append(m.exports, append(append(Name(name), kind), U32(uint64(index))...))
}

// ExportFunc defines a function with the given signature and exports it as name.
func (m *Module) ExportFunc(name string, params, results []byte) {
	m.Export(name, KindFunc, m.Func(params, results))
}

// Start sets the start function.
func (m *Module) Start(index uint32) { m.start = U32(uint64(index)) }

// Data adds an active data segment that initializes memory 0 from offset 0.
func (m *Module) Data(data []byte) {
	// i32.const 0; end; bytes
	m.data = append(m.data, append([]byte{0x00, 0x41, 0x00, 0x0b}, Name(string(data))...))
}

// Custom adds a custom section, emitted after all the others.
func (m *Module) Custom(name string, payload []byte) {
	m.custom = append(m.custom, append(Name(name), payload...))
}

// Bytes encodes the module. Sections with no entries are left out.
func (m *Module) Bytes() []byte {
	b := append([]byte(nil), Header...)
	vec := func(id byte, items [][]byte) {
		if len(items) > 0 {
			b = append(b, Section(id, Vec(items...))...)
		}
	}
	vec(SecType, m.types)
	vec(SecImport, m.imports)
	funcs := make([][]byte, len(m.funcs))
	for i, t := range m.funcs {
		funcs[i] = U32(uint64(t))
	}
	vec(SecFunction, funcs)
	vec(SecTable, m.tables)
	vec(SecMemory, m.memories)
	vec(SecGlobal, m.globals)
	vec(SecExport, m.exports)
	if m.start != nil {
		b = append(b, Section(SecStart, m.start)...)
	}
	vec(SecCode, m.bodies)
	vec(SecData, m.data)
	for _, c := range m.custom {
		b = append(b, Section(SecCustom, c)...)
	}
	return b
}
