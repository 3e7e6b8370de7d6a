// Package seal is the host side of sealing: it seals the secrets a host keeps on its
// untrusted data disk (the settlement key) and derives the keys that authenticate what
// it reads back (the ledger, the pipeline registry), all from one root sealing secret
// whose source the host measures (attest.SealingEvent). Only the host imports it.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/internal/secretfile"
)

const (
	// sealingSalt is the HKDF salt of every key derived from a root sealing secret.
	sealingSalt = "cocoon-host sealing v1"
	// sealedAD prefixes the associated data of every sealed blob; the purpose follows.
	sealedAD = "cocoon-host sealed v1\x00"
	// sealedVersion is the first byte of a sealed blob: its format.
	sealedVersion = 1
	// MinSecret and MaxSecret bound a root sealing secret file: at least 32 bytes,
	// which must be random (HKDF extracts from them; it cannot add entropy).
	MinSecret = 32
	MaxSecret = 4096
	// SimRootFile is the name, in the directory given to Sim, of the simulator's root
	// sealing secret: 32 random bytes, mode 0600.
	SimRootFile = "sim-sealing-root"
)

// Errors of sealing.
var (
	// ErrNoSealing is returned by a Sealer whose source is attest.SealingNone.
	ErrNoSealing = errors.New("attest: no sealing source: this host cannot keep a secret on disk (on TDX, give it a root sealing secret with --sealing-key-file)")
	// ErrUnseal is returned by Open for a blob that does not open: altered, truncated,
	// sealed for another purpose, or sealed under another root secret.
	ErrUnseal = errors.New("attest: sealed data does not open: it was altered, or sealed for another purpose or under another root sealing secret")
)

// Sealer seals secrets kept on the untrusted data disk and derives the keys that
// authenticate records read back from it. Every key is derived from one root sealing
// secret with HKDF-SHA256 (salt "cocoon-host sealing v1", info the key's kind and
// purpose), so a key for one purpose says nothing about another. What the root secret
// is worth depends on the source (see attest.SealingSim and its kind): the sealing event puts the
// source in the evidence so that a verifier sees it. A Sealer is immutable and safe for
// concurrent use.
type Sealer struct {
	source string
	root   []byte // nil for attest.SealingNone
}

// None returns the Sealer of a host without a root sealing secret: Source is
// attest.SealingNone, and Seal, Open and MACKey fail with ErrNoSealing.
func None() *Sealer { return &Sealer{source: attest.SealingNone} }

// newSealer returns a Sealer of source over a copy of root, read from path, which must
// hold MinSecret to MaxSecret bytes.
func newSealer(source, path string, root []byte) (*Sealer, error) {
	if len(root) < MinSecret || len(root) > MaxSecret {
		return nil, fmt.Errorf("attest: a root sealing secret has %d to %d bytes, this one %d (%s)", MinSecret, MaxSecret, len(root), path)
	}
	return &Sealer{source: source, root: append([]byte(nil), root...)}, nil
}

