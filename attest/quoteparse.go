package attest

import (
	"fmt"

	"github.com/google/go-tdx-guest/abi"
)

// quoteToProto is abi.QuoteToProto without its panics. go-tdx-guest trusts some lengths
// inside a quote: one that points past the signed data or the certification data makes
// it slice out of range (testdata/fuzz/FuzzParseQuote holds two such quotes, one of them
// a byte away from Intel's sample). A quote comes from the network, from a host or whoever sits
// in between, so a panic there would let them crash the verifier (cocoon verify, the
// proxy, the reviewer's page); recovering turns any such fault of the library into an
// error, now and in versions to come.
//
// Cost: that of abi.QuoteToProto (a deferred call more). It fails with the library's
// error, or with the panic's message when the quote's lengths do not fit its size.
func quoteToProto(raw []byte) (parsed any, err error) {
	defer func() {
		if r := recover(); r != nil {
			parsed, err = nil, fmt.Errorf("a length inside the quote does not fit its %d bytes (%v)", len(raw), r)
		}
	}()
	return abi.QuoteToProto(raw)
}
