package attest

import (
	"encoding/binary"
	"io"
)

// writeFields writes each field to w (a hash, or a buffer) as a 4-byte big-endian
// length followed by the field's bytes. Every digest in this package is taken over such an encoding, with a
// domain string as the first field, so that no two different inputs (of the same or
// of another kind) encode to the same bytes.
func writeFields(h io.Writer, fields ...[]byte) {
	var n [4]byte
	for _, f := range fields {
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		h.Write(n[:])
		h.Write(f)
	}
}
