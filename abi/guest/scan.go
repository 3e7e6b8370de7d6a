package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The chat types decode a document in one pass that both checks its syntax and fills
// their fields, instead of encoding/json's validate-then-parse: in a module, a
// validation pass through encoding/json (a call through a function pointer per byte)
// cost as much as everything else a hook does. The decoder accepts exactly the JSON
// encoding/json accepts (RFC 8259, invalid UTF-8 in strings allowed, at most
// maxNestingDepth levels), decodes strings and integers exactly as it does, and keeps
// the members the types have no field for as the raw bytes of their values. FuzzDecode
// checks both against encoding/json on every input.

// maxNestingDepth is the deepest nesting of arrays and objects encoding/json accepts.
const maxNestingDepth = 10000

// errSyntax marks a document that is not JSON; decodeDocument replaces it with
// encoding/json's description.
var errSyntax = errors.New("invalid JSON")

// decoder reads one JSON document, b, from position i.
type decoder struct {
	b     []byte
	i     int
	depth int // arrays and objects open around i
	// spaced records that space() skipped something, for compacting (appendRaw).
	spaced bool
	// stack holds, for each open container of skipValue, whether it is an object.
	stack []bool
}

// decodeDocument decodes the JSON document b with f, which reads one value from the
// decoder, and checks that nothing but space follows it. Malformed JSON fails with
// encoding/json's error for it, even where f found a wrong type first, as encoding/json
// (which validates a document before it decodes it) reports it: the document is then
// scanned again, which costs only on failure.
func decodeDocument(b []byte, f func(d *decoder) error) error {
	d := &decoder{b: b}
	d.space()
	err := f(d)
	if err == nil {
		d.space()
		if d.i == len(d.b) {
			return nil
		}
	}
	if !json.Valid(b) {
		return json.Unmarshal(b, new(json.RawMessage))
	}
	return err
}

// space skips JSON white space.
func (d *decoder) space() {
	start := d.i
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
			continue
		}
		break
	}
	if d.i != start {
		d.spaced = true
	}
}

// peek returns the byte at i, or 0 at the end.
func (d *decoder) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

// kind names the kind of the value at i, for error messages.
func (d *decoder) kind() string {
	switch d.peek() {
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
	case 0:
		return "nothing"
	}
	return "number"
}

// isNull reports whether the value at i is the literal null.
func (d *decoder) isNull() bool {
	return len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null"
}

// open enters the array or object whose opening byte c ('[' or '{') is at i. If it is
// empty, it leaves it too and reports true.
func (d *decoder) open(c byte) (empty bool, err error) {
	d.i++
	d.depth++
	if d.depth > maxNestingDepth {
		return false, errSyntax
	}
	d.space()
	if d.peek() == c+2 { // ']' or '}'
		d.i++
		d.depth--
		return true, nil
	}
	return false, nil
}

// colon reads the colon after a member's name and the space around it.
func (d *decoder) colon() error {
	d.space()
	if d.peek() != ':' {
		return errSyntax
	}
	d.i++
	d.space()
	return nil
}

// next is called after an element or member: it reports whether another follows (a
// comma), or consumes the closing byte close and reports false.
func (d *decoder) next(close byte) (bool, error) {
	d.space()
	switch d.peek() {
	case ',':
		d.i++
		d.space()
		return true, nil
	case close:
		d.i++
		d.depth--
		return false, nil
	}
	return false, errSyntax
}

// object reads the object at i, calling f with each member's decoded name, the
// decoder then at its value, which f must read. what names the object in the error
// for a value that is not an object.
func (d *decoder) object(what string, f func(name []byte) error) error {
	if d.peek() != '{' {
		if d.peek() == 0 {
			return errSyntax
		}
		return fmt.Errorf("%s: want an object, got %s", what, d.kind())
	}
	if empty, err := d.open('{'); empty || err != nil {
		return err
	}
	for {
		name, err := d.str()
		if err != nil {
			return err
		}
		if err := d.colon(); err != nil {
			return err
		}
		if err := f(name); err != nil {
			return err
		}
		more, err := d.next('}')
		if err != nil || !more {
			return err
		}
	}
}

// array reads the array at i, calling f with the decoder at each element, which f must
// read.
func (d *decoder) array(f func() error) error {
	if d.peek() != '[' {
		if d.peek() == 0 {
			return errSyntax
		}
		return fmt.Errorf("want an array, got %s", d.kind())
	}
	if empty, err := d.open('['); empty || err != nil {
		return err
	}
	for {
		if err := f(); err != nil {
			return err
		}
		more, err := d.next(']')
		if err != nil || !more {
			return err
		}
	}
}

// skipValue checks the value at i and moves past it.
func (d *decoder) skipValue() error {
	base := len(d.stack)
	defer func() { d.stack = d.stack[:base] }()
	for {
		// At the start of a value.
		switch c := d.peek(); c {
		case '{', '[':
			empty, err := d.open(c)
			if err != nil {
				return err
			}
			if empty {
				break
			}
			isObject := c == '{'
			d.stack = append(d.stack, isObject)
			if isObject {
				if err := d.memberName(); err != nil {
					return err
				}
			}
			continue
		case '"':
			if err := d.skipString(); err != nil {
				return err
			}
		case 't':
			if err := d.literal("true"); err != nil {
				return err
			}
		case 'f':
			if err := d.literal("false"); err != nil {
				return err
			}
		case 'n':
			if err := d.literal("null"); err != nil {
				return err
			}
		default:
			if _, err := d.number(); err != nil {
				return err
			}
		}
		// After a value: close what it ends, or go on to the next one.
		for {
			if len(d.stack) == base {
				return nil
			}
			isObject := d.stack[len(d.stack)-1]
			close := byte(']')
			if isObject {
				close = '}'
			}
			more, err := d.next(close)
			if err != nil {
				return err
			}
			if more {
				if isObject {
					if err := d.memberName(); err != nil {
						return err
					}
				}
				break
			}
			d.stack = d.stack[:len(d.stack)-1]
		}
	}
}

