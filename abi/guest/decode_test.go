package guest

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// The chat types decode JSON with their own single-pass decoder (scan.go). These tests
// hold it to encoding/json: refDecode below decodes the same members into the same
// fields with encoding/json alone (its validation, its tokenizer, its string and number
// decoding), and the decoder must accept exactly the documents encoding/json accepts
// and refDecode decodes, and fill exactly the same values.

// refObject decodes the JSON object raw member by member with encoding/json: a known
// member with a value other than null into its field, the rest into *extra.
func refObject(raw json.RawMessage, members []member, extra *map[string]json.RawMessage, has *present) error {
	if string(raw) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("not an object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		i := -1
		if string(v) != "null" {
			i = slicesIndex(members, name)
		}
		if i < 0 {
			if *extra == nil {
				*extra = make(map[string]json.RawMessage)
			}
			(*extra)[name] = v
			continue
		}
		if err := refValue(v, members[i].field); err != nil {
			return err
		}
		*has |= 1 << i
	}
	return nil
}

func slicesIndex(members []member, name string) int {
	for i, m := range members {
		if m.name == name {
			return i
		}
	}
	return -1
}

// refArray decodes the JSON array raw into *s, each element with f.
func refArray[T any](raw json.RawMessage, s *[]T, f func(*T, json.RawMessage) error) error {
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil || elems == nil {
		return errors.New("not an array")
	}
	*s = []T{}
	for _, e := range elems {
		var v T
		if err := f(&v, e); err != nil {
			return err
		}
		*s = append(*s, v)
	}
	return nil
}

func refMessage(m *Message, raw json.RawMessage) error {
	return refObject(raw, m.members(), &m.Extra, &m.has)
}

func refPart(p *ContentPart, raw json.RawMessage) error {
	return refObject(raw, p.members(), &p.Extra, &p.has)
}

func refChoice(c *Choice, raw json.RawMessage) error {
	return refObject(raw, c.members(), &c.Extra, &c.has)
}

// refValue decodes raw into field: strings and numbers by encoding/json's reflection.
func refValue(raw json.RawMessage, field any) error {
	switch f := field.(type) {
	case *[]Message:
		return refArray(raw, f, refMessage)
	case *[]Choice:
		return refArray(raw, f, refChoice)
	case *[]ContentPart:
		return refArray(raw, f, refPart)
	case *Message:
		return refMessage(f, raw)
	case **Usage:
		*f = new(Usage)
		return refObject(raw, (*f).members(), &(*f).Extra, &(*f).has)
	case *Content:
		switch raw[0] {
		case '"':
			var s string
			err := json.Unmarshal(raw, &s)
			*f = TextContent(s)
			return err
		case '[':
			var parts []ContentPart
			err := refArray(raw, &parts, refPart)
			*f = PartsContent(parts)
			return err
		}
		return errors.New("not content")
	}
	return json.Unmarshal(raw, field)
}

// checkDecode fails t if decoding b into a new T with UnmarshalJSON disagrees with
// encoding/json (json.Valid, then ref).
func checkDecode[T any, PT interface {
	*T
	json.Unmarshaler
}](t *testing.T, b []byte, ref func(*T, json.RawMessage) error) {
	t.Helper()
	var got, want T
	gotErr := PT(&got).UnmarshalJSON(b)
	var wantErr error
	if !json.Valid(b) {
		wantErr = json.Unmarshal(b, new(json.RawMessage))
	} else {
		wantErr = ref(&want, bytes.TrimSpace(b))
	}
	switch {
	case (gotErr == nil) != (wantErr == nil):
		t.Fatalf("%q: error %v, encoding/json's %v", b, gotErr, wantErr)
	case wantErr != nil && !json.Valid(b) && gotErr.Error() != wantErr.Error():
		t.Fatalf("%q: syntax error %q, encoding/json's %q", b, gotErr, wantErr)
	case gotErr == nil && !reflect.DeepEqual(got, want):
		t.Fatalf("%q: decoded\n%#v\nencoding/json decoded\n%#v", b, got, want)
	}
}

