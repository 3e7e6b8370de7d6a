package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cocoonhost/cocoon/attest"
)

// testRoot is the root sealing secret of the golden vectors: the bytes 0 to 31.
func testRoot() []byte {
	b := make([]byte, 32)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func testSealer(t testing.TB, root []byte) *Sealer {
	t.Helper()
	s, err := newSealer(attest.SealingFile, "test", root)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSealerGolden checks the documented derivation and format against values computed
// independently (Python's hmac and hashlib for HKDF-SHA256; the sealed blob is built
// here with crypto/cipher from the golden key, not by Seal).
func TestSealerGolden(t *testing.T) {
	s := testSealer(t, testRoot())
	macKey, err := s.MACKey("ledger")
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(macKey); got != "92c7277e84667980d06d8e5d9b1a6adbbb7109cc7e08d24218be6279b8b5f7fa" {
		t.Errorf("MACKey(ledger) = %s", got)
	}
	aeadKey, _ := hex.DecodeString("f6c1d4e59acfc95653f9e34a33041e9c73094b09bb4b5d553ff738958f74f1c1") // aead\x00settlement-key
	block, _ := aes.NewCipher(aeadKey)
	gcm, _ := cipher.NewGCM(block)
	nonce := bytes.Repeat([]byte{9}, 12)
	blob := append([]byte{1}, nonce...)
	blob = gcm.Seal(blob, nonce, []byte("the seed"), []byte("cocoon-host sealed v1\x00settlement-key"))
	if got, err := s.Open("settlement-key", blob); err != nil || string(got) != "the seed" {
		t.Errorf("Open of the documented format = %q, %v", got, err)
	}
}

func TestSealOpen(t *testing.T) {
	s := testSealer(t, testRoot())
	secret := []byte("an ed25519 seed of thirty-two b.")
	sealed, err := s.Seal("settlement-key", secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("the sealed blob holds the plaintext")
	}
	if got, err := s.Open("settlement-key", sealed); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	again, _ := s.Seal("settlement-key", secret)
	if bytes.Equal(again, sealed) {
		t.Error("two seals of the same secret are equal: the nonce is not fresh")
	}

	other := testSealer(t, bytes.Repeat([]byte{1}, 32))
	flipped := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 1
		return b
	}
	for _, tc := range []struct {
		name    string
		s       *Sealer
		purpose string
		blob    []byte
	}{
		{"another purpose", s, "api-key", sealed},
		{"another root secret", other, "settlement-key", sealed},
		{"format byte", s, "settlement-key", flipped(0)},
		{"nonce", s, "settlement-key", flipped(5)},
		{"ciphertext", s, "settlement-key", flipped(20)},
		{"tag", s, "settlement-key", flipped(len(sealed) - 1)},
		{"truncated", s, "settlement-key", sealed[:len(sealed)-1]},
		{"too short for a tag", s, "settlement-key", sealed[:20]},
		{"empty", s, "settlement-key", nil},
		{"plaintext", s, "settlement-key", secret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := tc.s.Open(tc.purpose, tc.blob); !errors.Is(err, ErrUnseal) || got != nil {
				t.Errorf("Open = %q, %v; want ErrUnseal", got, err)
			}
		})
	}

	k1, _ := s.MACKey("ledger")
	k2, _ := s.MACKey("pipelines")
	k3, _ := other.MACKey("ledger")
	if bytes.Equal(k1, k2) || bytes.Equal(k1, k3) {
		t.Error("MAC keys of different purposes or roots are equal")
	}
}

func TestNoSealing(t *testing.T) {
	s := None()
	if s.Source() != attest.SealingNone || s.Event().String() != `sealing "none"` {
		t.Errorf("source %q, event %s", s.Source(), s.Event())
	}
	if _, err := s.Seal("x", []byte("secret")); !errors.Is(err, ErrNoSealing) {
		t.Errorf("Seal: %v", err)
	}
	if _, err := s.Open("x", []byte("blob")); !errors.Is(err, ErrNoSealing) {
		t.Errorf("Open: %v", err)
	}
	if _, err := s.MACKey("x"); !errors.Is(err, ErrNoSealing) {
		t.Errorf("MACKey: %v", err)
	}
}

