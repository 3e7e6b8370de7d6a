package plugins_test

import (
	"bytes"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestRustBuildIsReproducible rebuilds the Rust output guard from its source alone, in
// another directory, with the repository's Makefile rule, and compares the bytes with
// what `make plugins` built: the checkout's location must not reach the module (rustc
// writes source paths into panic messages; the rule gives it a relative path and
// remaps the checkout's directory too). With an absolute path and no remapping the
// bytes differ and this test fails.
func TestRustBuildIsReproducible(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("output-guard", "rust", "output-guard.wasm"))
	if err != nil {
		t.Fatalf("%v: run `make plugins` first", err)
	}
	makefile, err := filepath.Abs(filepath.Join("..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "elsewhere")
	copySources(t, filepath.Join("output-guard", "rust"), filepath.Join(root, "plugins", "output-guard", "rust"))
	target := filepath.Join("plugins", "output-guard", "rust", "output-guard.wasm")
	if out, err := exec.Command("make", "-s", "-C", root, "-f", makefile, target).CombinedOutput(); err != nil {
		t.Fatalf("make %s: %v\n%s", target, err, out)
	}
	got, err := os.ReadFile(filepath.Join(root, target))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("rebuilt elsewhere: sha256 %x, %d bytes; make plugins built sha256 %x, %d bytes", sha256.Sum256(got), len(got), sha256.Sum256(want), len(want))
	}
}
