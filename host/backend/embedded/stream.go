package embedded

import (
	"strings"
	"unicode/utf8"
)

// stream turns the text of each generated token into deltas. A token may end inside a
// UTF-8 character (byte-fallback tokens carry one byte each) and a stop sequence may
// span tokens, so it holds back an incomplete character and any tail of the text that
// could begin a stop sequence, until the next token settles it.
type stream struct {
	stops   []string
	emit    func(string) error
	partial []byte // an incomplete UTF-8 character
	pending string // valid text not emitted yet: it might begin a stop sequence
}

// write adds the text of one token. It reports whether the text now contains a stop
// sequence; the text before the earliest one is emitted and the rest dropped. Bytes
// that are not valid UTF-8 become U+FFFD.
func (s *stream) write(text string) (stopped bool, err error) {
	s.partial = append(s.partial, text...)
	var b strings.Builder
	b.WriteString(s.pending)
	i := 0
	for i < len(s.partial) {
		r, size := utf8.DecodeRune(s.partial[i:])
		if r == utf8.RuneError && size == 1 {
			if !utf8.FullRune(s.partial[i:]) {
				break // the character's remaining bytes come with the next tokens
			}
			b.WriteRune(utf8.RuneError)
		} else {
			b.Write(s.partial[i : i+size])
		}
		i += size
	}
	s.partial = s.partial[:copy(s.partial, s.partial[i:])]
	s.pending = b.String()

	if cut := s.firstStop(); cut >= 0 {
		return true, s.send(s.pending[:cut])
	}
	keep := s.stopPrefix()
	if err := s.send(s.pending[:len(s.pending)-keep]); err != nil {
		return false, err
	}
	s.pending = s.pending[len(s.pending)-keep:]
	return false, nil
}

// flush emits what is held back at the end of generation: text that began a stop
// sequence without completing it, and a truncated character as U+FFFD.
func (s *stream) flush() error {
	text := s.pending
	if len(s.partial) > 0 {
		text += string(utf8.RuneError)
	}
	s.pending, s.partial = "", nil
	return s.send(text)
}

func (s *stream) send(text string) error {
	if text == "" {
		return nil
	}
	return s.emit(text)
}

// firstStop returns where the earliest stop sequence in pending starts, or -1.
func (s *stream) firstStop() int {
	first := -1
	for _, stop := range s.stops {
		if i := strings.Index(s.pending, stop); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	return first
}

// stopPrefix returns the length of the longest tail of pending that is a proper
// prefix of a stop sequence. Stop sequences are valid UTF-8, so such a tail starts on
// a character boundary.
func (s *stream) stopPrefix() int {
	keep := 0
	for _, stop := range s.stops {
		for n := min(len(stop)-1, len(s.pending)); n > keep; n-- {
			if s.pending[len(s.pending)-n] == stop[0] && strings.HasSuffix(s.pending, stop[:n]) {
				keep = n
				break
			}
		}
	}
	return keep
}
