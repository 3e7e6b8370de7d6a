package guest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
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

// decodeObject decodes the JSON object b into members, the rest into *extra, and records
// in *has which members were present. what names the object in error messages.
func decodeObject(b []byte, what string, members []member, extra *map[string]json.RawMessage, has *present) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return nil // as encoding/json does for null
	}
	var memberErr error
	err := splitObject(b, func(rawName, value []byte) error {
		var name string
		if err := decodeString(rawName, &name); err != nil {
			return err
		}
		isNull := string(value) == "null"
		for i, m := range members {
			if m.name == name && !isNull {
				if err := decodeValue(value, m.field); err != nil {
					memberErr = fmt.Errorf("%s: %w", name, err)
					return memberErr
				}
				*has |= 1 << i
				return nil
			}
		}
		if *extra == nil {
			*extra = make(map[string]json.RawMessage)
		}
		(*extra)[name] = bytes.Clone(value)
		return nil
	})
	if err != nil && err != memberErr {
		return fmt.Errorf("%s: %w", what, err)
	}
	return err
}

// decodeValue decodes the JSON value b into field, a pointer.
func decodeValue(b []byte, field any) error {
	switch f := field.(type) {
	case *string:
		return decodeString(b, f)
	case *[]Message:
		return decodeArray(b, f)
	case *[]Choice:
		return decodeArray(b, f)
	case *[]ContentPart:
		return decodeArray(b, f)
	case **Usage:
		*f = new(Usage)
		return (*f).UnmarshalJSON(b)
	case json.Unmarshaler:
		return f.UnmarshalJSON(b)
	}
	if err := json.Unmarshal(b, field); err != nil {
		return errors.New(describeJSONError(err))
	}
	return nil
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
	written := make(map[string]bool, len(members))
	for i, m := range members {
		v := reflect.ValueOf(m.field).Elem()
		if has&(1<<i) == 0 && v.IsZero() {
			continue
		}
		if err := appendMember(buf, &first, m.name, v.Interface()); err != nil {
			return err
		}
		written[m.name] = true
	}
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		if written[k] {
			continue
		}
		if err := appendMember(buf, &first, k, extra[k]); err != nil {
			return err
		}
	}
	buf.WriteByte('}')
	return nil
}

func appendMember(buf *bytes.Buffer, first *bool, name string, v any) error {
	if !*first {
		buf.WriteByte(',')
	}
	*first = false
	if err := encodeTo(buf, name); err != nil {
		return err
	}
	buf.WriteByte(':')
	if err := encodeTo(buf, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
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
