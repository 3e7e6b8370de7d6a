package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readmeServeConfigMarker is the HTML comment before the README's --config example.
const readmeServeConfigMarker = "<!-- serve-config-example:"

// TestReadmeServeConfig loads the README's --config example with serve's own parser
// (strict: an unknown or misspelled member fails) and its checks, and holds it to what
// the README says of it: billing on testnet with its prices and delay.
func TestReadmeServeConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "\n"+readmeServeConfigMarker)
	if !ok {
		t.Fatalf("README.md has no %s marker", readmeServeConfigMarker)
	}
	_, block, ok := strings.Cut(after, "```json\n")
	if !ok {
		t.Fatal("no json block follows the marker")
	}
	block, _, _ = strings.Cut(block, "```")
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseServeFlags([]string{"--config", path}, io.Discard)
	if err != nil {
		t.Fatalf("serve --config with the README's example: %v", err)
	}
	if cfg.WalletSeedFile == "" || cfg.TONNetwork != "testnet" || cfg.Prices == nil || cfg.Prices.CompletionPerMillion == 0 || cfg.SettleMaxDelay != "6h" {
		t.Errorf("the README's example parsed as %+v", cfg.billingConfig)
	}
}
