package billing

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/settle"
)

var (
	testKey     = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	testPub     = testKey.Public().(ed25519.PublicKey)
	testAccount = "0:" + strings.Repeat("ab", 32)
)

func TestSignedRequestRoundTrip(t *testing.T) {
	body := []byte(`{"messages":[]}`)
	sr := settle.SignedRequest{Account: testAccount, Timestamp: 1_700_000_000, Nonce: settle.NewNonce(), Method: "POST", Path: "/p/x/v1/chat/completions", Body: body}
	req := httptest.NewRequest("POST", sr.Path, nil)
	sr.Sign(req.Header, testKey)

	got, sig, err := ParseSignedRequest(req, body)
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(testPub, got.SigningString(), sig) {
		t.Fatal("the parsed request's signature does not verify")
	}
	// The signature covers the body, the path, the method, the time and the nonce.
	for name, change := range map[string]func(*settle.SignedRequest){
		"body":   func(r *settle.SignedRequest) { r.Body = []byte(`{}`) },
		"path":   func(r *settle.SignedRequest) { r.Path = "/v1/chat/completions" },
		"method": func(r *settle.SignedRequest) { r.Method = "GET" },
		"time":   func(r *settle.SignedRequest) { r.Timestamp++ },
		"nonce":  func(r *settle.SignedRequest) { r.Nonce = settle.NewNonce() },
	} {
		other := got
		change(&other)
		if ed25519.Verify(testPub, other.SigningString(), sig) {
			t.Errorf("the signature still verifies with another %s", name)
		}
	}
}

func TestParseSignedRequestErrors(t *testing.T) {
	good := settle.SignedRequest{Account: testAccount, Timestamp: 1, Nonce: strings.Repeat("n", 16), Method: "POST", Path: "/"}
	for _, tt := range []struct {
		name, header, value, want string
	}{
		{"no account", settle.AccountHeader, "", "Cocoon-Account"},
		{"bad account", settle.AccountHeader, "0:zz", "not a TON address"},
		{"bad timestamp", settle.TimestampHeader, "yesterday", "Unix seconds"},
		{"short nonce", settle.NonceHeader, "abc", "16 to 64"},
		{"nonce with spaces", settle.NonceHeader, strings.Repeat("a b ", 5), "16 to 64"},
		{"bad signature", settle.ClientSignatureHeader, "!!", "base64 ed25519"},
		{"short signature", settle.ClientSignatureHeader, "AAAA", "base64 ed25519"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/", nil)
			good.Sign(req.Header, testKey)
			req.Header.Set(tt.header, tt.value)
			_, _, err := ParseSignedRequest(req, nil)
			var se *Error
			if !errors.As(err, &se) || se.Status() != 401 || !strings.Contains(se.Message, tt.want) {
				t.Fatalf("err = %v, want a 401 containing %q", err, tt.want)
			}
		})
	}
}

// FuzzParseSignedRequest feeds arbitrary header values to the parser of client-signed
// requests: it never panics, and what it accepts is canonical (the raw account form
// settle.ParseAccount returns, a nonce of the allowed alphabet, a whole signature).
func FuzzParseSignedRequest(f *testing.F) {
	f.Add("0:"+strings.Repeat("ab", 32), "1700000000", strings.Repeat("n", 16), strings.Repeat("A", 88))
	f.Add("EQCrq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq8Uk", "-1", "abc", "")
	f.Add("-1:"+strings.Repeat("00", 32), "99999999999999999999", strings.Repeat("_", 64), "AAAA")
	f.Fuzz(func(t *testing.T, account, ts, nonce, sig string) {
		req := httptest.NewRequest("POST", "/v1/chat/completions", nil)
		req.Header.Set(settle.AccountHeader, account)
		req.Header.Set(settle.TimestampHeader, ts)
		req.Header.Set(settle.NonceHeader, nonce)
		req.Header.Set(settle.ClientSignatureHeader, sig)
		r, s, err := ParseSignedRequest(req, []byte("{}"))
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || se.Status() != 401 {
				t.Fatalf("error %v is not a 401 *Error", err)
			}
			return
		}
		if again, err := settle.ParseAccount(r.Account); err != nil || again != r.Account {
			t.Fatalf("accepted account %q is not canonical: %q, %v", r.Account, again, err)
		}
		if !validNonce(r.Nonce) || len(s) != ed25519.SignatureSize {
			t.Fatalf("accepted nonce %q, signature of %d bytes", r.Nonce, len(s))
		}
	})
}
