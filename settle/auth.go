package settle

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/xssnick/tonutils-go/address"
)

// The headers of a request signed by an escrow's client key.
const (
	AccountHeader         = "Cocoon-Account"          // the escrow address, raw form ("0:<64 hex digits>")
	TimestampHeader       = "Cocoon-Timestamp"        // Unix seconds
	NonceHeader           = "Cocoon-Nonce"            // 16 to 64 characters of [A-Za-z0-9_-]
	ClientSignatureHeader = "Cocoon-Client-Signature" // base64 ed25519 signature
	// IdempotencyKeyHeader makes a billed request safe to retry: a request with the key
	// of one that completed gets that request's answer and receipt again, and is not
	// charged again. A signed request signs it too.
	IdempotencyKeyHeader = "Idempotency-Key"
)

// RequestWindow is how far a signed request's timestamp may be from the host's clock.
// Within it the ledger refuses a request hash seen before; outside it the timestamp is
// refused, so a captured request can never be replayed. The host forgets hashes older
// than a day by its own clock, which the machine's owner sets, so its ledger also
// refuses a request signed before the latest time it has forgotten from (a clock moved
// a day ahead and back cannot make a billed request billable again).
const RequestWindow = 5 * time.Minute

// requestDomain starts the string a client signs.
const requestDomain = "cocoon-request-v1"

// SignedRequest is the client-signed part of a request.
type SignedRequest struct {
	// Account is the escrow's address in raw form, lowercase (what ParseAccount
	// returns): the form the host puts in the string it checks.
	Account   string
	Timestamp int64
	Nonce     string
	Method    string
	Path      string
	// IdempotencyKey is the Idempotency-Key header, empty without one. It is signed,
	// so that a captured request cannot be sent again under new keys.
	IdempotencyKey string
	Body           []byte
}

// SigningString is what the client signs: lines of the domain, the account in raw form,
// the timestamp, the nonce, the method, the path, the idempotency key (an empty line
// without one) and the hex SHA-256 of the body. Its SHA-256 is the request hash of the
// receipt of a request without an idempotency key.
func (r SignedRequest) SigningString() []byte {
	body := sha256.Sum256(r.Body)
	return []byte(strings.Join([]string{requestDomain, r.Account, strconv.FormatInt(r.Timestamp, 10), r.Nonce,
		r.Method, r.Path, r.IdempotencyKey, hex.EncodeToString(body[:])}, "\n"))
}

// Sign sets the request's headers on h, signed with the client key.
func (r SignedRequest) Sign(h http.Header, key ed25519.PrivateKey) {
	h.Set(AccountHeader, r.Account)
	h.Set(TimestampHeader, strconv.FormatInt(r.Timestamp, 10))
	h.Set(NonceHeader, r.Nonce)
	if r.IdempotencyKey != "" {
		h.Set(IdempotencyKeyHeader, r.IdempotencyKey)
	}
	h.Set(ClientSignatureHeader, base64.StdEncoding.EncodeToString(ed25519.Sign(key, r.SigningString())))
}

// ParseAccount parses an escrow address in any form TON wallets show (raw "0:…" or
// user-friendly "EQ…"/"UQ…") and returns its raw form, the account's name in the ledger.
func ParseAccount(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("no escrow address")
	}
	var a *address.Address
	var err error
	if strings.Contains(s, ":") {
		a, err = address.ParseRawAddr(s)
	} else {
		a, err = address.ParseAddr(s)
	}
	if err != nil {
		return "", fmt.Errorf("%q is not a TON address", s)
	}
	return a.StringRaw(), nil
}

// NewNonce returns a random nonce for a signed request.
func NewNonce() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
