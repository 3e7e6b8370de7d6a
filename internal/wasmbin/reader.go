package wasmbin

import (
	"fmt"
	"unicode/utf8"
)

// Reader reads the primitive encodings of the binary format from B[Pos:End]. End is the
// end of the section (or body) being decoded, so a lying length or count can never
// make the Reader look past it. Every method fails with an *Error instead of
// panicking, provided that 0 <= Pos <= End <= len(B). The fields are exported for a
// caller that rewrites a module as it reads it (host/internal/meter): it copies
// B[from:Pos] and may move Pos forward, never past End.
type Reader struct {
	B        []byte
	Pos, End int
	Section  string // named in errors
}

// Fail returns an *Error at offset at.
func (r *Reader) Fail(at int, format string, args ...any) *Error {
	return &Error{Section: r.Section, Offset: at, Reason: fmt.Sprintf(format, args...)}
}

// unsupported returns an *Error at offset at for a valid construct the decoder refuses.
func (r *Reader) unsupported(at int, format string, args ...any) *Error {
	e := r.Fail(at, format, args...)
	e.Unsupported = true
	return e
}

// Remaining returns the number of bytes left before End.
func (r *Reader) Remaining() int { return r.End - r.Pos }

// Byte reads one byte.
func (r *Reader) Byte() (byte, error) {
	if r.Pos >= r.End {
		return 0, r.Fail(r.Pos, "unexpected end of section")
	}
	c := r.B[r.Pos]
	r.Pos++
	return c, nil
}

// U32 reads an unsigned LEB128 number of at most 5 bytes whose value fits in 32 bits.
func (r *Reader) U32() (uint32, error) {
	v, err := r.leb(32)
	return uint32(v), err
}

// U64 reads an unsigned LEB128 number of at most 10 bytes.
func (r *Reader) U64() (uint64, error) {
	return r.leb(64)
}

// leb reads an unsigned LEB128 number of at most bits bits. As the spec requires, the
// encoding is at most ceil(bits/7) bytes and the unused bits of the last byte are zero.
func (r *Reader) leb(bits uint) (uint64, error) { return r.varint(bits, false) }

// count reads the length of a vector whose elements take at least minSize bytes each,
// and refuses it if the rest of the section cannot hold that many elements or if it is
// above limit. Callers may then allocate in proportion to the count.
func (r *Reader) count(what string, minSize, limit int) (int, error) {
	start := r.Pos
	n, err := r.U32()
	if err != nil {
		return 0, err
	}
	switch {
	case uint64(n)*uint64(minSize) > uint64(r.Remaining()):
		return 0, r.Fail(start, "%d %s do not fit in the %d bytes left in the section", n, what, r.Remaining())
	case int64(n) > int64(limit):
		return 0, r.unsupported(start, "%d %s are more than the limit of %d", n, what, limit)
	}
	return int(n), nil
}

// Name reads a length-prefixed UTF-8 string.
func (r *Reader) Name(what string) (string, error) {
	start := r.Pos
	n, err := r.U32()
	if err != nil {
		return "", err
	}
	if uint64(n) > uint64(r.Remaining()) {
		return "", r.Fail(start, "%s of %d bytes does not fit in the %d bytes left in the section", what, n, r.Remaining())
	}
	s := r.B[r.Pos : r.Pos+int(n)]
	if !utf8.Valid(s) {
		return "", r.Fail(start, "%s is not valid UTF-8", what)
	}
	r.Pos += int(n)
	return string(s), nil
}

// Part reads the id and size of a section or of a subsection (of the "name" custom
// section, say) and returns the id and a Reader of exactly its content, named after
// the section id in sectionNames (if any), which r skips. It refuses a size that does
// not fit in what is left of r.
func (r *Reader) Part(sectionNames []string) (id byte, content Reader, err error) {
	start := r.Pos
	if id, err = r.Byte(); err != nil {
		return 0, Reader{}, err
	}
	size, err := r.U32()
	if err != nil {
		return 0, Reader{}, err
	}
	if uint64(size) > uint64(r.Remaining()) {
		if r.Section == "" { // r reads the module
			return 0, Reader{}, r.Fail(start, "section of %d bytes does not fit in the %d bytes left in the module", size, r.Remaining())
		}
		return 0, Reader{}, r.Fail(start, "subsection of %d bytes does not fit in the %d bytes left in the section", size, r.Remaining())
	}
	content = Reader{B: r.B, Pos: r.Pos, End: r.Pos + int(size), Section: r.Section}
	if int(id) < len(sectionNames) {
		content.Section = sectionNames[id]
	}
	r.Pos = content.End
	return id, content, nil
}

// Skip skips n bytes.
func (r *Reader) Skip(n int) error {
	if n > r.Remaining() {
		r.Pos = r.End
		return r.Fail(r.End, "unexpected end of section")
	}
	r.Pos += n
	return nil
}

// Sleb reads a signed LEB128 number of at most bits bits. As the spec requires, the
// encoding is at most ceil(bits/7) bytes and the unused bits of the last byte are
// copies of the sign bit.
func (r *Reader) Sleb(bits uint) (int64, error) {
	v, err := r.varint(bits, true)
	return int64(v), err
}

// varint reads a LEB128 number of at most bits bits, signed (and then sign-extended to
// 64 bits) or not.
func (r *Reader) varint(bits uint, signed bool) (uint64, error) {
	start := r.Pos
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if r.Pos >= r.End {
			return 0, r.Fail(start, "unexpected end of section in LEB128 number")
		}
		c := r.B[r.Pos]
		r.Pos++
		if shift+7 >= bits {
			// Last possible byte: no continuation bit, and the bits beyond the width
			// zero, or for a signed number copies of its sign bit.
			used := bits - shift
			hi := c >> (used - 1) // the sign bit and up
			if c&0x80 != 0 || !signed && c>>used != 0 || signed && hi != 0 && hi != 0x7f>>(used-1) {
				return 0, r.Fail(start, "LEB128 number overflows %d bits", bits)
			}
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if signed && shift+7 < 64 && c&0x40 != 0 {
				v |= ^uint64(0) << (shift + 7)
			}
			return v, nil
		}
	}
}

// skipConstExpr skips a constant expression: constant instructions (including those
// of the extended-const proposal) up to end. Their types are not checked.
func (r *Reader) skipConstExpr() error {
	for {
		at := r.Pos
		op, err := r.Byte()
		if err != nil {
			return err
		}
		switch op {
		case 0x0b: // end
			return nil
		case 0x41: // i32.const
			_, err = r.Sleb(32)
		case 0x42: // i64.const
			_, err = r.Sleb(64)
		case 0x43: // f32.const
			err = r.Skip(4)
		case 0x44: // f64.const
			err = r.Skip(8)
		case 0x23, 0xd2: // global.get, ref.func
			_, err = r.U32()
		case 0xd0: // ref.null
			_, err = r.refType()
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // i32/i64 add, sub, mul
		case 0xfd: // v128.const
			var sub uint32
			if sub, err = r.U32(); err == nil && sub != 12 {
				return r.Fail(at, "instruction 0xfd %d is not allowed in a constant expression", sub)
			}
			if err == nil {
				err = r.Skip(16)
			}
		default:
			return r.Fail(at, "instruction %#x is not allowed in a constant expression", op)
		}
		if err != nil {
			return err
		}
	}
}
