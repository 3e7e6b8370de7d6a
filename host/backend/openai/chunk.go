package openai

import (
	"encoding/json"
	"strconv"
)

// decodeChunk decodes the data of one event into c as json.Unmarshal does. Chunks in
// the shape every server streams take a fast path (scanChunk) that does not allocate
// for the members it skips and uses no reflection: encoding/json was most of the
// adapter's cost per token. Anything else, error objects included, goes to
// encoding/json, so both paths agree on every input (FuzzDecodeChunk).
func decodeChunk(data []byte, c *chunk) error {
	if scanChunk(data, c) {
		return nil
	}
	*c = chunk{}
	return json.Unmarshal(data, c)
}

// scanChunk decodes data into c, replacing what c held, if data is a JSON object that
// json.Unmarshal would decode into the same c without an error, and whose members are
// in the plain form the fast path knows: member names in lower case without escapes,
// each at most once per object; "model", "object" and "finish_reason" strings without
// escapes or null; "index" and the token counts integers or null; "content" a string
// or null; no "error", "message" or "code" member and no "object": "error" (an error
// object). It reports false, leaving c in any state, for everything else, valid or
// not. So that a stream decodes its chunks without allocating, c's choices are
// reused (an absent member leaves them empty, where encoding/json leaves nil) and so
// are its strings when they repeat.
func scanChunk(data []byte, c *chunk) bool {
	prev := *c
	*c = chunk{Choices: c.Choices[:0]}
	s := scanner{b: data}
	ok := s.object(func(name []byte) bool {
		switch string(name) {
		case "model":
			return s.plainString(&c.Model, prev.Model)
		case "object":
			return s.plainString(&c.Object, prev.Object) && c.Object != "error"
		case "choices":
			return s.choices(c)
		case "usage":
			return s.usage(c)
		case "error", "message", "code":
			return false
		}
		return s.skip(0)
	})
	s.space()
	return ok && s.i == len(s.b)
}

// scanner reads JSON from b at i.
type scanner struct {
	b []byte
	i int
}

