package attest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"

	"github.com/cocoonhost/cocoon/web/e2e"
)

// E2EKeys are a host's end-to-end encryption keys as its evidence carries them: the
// public keys and the host key's signature of E2EKeysMessage over them.
type E2EKeys struct {
	X25519         []byte `json:"x25519"`
	MLKEM768X25519 []byte `json:"mlkem768x25519"`
	Signature      []byte `json:"signature"`
}

// e2eKeysDomain is the first field of the message the host key signs over its HPKE
// keys; it differs from responseDomain, so no response signature is one of these.
const e2eKeysDomain = "cocoon-host e2e keys v1"

// E2EKeysMessage returns what the host key signs at boot over its HPKE public keys:
//
//	lp("cocoon-host e2e keys v1") || lp(X25519 public key) || lp(ML-KEM-768+X25519 public key)
//
// with lp as in BootReportData. The host key is generated in the TD with them and
// never leaves its memory; every quote binds it, so the signature binds the HPKE keys
// to every kind of evidence alike.
func E2EKeysMessage(pub e2e.PublicKeys) []byte {
	var b bytes.Buffer
	writeFields(&b, []byte(e2eKeysDomain), pub.X25519, pub.MLKEM768X25519)
	return b.Bytes()
}

// hostE2E is a host's HPKE keys and the signature its evidence carries.
type hostE2E struct {
	keys      *e2e.HostKeys
	signature []byte
}

func newHostE2E(signKey ed25519.PrivateKey) (*hostE2E, error) {
	keys, err := e2e.GenerateHostKeys()
	if err != nil {
		return nil, err
	}
	return &hostE2E{keys: keys, signature: ed25519.Sign(signKey, E2EKeysMessage(keys.Public()))}, nil
}

func (h *hostE2E) evidence() *E2EKeys {
	if h == nil {
		return nil
	}
	pub := h.keys.Public()
	return &E2EKeys{X25519: pub.X25519, MLKEM768X25519: pub.MLKEM768X25519, Signature: h.signature}
}

// E2EKeys returns the host's HPKE private keys, which open the requests sealed to
// the keys its evidence carries.
func (h *Host) E2EKeys() *e2e.HostKeys { return h.e2e.keys }

// Public returns the public keys, once Verify passed.
func (k *E2EKeys) Public() e2e.PublicKeys {
	return e2e.PublicKeys{X25519: k.X25519, MLKEM768X25519: k.MLKEM768X25519}
}

// Verify checks the host key's signature over the keys.
func (k *E2EKeys) Verify(hostKey ed25519.PublicKey) error {
	if len(hostKey) != ed25519.PublicKeySize || !ed25519.Verify(hostKey, E2EKeysMessage(k.Public()), k.Signature) {
		return fmt.Errorf("the host key %x did not sign these end-to-end keys", []byte(hostKey))
	}
	for _, s := range []e2e.Suite{e2e.X25519, e2e.MLKEM768X25519} {
		if err := s.CheckPublicKey(k.Public().Key(s)); err != nil {
			return err
		}
	}
	return nil
}

// checkE2EKeys reports the binding of the evidence's end-to-end keys on its own
// line: evidence without them (an older host) gets none, and a client that needs
// them refuses such a host itself.
func checkE2EKeys(r *Report, ev Evidence) {
	if ev.E2EKeys == nil {
		return
	}
	if err := ev.E2EKeys.Verify(ev.HostKey); err != nil {
		r.fail("e2e keys", "%v: requests must not be sealed to them", err)
		return
	}
	r.pass("e2e keys", "the host key signed the HPKE keys requests are sealed to: X25519 %x, ML-KEM-768+X25519 sha256 %x",
		ev.E2EKeys.X25519, sha256.Sum256(ev.E2EKeys.MLKEM768X25519))
}
