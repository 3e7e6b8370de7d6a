package nvidia

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"
)

// testPKI is a root, an intermediate and a leaf, as templates and keys, that a chain
// mutation changes before testChain issues them.
type testPKI struct {
	root, inter, leaf          *x509.Certificate
	rootKey, interKey, leafKey *ecdsa.PrivateKey
	// leafIssuer and leafSigner issue the leaf: the intermediate and its key unless
	// changed.
	leafIssuer *x509.Certificate
	leafSigner *ecdsa.PrivateKey
	// interUnderRoot issues the intermediate with the root's template and key.
	// serve orders the issued certificates as served (leaf, intermediate, root unless
	// changed); trusted is what the verifier trusts (the root).
	serve   func(leaf, inter, root *x509.Certificate) []*x509.Certificate
	trusted func(root *x509.Certificate) []*x509.Certificate
}

func testKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func caTemplate(cn string) *x509.Certificate {
	return &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: chainTestTime.Add(-time.Hour), NotAfter: chainTestTime.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, MaxPathLen: -1}
}

// chainTestTime is when the chains are verified.
var chainTestTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newTestPKI(t testing.TB) *testPKI {
	p := &testPKI{root: caTemplate("Test Root"), inter: caTemplate("Test Intermediate"),
		leaf: &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "Test GPU"},
			NotBefore: chainTestTime.Add(-time.Hour), NotAfter: chainTestTime.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature},
		rootKey: testKey(t), interKey: testKey(t), leafKey: testKey(t),
		serve: func(leaf, inter, root *x509.Certificate) []*x509.Certificate {
			return []*x509.Certificate{leaf, inter, root}
		},
		trusted: func(root *x509.Certificate) []*x509.Certificate { return []*x509.Certificate{root} },
	}
	p.leafIssuer, p.leafSigner = p.inter, p.interKey
	return p
}

