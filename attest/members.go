package attest

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
)

// uniqueMembers fails when an object in b, a JSON document that encoding/json has
// decoded without error, has at any depth two members whose names are equal under Unicode
// case folding. encoding/json keeps the last of two such members (it matches names
// without case), while a person reading the document, or another parser such as a
// browser's JSON.parse, may take the first: `{"host_binary": ["sha256:..."],
// "Host_Binary": null}` would pin a binary for its reader and nothing for the verifier.
// With one member per folded name, every reader finds at most one value for it.
//
// Cost: one pass over b, far cheaper than decoding it (a map per object, a string per
// member name). It relies on b being valid JSON: it does not check the syntax.
func uniqueMembers(b []byte) error {
	type frame struct {
		names     map[string]bool // nil for an array
		expectKey bool
	}
	var stack []frame
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{':
			stack = append(stack, frame{names: map[string]bool{}, expectKey: true})
		case '[':
			stack = append(stack, frame{})
		case '}', ']':
			stack = stack[:len(stack)-1]
		case ',':
			top := &stack[len(stack)-1]
			top.expectKey = top.names != nil
		case ':':
			stack[len(stack)-1].expectKey = false
		case '"':
			start, escaped := i, false
			for i++; b[i] != '"'; i++ {
				if b[i] == '\\' {
					escaped = true
					i++ // the escaped character, possibly a quote
				}
			}
			if len(stack) == 0 || !stack[len(stack)-1].expectKey {
				continue // a value
			}
			name := string(b[start+1 : i])
			if escaped {
				json.Unmarshal(b[start:i+1], &name) // valid: encoding/json decoded it
			}
			folded := foldName(name)
			if stack[len(stack)-1].names[folded] {
				return fmt.Errorf("member %q appears twice (names are compared without case)", name)
			}
			stack[len(stack)-1].names[folded] = true
		}
	}
	return nil
}

// foldName maps names that are equal under Unicode case folding (bytes.EqualFold), as
// encoding/json compares member names, to the same string: each rune becomes the
// smallest rune of its folding orbit.
func foldName(name string) string {
	return strings.Map(func(r rune) rune {
		for {
			next := unicode.SimpleFold(r)
			if next <= r {
				return next
			}
			r = next
		}
	}, name)
}
