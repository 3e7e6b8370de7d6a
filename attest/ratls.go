package attest

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"
)

// OIDEvidence identifies the X.509 extension of an RA-TLS certificate: "Cocoon RA-TLS
// evidence v1, provisional". The extension is non-critical and its value (the octets of
// extnValue) is the boot evidence as JSON, exactly as GET /v1/attestation serves it.
//
// The arc is provisional: 1.3.6.1.4.1.32473 is the enterprise number RFC 5612 reserves
// for documentation, which squats no organisation's arc. It must be replaced by an arc
// under Cocoon's own IANA Private Enterprise Number before a stable release; clients
// and hosts then change together, since a verifier finds evidence by this OID only.
var OIDEvidence = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1, 1}

// ErrRATLS is wrapped by the errors of a handshake that RATLSVerifier refuses.
var ErrRATLS = errors.New("RA-TLS")

// certBackdate is how far before its issue a certificate's validity starts, so that a
// client whose clock is slightly behind the host's still accepts it.
const certBackdate = 5 * time.Minute

// Certificate issues a self-signed certificate for the host's TLS key, valid from now
// (less a few minutes for clock skew) for validity, carrying the boot evidence in the
// OIDEvidence extension. The boot quote's REPORTDATA binds the TLS key's
// SubjectPublicKeyInfo, so a verifier of the evidence learns that the certificate's key
// is the attested host's; the certificate names no host, since the evidence, not a
// name, identifies it. Cost: one ECDSA signature. It fails only when the evidence
// cannot be encoded or signed.
func (h *Host) Certificate(now time.Time, validity time.Duration) (*tls.Certificate, error) {
	ev, err := json.Marshal(h.BootEvidence())
	if err != nil {
		return nil, fmt.Errorf("attest: certificate evidence: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("attest: certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: "cocoon-host"},
		NotBefore:       now.Add(-certBackdate),
		NotAfter:        now.Add(validity),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		ExtraExtensions: []pkix.Extension{{Id: OIDEvidence, Value: ev}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, h.tlsKey.Public(), h.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("attest: certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("attest: certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: h.tlsKey, Leaf: leaf}, nil
}

// TLSConfig returns a server configuration (TLS 1.3 only) that serves h's RA-TLS
// certificates, each valid for validity. A certificate is re-issued during the handshake
// that finds it within a third of validity of its expiry, so a client never receives one
// about to expire; handshakes otherwise share the current one.
//
// Rotation renews the certificate, not the key: the boot quote binds this one TLS key,
// and a new key would need a fresh quote over new boot REPORTDATA (left for later), so
// a client that pinned the key keeps it across rotations.
func (h *Host) TLSConfig(validity time.Duration) *tls.Config {
	r := &certRotator{host: h, validity: validity, now: time.Now}
	return &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: r.get}
}

// certRotator holds the current certificate of TLSConfig.
type certRotator struct {
	host     *Host
	validity time.Duration
	now      func() time.Time

	mu  sync.Mutex
	cur *tls.Certificate
}

func (r *certRotator) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if r.cur == nil || now.After(r.cur.Leaf.NotAfter.Add(-r.validity/3)) {
		c, err := r.host.Certificate(now, r.validity)
		if err != nil {
			return nil, err
		}
		r.cur = c
	}
	return r.cur, nil
}

// RATLSVerifier verifies RA-TLS certificates inside TLS handshakes and pins the first
// TLS key it verifies. It is safe for concurrent use by the connections of one client.
type RATLSVerifier struct {
	policy Policy
	opts   EvidenceOptions

	mu       sync.Mutex
	pinned   []byte // DER SubjectPublicKeyInfo of the verified key
	evidence Evidence
	report   *Report
}

