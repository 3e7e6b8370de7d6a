// Package jsonscan validates JSON and walks the members of objects and the elements of
// arrays without decoding them: the host checks the shape of every request and response
// that crosses a module boundary, and encoding/json's reflection and double scan cost
// more than the modules themselves on small requests.
//
// It accepts exactly RFC 8259 JSON encoded as UTF-8, nested at most MaxDepth deep: the
// same texts as json.Valid, except that invalid UTF-8 inside strings and deeper nesting
// are refused.
package jsonscan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// MaxDepth bounds the nesting of arrays and objects.
const MaxDepth = 1000

// SyntaxError says where b stops being valid JSON.
type SyntaxError struct {
	Offset int // byte offset of the problem
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at byte %d: %s", e.Offset, e.Msg)
}

// Kind is the type of a JSON value, told by its first byte.
type Kind byte

// The kinds of JSON values.
const (
	Invalid Kind = iota
	Object
	Array
	String
	Number
	Bool
	Null
)

func (k Kind) String() string {
	return [...]string{"invalid", "object", "array", "string", "number", "boolean", "null"}[k]
}

// KindOf returns the kind of a valid JSON value (as passed to Members' or Elements'
// callback).
func KindOf(v []byte) Kind {
	if len(v) == 0 {
		return Invalid
	}
	switch c := v[0]; {
	case c == '{':
		return Object
	case c == '[':
		return Array
	case c == '"':
		return String
	case c == 't' || c == 'f':
		return Bool
	case c == 'n':
		return Null
	case c == '-' || c >= '0' && c <= '9':
		return Number
	}
	return Invalid
}

// Valid returns nil if b is one valid JSON value with optional surrounding whitespace.
func Valid(b []byte) error {
	s := scanner{b: b}
	return s.document(nil)
}

// Members checks that b is one valid JSON object (whitespace around it allowed) and
// calls f with each member's key, unescaped, and raw value, in order. Duplicate keys are
// passed as they come. It stops at f's first error and returns it.
func Members(b []byte, f func(key string, value []byte) error) error {
	s := scanner{b: b}
	return s.document(func(key, value []byte) error { return f(unquote(key), value) })
}

// Fields calls f with each member of obj, a JSON object as passed to a Members, Fields
// or Elements callback (so already validated: it is not checked again), in order. It
// returns an error if obj is not an object, or f's first error.
func Fields(obj []byte, f func(key string, value []byte) error) error {
	if KindOf(obj) != Object {
		return fmt.Errorf("not an object: %s", KindOf(obj))
	}
	s := scanner{b: obj, trusted: true}
	return s.object(func(key []byte) error {
		start := s.i
		if err := s.value(); err != nil {
			return err
		}
		return f(unquote(key), obj[start:s.i])
	})
}

// Elements calls f with each element of arr, a JSON array as passed to a Members,
// Fields or Elements callback (so already validated), in order. It returns an error if
// arr is not an array, or f's first error.
func Elements(arr []byte, f func(value []byte) error) error {
	if KindOf(arr) != Array {
		return fmt.Errorf("not an array: %s", KindOf(arr))
	}
	s := scanner{b: arr, trusted: true}
	if empty, err := s.open(']'); empty || err != nil {
		return err
	}
	for {
		start := s.i
		if err := s.value(); err != nil {
			return err
		}
		if err := f(arr[start:s.i]); err != nil {
			return err
		}
		if done, err := s.next(']', "an array"); done || err != nil {
			return err
		}
	}
}

// Decoder reads one JSON document value by value, checking it as Valid does in the
// same single pass: for a caller that decodes a few members of many small documents
// (an inference server's stream) and wants neither reflection nor a second scan of
// the values it descends into. Kind tells what comes next; Object, Array and Value
// read it; End checks that only white space follows the document. The zero Decoder
// is ready after Reset; one that returned an error must not be used further.
type Decoder struct{ s scanner }

// Reset makes d read b from its start.
func (d *Decoder) Reset(b []byte) { d.s = scanner{b: b} }