func issueTest(t testing.TB, tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// chain issues p's certificates and returns them as served, and the roots pool.
func (p *testPKI) chain(t testing.TB) ([]*x509.Certificate, *x509.CertPool) {
	root := issueTest(t, p.root, p.root, &p.rootKey.PublicKey, p.rootKey)
	inter := issueTest(t, p.inter, p.root, &p.interKey.PublicKey, p.rootKey)
	leaf := issueTest(t, p.leaf, p.leafIssuer, &p.leafKey.PublicKey, p.leafSigner)
	roots := x509.NewCertPool()
	for _, c := range p.trusted(root) {
		roots.AddCert(c)
	}
	return p.serve(leaf, inter, root), roots
}

// TestChainMatchesX509 is the differential test of verifyChain, whose fast path checks
// the leaf's signature with circl and the leaf's and its issuer's constraints itself,
// against crypto/x509 alone (x509Chain), over mutated chains: each is accepted or
// refused by both alike, the fast path accepts only what x509 accepts, and it does
// accept the chains it is meant for (fast), so the test exercises it.
func TestChainMatchesX509(t *testing.T) {
	otherKey := testKey(t)
	p256Key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	unknownCritical := []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Critical: true, Value: []byte{5, 0}}}
	for _, tc := range []struct {
		name       string
		mutate     func(p *testPKI)
		fast, want bool // the fast path accepts; x509 accepts
	}{
		{"valid, three certificates", func(*testPKI) {}, true, true},
		{"valid, a leaf under the root", func(p *testPKI) {
			p.leafIssuer, p.leafSigner = p.root, p.rootKey
			p.serve = func(leaf, _, root *x509.Certificate) []*x509.Certificate { return []*x509.Certificate{leaf, root} }
		}, true, true},
		{"valid, the root not served", func(p *testPKI) {
			p.serve = func(leaf, inter, _ *x509.Certificate) []*x509.Certificate { return []*x509.Certificate{leaf, inter} }
		}, true, true},
		{"the leaf expired", func(p *testPKI) { p.leaf.NotAfter = chainTestTime.Add(-time.Minute) }, false, false},
		{"the leaf not yet valid", func(p *testPKI) { p.leaf.NotBefore = chainTestTime.Add(time.Minute) }, false, false},
		{"the intermediate expired", func(p *testPKI) { p.inter.NotAfter = chainTestTime.Add(-time.Minute) }, false, false},
		{"the root expired", func(p *testPKI) { p.root.NotAfter = chainTestTime.Add(-time.Minute) }, false, false},
		{"the leaf names another issuer", func(p *testPKI) {
			other := *p.inter
			other.Subject = pkix.Name{CommonName: "Test Other"}
			p.leafIssuer = &other
		}, false, false},
		{"the leaf signed by another key", func(p *testPKI) { p.leafSigner = otherKey }, false, false},
		{"the intermediate not a CA", func(p *testPKI) { p.inter.IsCA = false; p.inter.MaxPathLen = 0 }, false, false},
		{"the intermediate without basic constraints", func(p *testPKI) {
			p.inter.BasicConstraintsValid, p.inter.IsCA, p.inter.MaxPathLen = false, false, 0
		}, false, false},
		{"the intermediate's key usage without certificate signing", func(p *testPKI) { p.inter.KeyUsage = x509.KeyUsageDigitalSignature }, false, false},
		{"the intermediate without key usage", func(p *testPKI) { p.inter.KeyUsage = 0 }, true, true},
		{"the root's path length 0 above an intermediate", func(p *testPKI) { p.root.MaxPathLen, p.root.MaxPathLenZero = 0, true }, false, false},
		{"the root's path length 1", func(p *testPKI) { p.root.MaxPathLen = 1 }, true, true},
		{"the intermediate's path length 0", func(p *testPKI) { p.inter.MaxPathLen, p.inter.MaxPathLenZero = 0, true }, true, true},
		{"the leaf with an unknown critical extension", func(p *testPKI) { p.leaf.ExtraExtensions = unknownCritical }, false, false},
		{"the intermediate with an unknown critical extension", func(p *testPKI) { p.inter.ExtraExtensions = unknownCritical }, false, false},
		{"the root with an unknown critical extension", func(p *testPKI) { p.root.ExtraExtensions = unknownCritical }, false, false},
		{"the leaf signed with SHA-256", func(p *testPKI) { p.leaf.SignatureAlgorithm = x509.ECDSAWithSHA256 }, false, true},
		{"the intermediate with a P-256 key", func(p *testPKI) { p.leafSigner = p256Key; p.interKey = p256Key }, false, true},
		{"name constraints the leaf breaks", func(p *testPKI) {
			p.inter.PermittedDNSDomains = []string{"example.com"}
			p.leaf.DNSNames = []string{"gpu.example.org"}
		}, false, false},
		{"name constraints the leaf meets", func(p *testPKI) {
			p.inter.PermittedDNSDomains = []string{"example.com"}
			p.leaf.DNSNames = []string{"gpu.example.com"}
		}, false, true},
		{"a policy constraint on the intermediate (left to x509)", func(p *testPKI) {
			// PolicyConstraints { requireExplicitPolicy [0] 0 }, which x509 parses but
			// does not write from a template.
			p.inter.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 36}, Critical: true, Value: []byte{0x30, 0x03, 0x80, 0x01, 0x00}}}
		}, false, false},
		{"a certificate policy on the leaf (left to x509)", func(p *testPKI) {
			p.leaf.Policies = []x509.OID{mustOID(t, "1.2.3.4")}
		}, false, true},
		{"another root of the same name trusted", func(p *testPKI) {
			p.trusted = func(*x509.Certificate) []*x509.Certificate {
				return []*x509.Certificate{issueTest(t, p.root, p.root, &otherKey.PublicKey, otherKey)}
			}
		}, false, false},
		{"the intermediate not served", func(p *testPKI) {
			p.serve = func(leaf, _, root *x509.Certificate) []*x509.Certificate { return []*x509.Certificate{leaf, root} }
		}, false, false},
		{"served out of order", func(p *testPKI) {
			p.serve = func(leaf, inter, root *x509.Certificate) []*x509.Certificate {
				return []*x509.Certificate{leaf, root, inter}
			}
		}, false, true},
		{"an unrelated certificate before the issuer", func(p *testPKI) {
			unrelated := issueTest(t, caTemplate("Test Unrelated"), caTemplate("Test Unrelated"), &otherKey.PublicKey, otherKey)
			p.serve = func(leaf, inter, root *x509.Certificate) []*x509.Certificate {
				return []*x509.Certificate{leaf, unrelated, inter, root}
			}
		}, false, true},
		{"the intermediate served twice", func(p *testPKI) {
			p.serve = func(leaf, inter, root *x509.Certificate) []*x509.Certificate {
				return []*x509.Certificate{leaf, inter, inter, root}
			}
		}, true, true},
		{"the leaf as its own issuer", func(p *testPKI) {
			p.serve = func(leaf, _, _ *x509.Certificate) []*x509.Certificate { return []*x509.Certificate{leaf, leaf} }
		}, false, false},
		// A self-issued certificate under the root (a new root key, signed by the
		// old): x509Chain does not offer it as an intermediate, so the fast path must
		// not take it for one.
		{"a self-issued issuer signed by the root", func(p *testPKI) {
			rollover := *p.root
			p.leafIssuer, p.leafSigner = &rollover, otherKey
			p.serve = func(leaf, _, root *x509.Certificate) []*x509.Certificate {
				return []*x509.Certificate{leaf, issueTest(t, &rollover, p.root, &otherKey.PublicKey, p.rootKey), root}
			}
		}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestPKI(t)
			tc.mutate(p)
			certs, roots := p.chain(t)
			_, want := x509Chain(certs, roots, chainTestTime)
			_, got := verifyChain(certs, roots, nil, chainTestTime)
			_, fast := fastChain(certs, roots, chainTestTime)
			if (want == nil) != tc.want {
				t.Fatalf("x509 says %v, the case expects accepted=%v", want, tc.want)
			}
			if (got == nil) != (want == nil) {
				t.Fatalf("verifyChain says %v, x509 %v", got, want)
			}
			if fast != tc.fast {
				t.Fatalf("the fast path accepts: %v, want %v", fast, tc.fast)
			}
		})
	}
}

