package wasmtest

import "bytes"

// Opcodes of the structured instructions, for building code.
const (
	Block byte = 0x02
	Loop  byte = 0x03
	If    byte = 0x04
	End   byte = 0x0b
	BrIf  byte = 0x0d
	Call  byte = 0x10

	LocalGet byte = 0x20
	I32Const byte = 0x41
	I32Add   byte = 0x6a
	Drop     byte = 0x1a

	// Empty is the block type of a block without parameters or results.
	Empty byte = 0x40
)

// ABI adds to m what the smallest valid ABI v1 pre module has (SPEC.md §2 and §3): one
// memory page exported as "memory", and the functions cocoon_abi_v1, cocoon_alloc and
// cocoon_pre with bodies that return zeros. Functions added afterwards come after them.
func (m *Module) ABI() {
	m.Memory(0, 1, 0)
	m.Export("memory", KindMemory, 0)
	m.ExportFunc("cocoon_abi_v1", nil, nil)
	m.ExportFunc("cocoon_alloc", []byte{I32}, []byte{I32})
	m.ExportFunc("cocoon_pre", []byte{I32, I32}, []byte{I64})
}

// Nest returns n blocks of kind op (Block, Loop, or If on local 0, which must be an
// i32) with empty block types, each inside the one before, and their n ends.
func Nest(op byte, n int) []byte {
	open := []byte{op, Empty}
	if op == If {
		open = []byte{LocalGet, 0, If, Empty}
	}
	return append(bytes.Repeat(open, n), bytes.Repeat([]byte{End}, n)...)
}

// Sequence returns code repeated until it fills at least size bytes.
func Sequence(code []byte, size int) []byte {
	return bytes.Repeat(code, (size+len(code)-1)/len(code))
}