// Kind returns the kind of the next value after white space, Invalid at the end of
// the input or before a byte no value starts with.
func (d *Decoder) Kind() Kind {
	d.s.space()
	return KindOf(d.s.b[d.s.i:])
}

// Object reads an object, calling member with each member's key as it is written
// between its quotes (escapes and all, in the input's memory) before its value,
// which member must read with d's methods, exactly once. It stops at member's first
// error and returns it.
func (d *Decoder) Object(member func(key []byte) error) error {
	if d.Kind() != Object {
		return d.s.errorf("%s where an object is required", d.Kind())
	}
	return d.s.object(member)
}

// Array reads an array, calling element before each element, which element must read
// with d's methods, exactly once. It stops at element's first error and returns it.
func (d *Decoder) Array(element func() error) error {
	if d.Kind() != Array {
		return d.s.errorf("%s where an array is required", d.Kind())
	}
	return d.s.array(element)
}

// Value reads any value and returns it as written, in the input's memory.
func (d *Decoder) Value() ([]byte, error) {
	d.s.space()
	start := d.s.i
	err := d.s.value()
	return d.s.b[start:d.s.i], err
}

// Offset is the offset in the input of the next byte d reads: after Kind, where the
// next value starts.
func (d *Decoder) Offset() int { return d.s.i }

// End checks that only white space is left.
func (d *Decoder) End() error {
	d.s.space()
	if d.s.i != len(d.s.b) {
		return d.s.errorf("unexpected %q after the value", d.s.b[d.s.i])
	}
	return nil
}

type scanner struct {
	b     []byte
	i     int
	depth int
	// trusted is set when b was validated already: strings are then skipped by
	// looking for their closing quote, without checking what they hold.
	trusted bool
}

// skipString moves past the closing quote of a string known to be valid.
func (s *scanner) skipString() error {
	for {
		j := bytes.IndexByte(s.b[s.i:], '"')
		if j < 0 {
			return s.errorf("unterminated string")
		}
		s.i += j + 1
		backslashes := 0
		for k := s.i - 2; k >= 0 && s.b[k] == '\\'; k-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			return nil
		}
	}
}

