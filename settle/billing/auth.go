package billing

import (
	"crypto/ed25519"
	"encoding/base64"
	"net/http"
	"strconv"

	"github.com/cocoonhost/cocoon/settle"
)

// ParseSignedRequest reads the signing headers of an HTTP request whose body is body.
// It returns the request and its signature, or a *Error (401) naming the bad header.
// It does not check the signature: the client key is the escrow's (see Service.Admit).
func ParseSignedRequest(r *http.Request, body []byte) (settle.SignedRequest, []byte, error) {
	account, err := settle.ParseAccount(r.Header.Get(settle.AccountHeader))
	if err != nil {
		return settle.SignedRequest{}, nil, errorf(settle.CodeBadSignature, "%s: %v", settle.AccountHeader, err)
	}
	ts, err := strconv.ParseInt(r.Header.Get(settle.TimestampHeader), 10, 64)
	if err != nil {
		return settle.SignedRequest{}, nil, errorf(settle.CodeBadSignature, "%s must be Unix seconds", settle.TimestampHeader)
	}
	nonce := r.Header.Get(settle.NonceHeader)
	if !validNonce(nonce) {
		return settle.SignedRequest{}, nil, errorf(settle.CodeBadSignature, "%s must be 16 to 64 characters of A-Z, a-z, 0-9, '_' and '-'", settle.NonceHeader)
	}
	sig, err := base64.StdEncoding.DecodeString(r.Header.Get(settle.ClientSignatureHeader))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return settle.SignedRequest{}, nil, errorf(settle.CodeBadSignature, "%s must be a base64 ed25519 signature", settle.ClientSignatureHeader)
	}
	return settle.SignedRequest{Account: account, Timestamp: ts, Nonce: nonce, Method: r.Method, Path: r.URL.Path,
		IdempotencyKey: r.Header.Get(settle.IdempotencyKeyHeader), Body: body}, sig, nil
}

func validNonce(s string) bool {
	if len(s) < 16 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
