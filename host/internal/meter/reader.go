package meter

import "fmt"

// reader reads the encodings of the binary format from b[pos:end], where end is the end
// of the section or body being read. Offsets in errors are offsets in the module.
type reader struct {
	b        []byte
	pos, end int
}

func (r *reader) fail(at int, format string, args ...any) error {
	return fmt.Errorf("meter: at offset %#x: %s", at, fmt.Sprintf(format, args...))
}

func (r *reader) remaining() int { return r.end - r.pos }

// part reads the id and size of a section (what "section", in "the module") or of a
// subsection, and returns the id and a reader of exactly its content, which r skips.
func (r *reader) part(what, in string) (id byte, content reader, err error) {
	start := r.pos
	if id, err = r.byte(); err != nil {
		return 0, reader{}, err
	}
	size, err := r.u32()
	if err != nil {
		return 0, reader{}, err
	}
	if int64(size) > int64(r.remaining()) {
		return 0, reader{}, r.fail(start, "%s %d of %d bytes overruns %s", what, id, size, in)
	}
	content = reader{b: r.b, pos: r.pos, end: r.pos + int(size)}
	r.pos = content.end
	return id, content, nil
}

func (r *reader) byte() (byte, error) {
	if r.pos >= r.end {
		return 0, r.fail(r.pos, "unexpected end")
	}
	c := r.b[r.pos]
	r.pos++
	return c, nil
}

func (r *reader) skip(n int) error {
	if n < 0 || n > r.remaining() {
		return r.fail(r.pos, "unexpected end")
	}
	r.pos += n
	return nil
}

// u32 reads an unsigned LEB128 number of at most 5 bytes that fits in 32 bits.
func (r *reader) u32() (uint32, error) {
	start := r.pos
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		if shift == 28 && c > 0x0f {
			break
		}
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, r.fail(start, "LEB128 number overflows 32 bits")
}

// skipU32s skips n u32s.
func (r *reader) skipU32s(n uint64) error {
	if n > uint64(r.remaining()) { // each takes a byte at least
		return r.fail(r.pos, "%d numbers do not fit in the %d bytes left", n, r.remaining())
	}
	for range n {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}

// skipSigned skips a signed LEB128 number of at most bits bits. Only its length is
// checked; the value is the runtime's to check.
func (r *reader) skipSigned(bits int) error {
	start := r.pos
	for range (bits + 6) / 7 {
		c, err := r.byte()
		if err != nil {
			return err
		}
		if c&0x80 == 0 {
			return nil
		}
	}
	return r.fail(start, "LEB128 number longer than %d bits", bits)
}

// name reads a length-prefixed name. Its bytes are not copied.
func (r *reader) name() ([]byte, error) {
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	start := r.pos
	if err := r.skip(int(n)); err != nil {
		return nil, err
	}
	return r.b[start:r.pos], nil
}

// skipValTypes skips a vector of value types and returns its length.
func (r *reader) skipValTypes() (uint32, error) {
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	return n, r.skip(int(n))
}

// limits reads the limits of a table or memory type and returns its maximum, if any.
func (r *reader) limits() (max uint32, hasMax bool, err error) {
	at := r.pos
	flags, err := r.byte()
	if err != nil {
		return 0, false, err
	}
	if flags > 1 {
		return 0, false, r.fail(at, "limits flags %#x are not part of WebAssembly 2.0", flags)
	}
	if _, err := r.u32(); err != nil {
		return 0, false, err
	}
	if flags == 0 {
		return 0, false, nil
	}
	max, err = r.u32()
	return max, err == nil, err
}

// memarg skips the alignment and offset of a memory instruction.
func (r *reader) memarg() error {
	at := r.pos
	align, err := r.u32()
	if err != nil {
		return err
	}
	if align >= 64 { // bit 6 announces a memory index (multi-memory)
		return r.fail(at, "memory index in a memory instruction is not part of WebAssembly 2.0")
	}
	_, err = r.u32()
	return err
}

// appendU32 appends the minimal LEB128 encoding of v.
func appendU32(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// appendS64 appends the minimal signed LEB128 encoding of v.
func appendS64(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s string) []byte {
	return append(appendU32(b, uint32(len(s))), s...)
}

// s32 reads a signed LEB128 number of at most 5 bytes that fits in 32 bits.
func (r *reader) s32() (int32, error) {
	start := r.pos
	var v int64
	for shift := 0; shift < 35; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= int64(c&0x7f) << shift
		if c&0x80 == 0 {
			if shift < 28 && c&0x40 != 0 {
				v |= -1 << (shift + 7)
			}
			if shift == 28 {
				v = int64(int32(uint32(v))) // the top bits must be the sign's: wazero checks
			}
			return int32(v), nil
		}
	}
	return 0, r.fail(start, "LEB128 number overflows 32 bits")
}