// FromFile reads a root sealing secret from path, which must be a regular file of
// MinSecret to MaxSecret bytes in memory-backed storage (tmpfs or ramfs:
// on TDX, memory private to the TD), and returns a Sealer of source attest.SealingFile. A file
// on a disk is refused: whoever can write the disk could read or choose the secret.
// A file that users other than its owner may read is refused too (secretfile.CheckMode,
// as the commands refuse a key file). A TD image that
// swaps must not swap to an unencrypted disk, since the secret (like every key of the
// host process) would reach it. Linux only.
func FromFile(path string) (*Sealer, error) {
	if err := checkMemoryBacked(path); err != nil {
		return nil, fmt.Errorf("attest: sealing key file %s: %w", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("attest: sealing key file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		return nil, fmt.Errorf("attest: sealing key file %s: not a regular file", path)
	}
	if err := secretfile.CheckMode(path, info); err != nil {
		return nil, fmt.Errorf("attest: sealing key file %s: %w", path, err)
	}
	root, err := io.ReadAll(io.LimitReader(f, MaxSecret+1))
	if err != nil {
		return nil, fmt.Errorf("attest: sealing key file: %w", err)
	}
	return newSealer(attest.SealingFile, path, root)
}

// Source returns where the root sealing secret comes from: attest.SealingSim,
// attest.SealingFile or attest.SealingNone.
func (s *Sealer) Source() string { return s.source }

// Event returns the sealing event that measures s's source. A host measures it in its
// boot log, before the seal, so that a verifier knows what protects the secrets it keeps.
func (s *Sealer) Event() attest.Event { return attest.SealingEvent(s.source) }

// derive returns the 32-byte key of kind ("aead" or "mac") for purpose.
func (s *Sealer) derive(kind, purpose string) ([]byte, error) {
	if s.root == nil {
		return nil, ErrNoSealing
	}
	return hkdf.Key(sha256.New, s.root, []byte(sealingSalt), kind+"\x00"+purpose, 32)
}

// MACKey returns the 32-byte key, derived for purpose, under which records that must
// stay readable (a ledger, pipeline owner lists) are authenticated with HMAC-SHA256.
// The same purpose always gives the same key for the same root secret. It fails with
// ErrNoSealing without one.
func (s *Sealer) MACKey(purpose string) ([]byte, error) { return s.derive("mac", purpose) }

// aead returns the AES-256-GCM of purpose.
func (s *Sealer) aead(purpose string) (cipher.AEAD, error) {
	key, err := s.derive("aead", purpose)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts and authenticates plaintext for purpose (such as the name of the file
// that will hold it) and returns the sealed blob:
//
//	0x01 || nonce (12 bytes) || AES-256-GCM(key, nonce, plaintext, "cocoon-host sealed v1\x00" || purpose)
//
// where key is derived for purpose. Only the same root secret and purpose open it. It
// fails with ErrNoSealing without a root secret. Cost: microseconds.
func (s *Sealer) Seal(purpose string, plaintext []byte) ([]byte, error) {
	gcm, err := s.aead(purpose)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+gcm.NonceSize(), 1+gcm.NonceSize()+len(plaintext)+gcm.Overhead())
	out[0] = sealedVersion
	rand.Read(out[1:]) // never fails (crypto/rand)
	return gcm.Seal(out, out[1:], plaintext, []byte(sealedAD+purpose)), nil
}

// Open returns the plaintext of a blob Seal made for purpose. It fails with an error
// wrapping ErrUnseal when the blob was altered, truncated, made for another purpose or
// under another root secret, and with ErrNoSealing without a root secret.
func (s *Sealer) Open(purpose string, sealed []byte) ([]byte, error) {
	gcm, err := s.aead(purpose)
	if err != nil {
		return nil, err
	}
	if len(sealed) < 1+gcm.NonceSize()+gcm.Overhead() {
		return nil, fmt.Errorf("%w (%d bytes is too short)", ErrUnseal, len(sealed))
	}
	if sealed[0] != sealedVersion {
		return nil, fmt.Errorf("%w (format %d, this build reads %d)", ErrUnseal, sealed[0], sealedVersion)
	}
	nonce, ciphertext := sealed[1:1+gcm.NonceSize()], sealed[1+gcm.NonceSize():]
	plaintext, err := gcm.Open(nil, nonce, ciphertext, []byte(sealedAD+purpose))
	if err != nil {
		return nil, ErrUnseal
	}
	return plaintext, nil
}

// Sim returns the Sealer of a host without TDX: its root sealing secret is SimRootFile
// in dir, created (with dir) on first use. Its source is attest.SealingSim. The secret
// lives on the data disk beside the simulator's root key, so sealing in sim mode
// protects nothing against whoever can read that disk; it exists so that the code that
// seals and authenticates runs, and is tested, without TDX. It fails on a secret file
// of the wrong size, which it never replaces: that would orphan everything sealed under
// the old one.
func Sim(dir string) (*Sealer, error) {
	path := filepath.Join(dir, SimRootFile)
	root, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		root = make([]byte, MinSecret)
		rand.Read(root) // never fails (crypto/rand)
		if err = os.MkdirAll(dir, 0o700); err == nil {
			var f *os.File
			if f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err == nil { // never replaced
				_, err = f.Write(root)
				err = errors.Join(err, f.Sync(), f.Close())
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("attest: sim sealing root: %w", err)
	}
	return newSealer(attest.SealingSim, path, root)
}
