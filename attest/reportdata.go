package attest

import (
	"crypto/ed25519"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
)

// Domain strings of the three REPORTDATA bindings. They differ, so that no kind of
// evidence can be taken for another.
const (
	bootDomain      = "cocoon-host boot evidence v1"
	freshBootDomain = "cocoon-host fresh boot evidence v1"
	pipelineDomain  = "cocoon-host pipeline evidence v1"
)

// Nonce bounds of fresh boot and pipeline evidence: at least 128 bits, so that a
// client's nonce is not guessable, and at most 64 bytes.
const (
	MinNonceBytes = 16
	MaxNonceBytes = 64
)

// ErrReportDataInput is returned for inputs a REPORTDATA binding refuses.
var ErrReportDataInput = errors.New("report data: invalid input")

// BootReportData returns the REPORTDATA of boot evidence: it binds the host's ed25519
// signing key, its TLS key and the event log.
//
//	SHA-512( lp("cocoon-host boot evidence v1") || lp(hostKey) || lp(tlsSPKI) || lp(logDigest) )
//
// where lp(x) is the 4-byte big-endian length of x followed by x, hostKey the 32-byte
// ed25519 public key, tlsSPKI the DER SubjectPublicKeyInfo of the TLS key, and logDigest
// the 48-byte replay of the event log (Log.Digest). It fails when hostKey is not 32
// bytes or tlsSPKI is not a DER SubjectPublicKeyInfo.
func BootReportData(hostKey ed25519.PublicKey, tlsSPKI []byte, logDigest [48]byte) ([64]byte, error) {
	if len(hostKey) != ed25519.PublicKeySize {
		return [64]byte{}, fmt.Errorf("%w: host key is %d bytes, want %d", ErrReportDataInput, len(hostKey), ed25519.PublicKeySize)
	}
	if _, err := x509.ParsePKIXPublicKey(tlsSPKI); err != nil {
		return [64]byte{}, fmt.Errorf("%w: TLS key is not a DER SubjectPublicKeyInfo: %v", ErrReportDataInput, err)
	}
	return reportData(bootDomain, hostKey, tlsSPKI, logDigest[:]), nil
}

// FreshBootReportData returns the REPORTDATA of fresh boot evidence: boot evidence
// quoted anew for a client's nonce, so that it shows the host runs now, not only that
// it booted once.
//
//	SHA-512( lp("cocoon-host fresh boot evidence v1") || lp(nonce) || lp(hostKey) || lp(tlsSPKI) || lp(logDigest) )
//
// with lp, hostKey, tlsSPKI and logDigest as in BootReportData. It fails as
// BootReportData does, and when the nonce is shorter than MinNonceBytes or longer than
// MaxNonceBytes.
func FreshBootReportData(nonce []byte, hostKey ed25519.PublicKey, tlsSPKI []byte, logDigest [48]byte) ([64]byte, error) {
	if err := checkNonce(nonce); err != nil {
		return [64]byte{}, err
	}
	if _, err := BootReportData(hostKey, tlsSPKI, logDigest); err != nil {
		return [64]byte{}, err
	}
	return reportData(freshBootDomain, nonce, hostKey, tlsSPKI, logDigest[:]), nil
}

// checkNonce refuses a nonce out of [MinNonceBytes, MaxNonceBytes].
func checkNonce(nonce []byte) error {
	if len(nonce) < MinNonceBytes || len(nonce) > MaxNonceBytes {
		return fmt.Errorf("%w: nonce is %d bytes, want %d to %d", ErrReportDataInput, len(nonce), MinNonceBytes, MaxNonceBytes)
	}
	return nil
}

// PipelineReportData returns the REPORTDATA of pipeline evidence: it binds a client's
// nonce, the pipeline's manifest hash and the host's ed25519 signing key.
//
//	SHA-512( lp("cocoon-host pipeline evidence v1") || lp(nonce) || lp(manifestHash) || lp(hostKey) )
//
// with lp as in BootReportData and manifestHash the 32-byte SHA-256 of the canonical
// manifest (the pipeline id). It fails when the nonce is shorter than MinNonceBytes or
// longer than MaxNonceBytes, or hostKey is not 32 bytes.
func PipelineReportData(nonce []byte, manifestHash [32]byte, hostKey ed25519.PublicKey) ([64]byte, error) {
	if err := checkNonce(nonce); err != nil {
		return [64]byte{}, err
	}
	if len(hostKey) != ed25519.PublicKeySize {
		return [64]byte{}, fmt.Errorf("%w: host key is %d bytes, want %d", ErrReportDataInput, len(hostKey), ed25519.PublicKeySize)
	}
	return reportData(pipelineDomain, nonce, manifestHash[:], hostKey), nil
}

func reportData(domain string, fields ...[]byte) [64]byte {
	h := sha512.New()
	writeFields(h, append([][]byte{[]byte(domain)}, fields...)...)
	var rd [64]byte
	h.Sum(rd[:0])
	return rd
}
