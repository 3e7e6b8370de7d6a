// Package lint holds checks over the repository's own source, run by go test.
package lint

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// deprecated are calls our dependencies deprecate, with what replaces them. A
// deprecated call works today and disappears in a later release; staticcheck's SA1019
// would flag them, and this keeps them out without adding it to CI.
var deprecated = []struct {
	call    *regexp.Regexp
	instead string
}{
	{regexp.MustCompile(`\bwallet\.FromSeed\(`), "wallet.FromSeedWithOptions"},
	{regexp.MustCompile(`\bwallet\.FromSeedWithPassword\(`), "wallet.FromSeedWithOptions(..., wallet.WithPassword(p))"},
	{regexp.MustCompile(`\bwallet\.SeedToPrivateKey\(`), "wallet.SeedToPrivateKeyWithOptions"},
	{regexp.MustCompile(`\bwallet\.FromSigner\(`), "wallet.FromPubKeyWithOptions"},
	{regexp.MustCompile(`\.WithRetry\(`), "WithRetryTimeout (tonutils-go)"},
	{regexp.MustCompile(`\.BuildMessageForMany\(`), "BuildExternalMessageForMany"},
	{regexp.MustCompile(`\bprometheus\.NewGoCollector\(`), "collectors.NewGoCollector"},
	{regexp.MustCompile(`\bprometheus\.NewProcessCollector\(`), "collectors.NewProcessCollector"},
}

// TestNoDeprecatedCalls reads every Go file of the module and fails on a call in
// deprecated.
func TestNoDeprecatedCalls(t *testing.T) {
	root := filepath.Join("..", "..")
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || path == filepath.Join(root, "internal", "lint", "deprecated_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for i, line := range strings.Split(string(b), "\n") {
			for _, d := range deprecated {
				if d.call.MatchString(line) {
					t.Errorf("%s:%d: deprecated call %s: use %s", path, i+1, d.call, d.instead)
				}
			}
		}
		return nil
	})
	if err != nil || files < 100 {
		t.Fatalf("read %d Go files: %v", files, err)
	}
}
