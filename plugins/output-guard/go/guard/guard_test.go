package guard_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cocoonhost/cocoon/abi/guest"
	"github.com/cocoonhost/cocoon/abi/guest/guesttest"
	"github.com/cocoonhost/cocoon/plugins/output-guard/go/guard"
)

func TestVectors(t *testing.T) {
	guesttest.Run(t, "../../testdata/cases.json", guesttest.Module{
		Post: func(config []byte, resp *guest.ChatResponse) (*guest.ChatResponse, error) {
			c, err := guard.ParseConfig(config)
			if err != nil {
				return nil, err
			}
			c.Response(resp)
			return resp, nil
		},
		Stream: func(config []byte) (func(string) (string, error), func() (string, error), error) {
			c, err := guard.ParseConfig(config)
			if err != nil {
				return nil, nil, err
			}
			s := c.NewStream()
			return func(d string) (string, error) { return s.Chunk(d), nil },
				func() (string, error) { return s.End(), nil }, nil
		},
	})
}

func TestConfigErrors(t *testing.T) {
	for in, want := range map[string]string{
		``:                                "config: the module has no config",
		`{"words":[]}`:                    "config: words must list at least one word",
		`{"words":["a",""]}`:              "config: words[1] is empty",
		`{"words":["a b"]}`:               `config: words[0] "a b" contains ' ': a word may only contain letters, digits and '_'`,
		`{"words":["a"],"x":1}`:           `config: unknown field "x"`,
		`{"words":"a"}`:                   "config: words: want an array, got string",
		`{"words":["a"],"replacement":1}`: "config: replacement: want a string, got number",
	} {
		if _, err := guard.ParseConfig([]byte(in)); err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %q", in, err, want)
		}
	}
}

// TestTextWithoutMatch checks that text without a match is returned as is, without
// allocating: most deltas of most answers have none.
func TestTextWithoutMatch(t *testing.T) {
	c, err := guard.ParseConfig([]byte(`{"words":["heck"]}`))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Repeat("no match here ", 10)
	if got := c.Text(s); got != s {
		t.Errorf("Text changed %q to %q", s, got)
	}
	if n := testing.AllocsPerRun(100, func() { c.Text(s) }); n != 0 {
		t.Errorf("Text without a match allocates %v times", n)
	}
}

// TestStreamHoldsBack checks what each call emits: everything up to the trailing run
// of word bytes, which End releases.
func TestStreamHoldsBack(t *testing.T) {
	tests := []struct {
		config  string
		chunks  []string
		outputs []string // one per chunk, then End's
	}{
		{`{"words":["darn"],"replacement":"***"}`, []string{"Oh da", "rn it"}, []string{"Oh ", "*** ", "it"}},
		{`{"words":["heck"],"replacement":"***"}`, []string{"what the he", "c", "k"}, []string{"what the ", "", "", "***"}},
		{`{"words":["heck"],"replacement":"***"}`, []string{"heck", "ler heck", "! heck", "s"}, []string{"", "heckler ", "***! ", "", "hecks"}},
		{`{"words":["heck"]}`, []string{"", "heck", "", " ", ".", "HECK"}, []string{"", "", "", "**** ", ".", "", "****"}},
		{`{"words":["café"],"replacement":"[x]"}`, []string{"un caf", "é, un café", "s, CAFé"}, []string{"un ", "[x], un ", "cafés, ", "[x]"}},
		{`{"words":["heck"]}`, nil, []string{""}},
	}
	for _, tt := range tests {
		c, err := guard.ParseConfig([]byte(tt.config))
		if err != nil {
			t.Fatal(err)
		}
		s := c.NewStream()
		var outputs []string
		for _, d := range tt.chunks {
			outputs = append(outputs, s.Chunk(d))
		}
		outputs = append(outputs, s.End())
		if strings.Join(outputs, "|") != strings.Join(tt.outputs, "|") || len(outputs) != len(tt.outputs) {
			t.Errorf("chunks %q: outputs %q, want %q", tt.chunks, outputs, tt.outputs)
		}
	}
}

// TestStreamSplits checks the stream invariant: for any split of a text into chunks,
// the concatenated outputs equal Text of the whole text.
func TestStreamSplits(t *testing.T) {
	configs := []string{`{"words":["heck","darn","café","x"]}`, `{"words":["heck","é"],"replacement":""}`}
	pieces := []string{"heck", "HeCk", "darn", "café", "CAFÉ", "x", "X_", "é", " ", ".", "\n", "—", "日本", "a", "1", "_", "😀", "heckler"}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, cfg := range configs {
		c, err := guard.ParseConfig([]byte(cfg))
		if err != nil {
			t.Fatal(err)
		}
		for range 2000 {
			var b strings.Builder
			for range rng.IntN(20) {
				b.WriteString(pieces[rng.IntN(len(pieces))])
			}
			text := b.String()
			chunks := randomSplit(rng, text)
			s := c.NewStream()
			var got strings.Builder
			for _, ch := range chunks {
				got.WriteString(s.Chunk(ch))
			}
			got.WriteString(s.End())
			if want := c.Text(text); got.String() != want {
				t.Fatalf("config %s, chunks %q: got %q, want %q", cfg, chunks, got.String(), want)
			}
		}
	}
}

// randomSplit splits s at random rune boundaries (deltas never split a UTF-8
// sequence), sometimes into empty chunks.
func randomSplit(rng *rand.Rand, s string) []string {
	var chunks []string
	for len(s) > 0 {
		n := 0
		for k := rng.IntN(6); k > 0 && n < len(s); k-- {
			_, size := utf8.DecodeRuneInString(s[n:])
			n += size
		}
		chunks = append(chunks, s[:n])
		s = s[n:]
	}
	return chunks
}

func BenchmarkText(b *testing.B) {
	c, err := guard.ParseConfig([]byte(`{"words":["darn","heck","drat","blast"],"replacement":"***"}`))
	if err != nil {
		b.Fatal(err)
	}
	text := strings.Repeat("Once upon a time, darn it, a cat said heck to the dog. ", 1000)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		c.Text(text)
	}
}
