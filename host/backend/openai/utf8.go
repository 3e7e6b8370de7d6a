package openai

import (
	"bytes"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// A server that streams bytes rather than characters can end a chunk in the middle of a
// character: raw UTF-8 bytes ("caf\xc3" then "\xa9"), or a UTF-16 surrogate pair split
// between two \u escapes ("\ud83d" then "\ude00"). appendUnquoted keeps both kinds of
// halves as bytes, the second as WTF-8 (a surrogate encoded like any other code point in
// three bytes, ED A0..BF xx), and joiner glues them to what follows.

// appendUnquoted appends the value of the JSON string literal s to dst. Unlike
// encoding/json it keeps bytes that are not UTF-8 and encodes the \u escape of a
// surrogate as WTF-8, leaving both to joiner. It reports false if s is not a string
// literal.
func appendUnquoted(dst, s []byte) ([]byte, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return dst, false
	}
	s = s[1 : len(s)-1]
	for len(s) > 0 {
		i := bytes.IndexByte(s, '\\')
		if i < 0 {
			return append(dst, s...), true
		}
		dst = append(dst, s[:i]...)
		s = s[i:]
		if len(s) < 2 {
			return dst, false
		}
		switch c := s[1]; c {
		case '"', '\\', '/':
			dst = append(dst, c)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s[2:])
			if !ok {
				return dst, false
			}
			dst = appendWTF8(dst, r)
			s = s[4:]
		default:
			return dst, false
		}
		s = s[2:]
	}
	return dst, true
}

// hex4 decodes the 4 hex digits at the start of s.
func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// appendWTF8 appends r (at most 0xFFFF) in UTF-8, surrogates included.
func appendWTF8(dst []byte, r rune) []byte {
	if !utf16.IsSurrogate(r) {
		return utf8.AppendRune(dst, r)
	}
	return append(dst, 0xE0|byte(r>>12), 0x80|byte(r>>6)&0x3F, 0x80|byte(r)&0x3F)
}

// joiner turns the text of successive deltas into valid UTF-8 that never ends inside a
// character: it holds back an incomplete tail (at most 5 bytes: a high surrogate and
// the start of its low half) until the next delta completes it, joins surrogate pairs,
// and replaces what cannot be completed with U+FFFD.
type joiner struct {
	tail []byte
	in   []byte
	out  []byte
	// texts holds the text of the deltas returned, one after the other: a delta is a
	// string of it, so that a stream allocates a block per textBlock bytes of text
	// rather than a string per delta. A strings.Builder only appends, so the bytes
	// of a string returned never change.
	texts strings.Builder
}

// textBlock is the size of the blocks joiner.texts allocates.
const textBlock = 4 << 10

// text returns b as a string carved from j.texts.
func (j *joiner) text(b []byte) string {
	if j.texts.Cap()-j.texts.Len() < len(b) {
		j.texts.Reset() // the strings returned keep the old block
		j.texts.Grow(max(textBlock, len(b)))
	}
	start := j.texts.Len()
	j.texts.Write(b)
	return j.texts.String()[start:]
}

// push returns the text of b, with the tail held back from the previous push, that is
// ready to emit.
func (j *joiner) push(b []byte) string {
	if len(j.tail) == 0 && utf8.Valid(b) {
		return j.text(b)
	}
	j.in = append(append(j.in[:0], j.tail...), b...)
	var rest []byte
	j.out, rest = appendUTF8(j.out[:0], j.in, false)
	j.tail = append(j.tail[:0], rest...)
	return j.text(j.out)
}

// flush returns the held-back tail, which can no longer be completed, as U+FFFD.
func (j *joiner) flush() string {
	if len(j.tail) == 0 {
		return ""
	}
	j.out, _ = appendUTF8(j.out[:0], j.tail, true)
	j.tail = j.tail[:0]
	return j.text(j.out)
}

// appendUTF8 appends src to dst as valid UTF-8, joining WTF-8 surrogate pairs and
// replacing invalid bytes with U+FFFD as utf8.DecodeRune counts them. Unless final, it
// stops at a tail of src that the next bytes could complete and returns it as rest.
func appendUTF8(dst, src []byte, final bool) (out, rest []byte) {
	for i := 0; i < len(src); {
		c := src[i]
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		if hi, ok := surrogate(src[i:]); ok {
			if lo, ok := surrogate(src[i+3:]); ok && hi < 0xDC00 && lo >= 0xDC00 {
				dst = utf8.AppendRune(dst, utf16.DecodeRune(hi, lo))
				i += 6
				continue
			}
			if !final && hi < 0xDC00 && couldBeLow(src[i+3:]) {
				return dst, src[i:]
			}
			dst = utf8.AppendRune(dst, utf8.RuneError)
			i += 3
			continue
		}
		if !final && (!utf8.FullRune(src[i:]) || couldBeSurrogate(src[i:])) {
			return dst, src[i:]
		}
		r, n := utf8.DecodeRune(src[i:])
		if r == utf8.RuneError && n == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, src[i:i+n]...)
		}
		i += n
	}
	return dst, nil
}

// surrogate decodes a WTF-8 surrogate at the start of b.
func surrogate(b []byte) (rune, bool) {
	if len(b) < 3 || b[0] != 0xED || b[1] < 0xA0 || b[1] > 0xBF || b[2]&0xC0 != 0x80 {
		return 0, false
	}
	return 0xD000 | rune(b[1]&0x3F)<<6 | rune(b[2]&0x3F), true
}

// couldBeSurrogate reports whether b, shorter than 3 bytes, starts a WTF-8 surrogate.
func couldBeSurrogate(b []byte) bool {
	return len(b) < 3 && b[0] == 0xED && (len(b) == 1 || b[1] >= 0xA0 && b[1] <= 0xBF)
}

// couldBeLow reports whether b, after a high surrogate, may be the start of its low
// half: the rest of the pair has not arrived yet.
func couldBeLow(b []byte) bool {
	switch {
	case len(b) == 0:
		return true
	case len(b) >= 3 || b[0] != 0xED:
		return false
	}
	return len(b) == 1 || b[1] >= 0xB0 && b[1] <= 0xBF
}