func refRequest(r *ChatRequest, raw json.RawMessage) error {
	return refObject(raw, r.members(), &r.Extra, &r.has)
}

func refResponse(r *ChatResponse, raw json.RawMessage) error {
	return refObject(raw, r.members(), &r.Extra, &r.has)
}

// decodeSeeds are documents at the edges of JSON and of the chat types: escapes,
// surrogates, invalid UTF-8, numbers, nesting, duplicates, nulls, wrong types, and
// malformed documents of every kind.
var decodeSeeds = []string{
	`{}`, ` {"model":"m"} `, `null`, ``, ` `, `{`, `{}}`, `{} x`, `[]`, `"s"`, `5`,
	`{"model":"m","messages":[{"role":"user","content":"hi","name":"n","x":[1,{"y":null}]}],"stream":true}`,
	`{"messages":[{"content":"a\nb\t\"q\" \\ \/ \b\f\r \u00e9 \uD83D\uDE00 \ud83d \udc00 \uD83Dx \uD83D\u0041 \u0000"}]}`,
	"{\"model\":\"bad \xff utf-8 \xe2\x80 \xed\xa0\x80 ok \xef\xbf\xbd\"}",
	"{\"model\":\"ctl \x01\"}", "{\"model\":\"ctl \x1f\"}", "{\"model\":\"del \x7f\"}", `{"model":"\x"}`, `{"model":"\u12"}`, `{"model":"\u12G4"}`, `{"model":"unterminated}`,
	`{"mod\u0065l":"escaped name","\u006d\u006fdel":"again"}`,
	`{"model":"a","model":"b"}`, `{"model":"a","model":null}`, `{"messages":null,"messages":[]}`,
	`{"messages":[null,{},{"content":null},{"content":[]},{"content":[null,{"type":"text","text":"t","z":{}}]}]}`,
	`{"messages":[{"content":5}]}`, `{"messages":[{"content":true}]}`, `{"messages":{}}`, `{"messages":[5]}`,
	`{"model":5}`, `{"model":true}`, `{"model":{}}`, `{"model":[]}`, `{"model":5,}`, `{"model":5 "x":1}`,
	`{"x":-0,"y":-0.0e+00,"z":1E9,"w":0.5,"v":[-1,2e-3,1.5E+10]}`,
	`{"x":01}`, `{"x":-}`, `{"x":1.}`, `{"x":.5}`, `{"x":1e}`, `{"x":+1}`, `{"x":1e+}`, `{"x":--1}`,
	`{"x":tru}`, `{"x":nul}`, `{"x":falsey}`, `{"x":nullx}`, `{"x":[1,]}`, `{"x":[,1]}`, `{"x":{"a":1,}}`,
	`{"x":{"a" 1}}`, `{"x":{1:1}}`, `{"x":[}`, `{"x":{]}`, "{\"x\":\t\n\r [ 1 , { \"a\" : [ ] } ] }",
	`{"id":"c","object":"chat.completion","created":1764000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"d":{}}}`,
	`{"created":1.5}`, `{"created":1e3}`, `{"created":-0}`, `{"created":"1"}`, `{"created":9223372036854775807}`,
	`{"created":9223372036854775808}`, `{"created":-9223372036854775808}`, `{"created":[]}`, `{"usage":null}`,
	`{"usage":{"total_tokens":true}}`, `{"choices":[{"index":-1,"message":null}]}`, `{"choices":[{"message":5}]}`,
	`{"x":` + strings.Repeat("[", maxNestingDepth-1) + strings.Repeat("]", maxNestingDepth-1) + `}`,
	`{"x":` + strings.Repeat("[", maxNestingDepth) + strings.Repeat("]", maxNestingDepth) + `}`,
	`{"x":` + strings.Repeat(`{"a":`, maxNestingDepth-1) + `1` + strings.Repeat("}", maxNestingDepth-1) + `}`,
	`{"x":` + strings.Repeat(`{"a":`, maxNestingDepth) + `1` + strings.Repeat("}", maxNestingDepth) + `}`,
}

