package attest

import (
	"encoding/binary"
	"errors"
	"testing"
)

// TestParseQuoteOversizedQEAuthData performs what the page verifier's fuzz target found
// (web/page/verifier/testdata/fuzz/FuzzVerify): a quote whose QE authentication data
// claims more bytes than the quote has. go-tdx-guest's parser panics on it; the
// verifier must refuse it as malformed instead of crashing (`cocoon verify` and `cocoon
// proxy` exit, the page's verifier stops for good).
func TestParseQuoteOversizedQEAuthData(t *testing.T) {
	s, roots := newTestSim(t)
	raw := simQuote(t, s, [64]byte{})
	// Header (48), TD report (584), signed data size (4), quote signature (64),
	// attestation key (64), certification data type (2) and size (4), QE report (384),
	// its signature (64): then the QE authentication data's 2-byte size.
	const authSizeAt = 48 + 584 + 4 + 64 + 64 + 2 + 4 + 384 + 64
	binary.LittleEndian.PutUint16(raw[authSizeAt:], 0xffff)
	for name, parse := range map[string]func() error{
		"ParseQuote":  func() error { _, err := ParseQuote(raw); return err },
		"VerifyQuote": func() error { _, err := VerifyQuote(raw, VerifyOptions{TrustedRoots: roots}); return err },
	} {
		if err := parse(); !errors.Is(err, ErrQuoteMalformed) {
			t.Errorf("%s: %v, want ErrQuoteMalformed", name, err)
		}
	}
}
