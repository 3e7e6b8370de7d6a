package nvidia

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"
	"time"
)

// verifyChain verifies certs[0] through certs[1:] to roots (pinned when nil) at now
// (time.Now when zero) and returns the chain, leaf first, ending at the root. The leaf's
// key must be ECDSA P-384. Errors wrap ErrUntrustedRoot or ErrCertChain.
//
// It accepts exactly what x509Chain (crypto/x509 alone) accepts: the leaf's signature
// is checked by circl when fastChain applies, x509 doing everything else, and any
// chain fastChain does not accept is verified by x509Chain, which also words the error
// (TestChainMatchesX509). Cost: for a leaf whose issuer is served, as the simulator's
// and NVIDIA's are, one circl verification for the leaf and x509's verifications above
// its issuer (none for the simulator: its issuer is the root).
func verifyChain(certs []*x509.Certificate, roots *x509.CertPool, pinned func() *x509.CertPool, now time.Time) ([]*x509.Certificate, error) {
	if roots == nil {
		roots = pinned()
	}
	if now.IsZero() {
		now = time.Now()
	}
	leaf := certs[0]
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P384() {
		return nil, fmt.Errorf("%w: the leaf %q has no ECDSA P-384 key", ErrCertChain, leaf.Subject)
	}
	if chain, ok := fastChain(certs, roots, now); ok {
		return chain, nil
	}
	return x509Chain(certs, roots, now)
}

// x509Chain is crypto/x509's verification of certs[0] through the intermediates
// certs[1:] to roots at now, for any extended key usage.
func x509Chain(certs []*x509.Certificate, roots *x509.CertPool, now time.Time) ([]*x509.Certificate, error) {
	leaf := certs[0]
	// A self-issued certificate (a root served at the end of the chain, as NVIDIA's
	// driver and RIMs serve theirs) is left out of the intermediates: it anchors a chain
	// only when it is among roots, where x509 finds it, and as an intermediate it made
	// x509 verify the same signatures again through it (three P-384 verifications
	// instead of one for a leaf under a root). Leaving it out can only refuse a chain.
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		if !bytes.Equal(c.RawSubject, c.RawIssuer) {
			inter.AddCert(c)
		}
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		if _, unknown := err.(x509.UnknownAuthorityError); unknown {
			last := certs[len(certs)-1]
			return nil, fmt.Errorf("%w: the chain of %q ends at %q, not at a trusted root", ErrUntrustedRoot, leaf.Subject, last.Issuer)
		}
		return nil, fmt.Errorf("%w: %v", ErrCertChain, err)
	}
	return chains[0], nil
}

// Extensions crypto/x509 checks over a whole chain rather than per certificate: name
// constraints, certificate policies, policy mappings, policy constraints and inhibit
// anyPolicy. fastChain leaves a chain that carries any of them to x509Chain.
var wholeChainExtensions = []asn1.ObjectIdentifier{{2, 5, 29, 30}, {2, 5, 29, 32}, {2, 5, 29, 33}, {2, 5, 29, 36}, {2, 5, 29, 54}}

// fastChain verifies the leaf's signature by its served issuer certs[1] with
// ecdsaVerify (circl: the leaf is what is new with every GPU) and lets crypto/x509
// verify certs[1] to roots; it accepts only when crypto/x509 would accept certs, making
// the checks x509 makes for the leaf and its issuer, which the verification of certs[1]
// alone does not (crypto/x509's verify.go isValid and CheckSignatureFrom):
//
//   - the leaf: no unhandled critical extension, valid at now, signed with ECDSA and
//     SHA-384 (anything else is left to x509) by certs[1]'s P-384 key, the signature
//     DER as crypto/ecdsa reads it;
//   - certs[1]: its subject is the leaf's issuer, byte for byte; it is a CA (basic
//     constraints present, cA set) and its key usage, when present, allows certificate
//     signing; its own path length admits the leaf (always: no intermediate below it);
//   - every CA above certs[1]: its path length admits the intermediates below it in the
//     whole chain, one more than x509 counted for certs[1]'s chain;
//   - no certificate of the whole chain has an extension x509 checks across the chain
//     (wholeChainExtensions): without them, x509's name-constraint and policy checks
//     pass any chain;
//   - no two certificates of the whole chain have the same subject (x509 skips a parent
//     already in the chain), and a self-issued certs[1] is a trusted root itself
//     (x509Chain does not offer it as an intermediate).
//
// Extended key usages are not compared (Verify asks for any). ok is false whenever
// any of this does not hold; the caller then asks x509 for the verdict.
func fastChain(certs []*x509.Certificate, roots *x509.CertPool, now time.Time) (chain []*x509.Certificate, ok bool) {
	if len(certs) < 2 {
		return nil, false
	}
	leaf, issuer := certs[0], certs[1]
	issuerKey, isECDSA := issuer.PublicKey.(*ecdsa.PublicKey)
	if !isECDSA || issuerKey.Curve != elliptic.P384() || leaf.SignatureAlgorithm != x509.ECDSAWithSHA384 ||
		len(leaf.UnhandledCriticalExtensions) > 0 || now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) ||
		!bytes.Equal(leaf.RawIssuer, issuer.RawSubject) || !issuer.BasicConstraintsValid || !issuer.IsCA ||
		issuer.KeyUsage != 0 && issuer.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, false
	}
	sig, ok := rawECDSASignature(leaf.Signature)
	tbs := sha512.Sum384(leaf.RawTBSCertificate)
	if !ok || !ecdsaVerify(issuerKey, tbs[:], sig) {
		return nil, false
	}
	above, err := x509Chain(certs[1:], roots, now)
	// A self-issued issuer is no intermediate for x509Chain(certs): it counts only as a
	// trusted root itself.
	if err != nil || bytes.Equal(issuer.RawSubject, issuer.RawIssuer) && len(above) != 1 {
		return nil, false
	}
	chain = append([]*x509.Certificate{leaf}, above...)
	for i, c := range chain {
		// x509 skips a parent already in the chain (the same subject and key): a
		// subject twice is left to it.
		for _, earlier := range chain[:i] {
			if bytes.Equal(earlier.RawSubject, c.RawSubject) {
				return nil, false
			}
		}
		if i >= 2 && c.BasicConstraintsValid && c.MaxPathLen >= 0 && i-1 > c.MaxPathLen {
			return nil, false
		}
		for _, ext := range c.Extensions {
			for _, id := range wholeChainExtensions {
				if ext.Id.Equal(id) {
					return nil, false
				}
			}
		}
	}
	return chain, true
}

// rawECDSASignature converts a certificate's ECDSA-Sig-Value (DER SEQUENCE of two
// INTEGERs) to r || s, 48 bytes each. It accepts exactly the DER crypto/ecdsa's
// VerifyASN1 reads: r and s positive, minimally encoded, nothing before or after, which
// the re-encoding must reproduce byte for byte; ecdsaVerify then checks their range.
func rawECDSASignature(der []byte) ([]byte, bool) {
	var v struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &v); err != nil || len(rest) != 0 {
		return nil, false
	}
	if v.R.Sign() <= 0 || v.S.Sign() <= 0 || v.R.BitLen() > 384 || v.S.BitLen() > 384 {
		return nil, false
	}
	if again, err := asn1.Marshal(v); err != nil || !bytes.Equal(again, der) {
		return nil, false
	}
	sig := make([]byte, SignatureLen)
	v.R.FillBytes(sig[:SignatureLen/2])
	v.S.FillBytes(sig[SignatureLen/2:])
	return sig, true
}
