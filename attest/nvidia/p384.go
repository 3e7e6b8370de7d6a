package nvidia

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha512"
	"math/big"

	"github.com/cloudflare/circl/ecc/p384"
)

// p384Curve is circl's P-384: amd64 and arm64 assembly, and CombinedMult (u1·G + u2·Q in
// variable time), which verifies an ECDSA signature in about half the time of
// crypto/ecdsa's constant-time generic code (BenchmarkVerifyP384). Variable time is
// sound here: a verification's inputs (key, digest, signature) are all public.
var p384Curve = p384.P384()

// p384Order is n, the order of P-384's base point, and p384Prime the field's prime.
var (
	p384Order = elliptic.P384().Params().N
	p384Prime = elliptic.P384().Params().P
)

// ecdsaVerify checks an SPDM or XML-DSig ECDSA P-384 signature, r || s (48 bytes
// each, big-endian), over a SHA-384 digest with pub, as FIPS 186-5 section 6.4.2 says:
//
//   - pub must be a P-384 key whose coordinates lie in [0, p-1] and satisfy the curve
//     equation (the point at infinity has no affine coordinates that do);
//   - hash must be 48 bytes: for P-384 and SHA-384 the leftmost 384 bits of the digest
//     are the whole digest, so no truncation applies, and another digest size (another
//     hash) is refused rather than truncated;
//   - r and s must lie in [1, n-1];
//   - with w = s⁻¹ mod n, R = (e·w mod n)·G + (r·w mod n)·pub must not be the point at
//     infinity, and its x coordinate, reduced mod n, must equal r.
//
// It returns false for anything else, never panics, and accepts exactly what
// crypto/ecdsa.Verify accepts for such inputs (TestECDSAVerifyMatchesCryptoECDSA,
// FuzzECDSAVerify). Cost: one circl CombinedMult and one modular inversion, about
// 0.25 ms on the shared 2-core VM, against 0.5 ms for crypto/ecdsa.
func ecdsaVerify(pub *ecdsa.PublicKey, hash, sig []byte) bool {
	if pub == nil || pub.Curve != elliptic.P384() || pub.X == nil || pub.Y == nil ||
		len(hash) != sha512.Size384 || len(sig) != SignatureLen {
		return false
	}
	// circl reduces coordinates of 384 bits or fewer as they come, so a coordinate
	// p or above would stand for another point: refuse it before the curve equation.
	if pub.X.Sign() < 0 || pub.Y.Sign() < 0 || pub.X.Cmp(p384Prime) >= 0 || pub.Y.Cmp(p384Prime) >= 0 ||
		!p384Curve.IsOnCurve(pub.X, pub.Y) {
		return false
	}
	r := new(big.Int).SetBytes(sig[:SignatureLen/2])
	s := new(big.Int).SetBytes(sig[SignatureLen/2:])
	if r.Sign() == 0 || s.Sign() == 0 || r.Cmp(p384Order) >= 0 || s.Cmp(p384Order) >= 0 {
		return false
	}
	e := new(big.Int).SetBytes(hash)
	w := new(big.Int).ModInverse(s, p384Order) // n is prime and 0 < s < n: w exists
	u1 := e.Mul(e, w)
	u1.Mod(u1, p384Order)
	u2 := w.Mul(r, w)
	u2.Mod(u2, p384Order)
	x, y := p384Curve.CombinedMult(pub.X, pub.Y, u1.Bytes(), u2.Bytes())
	if p384Curve.IsAtInfinity(x, y) {
		return false
	}
	return x.Mod(x, p384Order).Cmp(r) == 0
}
