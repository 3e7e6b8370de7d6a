package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/ton/wallet"

	"github.com/cocoonhost/cocoon/cmd/internal/tonnet"
)

// wallet new writes a seed only its owner reads, prints the wallet's address and never
// the seed, and never replaces an existing seed file (which would lose a funded wallet).
func TestWalletNew(t *testing.T) {
	out := filepath.Join(t.TempDir(), "client.seed")
	code, stdout, stderr := cocoon(t, "", "wallet", "new", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	words := strings.Fields(string(b))
	if len(words) != 24 {
		t.Fatalf("seed file holds %d words, want 24", len(words))
	}
	if info, _ := os.Stat(out); info.Mode().Perm() != 0o600 {
		t.Fatalf("seed file mode %v, want 0600", info.Mode().Perm())
	}
	// The output is one address and nothing else: no room for the seed.
	if stderr != "" || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("output is more than the address:\n%s%s", stdout, stderr)
	}
	key, err := tonnet.SeedKey(words)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := tonnet.WalletAddress(key, wallet.MainnetGlobalID)
	got, err := address.ParseAddr(strings.TrimSpace(stdout))
	if err != nil || !got.Equals(want) {
		t.Fatalf("printed %q, want the seed's wallet %s", stdout, want)
	}

	code, _, stderr = cocoon(t, "", "wallet", "new", "--out", out)
	if code != 1 || !strings.Contains(stderr, "exists already") {
		t.Fatalf("second run: exit %d, %s; want a refusal", code, stderr)
	}
	if again, _ := os.ReadFile(out); string(again) != string(b) {
		t.Fatal("the seed file was replaced")
	}
	if code, _, _ := cocoon(t, "", "wallet", "new"); code != 2 {
		t.Fatalf("without --out: exit %d, want 2", code)
	}
}
