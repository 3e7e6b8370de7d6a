package openai

import (
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cocoonhost/cocoon/host/backend"
)

// testEvent is an event that outlives the reader's next call.
type testEvent struct {
	data    string
	isError bool
}

func readEvents(t *testing.T, input string, maxLine int) ([]testEvent, error) {
	t.Helper()
	er := newEventReader(strings.NewReader(input), maxLine)
	var events []testEvent
	for {
		ev, err := er.next()
		if err == io.EOF {
			return events, nil
		}
		if err != nil {
			return events, err
		}
		events = append(events, testEvent{string(ev.data), ev.isError})
	}
}

func TestEventReader(t *testing.T) {
	ev := func(data string) testEvent { return testEvent{data: data} }
	tests := []struct {
		name  string
		input string
		want  []testEvent
	}{
		{"LF", "data: a\n\ndata: b\n\n", []testEvent{ev("a"), ev("b")}},
		{"CRLF", "data: a\r\n\r\ndata: b\r\n\r\n", []testEvent{ev("a"), ev("b")}},
		{"no space, two spaces", "data:a\n\ndata:  b\n\n", []testEvent{ev("a"), ev(" b")}},
		{"multi-line", "data: {\"a\":\ndata: 1}\n\n", []testEvent{ev("{\"a\":\n1}")}},
		{"comments and keep-alives", ": hi\n\n:\n\ndata: a\n: inside\n\n", []testEvent{ev("a")}},
		{"ignored fields", "id: 7\nretry: 10\nevent: message\nfoo: bar\ndata: a\n\n", []testEvent{ev("a")}},
		{"field without colon", "data\n\n", []testEvent{ev("")}},
		{"error event", "event: error\ndata: {\"message\":\"x\"}\n\n", []testEvent{{`{"message":"x"}`, true}}},
		{"llama.cpp error field", "error: {\"code\":500}\n\n", []testEvent{{`{"code":500}`, true}}},
		{"event type does not leak", "event: error\n\ndata: a\n\n", []testEvent{ev("a")}},
		{"blank lines only", "\n\n\r\n", nil},
		{"unterminated event dropped", "data: a\n\ndata: {\"cut", []testEvent{ev("a")}},
		{"unterminated line end dropped", "data: a\n\ndata: b\n", []testEvent{ev("a")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readEvents(t, tt.input, minLineSize)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("events = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLineLimit(t *testing.T) {
	const limit = 100 << 10 // over the reader's buffer, so long lines are assembled
	for _, eol := range []string{"\n", "\r\n"} {
		at := "data: " + strings.Repeat("x", limit-len("data: "))
		got, err := readEvents(t, at+eol+eol, limit)
		if err != nil || len(got) != 1 || len(got[0].data) != limit-len("data: ") {
			t.Errorf("a line of exactly %d bytes: %d events, %v", limit, len(got), err)
		}
		_, err = readEvents(t, at+"x"+eol+eol, limit)
		var be *backend.Error
		if !errors.As(err, &be) || be.Code != backend.CodeUpstream {
			t.Errorf("a line of %d bytes: %v, want an upstream error", limit+1, err)
		}
	}
}

func TestJoiner(t *testing.T) {
	wtf8 := func(rs ...rune) string {
		var b []byte
		for _, r := range rs {
			b = appendWTF8(b, r)
		}
		return string(b)
	}
	tests := []struct {
		name   string
		pieces []string
		want   []string // what each push returns, then flush
	}{
		{"ASCII", []string{"ab", "c"}, []string{"ab", "c", ""}},
		{"split 2-byte", []string{"caf\xc3", "\xa9!"}, []string{"caf", "é!", ""}},
		{"split 4-byte thrice", []string{"\xf0", "\x9f", "\x98", "\x80"}, []string{"", "", "", "😀", ""}},
		{"surrogate pair split", []string{"a" + wtf8(0xD83D), wtf8(0xDE00) + "b"}, []string{"a", "😀b", ""}},
		{"surrogate pair split inside the low half", []string{wtf8(0xD83D) + "\xed", "\xb8\x80"}, []string{"", "😀", ""}},
		{"lone high surrogate", []string{wtf8(0xD83D), "x"}, []string{"", "\uFFFDx", ""}},
		{"lone high surrogate at the end", []string{"x" + wtf8(0xD83D)}, []string{"x", "\uFFFD"}},
		{"lone low surrogate", []string{wtf8(0xDE00) + "x"}, []string{"\uFFFDx", ""}},
		{"two highs then a low", []string{wtf8(0xD83D, 0xD83D), wtf8(0xDE00)}, []string{"\uFFFD", "😀", ""}},
		{"U+D7FF is no surrogate", []string{"\xed", "\x9f\xbf"}, []string{"", "\ud7ff", ""}},
		{"invalid byte", []string{"a\xffb"}, []string{"a\uFFFDb", ""}},
		{"incomplete at the end", []string{"a\xf0\x9f"}, []string{"a", "\uFFFD\uFFFD"}},
		{"incomplete then not continued", []string{"\xe2\x82", "x"}, []string{"", "\uFFFD\uFFFDx", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var j joiner
			var got []string
			for _, p := range tt.pieces {
				got = append(got, j.push([]byte(p)))
			}
			got = append(got, j.flush())
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestJoinerDeltasStay keeps every delta a joiner returned, as a caller may, across
// blocks of its text and deltas longer than a block: none changes when later ones are
// made.
func TestJoinerDeltasStay(t *testing.T) {
	var j joiner
	var got, want []string
	for i := range 3000 {
		piece := strings.Repeat(string(rune('a'+i%26)), 1+i%13)
		if i%1000 == 999 {
			piece = strings.Repeat("é", textBlock)
		}
		got, want = append(got, j.push([]byte(piece))), append(want, piece)
	}
	if !reflect.DeepEqual(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("delta %d is %.20q now, was %.20q", i, got[i], want[i])
			}
		}
	}
}

func TestAppendUnquoted(t *testing.T) {
	for _, s := range []string{
		`""`, `"plain"`, `"\"\\\/\b\f\n\r\t"`, `"\u00e9\u20AC"`, `"\ud83d\ude00"`, `"\ud83d"`, `"\ude00\ud83d"`,
		`"\ud83d\u0041"`, `"mixed é \u00e9 😀"`, `"\u0000"`,
	} {
		var want string
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatal(err)
		}
		raw, ok := appendUnquoted(nil, []byte(s))
		got, _ := appendUTF8(nil, raw, true)
		if !ok || string(got) != want {
			t.Errorf("%s: got %q, %v; want %q", s, got, ok, want)
		}
	}
	for _, s := range []string{``, `"`, `abc`, `"\x"`, `"\u12"`, `"\u12g4"`, `"a\"`, `1`} {
		if _, ok := appendUnquoted(nil, []byte(s)); ok {
			t.Errorf("%s: accepted", s)
		}
	}
}

func TestSanitize(t *testing.T) {
	redact := strings.NewReplacer("KEY", "[redacted]", "10.0.0.1:8000", "[backend]")
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"  line\nbreak\ttab\x00 ", "line break tab"},
		{"bad \xff byte", "bad \uFFFD byte"},
		{"key KEY at 10.0.0.1:8000", "key [redacted] at [backend]"},
		{strings.Repeat("é", 400), strings.Repeat("é", 254) + "…"},
	}
	for _, tt := range tests {
		got := sanitize(redact, tt.in)
		if got != tt.want || len(got) > maxMessage || !utf8.ValidString(got) {
			t.Errorf("sanitize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