func mustOID(t testing.TB, s string) x509.OID {
	oid, err := x509.ParseOID(s)
	if err != nil {
		t.Fatal(err)
	}
	return oid
}

// TestChainSignatureDER: the fast path reads a certificate's ECDSA signature exactly as
// crypto/ecdsa.VerifyASN1 does: for a valid signature and each way of encoding the same
// r and s otherwise (a leading zero, a long-form length, trailing bytes, a third
// INTEGER, r negated), the same verdict.
func TestChainSignatureDER(t *testing.T) {
	key := testKey(t)
	hash := sha512.Sum384([]byte("tbs"))
	der, err := ecdsa.SignASN1(rand.Reader, key, hash[:])
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &v); err != nil {
		t.Fatal(err)
	}
	encode := func(parts ...[]byte) []byte {
		var body []byte
		for _, p := range parts {
			body = append(body, p...)
		}
		return append([]byte{0x30, byte(len(body))}, body...)
	}
	integer := func(b []byte) []byte { return append([]byte{0x02, byte(len(b))}, b...) }
	rBytes, sBytes := v.R.Bytes(), v.S.Bytes()
	if rBytes[0]&0x80 != 0 {
		rBytes = append([]byte{0}, rBytes...)
	}
	if sBytes[0]&0x80 != 0 {
		sBytes = append([]byte{0}, sBytes...)
	}
	negR, _ := asn1.Marshal(new(big.Int).Neg(v.R))
	long := append([]byte{0x30, 0x81, byte(len(der) - 2)}, der[2:]...)
	short := sha256.Sum256([]byte("x"))
	for name, sig := range map[string][]byte{
		"valid":                  der,
		"as re-encoded":          encode(integer(rBytes), integer(sBytes)),
		"r with a leading zero":  encode(integer(append([]byte{0, 0}, v.R.Bytes()...)), integer(sBytes)),
		"a long-form length":     long,
		"a trailing byte":        append(append([]byte(nil), der...), 0),
		"a third INTEGER":        encode(integer(rBytes), integer(sBytes), integer([]byte{1})),
		"r negated":              encode(negR, integer(sBytes)),
		"an INTEGER of 32 bytes": encode(integer(short[:]), integer(sBytes)),
		"truncated":              der[:len(der)-1],
		"empty":                  nil,
	} {
		t.Run(name, func(t *testing.T) {
			raw, ok := rawECDSASignature(sig)
			got := ok && ecdsaVerify(&key.PublicKey, hash[:], raw)
			if want := ecdsa.VerifyASN1(&key.PublicKey, hash[:], sig); got != want {
				t.Fatalf("fast path %v, crypto/ecdsa %v", got, want)
			}
		})
	}
}

// BenchmarkVerifyChain is the simulated GPU's device chain (a leaf under its root):
// "fast" as verifyChain does it, "x509" by crypto/x509 alone.
func BenchmarkVerifyChain(b *testing.B) {
	s := newSim(b)
	certs, err := parseChain(simEvidence(b, s, [32]byte{}).CertChain)
	if err != nil {
		b.Fatal(err)
	}
	device, _ := s.Roots()
	roots := pool(b, device)
	now := time.Now()
	for name, verify := range map[string]func([]*x509.Certificate, *x509.CertPool, func() *x509.CertPool, time.Time) ([]*x509.Certificate, error){
		"fast": verifyChain,
		"x509": func(c []*x509.Certificate, r *x509.CertPool, _ func() *x509.CertPool, now time.Time) ([]*x509.Certificate, error) {
			return x509Chain(c, r, now)
		},
	} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := verify(certs, roots, nil, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzChainMatchesX509 feeds verifyChain DER certificates (a leaf, an intermediate and
// a root of testPKI, changed by the fuzzer) and compares its verdict with crypto/x509's:
// the same every time, and the fast path accepts only what x509 accepts.
func FuzzChainMatchesX509(f *testing.F) {
	p := newTestPKI(f)
	certs, _ := p.chain(f)
	f.Add(certs[0].Raw, certs[1].Raw, certs[2].Raw)
	direct := newTestPKI(f)
	direct.leafIssuer, direct.leafSigner = direct.root, direct.rootKey
	dc, _ := direct.chain(f)
	f.Add(dc[0].Raw, dc[2].Raw, dc[2].Raw)
	f.Fuzz(func(t *testing.T, leafDER, interDER, rootDER []byte) {
		var parsed []*x509.Certificate
		for _, der := range [][]byte{leafDER, interDER, rootDER} {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return
			}
			parsed = append(parsed, c)
		}
		if pub, ok := parsed[0].PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P384() {
			return
		}
		roots := x509.NewCertPool()
		roots.AddCert(parsed[2])
		served := parsed[:2]
		_, want := x509Chain(served, roots, chainTestTime)
		_, got := verifyChain(served, roots, nil, chainTestTime)
		_, fast := fastChain(served, roots, chainTestTime)
		if (got == nil) != (want == nil) || fast && want != nil {
			t.Fatalf("verifyChain %v, fast path %v, x509 %v", got, fast, want)
		}
	})
}
