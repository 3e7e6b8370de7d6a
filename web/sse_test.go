package web

import (
	"bytes"
	"testing"
)

// FuzzDeltaEvent checks that the delta events sseWriter encodes by hand are byte for
// byte what encoding/json makes of them (chunkEvent): the signed stream and every
// client's parser see the same bytes as before the fast path, for any text (control
// characters, HTML, U+2028, bytes that are not UTF-8), model and position.
func FuzzDeltaEvent(f *testing.F) {
	for _, s := range []string{"Once", "", " <b>&amp;</b>", "line\n\ttab\"quote\\", "\u2028\u2029", "caf\xc3", "\x00\x1f\x7f", "😀 été"} {
		f.Add(s, "stories260K", true)
	}
	f.Fuzz(func(t *testing.T, text, model string, first bool) {
		s := &sseWriter{call: &chatCall{id: newCompletionID(), created: 1730000000, respModel: model}, started: !first}
		want := s.chunkEvent([]chunkChoice{{Delta: deltaJSON{Content: &text}}}, nil)
		if first {
			want = s.chunkEvent([]chunkChoice{{Delta: deltaJSON{Role: "assistant", Content: &text}}}, nil)
		}
		if got := s.appendDeltaEvent(nil, text); !bytes.Equal(got, want) {
			t.Fatalf("text %q, model %q:\n got %s\nwant %s", text, model, got, want)
		}
	})
}

// BenchmarkDeltaEvent is the cost of encoding one token's event, by hand and with
// encoding/json, in the same run.
func BenchmarkDeltaEvent(b *testing.B) {
	s := &sseWriter{call: &chatCall{id: newCompletionID(), created: 1730000000, respModel: "stories260K"}, started: true}
	text := " upon"
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = s.appendDeltaEvent(buf[:0], text)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.chunkEvent([]chunkChoice{{Delta: deltaJSON{Content: &text}}}, nil)
		}
	})
}
