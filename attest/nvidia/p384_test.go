package nvidia

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"math/big"
	"testing"
)

// referenceVerify is crypto/ecdsa's verdict on the same r || s signature: what
// ecdsaVerify must agree with for a 48-byte digest.
func referenceVerify(pub *ecdsa.PublicKey, hash, sig []byte) bool {
	r := new(big.Int).SetBytes(sig[:SignatureLen/2])
	s := new(big.Int).SetBytes(sig[SignatureLen/2:])
	return ecdsa.Verify(pub, hash, r, s)
}

// rawSignature is r || s, 48 bytes each; r and s must fit.
func rawSignature(r, s *big.Int) []byte {
	sig := make([]byte, SignatureLen)
	r.FillBytes(sig[:SignatureLen/2])
	s.FillBytes(sig[SignatureLen/2:])
	return sig
}

// signRaw signs hash with key as SPDM does (r || s).
func signRaw(t testing.TB, key *ecdsa.PrivateKey, hash []byte) []byte {
	r, s, err := ecdsa.Sign(rand.Reader, key, hash)
	if err != nil {
		t.Fatal(err)
	}
	return rawSignature(r, s)
}

// keyOf is the P-384 key whose private scalar is d (1 <= d < n).
func keyOf(t testing.TB, d *big.Int) *ecdsa.PrivateKey {
	key, err := ecdsa.ParseRawPrivateKey(elliptic.P384(), d.FillBytes(make([]byte, 48)))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// flipBit returns a copy of b with bit i flipped.
func flipBit(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i/8] ^= 1 << (i % 8)
	return c
}

// agree fails t unless ecdsaVerify and crypto/ecdsa give the same verdict, and that
// verdict is want (when want is not nil).
func agree(t *testing.T, what string, pub *ecdsa.PublicKey, hash, sig []byte, want *bool) {
	t.Helper()
	got, ref := ecdsaVerify(pub, hash, sig), referenceVerify(pub, hash, sig)
	if got != ref {
		t.Fatalf("%s: ecdsaVerify says %v, crypto/ecdsa %v", what, got, ref)
	}
	if want != nil && got != *want {
		t.Fatalf("%s: both say %v, want %v", what, got, *want)
	}
}

