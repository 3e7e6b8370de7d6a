package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValid(t *testing.T) {
	tests := []struct {
		in   string
		ok   bool
		want string // part of the error
	}{
		{`{}`, true, ""},
		{` {"a":[1,-2.5e+3,0.0,true,false,null,"x\"\\\/\b\f\n\r\t\u00e9"]} `, true, ""},
		{`"h\u00e9llo"`, true, ""},
		{`0`, true, ""},
		{`-0.1E-2`, true, ""},
		{``, false, "unexpected end of input"},
		{`{"a":1,}`, false, "expected a string key"},
		{`[1,]`, false, "unexpected ']'"},
		{`{"a" 1}`, false, "expected ':'"},
		{`[1 2]`, false, "expected ',' or ']'"},
		{`01`, false, "after the value"},
		{`1.`, false, "no digits after '.'"},
		{`1e`, false, "exponent"},
		{`-`, false, "invalid number"},
		{`tru`, false, "expected true"},
		{`"abc`, false, "unterminated string"},
		{"\"a\x01\"", false, "control character"},
		{`"\x"`, false, "invalid escape"},
		{`"\u12G4"`, false, `invalid \u escape`},
		{"\"\xff\"", false, "invalid UTF-8"},
		{`{} {}`, false, "after the value"},
		{strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), false, "nested deeper"},
		{strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth), true, ""},
	}
	for _, tt := range tests {
		err := Valid([]byte(tt.in))
		if tt.ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Valid(%.40q) = %v, want ok=%v %q", tt.in, err, tt.ok, tt.want)
		}
		var se *SyntaxError
		if err != nil && !errors.As(err, &se) {
			t.Errorf("Valid(%.40q) error is %T, want *SyntaxError", tt.in, err)
		}
	}
}

