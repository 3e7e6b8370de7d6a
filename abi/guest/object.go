package guest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"unicode/utf8"
)

// The chat types round-trip JSON objects without losing members they have no field
// for: a module that rewrites one message must not drop the request's tools,
// response_format or vendor extensions. Each type lists its known members as fields
// and decodes and encodes itself through decodeObject and appendObject below:
//
//   - Members without a field are kept verbatim in the type's Extra map.
//   - A known member whose value is null is kept in Extra too, since Go cannot tell null
//     from a zero value; setting the field to a non-zero value replaces it.
//   - A known member that was present is written back even when its value is zero (so
//     "index":0 and "content":"" survive); a field that was absent is written only when
//     it is non-zero.
//
// Encoding writes known members first, in declaration order, then Extra members sorted
// by name. Member order carries no meaning in JSON, so the result is equal as a JSON
// value to the input, not byte for byte.

// member ties a JSON member name to the Go field that holds it.
type member struct {
	name  string
	field any // pointer to the field
}

// present records which members of a type's member list were in the decoded JSON; bit i
// is member i.
type present uint8

// decodeObject reads the JSON object at the decoder into members, the rest into
// *extra, and records in *has which members were present; null decodes to nothing, as
// encoding/json does. what names the object in error messages.
func (d *decoder) decodeObject(what string, members []member, extra *map[string]json.RawMessage, has *present) error {
	if d.isNull() {
		return d.literal("null")
	}
	return d.object(what, func(name []byte) error {
		if !d.isNull() {
			for i, m := range members {
				if m.name == string(name) {
					if err := decodeValue(d, m.field); err != nil {
						return fmt.Errorf("%s: %w", m.name, err)
					}
					*has |= 1 << i
					return nil
				}
			}
		}
		start := d.i
		if err := d.skipValue(); err != nil {
			return err
		}
		if *extra == nil {
			*extra = make(map[string]json.RawMessage)
		}
		(*extra)[string(name)] = bytes.Clone(d.b[start:d.i])
		return nil
	})
}

// decodeValue reads the value at the decoder into field, a pointer to a member's field.
func decodeValue(d *decoder, field any) error {
	switch f := field.(type) {
	case *string:
		return d.decodeString(f)
	case *int:
		var n int64
		err := d.decodeInt(&n)
		*f = int(n) // int has 64 bits on wasm and on the machines the SDK is tested on
		return err
	case *int64:
		return d.decodeInt(f)
	case *[]Message:
		return decodeArray(d, f)
	case *[]Choice:
		return decodeArray(d, f)
	case *[]ContentPart:
		return decodeArray(d, f)
	case **Usage:
		*f = new(Usage)
		return (*f).decode(d)
	case interface{ decode(*decoder) error }: // *Content, *Message
		return f.decode(d)
	}
	panic(fmt.Sprintf("guest: no decoder for a member of type %T", field))
}

// appender is implemented by the chat types: they append their JSON encoding to a
// buffer directly, so that nested values are not re-validated at every level as the
// output of a json.Marshaler is.
type appender interface {
	appendJSON(buf *bytes.Buffer) error
}

