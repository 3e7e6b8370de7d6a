package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The chat types decode in one pass per nesting level instead of encoding/json's
// validate-then-parse at every level, which re-scans a 1 MiB message a dozen times:
// json.Unmarshal validates the whole document once before it calls UnmarshalJSON, and
// below that the types split objects and arrays and decode strings themselves.

// errSyntax is returned for malformed JSON, which only a direct call of UnmarshalJSON
// can pass in (encoding/json validates the document first).
var errSyntax = errors.New("invalid JSON")

// skipSpace returns the index of the first non-space byte of b at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the index just after the JSON value starting at b[i].
func valueEnd(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1, nil
			}
		}
		return 0, errSyntax
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := valueEnd(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errSyntax
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	if j == i {
		return 0, errSyntax
	}
	return j, nil
}

// kindOf names the kind of the JSON value b, for error messages.
func kindOf(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

// splitObject calls f with the raw name (still quoted) and value of every member of the
// JSON object b.
func splitObject(b []byte, f func(name, value []byte) error) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return fmt.Errorf("want an object, got %s", kindOf(b[i:]))
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil
	}
	for {
		end, err := valueEnd(b, i)
		if err != nil || b[i] != '"' {
			return errSyntax
		}
		name := b[i:end]
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return errSyntax
		}
		i = skipSpace(b, i+1)
		if end, err = valueEnd(b, i); err != nil {
			return err
		}
		if err := f(name, b[i:end]); err != nil {
			return err
		}
		i = skipSpace(b, end)
		if i >= len(b) {
			return errSyntax
		}
		if b[i] == '}' {
			return nil
		}
		if b[i] != ',' {
			return errSyntax
		}
		i = skipSpace(b, i+1)
	}
}

// decodeArray decodes the JSON array b into *s, each element with its UnmarshalJSON.
func decodeArray[T any, PT interface {
	*T
	json.Unmarshaler
}](b []byte, s *[]T) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return fmt.Errorf("want an array, got %s", kindOf(b[i:]))
	}
	*s = []T{}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil
	}
	for {
		end, err := valueEnd(b, i)
		if err != nil {
			return err
		}
		var v T
		if err := PT(&v).UnmarshalJSON(b[i:end]); err != nil {
			return err
		}
		*s = append(*s, v)
		i = skipSpace(b, end)
		if i >= len(b) {
			return errSyntax
		}
		if b[i] == ']' {
			return nil
		}
		if b[i] != ',' {
			return errSyntax
		}
		i = skipSpace(b, i+1)
	}
}

// decodeString decodes the JSON string b. Strings without escapes, the common case, are
// copied as they are; others go through encoding/json.
func decodeString(b []byte, s *string) error {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return fmt.Errorf("want a string, got %s", kindOf(b))
	}
	inner := b[1 : len(b)-1]
	for _, c := range inner {
		if c == '\\' || c < 0x20 {
			return json.Unmarshal(b, s)
		}
	}
	if !utf8.Valid(inner) {
		return json.Unmarshal(b, s) // which replaces invalid UTF-8 as encoding/json does
	}
	*s = string(inner)
	return nil
}