func TestMembersAndElements(t *testing.T) {
	in := `{"messages":[{"role":"user","content":"hi"},{"ro\u006ce":"system"}],"stream":true,"n":null}`
	var keys []string
	var messages []byte
	err := Members([]byte(in), func(k string, v []byte) error {
		keys = append(keys, k+"="+KindOf(v).String())
		if k == "messages" {
			messages = v
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(keys, ","); got != "messages=array,stream=boolean,n=null" {
		t.Errorf("members = %s", got)
	}
	var roles []string
	err = Elements(messages, func(m []byte) error {
		return Fields(m, func(k string, v []byte) error {
			if k == "role" {
				r, _ := Unquote(v)
				roles = append(roles, r)
			}
			return nil
		})
	})
	if err != nil || strings.Join(roles, ",") != "user,system" {
		t.Errorf("roles = %v, %v", roles, err)
	}
	if err := Members([]byte(`[1]`), func(string, []byte) error { return nil }); err == nil || !strings.Contains(err.Error(), "array where an object is required") {
		t.Errorf("Members of an array: %v", err)
	}
	if err := Elements([]byte(`{}`), func([]byte) error { return nil }); err == nil {
		t.Error("Elements of an object succeeded")
	}
	if err := Fields([]byte(`[]`), func(string, []byte) error { return nil }); err == nil {
		t.Error("Fields of an array succeeded")
	}
	stop := errors.New("stop")
	if err := Elements([]byte(`[1,2]`), func([]byte) error { return stop }); err != stop {
		t.Errorf("Elements did not return the callback's error: %v", err)
	}
}

// FuzzValid checks the scanner against encoding/json on arbitrary bytes: the same
// verdict (but for the UTF-8 and depth rules json.Valid does not have), and Members
// sees the same keys and values as json.Unmarshal into a map.
func FuzzValid(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[1,"x",{"b":null}]`, `"\ud83d\ude00"`, `-1.5e10`, `{"a":{"a":[]}}`, `tru`, `{"a" 1}`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := Valid(b)
		want := json.Valid(b) && utf8.Valid(b) && depth(b) <= MaxDepth
		if (err == nil) != want && utf8.Valid(b) {
			t.Fatalf("Valid(%q) = %v, encoding/json says valid=%v", b, err, json.Valid(b))
		}
		if got := decodeWhole(b); (got == nil) != (err == nil) {
			t.Fatalf("a Decoder's walk of %q: %v; Valid: %v", b, got, err)
		}
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) != nil || m == nil {
			return
		}
		got := map[string]string{}
		if err := Members(b, func(k string, v []byte) error { got[k] = string(v); return nil }); err != nil {
			t.Fatalf("Members(%q) = %v on a valid object", b, err)
		}
		for k, v := range m {
			if got[k] != string(v) {
				t.Fatalf("member %q = %q, encoding/json says %q", k, got[k], v)
			}
		}
		// The trusted walk of a validated value sees what the validating one saw.
		fields := map[string]string{}
		if err := Fields(b[bytes.IndexByte(b, '{'):], func(k string, v []byte) error { fields[k] = string(v); return nil }); err != nil {
			t.Fatalf("Fields(%q) = %v", b, err)
		}
		if fmt.Sprint(fields) != fmt.Sprint(got) {
			t.Fatalf("Fields saw %v, Members saw %v", fields, got)
		}
	})
}

// depth returns the deepest nesting of arrays and objects outside strings.
func depth(b []byte) int {
	d, deepest, inString := 0, 0, false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && (c == '[' || c == '{'):
			d++
			deepest = max(deepest, d)
		case !inString && (c == ']' || c == '}'):
			d--
		}
	}
	return deepest
}

func BenchmarkMembers(b *testing.B) {
	in := []byte(`{"model":"m","messages":[{"role":"system","content":"You are a storyteller."},{"role":"user","content":"` +
		strings.Repeat("Tell me a story about a cat and a dog. ", 100) + `"}],"stream":false}`)
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if err := Members(in, func(string, []byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodingJSONBaseline(b *testing.B) {
	in := []byte(`{"model":"m","messages":[{"role":"system","content":"You are a storyteller."},{"role":"user","content":"` +
		strings.Repeat("Tell me a story about a cat and a dog. ", 100) + `"}],"stream":false}`)
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(in, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// decodeWhole walks b with a Decoder, descending into every object and array, and
// checks that the document ends there.
func decodeWhole(b []byte) error {
	var d Decoder
	d.Reset(b)
	var walk func() error
	walk = func() error {
		switch d.Kind() {
		case Object:
			return d.Object(func([]byte) error { return walk() })
		case Array:
			return d.Array(walk)
		}
		_, err := d.Value()
		return err
	}
	if err := walk(); err != nil {
		return err
	}
	return d.End()
}

// TestDecoder checks the Decoder on documents Valid accepts and refuses, and that it
// hands keys over as written and values as they are.
func TestDecoder(t *testing.T) {
	for _, in := range []string{`{}`, ` {"a":[1,{"b":"\u00e9"},null], "c\"d":true} `, `[]`, `"x"`, `{"a":1,}`, `[1 2]`,
		`{"a":1} x`, "\"\xff\"", `{"a"}`, ``, strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)} {
		if got, want := decodeWhole([]byte(in)), Valid([]byte(in)); (got == nil) != (want == nil) {
			t.Errorf("Decoder on %.40q: %v; Valid: %v", in, got, want)
		}
	}
	var d Decoder
	d.Reset([]byte(`{"k\u0065y": [1, "two"], "n": null}`))
	var got []string
	err := d.Object(func(key []byte) error {
		v, err := d.Value()
		got = append(got, string(key)+"="+string(v))
		return err
	})
	if want := []string{`k\u0065y=[1, "two"]`, `n=null`}; err != nil || d.End() != nil || !slices.Equal(got, want) {
		t.Fatalf("members %q, %v; want %q", got, err, want)
	}
	in := []byte(`{"a": "x", "b" :  [2]}`)
	d.Reset(in)
	var at []string
	err = d.Object(func(key []byte) error {
		d.Kind()
		start := d.Offset()
		v, err := d.Value()
		at = append(at, string(in[start:start+len(v)]))
		return err
	})
	if want := []string{`"x"`, `[2]`}; err != nil || !slices.Equal(at, want) {
		t.Fatalf("values at Offset after Kind: %q, %v; want %q", at, err, want)
	}
	d.Reset([]byte(`[1]`))
	if err := d.Object(func([]byte) error { return nil }); err == nil {
		t.Fatal("Object read an array")
	}
}