// marshal returns the JSON encoding of a.
func marshal(a appender) ([]byte, error) {
	var buf bytes.Buffer
	if err := a.appendJSON(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// appendObject appends members and extra as one JSON object, following the rules above.
func appendObject(buf *bytes.Buffer, members []member, extra map[string]json.RawMessage, has present) error {
	buf.WriteByte('{')
	first := true
	var written present // members written, which Extra's values of the same name do not repeat
	for i, m := range members {
		if has&(1<<i) == 0 && isZero(m.field) {
			continue
		}
		appendName(buf, &first, m.name)
		if err := appendField(buf, m.field); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		written |= 1 << i
	}
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		if i := slices.IndexFunc(members, func(m member) bool { return m.name == k }); i >= 0 && written&(1<<i) != 0 {
			continue
		}
		appendName(buf, &first, k)
		if err := appendRaw(buf, extra[k]); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	buf.WriteByte('}')
	return nil
}

// appendName appends a member's name and its colon, after a comma unless it is the
// first.
func appendName(buf *bytes.Buffer, first *bool, name string) {
	if !*first {
		buf.WriteByte(',')
	}
	*first = false
	appendString(buf, name)
	buf.WriteByte(':')
}

// isZero reports whether the field a member points to holds its zero value, as
// reflect.Value.IsZero does. The chat types' scalar and slice fields are told without
// reflection, which in a module costs more than encoding them.
func isZero(field any) bool {
	switch f := field.(type) {
	case *string:
		return *f == ""
	case *int:
		return *f == 0
	case *int64:
		return *f == 0
	case *[]Message:
		return *f == nil
	case *[]Choice:
		return *f == nil
	case *[]ContentPart:
		return *f == nil
	case **Usage:
		return *f == nil
	case *Content:
		return f.kind == 0 && f.text == "" && f.parts == nil
	case *Message:
		return f.Role == "" && isZero(&f.Content) && f.Name == "" && f.Extra == nil && f.has == 0
	}
	return reflect.ValueOf(field).Elem().IsZero()
}

// appendField appends the JSON encoding of the value field points to.
func appendField(buf *bytes.Buffer, field any) error {
	switch f := field.(type) {
	case *string:
		appendString(buf, *f)
		return nil
	case *int:
		buf.Write(strconv.AppendInt(buf.AvailableBuffer(), int64(*f), 10))
		return nil
	case *int64:
		buf.Write(strconv.AppendInt(buf.AvailableBuffer(), *f, 10))
		return nil
	case *[]Message:
		return appendArray(buf, *f)
	case *[]Choice:
		return appendArray(buf, *f)
	case *[]ContentPart:
		return appendArray(buf, *f)
	case **Usage:
		return encodeTo(buf, *f)
	case appender: // *Content, *Message
		return f.appendJSON(buf)
	}
	return encodeTo(buf, reflect.ValueOf(field).Elem().Interface())
}

// appendRaw appends the raw JSON value v compacted, as encoding/json encodes a
// json.RawMessage (nil as null); an invalid v fails as it does there.
func appendRaw(buf *bytes.Buffer, v json.RawMessage) error {
	if v == nil {
		buf.WriteString("null")
		return nil
	}
	out, ok := compact(buf.AvailableBuffer(), v)
	if !ok {
		return encodeTo(buf, v) // for encoding/json's error
	}
	buf.Write(out)
	return nil
}

// appendString appends s as a JSON string exactly as encoding/json does with HTML
// escaping off: '"', '\\' and control characters escaped (\b, \f, \n, \r and \t by
// name), invalid UTF-8 replaced by \ufffd, U+2028 and U+2029 escaped.
func appendString(buf *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	buf.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			buf.WriteString(s[start:i])
			switch c {
			case '\\', '"':
				buf.WriteByte('\\')
				buf.WriteByte(c)
			case '\b':
				buf.WriteString(`\b`)
			case '\f':
				buf.WriteString(`\f`)
			case '\n':
				buf.WriteString(`\n`)
			case '\r':
				buf.WriteString(`\r`)
			case '\t':
				buf.WriteString(`\t`)
			default:
				buf.WriteString(`\u00`)
				buf.WriteByte(hex[c>>4])
				buf.WriteByte(hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			buf.WriteString(s[start:i])
			buf.WriteString(`\ufffd`)
		case r == '\u2028' || r == '\u2029':
			buf.WriteString(s[start:i])
			buf.WriteString(`\u202`)
			buf.WriteByte(hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	buf.WriteString(s[start:])
	buf.WriteByte('"')
}

// appendArray appends the JSON array of s; nil encodes as null, as encoding/json does.
func appendArray[T appender](buf *bytes.Buffer, s []T) error {
	if s == nil {
		buf.WriteString("null")
		return nil
	}
	buf.WriteByte('[')
	for i, v := range s {
		if i > 0 {
			buf.WriteByte(',')
		}
		if err := v.appendJSON(buf); err != nil {
			return err
		}
	}
	buf.WriteByte(']')
	return nil
}

// encodeTo appends the JSON encoding of v to buf. Unlike json.Marshal it leaves <, >
// and & unescaped: the output goes to a model or a client, not into HTML, and escaping
// would only make it longer.
func encodeTo(buf *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case string:
		appendString(buf, v)
		return nil
	case *Usage:
		if v == nil {
			buf.WriteString("null")
			return nil
		}
		return v.appendJSON(buf)
	case appender:
		return v.appendJSON(buf)
	case []Message:
		return appendArray(buf, v)
	case []Choice:
		return appendArray(buf, v)
	case []ContentPart:
		return appendArray(buf, v)
	}
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	buf.Truncate(buf.Len() - 1) // Encode's newline
	return nil
}

// Marshal encodes v as JSON like json.Marshal, without escaping <, > and &.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := encodeTo(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