// memoryDir returns a new directory on a tmpfs, or skips the test when there is none.
func memoryDir(t *testing.T) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err != nil || uint32(st.Type) != tmpfsMagic {
		t.Skip("no tmpfs at /dev/shm")
	}
	dir, err := os.MkdirTemp("/dev/shm", "cocoon-seal-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestFromFile(t *testing.T) {
	mem := memoryDir(t)
	write := func(dir, name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	s, err := FromFile(write(mem, "root", testRoot()))
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := s.MACKey("ledger"); s.Source() != attest.SealingFile || hex.EncodeToString(k) != "92c7277e84667980d06d8e5d9b1a6adbbb7109cc7e08d24218be6279b8b5f7fa" {
		t.Errorf("source %q, MAC key %x: not the file's secret", s.Source(), k)
	}

	tests := []struct{ name, path, want string }{
		{"too short", write(mem, "short", make([]byte, 31)), "has 32 to 4096 bytes, this one 31"},
		{"too long", write(mem, "long", make([]byte, MaxSecret+1)), "this one 4097"},
		{"a directory", mem, "not a regular file"},
		{"missing", filepath.Join(mem, "none"), "no such file"},
	}
	// The working directory is this package's source, on a disk unless the whole
	// checkout is in memory.
	disk, _ := filepath.Abs("seal_test.go")
	if checkMemoryBacked(disk) != nil {
		tests = append(tests, struct{ name, path, want string }{"on a disk", disk, "not in memory-backed storage"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := FromFile(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("FromFile: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestSim(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "attest")
	s1, err := Sim(dir)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, SimRootFile))
	if err != nil || info.Mode().Perm() != 0o600 || info.Size() != 32 {
		t.Fatalf("root file: %v, %v", info, err)
	}
	sealed, err := s1.Seal("p", []byte("kept across restarts"))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Sim(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Open("p", sealed); err != nil || string(got) != "kept across restarts" || s2.Source() != attest.SealingSim {
		t.Errorf("after a restart: %q, %v, source %q", got, err, s2.Source())
	}

	// A damaged root is refused, never replaced: that would orphan what it sealed.
	path := filepath.Join(dir, SimRootFile)
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Sim(dir); err == nil || !strings.Contains(err.Error(), "this one 5") {
		t.Errorf("Sim with a 5-byte root: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "short" {
		t.Error("the damaged root was replaced")
	}
}

// FuzzSealerOpen feeds Open blobs read from an untrusted disk: it must never panic, and
// nothing but what Seal made opens.
func FuzzSealerOpen(f *testing.F) {
	s := testSealer(f, testRoot())
	// A fixed nonce, so that every fuzzing process knows the one valid blob.
	gcm, err := s.aead("settlement-key")
	if err != nil {
		f.Fatal(err)
	}
	nonce := make([]byte, gcm.NonceSize())
	sealed := gcm.Seal(append([]byte{sealedVersion}, nonce...), nonce, []byte("seed"), []byte(sealedAD+"settlement-key"))
	f.Add(sealed)
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, blob []byte) {
		got, err := s.Open("settlement-key", blob)
		if err == nil && (!bytes.Equal(blob, sealed) || string(got) != "seed") {
			t.Fatalf("Open accepted a blob Seal did not make: %x", blob)
		}
	})
}

func BenchmarkSealOpen(b *testing.B) {
	s := testSealer(b, testRoot())
	seed := make([]byte, 33)
	for b.Loop() {
		sealed, _ := s.Seal("settlement-key", seed)
		if _, err := s.Open("settlement-key", sealed); err != nil {
			b.Fatal(err)
		}
	}
}