func (s *scanner) errorf(format string, args ...any) error {
	return &SyntaxError{Offset: s.i, Msg: fmt.Sprintf(format, args...)}
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

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

// document scans the whole input as one value; with members set the value must be an
// object whose members are passed to it with their values.
func (s *scanner) document(members func(key, value []byte) error) error {
	s.space()
	var err error
	if members != nil {
		if s.peek() != '{' {
			if s.i >= len(s.b) {
				return s.errorf("empty input where an object is required")
			}
			return s.errorf("%s where an object is required", KindOf(s.b[s.i:]))
		}
		err = s.object(func(key []byte) error {
			start := s.i
			if err := s.value(); err != nil {
				return err
			}
			return members(key, s.b[start:s.i])
		})
	} else {
		err = s.value()
	}
	if err != nil {
		return err
	}
	s.space()
	if s.i != len(s.b) {
		return s.errorf("unexpected %q after the value", s.b[s.i])
	}
	return nil
}

func (s *scanner) value() error {
	switch c := s.peek(); {
	case c == '{':
		return s.object(nil)
	case c == '[':
		return s.array(nil)
	case c == '"':
		return s.str()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	case s.i >= len(s.b):
		return s.errorf("unexpected end of input")
	default:
		return s.errorf("unexpected %q", c)
	}
}

func (s *scanner) enter() error {
	s.depth++
	if s.depth > MaxDepth {
		return s.errorf("nested deeper than %d", MaxDepth)
	}
	return nil
}

// object reads the object at s.i. For each member it calls member, if set, with the
// key as written between its quotes, and member reads the value; else it reads the
// value itself.
func (s *scanner) object(member func(key []byte) error) error {
	if empty, err := s.open('}'); empty || err != nil {
		return err
	}
	for {
		if s.peek() != '"' {
			return s.errorf("expected a string key")
		}
		keyStart := s.i + 1
		if err := s.str(); err != nil {
			return err
		}
		key := s.b[keyStart : s.i-1]
		s.space()
		if s.peek() != ':' {
			return s.errorf("expected ':' after a key")
		}
		s.i++
		s.space()
		var err error
		if member != nil {
			err = member(key)
		} else {
			err = s.value()
		}
		if err != nil {
			return err
		}
		if done, err := s.next('}', "an object"); done || err != nil {
			return err
		}
	}
}

// array reads the array at s.i. Before each element it calls element, if set, which
// reads it; else it reads it itself.
func (s *scanner) array(element func() error) error {
	if empty, err := s.open(']'); empty || err != nil {
		return err
	}
	for {
		var err error
		if element != nil {
			err = element()
		} else {
			err = s.value()
		}
		if err != nil {
			return err
		}
		if done, err := s.next(']', "an array"); done || err != nil {
			return err
		}
	}
}

// open enters the container whose opening bracket is at s.i and reports whether it is
// empty, in which case its closing bracket is consumed too.
func (s *scanner) open(closing byte) (empty bool, err error) {
	if err := s.enter(); err != nil {
		return false, err
	}
	s.i++
	s.space()
	if s.peek() == closing {
		s.i++
		s.depth--
		return true, nil
	}
	return false, nil
}

// next moves past what follows a member or an element: a comma, or the container's
// closing bracket, in which case done is true.
func (s *scanner) next(closing byte, container string) (done bool, err error) {
	s.space()
	switch s.peek() {
	case ',':
		s.i++
		s.space()
		return false, nil
	case closing:
		s.i++
		s.depth--
		return true, nil
	}
	return false, s.errorf("expected ',' or '%c' in %s", closing, container)
}

// plain marks the bytes a string holds as they are: not '"', '\\', a control
// character or part of a multi-byte UTF-8 sequence.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func (s *scanner) str() error {
	s.i++ // '"'
	if s.trusted {
		return s.skipString()
	}
	start := s.i
	ascii := true
	for s.i < len(s.b) {
		// The common run of plain bytes, in a register rather than s.i.
		i, b := s.i, s.b
		for i < len(b) && plain[b[i]] {
			i++
		}
		if s.i = i; i == len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			if !ascii && !utf8.Valid(s.b[start:s.i]) {
				return &SyntaxError{Offset: start, Msg: "invalid UTF-8 in a string"}
			}
			s.i++
			return nil
		case c == '\\':
			s.i++
			switch s.peek() {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i++
			case 'u':
				s.i++
				for range 4 {
					if !isHex(s.peek()) {
						return s.errorf("invalid \\u escape")
					}
					s.i++
				}
			default:
				return s.errorf("invalid escape")
			}
		case c < 0x20:
			return s.errorf("control character %#x in a string", c)
		default:
			if c >= utf8.RuneSelf {
				ascii = false
			}
			s.i++
		}
	}
	return s.errorf("unterminated string")
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func (s *scanner) literal(word string) error {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return s.errorf("invalid literal, expected %s", word)
	}
	s.i += len(word)
	return nil
}

func (s *scanner) digits() int {
	n := 0
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
		n++
	}
	return n
}

func (s *scanner) number() error {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return s.errorf("invalid number")
	}
	if s.peek() == '.' {
		s.i++
		if s.digits() == 0 {
			return s.errorf("invalid number: no digits after '.'")
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if s.digits() == 0 {
			return s.errorf("invalid number: no digits in the exponent")
		}
	}
	return nil
}

// unquote returns the text of the contents of a valid JSON string, what is between
// its quotes. Keys rarely hold escapes, so the plain case allocates only the string.
func unquote(inner []byte) string {
	if bytes.IndexByte(inner, '\\') >= 0 {
		var s string
		_ = json.Unmarshal(append(append([]byte{'"'}, inner...), '"'), &s) // valid by construction
		return s
	}
	return string(inner)
}

// Unquote returns the text of v if it is a JSON string, as passed to a callback.
func Unquote(v []byte) (string, bool) {
	if KindOf(v) != String {
		return "", false
	}
	return unquote(v[1 : len(v)-1]), true
}