// NewRATLSVerifier returns a verifier that accepts a host's certificate when its
// evidence passes VerifyEvidence with p and opts (boot evidence: opts.PipelineID and
// opts.Nonce must be empty) and the evidence's TLS key is the certificate's key. It
// fails for an invalid policy or options, as VerifyEvidence does.
func NewRATLSVerifier(p Policy, opts EvidenceOptions) (*RATLSVerifier, error) {
	if opts.PipelineID != "" {
		return nil, errors.New("attest: RA-TLS certificates carry boot evidence: options must not name a pipeline")
	}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	if _, err := p.SimRoot(); err != nil {
		return nil, err
	}
	if _, err := newGPUVerification(&p, opts, time.Time{}); err != nil { // its RIM and root files
		return nil, err
	}
	return &RATLSVerifier{policy: p, opts: opts}, nil
}

// TLSConfig returns a client configuration (TLS 1.3 only) that verifies the server with
// v. It sets InsecureSkipVerify, which only turns off the Web PKI checks (a chain to a
// public CA, a host name), and these prove nothing here: an RA-TLS certificate is
// self-signed and names no host. VerifyConnection then checks what does identify the
// host: the TDX evidence in the certificate and that the certificate's key is the key
// its quote binds. The handshake itself proves that the server holds that key's private
// half, which never leaves the attested TD's memory.
func (v *RATLSVerifier) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, VerifyConnection: v.VerifyConnection}
}

// VerifyConnection is a tls.Config.VerifyConnection function. It refuses, with an error
// wrapping ErrRATLS, a peer certificate that is outside its validity period, lacks the
// OIDEvidence extension or carries evidence that does not parse, that fails any check
// of VerifyEvidence (the error lists the failed checks), or whose TLS key is not the
// certificate's key. The first key it accepts is pinned: a later handshake presenting
// another key is refused, even with valid evidence, since the client verified (and may
// hold signatures by the host key of) that host; a client that wants the new host
// verifies again with a new RATLSVerifier. Cost: one VerifyEvidence (about a
// millisecond) until a key is pinned, then a key comparison.
func (v *RATLSVerifier) VerifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: the host presented no certificate", ErrRATLS)
	}
	leaf := cs.PeerCertificates[0]
	now := v.opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return fmt.Errorf("%w: the certificate is valid from %s to %s, not now (%s)", ErrRATLS,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.pinned != nil {
		if !bytes.Equal(leaf.RawSubjectPublicKeyInfo, v.pinned) {
			return fmt.Errorf("%w: the host's TLS key changed from the key verified before: verify the host again", ErrRATLS)
		}
		return nil
	}
	i := slices.IndexFunc(leaf.Extensions, func(e pkix.Extension) bool { return e.Id.Equal(OIDEvidence) })
	if i < 0 {
		return fmt.Errorf("%w: the certificate carries no evidence (extension %v): not an attested Cocoon host", ErrRATLS, OIDEvidence)
	}
	ev, err := ParseEvidence(leaf.Extensions[i].Value)
	if err != nil {
		return fmt.Errorf("%w: the certificate's evidence: %w", ErrRATLS, err)
	}
	r, err := VerifyEvidence(*ev, v.policy, v.opts)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRATLS, err)
	}
	if !r.OK() {
		var failed []string
		for _, c := range r.Checks {
			if !c.OK {
				failed = append(failed, c.Name+": "+c.Detail)
			}
		}
		return fmt.Errorf("%w: the certificate's evidence does not verify: %s", ErrRATLS, strings.Join(failed, "; "))
	}
	// VerifyEvidence checked that the quote binds ev.TLSKey; this binds the certificate.
	if !bytes.Equal(ev.TLSKey, leaf.RawSubjectPublicKeyInfo) {
		return fmt.Errorf("%w: the certificate's key is not the TLS key the evidence binds: another key presents this host's evidence", ErrRATLS)
	}
	r.pass("RA-TLS key", "the TLS connection's certificate key is the TLS key the quote binds")
	v.pinned, v.evidence, v.report = leaf.RawSubjectPublicKeyInfo, *ev, r
	return nil
}

// Pinned returns the evidence and the report of the pinned host, with ok false until a
// handshake has verified one. The evidence's HostKey is the attested key that signs the
// host's responses.
func (v *RATLSVerifier) Pinned() (ev Evidence, r *Report, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.evidence, v.report, v.pinned != nil
}
