package main

import (
	"context"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/ton/wallet"

	"github.com/cocoonhost/cocoon/cmd/internal/tonnet"
	"github.com/cocoonhost/cocoon/settle/tonemu"
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

// wallet balance reads a wallet's balance from the chain, by seed file or address; an
// address the chain has never seen holds nothing.
func TestWalletBalance(t *testing.T) {
	chain, err := tonemu.New()
	if err != nil {
		t.Fatal(err)
	}
	saved := dialTON
	dialTON = func(context.Context, string) (ton.APIClientWrapped, error) { return chain, nil }
	t.Cleanup(func() { dialTON = saved })

	seed := filepath.Join(t.TempDir(), "w.seed")
	key, err := tonnet.CreateSeedFile(seed)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := tonnet.WalletAddress(key, wallet.MainnetGlobalID)
	if err := chain.Fund(addr, big.NewInt(2_500_000_000)); err != nil {
		t.Fatal(err)
	}
	empty := address.MustParseRawAddr("0:" + strings.Repeat("ab", 32))
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"seed file", []string{"--seed-file", seed}, 0, addr.Bounce(false).String() + " 2.5 TON (2500000000 nanoTON)\n"},
		{"address", []string{"--address", addr.StringRaw()}, 0, " 2.5 TON (2500000000 nanoTON)\n"},
		{"never seen", []string{"--address", empty.StringRaw()}, 0, " TON (0 nanoTON)\n"},
		{"neither", nil, 2, "whose balance?"},
		{"both", []string{"--seed-file", seed, "--address", addr.StringRaw()}, 2, "whose balance?"},
		{"bad address", []string{"--address", "nowhere"}, 2, "--address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := cocoon(t, "", append([]string{"wallet", "balance", "--ton-config", "devnet.json"}, tt.args...)...)
			if code != tt.code || !strings.Contains(stdout+stderr, tt.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, stdout, stderr, tt.code, tt.want)
			}
		})
	}
}
