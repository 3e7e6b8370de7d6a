package attest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// A policy with every member set, as a reviewer pins a production host.
var fullPolicy = `{
  "mrtd":  ["` + strings.Repeat("a1", 48) + `"],
  "rtmr0": ["` + strings.Repeat("b2", 48) + `"],
  "rtmr1": ["` + strings.Repeat("c3", 48) + `", "` + strings.Repeat("c4", 48) + `"],
  "rtmr2": ["` + strings.Repeat("d4", 48) + `"],
  "host_binary": ["sha256:` + strings.Repeat("e5", 32) + `"],
  "models": ["sha256:` + strings.Repeat("f6", 32) + `", "stories260K"],
  "settlement_keys": ["` + strings.Repeat("07", 32) + `"],
  "sealing": ["file"],
  "settlement_key_origins": ["generated"],
  "abi_version": 1,
  "min_tcb_status": "UpToDate",
  "trust_sim_root": "sim-root.pem"
}`

// TestStrictJSONRefusesTwoValuesForOneMember is the attack on the strict decoding of
// every document a verifier reads: one member given twice, or twice under names that
// differ in case only (encoding/json matches names without case and keeps the last),
// so that a person or another parser reads one value and the verifier another. Each
// must be refused, naming the member; the same documents with the member once are
// accepted.
func TestStrictJSONRefusesTwoValuesForOneMember(t *testing.T) {
	pinned := `["sha256:` + strings.Repeat("ab", 32) + `"]`
	event := `{"type":"host-binary","data":"` + strings.Repeat("ab", 32) + `","digest":"` + strings.Repeat("00", 48) + `"}`
	parsers := map[string]func([]byte) error{
		"policy":     func(b []byte) error { _, err := ParsePolicy(b); return err },
		"evidence":   func(b []byte) error { _, err := ParseEvidence(b); return err },
		"collateral": func(b []byte) error { _, err := ParseCollateral(b); return err },
		"event log":  func(b []byte) error { _, err := ParseEventLog(b); return err },
	}
	for _, tc := range []struct {
		name, parser, doc, member string // member: "" when the document is accepted
	}{
		{"policy, pinned once", "policy", `{"host_binary":` + pinned + `}`, ""},
		{"policy, unpinned by a second member", "policy", `{"host_binary":` + pinned + `,"host_binary":[]}`, "host_binary"},
		{"policy, unpinned by a member in capitals", "policy", `{"host_binary":` + pinned + `,"HOST_BINARY":null}`, "HOST_BINARY"},
		{"policy, unpinned by a member with a long s", "policy", `{"host_binary":` + pinned + `,"ho` + "\u017f" + `t_binary":[]}`, "ho\u017ft_binary"},
		{"policy, its minimum TCB status lowered", "policy", `{"min_tcb_status":"UpToDate","Min_TCB_Status":"any"}`, "Min_TCB_Status"},
		{"evidence, a second mode", "evidence", `{"mode":"tdx","quote":"","event_log":{},"host_key":"","Mode":"sim"}`, "Mode"},
		{"evidence, a second event log inside the first", "evidence", `{"mode":"sim","event_log":{"events":[],"events":[` + event + `]}}`, "events"},
		{"event log, a second list of events", "event log", `{"events":[` + event + `],"Events":[]}`, "Events"},
		{"collateral, one URL recorded twice", "collateral", `{"u":{"status":200,"body":""},"u":{"status":404,"body":""}}`, "u"},
		{"collateral, a header given twice", "collateral", `{"u":{"status":200,"headers":{"A":["1"],"a":["2"]},"body":""}}`, "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := parsers[tc.parser]([]byte(tc.doc))
			switch {
			case tc.member == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.member != "" && (err == nil || !strings.Contains(err.Error(), `member "`+tc.member+`" appears twice`)):
				t.Errorf("error %v, want the member %q refused as given twice", err, tc.member)
			}
		})
	}
}

// duplicateMember is uniqueMembers written the slow, obvious way, with encoding/json's
// tokenizer: the name of the first member whose folded name its object already has, if
// any. dec must hold valid JSON.
func duplicateMember(dec *json.Decoder) (name string, found bool, err error) {
	t, err := dec.Token()
	if err != nil || t != json.Delim('{') && t != json.Delim('[') {
		return "", false, err
	}
	names := map[string]bool{}
	for dec.More() {
		if t == json.Delim('{') {
			k, err := dec.Token()
			if err != nil {
				return "", false, err
			}
			if names[foldName(k.(string))] {
				return k.(string), true, nil
			}
			names[foldName(k.(string))] = true
		}
		if name, found, err := duplicateMember(dec); found || err != nil {
			return name, found, err
		}
	}
	_, err = dec.Token()
	return "", false, err
}

// FuzzUniqueMembers checks uniqueMembers' one-pass scan of valid JSON (member names
// among values, escapes, brackets inside strings) against encoding/json's tokenizer.
func FuzzUniqueMembers(f *testing.F) {
	for _, seed := range []string{
		fullPolicy,
		`{"a":1,"A":2}`,
		`{"a":{"b":[{"c":1},{"c":2}]},"b":"{\"a\":1}"}`,
		`[{"x":"]}","y":{"x":1}},{"x":2,"\u0058":3}]`,
		`{"k\"":1,"K\u0022":2}`,
		`{"ſ":1,"S":2}`,
		`"a"`,
		`{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber() // a number too large for a float64 is valid JSON
		name, found, err := duplicateMember(dec)
		if err != nil {
			t.Fatalf("the reference cannot read valid JSON: %v", err)
		}
		switch err := uniqueMembers(b); {
		case !found && err != nil:
			t.Fatalf("uniqueMembers: %v; the tokenizer finds no member twice", err)
		case found && (err == nil || !strings.Contains(err.Error(), fmt.Sprintf("member %q appears twice", name))):
			t.Fatalf("uniqueMembers: %v; the tokenizer finds %q twice", err, name)
		}
	})
}
