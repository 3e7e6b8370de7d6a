package client

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestReadStream: an unverified stream's text is its deltas in order; a stream that
// ends without "data: [DONE]", or with an error event, fails; the receipt event of a
// billed stream is returned.
func TestReadStream(t *testing.T) {
	chunk := func(s string) string { return `data: {"choices":[{"delta":{"content":"` + s + `"}}]}` + "\n\n" }
	for _, tt := range []struct {
		name, stream, text string
		code               Code // "" for none
		receipt            bool
	}{
		{"deltas", chunk("Hel") + chunk("lo") + "data: [DONE]\n\n", "Hello", "", false},
		{"comments and other fields", ": ping\nevent: x\n" + chunk("a") + "data:[DONE]\n", "a", "", false},
		{"cut short", chunk("Hel"), "Hel", CodeBadAnswer, false},
		{"error midway", chunk("Hel") + `data: {"error":{"message":"the GPU went away","code":"upstream"}}` + "\n\ndata: [DONE]\n\n", "Hel", CodeRefused, false},
		{"not JSON", "data: {\n\n", "", CodeBadAnswer, false},
		{"receipt", chunk("a") + `data: {"choices":[],"cocoon_receipt":{"seq":7}}` + "\n\ndata: [DONE]\n\n", "a", "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var text strings.Builder
			r, err := readStream(streamEvents(strings.NewReader(tt.stream), nil), func(s string) error { text.WriteString(s); return nil })
			var e *Error
			switch {
			case tt.code == "" && err != nil, tt.code != "" && (!errors.As(err, &e) || e.Code != tt.code):
				t.Fatalf("err %v, want code %q", err, tt.code)
			case text.String() != tt.text:
				t.Errorf("text %q, want %q", text.String(), tt.text)
			case tt.receipt != (r != nil):
				t.Errorf("receipt %v, want one: %v", r, tt.receipt)
			}
		})
	}
}

// FuzzReadStream: any bytes a host sends as a stream end in an answer or an error,
// never a panic or a hang, and the text given out is only what the stream carried.
func FuzzReadStream(f *testing.F) {
	f.Add(`data: {"choices":[{"delta":{"content":"hi"}}]}` + "\n\ndata: [DONE]\n\n")
	f.Add(`data: {"error":{"message":"x"}}` + "\n\n")
	f.Add("data: [DONE]")
	f.Add(": comment\r\ndata:{}\r\n\r\n")
	f.Fuzz(func(t *testing.T, stream string) {
		n := 0
		readStream(streamEvents(strings.NewReader(stream), nil), func(s string) error { n += len(s); return nil })
		if n > len(stream) {
			t.Fatalf("%d bytes of text out of a %d-byte stream", n, len(stream))
		}
	})
}

// BenchmarkReadStream reads a 1000-chunk unverified stream, the path of every answer
// of an http host without a trust.
func BenchmarkReadStream(b *testing.B) {
	var sb strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&sb, `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"w%d "}}]}`+"\n\n", i)
	}
	sb.WriteString("data: [DONE]\n\n")
	stream := sb.String()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		if _, err := readStream(streamEvents(strings.NewReader(stream), nil), func(string) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