// memberName reads a member's name and its colon, leaving i at its value.
func (d *decoder) memberName() error {
	if d.peek() != '"' {
		return errSyntax
	}
	if err := d.skipString(); err != nil {
		return err
	}
	return d.colon()
}

// literal reads the literal word (true, false or null) at i.
func (d *decoder) literal(word string) error {
	if len(d.b)-d.i < len(word) || string(d.b[d.i:d.i+len(word)]) != word {
		return errSyntax
	}
	d.i += len(word)
	return nil
}

// number reads the number at i and returns its text:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *decoder) number() ([]byte, error) {
	b, start := d.b, d.i
	i := start
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(b, i)
	default:
		return nil, errSyntax
	}
	if i < len(b) && b[i] == '.' {
		if i++; i >= len(b) || b[i] < '0' || b[i] > '9' {
			return nil, errSyntax
		}
		i = digits(b, i)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		if i++; i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return nil, errSyntax
		}
		i = digits(b, i)
	}
	d.i = i
	return b[start:i], nil
}

// digits returns the index of the first byte at or after i that is not a digit.
func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// skipString checks the string at i and moves past it.
func (d *decoder) skipString() error {
	_, _, err := d.scanString()
	return err
}

// scanString checks the string at i, moves past it and returns its content between the
// quotes, and whether that needs unquoting (escapes or invalid UTF-8) to be the string
// it encodes.
func (d *decoder) scanString() (content []byte, plain bool, err error) {
	b := d.b
	if d.peek() != '"' {
		return nil, false, errSyntax
	}
	start := d.i + 1
	plain = true
	for i := start; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			d.i = i + 1
			return b[start:i], plain, nil
		case c == '\\':
			plain = false
			if i+1 >= len(b) {
				return nil, false, errSyntax
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if hex4(b[i+2:]) < 0 {
					return nil, false, errSyntax
				}
				i += 6
			default:
				return nil, false, errSyntax
			}
		case c < 0x20:
			return nil, false, errSyntax
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				plain = false
			}
			i += size
		}
	}
	return nil, false, errSyntax
}

// hex4 returns the value of the four hexadecimal digits b starts with, or -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// str reads the string at i and returns what it encodes, as encoding/json decodes
// it: escapes resolved, a lone or mismatched surrogate escape and each byte of invalid
// UTF-8 replaced by U+FFFD. The result aliases b when the string needs no unquoting.
func (d *decoder) str() ([]byte, error) {
	content, plain, err := d.scanString()
	if err != nil || plain {
		return content, err
	}
	return unquote(content), nil
}

// unquote resolves the escapes of content, the valid inside of a JSON string, and
// replaces invalid UTF-8, exactly as encoding/json's unquote does.
func unquote(s []byte) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			switch e := s[i+1]; e {
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r := hex4(s[i+2:])
				i += 6
				if utf16.IsSurrogate(r) {
					var r2 rune = -1
					if i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
						r2 = hex4(s[i+2:])
					}
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						r = dec
						i += 6
					} else {
						r = utf8.RuneError
					}
				}
				out = utf8.AppendRune(out, r)
				continue
			default: // '"', '\\', '/'
				out = append(out, e)
			}
			i += 2
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(s[i:])
			out = utf8.AppendRune(out, r)
			i += size
		}
	}
	return out
}

// decodeString reads a string value into *s.
func (d *decoder) decodeString(s *string) error {
	if d.peek() != '"' {
		if d.peek() == 0 {
			return errSyntax
		}
		return fmt.Errorf("want a string, got %s", d.kind())
	}
	b, err := d.str()
	if err != nil {
		return err
	}
	*s = string(b)
	return nil
}

// decodeInt reads an integer value into *n, as encoding/json decodes a number into an
// int64: a number with a fraction or an exponent, or out of range, is an error.
func (d *decoder) decodeInt(n *int64) error {
	if c := d.peek(); c != '-' && (c < '0' || c > '9') {
		if c == 0 {
			return errSyntax
		}
		return fmt.Errorf("want a number, got %s", d.kind())
	}
	text, err := d.number()
	if err != nil {
		return err
	}
	v, err := strconv.ParseInt(string(text), 10, 64)
	if err != nil {
		return fmt.Errorf("want a number, got number %s", text)
	}
	*n = v
	return nil
}

// decodeArray reads an array value into *s, each element with its decode method.
func decodeArray[T any, PT interface {
	*T
	decode(d *decoder) error
}](d *decoder, s *[]T) error {
	*s = []T{}
	return d.array(func() error {
		var v T
		if err := PT(&v).decode(d); err != nil {
			return err
		}
		*s = append(*s, v)
		return nil
	})
}

// compact appends v, a JSON value, to buf without its insignificant space, as
// json.Compact does; it reports false, appending nothing, when v is not JSON.
func compact(buf []byte, v []byte) ([]byte, bool) {
	d := &decoder{b: v}
	d.space()
	if d.skipValue() != nil {
		return buf, false
	}
	d.space()
	if d.i != len(v) {
		return buf, false
	}
	if !d.spaced {
		return append(buf, v...), true
	}
	inString := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case inString:
			if c == '\\' {
				buf = append(buf, c, v[i+1])
				i++
				continue
			}
			inString = c != '"'
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			continue
		case c == '"':
			inString = true
		}
		buf = append(buf, c)
	}
	return buf, true
}
