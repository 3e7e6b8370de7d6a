package proxy

import (
	"fmt"
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
// inside the envelope, sealed to v's ML-KEM-768+X25519 key, or under the session v's
// host granted to it (web/E2E.md §8). It returns the envelope and the client that
// opens the answer; nil, nil when v takes plaintext.
func (p *Proxy) seal(v *verified, path string, header http.Header, body []byte) ([]byte, *e2e.Client, error) {
	if v.e2e == nil {
		return nil, nil, nil
	}
	s := e2e.MLKEM768X25519
	return p.sessions.Seal(s, v.e2e.Key(s), http.MethodPost, path, e2e.Request{Header: header, Body: body})
}