// TestDecodeEqualsEncodingJSON: on every seed, the chat types decode what
// encoding/json decodes, and refuse what it refuses, with its syntax errors.
func TestDecodeEqualsEncodingJSON(t *testing.T) {
	for _, s := range decodeSeeds {
		checkDecode[ChatRequest](t, []byte(s), refRequest)
		checkDecode[ChatResponse](t, []byte(s), refResponse)
	}
}

// FuzzDecode fails on any input where the chat types' decoder and encoding/json
// disagree: on acceptance, on a syntax error's message, or on a decoded value.
func FuzzDecode(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode[ChatRequest](t, b, refRequest)
		checkDecode[ChatResponse](t, b, refResponse)
	})
}

// TestDecodeErrorPrecedence: a malformed document fails with encoding/json's syntax
// error even where a member of the wrong type comes first, as encoding/json, which
// validates before it decodes, reports it.
func TestDecodeErrorPrecedence(t *testing.T) {
	for in, want := range map[string]string{
		`{"model":5,}`:  "invalid character '}' looking for beginning of object key string",
		`{"model":5`:    "unexpected end of JSON input",
		`{"model":5}`:   "model: want a string, got number",
		`{"created":1}`: "",
	} {
		var r ChatRequest
		err := r.UnmarshalJSON([]byte(in))
		if in == `{"created":1}` {
			if err != nil {
				t.Errorf("%s: %v", in, err)
			}
			continue
		}
		if err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %q", in, err, want)
		}
	}
	var resp ChatResponse
	for in, want := range map[string]string{
		`{"created":1.5}`:                          "created: want a number, got number 1.5",
		`{"created":"1"}`:                          "created: want a number, got string",
		`{"choices":[{"index":true}]}`:             "choices: index: want a number, got bool",
		`{"created":9223372036854775808}`:          "created: want a number, got number 9223372036854775808",
		`{"usage":{"total_tokens":[]}}`:            "usage: total_tokens: want a number, got array",
		`{"choices":[{"message":5}]}`:              "choices: message: message: want an object, got number",
		`{"choices":[{"message":{"content":{}}}]}`: "choices: message: content: want a string or an array of parts",
	} {
		if err := resp.UnmarshalJSON([]byte(in)); err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %q", in, err, want)
		}
	}
}

// compactSeeds are raw values for appendRaw's compact.
var compactSeeds = []string{
	`1`, ` 1 `, `{ "a" : [ 1 , 2 ] , "b" : "x y\" z" }`, "[\n\t\r]", `"a\\" `, `{"a":"\u0020 "}`,
	`{`, `1 2`, ``, ` `, `"unterminated`, `[1,]`, "\"\x00\"", `nul`, "\"\xff\u2028<&>\"",
}

// TestCompactEqualsEncodingJSON: compact equals json.Compact, in output and in what it
// refuses.
func TestCompactEqualsEncodingJSON(t *testing.T) {
	for _, s := range compactSeeds {
		checkCompact(t, []byte(s))
	}
}

func FuzzCompact(f *testing.F) {
	for _, s := range compactSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkCompact)
}

func checkCompact(t *testing.T, v []byte) {
	var want bytes.Buffer
	wantErr := json.Compact(&want, v)
	got, ok := compact([]byte("prefix"), v)
	switch {
	case ok != (wantErr == nil):
		t.Fatalf("compact(%q): ok %v, json.Compact's error %v", v, ok, wantErr)
	case ok && string(got) != "prefix"+want.String():
		t.Fatalf("compact(%q) = %q, json.Compact's %q", v, got, "prefix"+want.String())
	case !ok && string(got) != "prefix":
		t.Fatalf("compact(%q) appended %q to what it refused", v, got)
	}
}
