package openai

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"github.com/cocoonhost/cocoon/host/backend"
)

// FuzzStream feeds untrusted bytes to the event stream parser and the chunk decoder as
// the body of a response: no panic, and every delta is non-empty, valid UTF-8.
func FuzzStream(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.sse"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"\\ud83d\"}}]}\n\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		s := &stream{emit: func(d string) error {
			if d == "" || !utf8.ValidString(d) {
				t.Fatalf("delta %q", d)
			}
			return nil
		}}
		_ = readStream(bytes.NewReader(body), minLineSize, s)
		s.result(&backend.Request{Messages: []backend.Message{{Content: "x"}}})
	})
}

// FuzzUnquote checks appendUnquoted and joiner against encoding/json: the same text for
// every valid string literal, however the bytes are split between two deltas.
func FuzzUnquote(f *testing.F) {
	for _, s := range []string{`"plain"`, `"caf\u00e9"`, `"\ud83d\ude00"`, `"\ud83d x"`, `"\n\t\"\\"`, `"😀 é"`, `"\u0000"`} {
		f.Add([]byte(s), uint(3))
	}
	f.Fuzz(func(t *testing.T, lit []byte, cut uint) {
		raw, ok := appendUnquoted(nil, lit)
		var want string
		// The decoder hands over literals without surrounding white space; raw
		// invalid UTF-8 is where the two differ on purpose.
		if json.Unmarshal(lit, &want) == nil && utf8.Valid(lit) && len(bytes.TrimSpace(lit)) == len(lit) {
			if !ok {
				t.Fatalf("%q: refused, encoding/json decodes it", lit)
			}
			got, _ := appendUTF8(nil, raw, true)
			if string(got) != want {
				t.Fatalf("%q: %q, encoding/json says %q", lit, got, want)
			}
		}
		// Splitting the bytes anywhere between two deltas changes nothing.
		whole, _ := appendUTF8(nil, raw, true)
		i := int(cut % uint(len(raw)+1))
		var j joiner
		split := j.push(raw[:i]) + j.push(raw[i:]) + j.flush()
		if split != string(whole) || !utf8.ValidString(split) {
			t.Fatalf("%q split at %d: %q, whole: %q", raw, i, split, whole)
		}
	})
}
