package wasmbin

import (
	"fmt"
	"unicode/utf8"
)

// reader reads the primitive encodings of the binary format from b[pos:end]. end is the
// end of the section being decoded, so a lying length or count can never make the
// reader look past its section. Every method fails with an *Error instead of panicking.
type reader struct {
	b       []byte
	pos     int
	end     int
	section string // named in errors
}

// fail returns an *Error at offset at.
func (r *reader) fail(at int, format string, args ...any) *Error {
	return &Error{Section: r.section, Offset: at, Reason: fmt.Sprintf(format, args...)}
}

// unsupported returns an *Error at offset at for a valid construct the decoder refuses.
func (r *reader) unsupported(at int, format string, args ...any) *Error {
	e := r.fail(at, format, args...)
	e.Unsupported = true
	return e
}

func (r *reader) remaining() int { return r.end - r.pos }

func (r *reader) byte() (byte, error) {
	if r.pos >= r.end {
		return 0, r.fail(r.pos, "unexpected end of section")
	}
	c := r.b[r.pos]
	r.pos++
	return c, nil
}

// u32 reads an unsigned LEB128 number of at most 5 bytes whose value fits in 32 bits.
func (r *reader) u32() (uint32, error) {
	v, err := r.leb(32)
	return uint32(v), err
}

// u64 reads an unsigned LEB128 number of at most 10 bytes.
func (r *reader) u64() (uint64, error) {
	return r.leb(64)
}

// leb reads an unsigned LEB128 number of at most bits bits. As the spec requires, the
// encoding is at most ceil(bits/7) bytes and the unused bits of the last byte are zero.
func (r *reader) leb(bits uint) (uint64, error) { return r.varint(bits, false) }

// count reads the length of a vector whose elements take at least minSize bytes each,
// and refuses it if the rest of the section cannot hold that many elements or if it is
// above limit. Callers may then allocate in proportion to the count.
func (r *reader) count(what string, minSize, limit int) (int, error) {
	start := r.pos
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	switch {
	case uint64(n)*uint64(minSize) > uint64(r.remaining()):
		return 0, r.fail(start, "%d %s do not fit in the %d bytes left in the section", n, what, r.remaining())
	case int64(n) > int64(limit):
		return 0, r.unsupported(start, "%d %s are more than the limit of %d", n, what, limit)
	}
	return int(n), nil
}

// name reads a length-prefixed UTF-8 string.
func (r *reader) name(what string) (string, error) {
	start := r.pos
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	if uint64(n) > uint64(r.remaining()) {
		return "", r.fail(start, "%s of %d bytes does not fit in the %d bytes left in the section", what, n, r.remaining())
	}
	s := r.b[r.pos : r.pos+int(n)]
	if !utf8.Valid(s) {
		return "", r.fail(start, "%s is not valid UTF-8", what)
	}
	r.pos += int(n)
	return string(s), nil
}

// skip skips n bytes.
func (r *reader) skip(n int) error {
	if n > r.remaining() {
		r.pos = r.end
		return r.fail(r.end, "unexpected end of section")
	}
	r.pos += n
	return nil
}

// sleb reads a signed LEB128 number of at most bits bits. As the spec requires, the
// encoding is at most ceil(bits/7) bytes and the unused bits of the last byte are
// copies of the sign bit.
func (r *reader) sleb(bits uint) (int64, error) {
	v, err := r.varint(bits, true)
	return int64(v), err
}

// varint reads a LEB128 number of at most bits bits, signed (and then sign-extended to
// 64 bits) or not.
func (r *reader) varint(bits uint, signed bool) (uint64, error) {
	start := r.pos
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if r.pos >= r.end {
			return 0, r.fail(start, "unexpected end of section in LEB128 number")
		}
		c := r.b[r.pos]
		r.pos++
		if shift+7 >= bits {
			// Last possible byte: no continuation bit, and the bits beyond the width
			// zero, or for a signed number copies of its sign bit.
			used := bits - shift
			hi := c >> (used - 1) // the sign bit and up
			if c&0x80 != 0 || !signed && c>>used != 0 || signed && hi != 0 && hi != 0x7f>>(used-1) {
				return 0, r.fail(start, "LEB128 number overflows %d bits", bits)
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
func (r *reader) skipConstExpr() error {
	for {
		at := r.pos
		op, err := r.byte()
		if err != nil {
			return err
		}
		switch op {
		case 0x0b: // end
			return nil
		case 0x41: // i32.const
			_, err = r.sleb(32)
		case 0x42: // i64.const
			_, err = r.sleb(64)
		case 0x43: // f32.const
			err = r.skip(4)
		case 0x44: // f64.const
			err = r.skip(8)
		case 0x23, 0xd2: // global.get, ref.func
			_, err = r.u32()
		case 0xd0: // ref.null
			err = r.refType()
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // i32/i64 add, sub, mul
		case 0xfd: // v128.const
			var sub uint32
			if sub, err = r.u32(); err == nil && sub != 12 {
				return r.fail(at, "instruction 0xfd %d is not allowed in a constant expression", sub)
			}
			if err == nil {
				err = r.skip(16)
			}
		default:
			return r.fail(at, "instruction %#x is not allowed in a constant expression", op)
		}
		if err != nil {
			return err
		}
	}
}
