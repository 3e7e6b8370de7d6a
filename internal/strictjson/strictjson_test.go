package strictjson

import (
	"regexp"
	"testing"
)

type inner struct {
	Count int `json:"count"`
}

type embedded struct {
	Prices inner `json:"prices"`
}

type config struct {
	Name string `json:"name"`
	embedded
}

// goName finds what encoding/json says of Go in its own errors.
var goName = regexp.MustCompile(`Go (struct|value)|strictjson\.|of type|json: |"embedded\.`)

// TestDecodeWordsErrorsWithoutGoNames: each error names the member in JSON terms, never
// a Go type or field (an embedded struct's name included).
func TestDecodeWordsErrorsWithoutGoNames(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"name": 1}`, `JSON number for field "name"`},
		{`{"prices": {"count": "3"}}`, `JSON string for field "prices.count"`},
		{`{"prices": []}`, `JSON array for field "prices"`},
		{`[]`, "JSON array where an object is required"},
		{`{"nope": 1}`, `unknown member "nope"`},
		{`{"name": "x"} 1`, "unexpected data after the JSON object"},
		{`{"name": `, "invalid JSON: unexpected end of input"},
		{`{"name" 1}`, "invalid JSON at byte 9: invalid character '1' after object key"},
		{``, "empty body: expected a JSON object"},
	} {
		var c config
		err := Decode([]byte(tc.in), &c)
		if err == nil || err.Error() != tc.want || goName.MatchString(err.Error()) {
			t.Errorf("Decode(%s) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

// FuzzDecode: whatever the bytes, Decode does not panic and its error names no Go type.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{`{"name":"x","prices":{"count":1}}`, `{"prices":{"count":"3"}}`, `[]`, `{"a":1}`, `{`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c config
		if err := Decode(b, &c); err != nil && goName.MatchString(err.Error()) {
			t.Errorf("Decode(%q) = %q names Go", b, err)
		}
	})
}