// maxDepth bounds the nesting of skipped values; deeper ones go to encoding/json.
const maxDepth = 64

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte, 0 at the end.
func (s *scanner) peek() byte {
	s.space()
	if s.i == len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// literal consumes word if it comes next.
func (s *scanner) literal(word string) bool {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

// object reads an object or null, calling member for each member with its name, which
// is plain (lower-case ASCII, digits and '_', no escapes) and new in this object;
// member reads the value.
func (s *scanner) object(member func(name []byte) bool) bool {
	switch s.peek() {
	case 'n':
		return s.literal("null")
	case '{':
		s.i++
	default:
		return false
	}
	var seen [16][]byte // the names so far; an object with more goes to encoding/json
	n := 0
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		if s.peek() != '"' {
			return false
		}
		start := s.i + 1
		if !s.str() {
			return false
		}
		name := s.b[start : s.i-1]
		if !plainName(name) {
			return false
		}
		if n == len(seen) {
			return false
		}
		for _, prev := range seen[:n] {
			if string(prev) == string(name) {
				return false
			}
		}
		seen[n], n = name, n+1
		if s.peek() != ':' {
			return false
		}
		s.i++
		if !member(name) {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// plainName reports whether a member name matches a struct field only as written:
// encoding/json matches names case-insensitively, with Unicode folds (the Kelvin sign
// for 'k'), which the fast path leaves to it.
func plainName(name []byte) bool {
	for _, b := range name {
		if !('a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '_') {
			return false
		}
	}
	return true
}

// choices reads the choices array or null.
func (s *scanner) choices(c *chunk) bool {
	switch s.peek() {
	case 'n':
		c.Choices = nil
		return s.literal("null")
	case '[':
	default:
		return false
	}
	c.Choices = c.Choices[:0]
	if c.Choices == nil {
		c.Choices = []choice{}
	}
	return s.elements(func() bool {
		c.Choices = append(c.Choices, choice{})
		ch := &c.Choices[len(c.Choices)-1]
		return s.object(func(name []byte) bool {
			switch string(name) {
			case "index":
				return s.integer(&ch.Index)
			case "finish_reason":
				return s.plainString(&ch.FinishReason, "")
			case "delta":
				return s.object(func(name []byte) bool {
					if string(name) == "content" {
						return s.content(&ch.Delta.Content)
					}
					return s.skip(0)
				})
			}
			return s.skip(0)
		})
	})
}

// elements reads an array, calling element to read each element.
func (s *scanner) elements(element func() bool) bool {
	if s.peek() != '[' {
		return false
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		return true
	}
	for {
		if !element() {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// usage reads the usage object or null.
func (s *scanner) usage(c *chunk) bool {
	if s.peek() == '{' {
		c.Usage = &usage{}
	}
	u := c.Usage
	return s.object(func(name []byte) bool {
		switch string(name) {
		case "prompt_tokens":
			return s.integer(&u.PromptTokens)
		case "completion_tokens":
			return s.integer(&u.CompletionTokens)
		}
		return s.skip(0)
	})
}

// plainString reads a string without escapes into v, or null, which leaves v as it is.
// A string equal to prev is prev, not a copy.
func (s *scanner) plainString(v *string, prev string) bool {
	if s.peek() == 'n' {
		return s.literal("null")
	}
	start := s.i
	if s.i == len(s.b) || s.b[s.i] != '"' || !s.str() {
		return false
	}
	lit := s.b[start+1 : s.i-1]
	for _, b := range lit {
		if b == '\\' || b >= 0x80 { // escapes, and bytes encoding/json may replace
			return false
		}
	}
	if *v = prev; string(lit) != prev {
		*v = string(lit)
	}
	return true
}

// content reads a string literal or null as encoding/json fills a json.RawMessage,
// but without a copy: v is valid as long as the scanner's bytes.
func (s *scanner) content(v *json.RawMessage) bool {
	s.space()
	start := s.i
	switch s.peek() {
	case 'n':
		if !s.literal("null") {
			return false
		}
	case '"':
		if !s.str() {
			return false
		}
	default:
		return false
	}
	*v = s.b[start:s.i]
	return true
}

// integer reads an integer that fits an int, or null, which leaves v as it is.
func (s *scanner) integer(v *int) bool {
	if s.peek() == 'n' {
		return s.literal("null")
	}
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	if s.i == digits || s.b[digits] == '0' && s.i-digits > 1 {
		return false
	}
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return false // a fraction or exponent: encoding/json refuses it for an int
	}
	n, err := strconv.Atoi(string(s.b[start:s.i]))
	*v = n
	return err == nil
}

// str reads a string literal at i, which is '"', checking it as encoding/json does:
// no control characters, only JSON's escapes. Other bytes, valid UTF-8 or not, pass.
func (s *scanner) str() bool {
	s.i++
	for s.i < len(s.b) {
		b := s.b[s.i]
		switch {
		case b == '"':
			s.i++
			return true
		case b < 0x20:
			return false
		case b == '\\':
			if s.i+1 == len(s.b) {
				return false
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if _, ok := hex4(s.b[s.i+2:]); !ok {
					return false
				}
				s.i += 6
			default:
				return false
			}
		default:
			s.i++
		}
	}
	return false
}

// skip reads and checks any value, nested at most maxDepth deep.
func (s *scanner) skip(depth int) bool {
	if depth > maxDepth {
		return false
	}
	switch c := s.peek(); {
	case c == '"':
		return s.str()
	case c == '{':
		return s.object(func([]byte) bool { return s.skip(depth + 1) })
	case c == '[':
		return s.elements(func() bool { return s.skip(depth + 1) })
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	}
	return false
}

// number reads a number as JSON's grammar has it.
func (s *scanner) number() bool {
	if s.b[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		start := s.i
		for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
			s.i++
		}
		return s.i - start
	}
	if s.i < len(s.b) && s.b[s.i] == '0' {
		s.i++
	} else if digits() == 0 {
		return false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}
