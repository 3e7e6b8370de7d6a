// Package guard is the logic of the output-guard module: it masks listed words in the
// model's answer, in complete responses and in streams.
//
// A word is a maximal run of word bytes: ASCII letters, digits, '_', and every byte
// >= 0x80, so that the letters of UTF-8 text join words ("darné" and "—darn—" are
// single words, neither of them "darn"). A run matches a listed word when they are equal
// after ASCII case folding (non-ASCII bytes must be equal). A match is replaced by the
// configured replacement or, when the config sets none, by one '*' per character (per
// UTF-8 sequence) of the matched text.
package guard

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cocoonhost/cocoon/abi/guest"
)

// Config is a parsed module config. The zero Config masks nothing.
type Config struct {
	words       map[string]bool // ASCII lower case
	replacement string
	stars       bool // mask with '*' per character instead of replacement
}

// ParseConfig parses the module's JSON config,
//
//	{"words": ["darn", "heck"], "replacement": "***"}
//
// strictly: words must list at least one word, every word must be made of word bytes
// only, and unknown members are an error. replacement may be empty (matches are
// deleted); absent, matches are masked with stars.
func ParseConfig(b []byte) (Config, error) {
	var raw struct {
		Words       []string `json:"words"`
		Replacement *string  `json:"replacement"`
	}
	if err := guest.DecodeConfig(b, &raw); err != nil {
		return Config{}, err
	}
	if len(raw.Words) == 0 {
		return Config{}, errors.New("config: words must list at least one word")
	}
	c := Config{words: make(map[string]bool, len(raw.Words)), stars: raw.Replacement == nil}
	if raw.Replacement != nil {
		c.replacement = *raw.Replacement
	}
	for i, w := range raw.Words {
		if w == "" {
			return Config{}, fmt.Errorf("config: words[%d] is empty", i)
		}
		for j := 0; j < len(w); j++ {
			if !isWordByte(w[j]) {
				return Config{}, fmt.Errorf("config: words[%d] %q contains %q: a word may only contain letters, digits and '_'", i, w, w[j])
			}
		}
		c.words[foldASCII(w)] = true
	}
	return c, nil
}

func isWordByte(b byte) bool {
	return b >= 0x80 || b == '_' || '0' <= b && b <= '9' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
}

func foldASCII(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// Text returns s with every listed word masked. It allocates only when s has a match.
func (c Config) Text(s string) string {
	var out strings.Builder
	var key []byte // the current run, folded; reused
	done := 0      // s[:done] is in out
	for i := 0; i < len(s); {
		if !isWordByte(s[i]) {
			i++
			continue
		}
		j := i
		key = key[:0]
		for ; j < len(s) && isWordByte(s[j]); j++ {
			b := s[j]
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			key = append(key, b)
		}
		if c.words[string(key)] {
			out.WriteString(s[done:i])
			c.mask(&out, s[i:j])
			done = j
		}
		i = j
	}
	if done == 0 {
		return s
	}
	out.WriteString(s[done:])
	return out.String()
}

func (c Config) mask(out *strings.Builder, word string) {
	if !c.stars {
		out.WriteString(c.replacement)
		return
	}
	for i := 0; i < len(word); i++ {
		if word[i]&0xC0 != 0x80 { // not a UTF-8 continuation byte
			out.WriteByte('*')
		}
	}
}

// Response masks the text of every choice's message content.
func (c Config) Response(resp *guest.ChatResponse) {
	for i := range resp.Choices {
		resp.Choices[i].Message.Content.MapText(c.Text)
	}
}

// Stream masks one streamed answer. A word can be judged only once the byte after it is
// known, so Chunk holds back the trailing run of word bytes of what it has seen and End
// releases it. For any split of a text into chunks, the concatenation of every Chunk
// output and End equals Text of the whole text.
type Stream struct {
	c    Config
	held string
}

// NewStream starts a stream.
func (c Config) NewStream() *Stream {
	return &Stream{c: c}
}

// Chunk takes the next delta and returns the text that is final.
func (s *Stream) Chunk(delta string) string {
	text := s.held + delta
	cut := len(text)
	for cut > 0 && isWordByte(text[cut-1]) {
		cut--
	}
	s.held = text[cut:]
	return s.c.Text(text[:cut])
}

// End returns the text held back.
func (s *Stream) End() string {
	out := s.c.Text(s.held)
	s.held = ""
	return out
}
