package attest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/cocoonhost/cocoon/internal/strictjson"
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

// decodeStrict decodes b, at most max bytes of one JSON value, into v, refusing unknown
// members, trailing data, and two members of one object whose names are equal or equal
// but for case (see uniqueMembers). Errors wrap kind and call the document what.
func decodeStrict(b []byte, max int, v any, kind error, what string) error {
	if len(b) > max {
		return fmt.Errorf("%w: %d bytes exceeds %d", kind, len(b), max)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", kind, strictjson.DecodeError(err, v)) // no Go type names
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: trailing data after the %s", kind, what)
	}
	if err := uniqueMembers(b); err != nil {
		return fmt.Errorf("%w: %v", kind, err)
	}
	return nil
}
