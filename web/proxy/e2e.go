package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/web/e2e"
)

// WithPlaintext sends requests in plaintext instead of sealed to each host's attested
// end-to-end key (web/E2E.md): allowed only to https hosts, whose RA-TLS handshake
// pins the attested TLS key, so that no relay reads them; an http host is then
// refused at verification. By default every request is sealed (ML-KEM-768+X25519),
// and a host whose evidence has no end-to-end keys is refused.
func WithPlaintext() Option { return func(c *config) { c.plaintext = true } }

// checkE2E is verification's last step: it takes the end-to-end keys of verified boot
// evidence (VerifyEvidence checked the host key's signature over them), or checks
// that plaintext is allowed to this host.
func (c *config) checkE2E(v *verified, boot *attest.Evidence) error {
	switch {
	case c.plaintext && v.conn.ratls == nil && !c.plaintextHTTP:
		return fmt.Errorf("plaintext requests are allowed over RA-TLS (https) only, and this host is reached over http: a relay would read every prompt")
	case c.plaintext:
		return nil
	case boot.E2EKeys == nil:
		return fmt.Errorf("its evidence carries no end-to-end keys, so requests cannot be sealed to it (plaintext is allowed over RA-TLS only)")
	}
	pub := boot.E2EKeys.Public()
	v.e2e = &pub
	return nil
}

// seal seals a request for path to v: the body and the credentials in header travel
// inside the envelope. It returns the envelope and the client that opens the answer;
// nil, nil when v takes plaintext.
func seal(v *verified, path string, header http.Header, body []byte) ([]byte, *e2e.Client, error) {
	if v.e2e == nil {
		return nil, nil, nil
	}
	s := e2e.MLKEM768X25519
	return e2e.SealRequest(s, v.e2e.Key(s), http.MethodPost, path, e2e.Request{Header: header, Body: body})
}

// unopened reports whether resp is a host's refusal of a request it could not open
// (web/E2E.md: a plaintext 400 "e2e_invalid").
func unopened(resp *http.Response) bool {
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") == e2e.ContentType {
		return false
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1)) // relayWhole refuses more
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal(b, &e)
	return e.Error.Code == "e2e_invalid"
}
