package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/attest/seal"
	"github.com/cocoonhost/cocoon/settle"
)

// simSettlementKey reads the settlement key a sim-mode host keeps in data.
func simSettlementKey(t *testing.T, data string) ed25519.PrivateKey {
	t.Helper()
	sealer, err := seal.Sim(filepath.Join(data, "attest"))
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := settlementKey(data, sealer)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// holdsKey reports whether b holds key's seed, raw or in hex, or any 32 bytes that are
// the seed of a key with key's public half.
func holdsKey(b []byte, key ed25519.PrivateKey) bool {
	if bytes.Contains(b, key.Seed()) || bytes.Contains(bytes.ToLower(b), []byte(hex.EncodeToString(key.Seed()))) {
		return true
	}
	pub := key.Public().(ed25519.PublicKey)
	for i := 0; i+ed25519.SeedSize <= len(b); i++ {
		if ed25519.NewKeyFromSeed(b[i : i+ed25519.SeedSize]).Public().(ed25519.PublicKey).Equal(pub) {
			return true
		}
	}
	return false
}

// TestSettlementKeySealed covers the settlement key's life on the untrusted data disk:
// created sealed, reopened, an earlier version's plain key sealed in place, and every
// way the file can be damaged or withheld refused rather than replaced by a new key.
func TestSettlementKeySealed(t *testing.T) {
	newSealer := func(t *testing.T, data string) *seal.Sealer {
		s, err := seal.Sim(filepath.Join(data, "attest"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	t.Run("generated and sealed", func(t *testing.T) {
		data := t.TempDir()
		s := newSealer(t, data)
		key, origin, err := settlementKey(data, s)
		if err != nil || origin != attest.SettlementKeyGenerated {
			t.Fatalf("settlementKey = %v, %q", err, origin)
		}
		path := filepath.Join(data, sealedSettlementKeyFile)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if holdsKey(b, key) {
			t.Error("the key file holds the seed, or bytes that verify as the key")
		}
		if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", info.Mode().Perm())
		}
		if _, err := os.Stat(filepath.Join(data, plainSettlementKeyFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a plain key file exists: %v", err)
		}
		again, origin, err := settlementKey(data, newSealer(t, data))
		if err != nil || !again.Equal(key) || origin != attest.SettlementKeyGenerated {
			t.Errorf("after a restart: %v, same key %t, origin %q", err, again.Equal(key), origin)
		}
	})

	t.Run("plain key of an earlier version sealed in place", func(t *testing.T) {
		data := t.TempDir()
		_, old, _ := ed25519.GenerateKey(nil)
		plain := filepath.Join(data, plainSettlementKeyFile)
		if err := os.WriteFile(plain, []byte(hex.EncodeToString(old.Seed())+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		key, origin, err := settlementKey(data, newSealer(t, data))
		if err != nil || !key.Equal(old) || origin != attest.SettlementKeyImported {
			t.Fatalf("settlementKey = %v, same key %t, origin %q", err, key.Equal(old), origin)
		}
		if _, err := os.Stat(plain); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the plain file is still there: %v", err)
		}
		b, _ := os.ReadFile(filepath.Join(data, sealedSettlementKeyFile))
		if holdsKey(b, key) {
			t.Error("the sealed file holds the key")
		}
		// The origin is sealed with it: later starts still say "imported".
		if _, origin, err := settlementKey(data, newSealer(t, data)); err != nil || origin != attest.SettlementKeyImported {
			t.Errorf("after a restart: %v, origin %q", err, origin)
		}
		// An upgrade cut off after the sealed file was written is finished.
		os.WriteFile(plain, []byte(hex.EncodeToString(old.Seed())), 0o600)
		if key, _, err := settlementKey(data, newSealer(t, data)); err != nil || !key.Equal(old) {
			t.Errorf("after an interrupted upgrade: %v", err)
		}
		if _, err := os.Stat(plain); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the plain file of an interrupted upgrade is still there: %v", err)
		}
	})

	refusals := []struct {
		name, want string
		setup      func(t *testing.T, data string) *seal.Sealer
	}{
		{"tampered sealed file", "does not open", func(t *testing.T, data string) *seal.Sealer {
			s := newSealer(t, data)
			settlementKey(data, s)
			path := filepath.Join(data, sealedSettlementKeyFile)
			b, _ := os.ReadFile(path)
			b[len(b)/2] ^= 1
			os.WriteFile(path, b, 0o600)
			return s
		}},
		{"sealed under another root secret", "does not open", func(t *testing.T, data string) *seal.Sealer {
			settlementKey(data, newSealer(t, data))
			os.Remove(filepath.Join(data, "attest", seal.SimRootFile))
			return newSealer(t, data) // a new root
		}},
		{"a planted plain key beside the sealed one", "hold different settlement keys", func(t *testing.T, data string) *seal.Sealer {
			s := newSealer(t, data)
			settlementKey(data, s)
			os.WriteFile(filepath.Join(data, plainSettlementKeyFile), []byte(strings.Repeat("ab", 32)), 0o600)
			return s
		}},
		{"a ledger whose key is gone", "a new key would strand every escrow", func(t *testing.T, data string) *seal.Sealer {
			os.WriteFile(filepath.Join(data, ledgerFile), nil, 0o600)
			return newSealer(t, data)
		}},
		{"a plain key that is not a seed", "not a hex ed25519 seed", func(t *testing.T, data string) *seal.Sealer {
			os.WriteFile(filepath.Join(data, plainSettlementKeyFile), []byte("zz"), 0o600)
			return newSealer(t, data)
		}},
		{"no sealing source", "--sealing-key-file", func(*testing.T, string) *seal.Sealer { return seal.None() }},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			s := tc.setup(t, data)
			before, _ := os.ReadFile(filepath.Join(data, sealedSettlementKeyFile))
			if _, _, err := settlementKey(data, s); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("settlementKey: %v, want %q", err, tc.want)
			}
			if after, _ := os.ReadFile(filepath.Join(data, sealedSettlementKeyFile)); !bytes.Equal(before, after) {
				t.Error("the refusal changed the sealed key file")
			}
		})
	}
}

// tmpfsDir returns a new directory on a tmpfs, or skips the test when there is none.
func tmpfsDir(t *testing.T) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err != nil || uint32(st.Type) != 0x01021994 {
		t.Skip("no tmpfs at /dev/shm")
	}
	dir, err := os.MkdirTemp("/dev/shm", "cocoon-host-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// bootEvents returns the event log a running host serves.
func bootEvents(t *testing.T, base string) []attest.Event {
	t.Helper()
	resp, err := http.Get(base + "/v1/attestation")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	ev, err := attest.ParseEvidence(b)
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	events, err := attest.ParseEventLog(ev.EventLog)
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// measured returns the text the log measures for typ, or "" when it does not.
func measured(events []attest.Event, typ attest.EventType) string {
	for _, e := range events {
		if e.Type == typ {
			return string(e.Data)
		}
	}
	return ""
}

// TestServeSealingSource checks where serve takes its root sealing secret from, that
// the evidence measures it, and that it refuses one on the data disk.
func TestServeSealingSource(t *testing.T) {
	model := embeddedModelDir(t)
	t.Chdir(filepath.Join("..", "..")) // startServe reads up to the example pipeline's line
	mem := tmpfsDir(t)
	secret := filepath.Join(mem, "sealing-key")
	if err := os.WriteFile(secret, bytes.Repeat([]byte{7}, 32), 0o600); err != nil {
		t.Fatal(err)
	}

	data := t.TempDir()
	r := startServe(t, "--data", data, "--model-dir", model, "--attest", "sim")
	if got := measured(bootEvents(t, r.base), attest.EventSealing); got != attest.SealingSim {
		t.Errorf("sim mode measures sealing %q, want sim", got)
	}
	r.stop(t)

	// Another data directory: under another root secret the first one's pipeline files
	// do not authenticate, and are refused.
	r = startServe(t, "--data", t.TempDir(), "--model-dir", model, "--attest", "sim", "--sealing-key-file", secret)
	if got := measured(bootEvents(t, r.base), attest.EventSealing); got != attest.SealingFile {
		t.Errorf("with --sealing-key-file the host measures sealing %q, want file", got)
	}
	r.stop(t)

	onDisk := filepath.Join(data, "sealing-key")
	if err := os.WriteFile(onDisk, bytes.Repeat([]byte{7}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	elsewhere := filepath.Join(t.TempDir(), "sealing-key")
	if err := os.WriteFile(elsewhere, bytes.Repeat([]byte{7}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, file, want string }{
		{"in the data directory", onDisk, "is inside the data directory"},
		{"on a disk", elsewhere, "not in memory-backed storage"},
	}
	if checkDisk := (func() error { _, err := seal.FromFile(elsewhere); return err })(); checkDisk == nil {
		cases = cases[:1] // the temporary directory is in memory here
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr lockedBuffer
			err := runServe(context.Background(), []string{"--listen", "127.0.0.1:0", "--data", data, "--model-dir", model, "--attest", "sim", "--sealing-key-file", tc.file}, io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("serve: %v, want %q", err, tc.want)
			}
		})
	}
}

// TestServeBillingWithoutSealing: a TDX host without a sealing source refuses to bill
// with one line saying what to provide, before it measures or serves anything.
func TestServeBillingWithoutSealing(t *testing.T) {
	args := newBillingHost(t, "--model-dir", embeddedModelDir(t)).args
	var stderr lockedBuffer
	err := runServe(context.Background(), append(append([]string{"--listen", "127.0.0.1:0"}, args...), "--attest", "tdx"), io.Discard, &stderr)
	if !errors.Is(err, errNoSealingForBilling) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("serve: %v, want the one line of errNoSealingForBilling", err)
	}
}

// TestServeRefusesTamperedData is the machine owner's attack on a billing host's data
// disk between two starts: a raised account total makes that account refuse service
// with 503 ledger_integrity (and restoring the file brings it back); a tampered sealed
// settlement key stops the host from starting instead of making a new key.
func TestServeRefusesTamperedData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the host four times")
	}
	bh := newBillingHost(t, "--model-dir", embeddedModelDir(t))
	client, args, data := bh.client, bh.args, bh.data
	h := startHostProcess(t, args...)
	client.base = h.base
	if _, _, err := client.chat(context.Background(), "first", false); err != nil {
		t.Fatal(err)
	}
	h.kill(t)

	ledgerPath := filepath.Join(data, ledgerFile)
	good, err := os.ReadFile(ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(ledgerPath, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("accounts"))
		v := bytes.Clone(b.Get([]byte(client.account)))
		if v == nil {
			return errors.New("no account record")
		}
		v[15] += 100 // the cumulative total, big-endian at bytes 8 to 16: charge the client more
		return b.Put([]byte(client.account), v)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	h = startHostProcess(t, args...)
	client.base = h.base
	_, _, err = client.chat(context.Background(), "second", false)
	var body struct{ Error struct{ Code string } }
	if err == nil || !strings.HasPrefix(err.Error(), "503 ") || json.Unmarshal([]byte(strings.TrimPrefix(err.Error(), "503 ")), &body) != nil ||
		body.Error.Code != settle.CodeIntegrity {
		t.Fatalf("chat on a tampered account: %v, want 503 %s", err, settle.CodeIntegrity)
	}
	h.kill(t) // and so wait for its stderr to be copied
	if !strings.Contains(h.logs.String(), "fails its integrity check") {
		t.Errorf("the host did not log the tampering:\n%s", h.logs.String())
	}

	if err := os.WriteFile(ledgerPath, good, 0o600); err != nil {
		t.Fatal(err)
	}
	h = startHostProcess(t, args...)
	client.base = h.base
	if _, _, err := client.chat(context.Background(), "third", false); err != nil {
		t.Fatalf("after the ledger was restored: %v", err)
	}
	h.kill(t)

	sealedPath := filepath.Join(data, sealedSettlementKeyFile)
	b, err := os.ReadFile(sealedPath)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	if err := os.WriteFile(sealedPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	err = runServe(context.Background(), append([]string{"--listen", "127.0.0.1:0"}, args...), io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "refusing to start rather than make a new settlement key") {
		t.Fatalf("serve with a tampered settlement key: %v", err)
	}
	if after, _ := os.ReadFile(sealedPath); !bytes.Equal(after, b) {
		t.Error("the tampered key file was replaced")
	}
}
