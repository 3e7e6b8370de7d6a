package attest

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// reencodes checks that what parse accepted encodes to a document that parse accepts
// and encodes the same: what a writer of the format (such as a collateral cache) writes
// from a parsed value, the parser reads back unchanged.
func reencodes[T any](t *testing.T, v T, parse func([]byte) (T, error)) {
	t.Helper()
	first, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("an accepted document does not encode: %v", err)
	}
	again, err := parse(first)
	if err != nil {
		t.Fatalf("the encoding of an accepted document is refused: %v\n%s", err, first)
	}
	second, err := json.Marshal(again)
	if err != nil || !bytes.Equal(first, second) {
		t.Fatalf("an accepted document changes when encoded and read again (%v):\n%s\n%s", err, first, second)
	}
}

// FuzzParseCollateral feeds arbitrary bytes to ParseCollateral, which reads Intel PCS
// responses cached in a file (or handed over with archived evidence): it must not
// panic, must refuse with ErrCollateral, and what it accepts must read back the same.
func FuzzParseCollateral(f *testing.F) {
	for _, seed := range []string{
		`{"https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806f000000":{"status":200,"headers":{"Tcb-Info-Issuer-Chain":["-----BEGIN%20CERTIFICATE-----"]},"body":"eyJ0Y2JJbmZvIjp7fX0="}}`,
		`{"https://example.com/crl":{"status":404,"body":null}}`,
		`{}`,
		`null`,
		`{"u":{"status":200,"body":"!"}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCollateral(b)
		if err != nil {
			if !errors.Is(err, ErrCollateral) {
				t.Fatalf("refused without ErrCollateral: %v", err)
			}
			return
		}
		reencodes(t, c, ParseCollateral)
	})
}
