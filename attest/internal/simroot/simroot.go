// Package simroot writes the key pairs of the simulated roots (the simulated TDX's in
// package attest, the simulated GPU's in attest/nvidia) to the data directory, once.
package simroot

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
)

// Write writes key (PKCS #8 PEM, mode 0600) to keyPath, then cert (PEM, 0644) to
// certPath, creating their folders (0700). The key comes first, so that a crash in
// between leaves a key without a certificate, which a loader refuses rather than
// silently replaces. Each file must not exist yet: of two processes creating the same
// root at once, the second fails instead of replacing the first's. Each is synced.
func Write(keyPath, certPath string, key *ecdsa.PrivateKey, cert *x509.Certificate) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	for _, dir := range []string{filepath.Dir(keyPath), filepath.Dir(certPath)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
}

// writeNew writes b to a file that must not exist yet, and syncs it.
func writeNew(path string, b []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