// TestECDSAVerifyMatchesCryptoECDSA is the differential test of the circl-based
// verification against crypto/ecdsa: for random keys and digests, the valid signature,
// every single-bit flip of the signature, the digest and each key coordinate, r or s
// set to 0, 1, n-1, n, n+1 and 2^384-1, s replaced by n-s (valid too: ECDSA has no
// low-s rule), the negated key, keys off the curve or with a coordinate at or above p,
// the point at infinity, a signature whose R is the point at infinity, and keys with
// tiny or huge private scalars (the doublings inside the combined multiplication): the
// same verdict every time, and the expected one.
func TestECDSAVerifyMatchesCryptoECDSA(t *testing.T) {
	yes, no := true, false
	n := p384Order
	one := big.NewInt(1)
	keys := []*ecdsa.PrivateKey{keyOf(t, one), keyOf(t, big.NewInt(2)), keyOf(t, new(big.Int).Sub(n, one))}
	rounds := 6
	if testing.Short() {
		rounds = 2
	}
	for range rounds {
		key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	hashes := [][]byte{make([]byte, 48), n.FillBytes(make([]byte, 48)), bytes.Repeat([]byte{0xff}, 48)}
	for i, key := range keys {
		pub := &key.PublicKey
		hash := sha512.Sum384([]byte{byte(i)})
		for _, h := range append(hashes, hash[:]) {
			sig := signRaw(t, key, h)
			agree(t, "valid", pub, h, sig, &yes)
			r, s := new(big.Int).SetBytes(sig[:48]), new(big.Int).SetBytes(sig[48:])
			agree(t, "s replaced by n-s", pub, h, rawSignature(r, new(big.Int).Sub(n, s)), &yes)
		}
		if testing.Short() && i > 4 {
			continue
		}
		sig := signRaw(t, key, hash[:])
		for b := range 8 * len(sig) {
			agree(t, "signature bit flipped", pub, hash[:], flipBit(sig, b), &no)
		}
		for b := range 8 * len(hash) {
			agree(t, "digest bit flipped", pub, flipBit(hash[:], b), sig, &no)
		}
		x, y := pub.X.FillBytes(make([]byte, 48)), pub.Y.FillBytes(make([]byte, 48))
		for b := range 8 * 48 {
			flipped := &ecdsa.PublicKey{Curve: elliptic.P384(), X: new(big.Int).SetBytes(flipBit(x, b)), Y: pub.Y}
			agree(t, "key X bit flipped", flipped, hash[:], sig, &no)
			flipped = &ecdsa.PublicKey{Curve: elliptic.P384(), X: pub.X, Y: new(big.Int).SetBytes(flipBit(y, b))}
			agree(t, "key Y bit flipped", flipped, hash[:], sig, &no)
		}
		r, s := new(big.Int).SetBytes(sig[:48]), new(big.Int).SetBytes(sig[48:])
		max384 := new(big.Int).Sub(new(big.Int).Lsh(one, 384), one)
		for _, v := range []*big.Int{big.NewInt(0), one, new(big.Int).Sub(n, one), n, new(big.Int).Add(n, one), max384,
			new(big.Int).Add(r, n), new(big.Int).Add(s, n)} {
			if v.BitLen() > 384 {
				continue
			}
			agree(t, "r replaced", pub, hash[:], rawSignature(v, s), &no)
			agree(t, "s replaced", pub, hash[:], rawSignature(r, v), &no)
		}
		negated := &ecdsa.PublicKey{Curve: elliptic.P384(), X: pub.X, Y: new(big.Int).Sub(p384Prime, pub.Y)}
		agree(t, "negated key", negated, hash[:], sig, &no)
		for what, k := range map[string]*ecdsa.PublicKey{
			"key off the curve":      {Curve: elliptic.P384(), X: pub.X, Y: new(big.Int).Add(pub.Y, one)},
			"point at infinity":      {Curve: elliptic.P384(), X: new(big.Int), Y: new(big.Int)},
			"key X plus p":           {Curve: elliptic.P384(), X: new(big.Int).Add(pub.X, p384Prime), Y: pub.Y},
			"key Y plus p":           {Curve: elliptic.P384(), X: pub.X, Y: new(big.Int).Add(pub.Y, p384Prime)},
			"negative key X":         {Curve: elliptic.P384(), X: new(big.Int).Neg(pub.X), Y: pub.Y},
			"key Y minus p (<0)":     {Curve: elliptic.P384(), X: pub.X, Y: new(big.Int).Sub(pub.Y, p384Prime)},
			"key X, Y as coordinate": {Curve: elliptic.P384(), X: pub.Y, Y: pub.X},
		} {
			agree(t, what, k, hash[:], sig, &no)
		}
		// With the point at infinity for a key, R = u1·G: r = x(k·G), s = e/k forge a
		// signature for any digest, if the key is not refused.
		k := big.NewInt(int64(7 + i))
		kx, _ := elliptic.P384().ScalarBaseMult(k.FillBytes(make([]byte, 48)))
		sForged := new(big.Int).SetBytes(hash[:])
		sForged.Mul(sForged, new(big.Int).ModInverse(k, n)).Mod(sForged, n)
		agree(t, "forged under the point at infinity", &ecdsa.PublicKey{Curve: elliptic.P384(), X: new(big.Int), Y: new(big.Int)},
			hash[:], rawSignature(kx.Mod(kx, n), sForged), &no)
		// R = u1·G + u2·Q is the point at infinity when e + r·d = 0 mod n: any s.
		d := key.D
		rInf := new(big.Int).SetBytes(hash[:])
		rInf.Neg(rInf).Mul(rInf, new(big.Int).ModInverse(d, n)).Mod(rInf, n)
		agree(t, "R at infinity", pub, hash[:], rawSignature(rInf, s), &no)
	}
}

// TestECDSAVerifyRefuses: what ecdsaVerify refuses where crypto/ecdsa would go on (a
// digest that is not 48 bytes, which crypto/ecdsa truncates or pads; another curve) and
// inputs it must survive (nil key, nil coordinates, short signatures).
func TestECDSAVerifyRefuses(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	long := sha512.Sum512([]byte("m"))
	short := sha256.Sum256([]byte("m"))
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p256Hash := sha512.Sum384([]byte("m"))
	for _, tc := range []struct {
		name string
		pub  *ecdsa.PublicKey
		hash []byte
		sig  func() []byte
	}{
		{"SHA-512 digest, truncated by crypto/ecdsa", &key.PublicKey, long[:], func() []byte { return signRaw(t, key, long[:]) }},
		{"SHA-256 digest", &key.PublicKey, short[:], func() []byte { return signRaw(t, key, short[:]) }},
		{"P-256 key", &p256.PublicKey, p256Hash[:], func() []byte {
			r, s, _ := ecdsa.Sign(rand.Reader, p256, p256Hash[:])
			return rawSignature(r, s)
		}},
		{"nil key", nil, p256Hash[:], func() []byte { return make([]byte, SignatureLen) }},
		{"nil coordinates", &ecdsa.PublicKey{Curve: elliptic.P384()}, p256Hash[:], func() []byte { return make([]byte, SignatureLen) }},
		{"short signature", &key.PublicKey, p256Hash[:], func() []byte { return signRaw(t, key, p256Hash[:])[1:] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sig := tc.sig()
			if tc.pub != nil && tc.pub.X != nil && len(sig) == SignatureLen && !referenceVerify(tc.pub, tc.hash, sig) {
				t.Fatal("crypto/ecdsa refuses it too: the case does not show the difference")
			}
			if ecdsaVerify(tc.pub, tc.hash, sig) {
				t.Fatal("accepted")
			}
		})
	}
}

// FuzzECDSAVerify compares ecdsaVerify with crypto/ecdsa on arbitrary inputs: a key
// from a private scalar (when x is empty) or raw coordinates x, y, a digest and a
// signature. Seeds are valid signatures, which the fuzzer mutates. The verdicts must
// agree for every 48-byte digest and 96-byte signature; anything else is refused.
func FuzzECDSAVerify(f *testing.F) {
	for i := range 3 {
		key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		hash := sha512.Sum384([]byte{byte(i)})
		sig := signRaw(f, key, hash[:])
		f.Add(key.D.FillBytes(make([]byte, 48)), []byte(nil), []byte(nil), hash[:], sig)
		f.Add([]byte(nil), key.X.FillBytes(make([]byte, 48)), key.Y.FillBytes(make([]byte, 48)), hash[:], sig)
	}
	f.Fuzz(func(t *testing.T, d, x, y, hash, sig []byte) {
		var pub *ecdsa.PublicKey
		if len(x) == 0 {
			k, err := ecdsa.ParseRawPrivateKey(elliptic.P384(), d)
			if err != nil {
				return
			}
			pub = &k.PublicKey
		} else {
			pub = &ecdsa.PublicKey{Curve: elliptic.P384(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		}
		got := ecdsaVerify(pub, hash, sig)
		if len(hash) != sha512.Size384 || len(sig) != SignatureLen {
			if got {
				t.Fatalf("accepted a %d-byte digest and a %d-byte signature", len(hash), len(sig))
			}
			return
		}
		if ref := referenceVerify(pub, hash, sig); got != ref {
			t.Fatalf("ecdsaVerify says %v, crypto/ecdsa %v", got, ref)
		}
	})
}

// BenchmarkVerifyP384 is one ECDSA P-384 verification: "circl" is ecdsaVerify, which
// the report and the RIMs' signatures take, "crypto-ecdsa" the standard library's,
// which x509 uses for certificates.
func BenchmarkVerifyP384(b *testing.B) {
	key, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	hash := sha512.Sum384([]byte("report"))
	sig := signRaw(b, key, hash[:])
	for name, verify := range map[string]func(*ecdsa.PublicKey, []byte, []byte) bool{"circl": ecdsaVerify, "crypto-ecdsa": referenceVerify} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if !verify(&key.PublicKey, hash[:], sig) {
					b.Fatal("does not verify")
				}
			}
		})
	}
}
