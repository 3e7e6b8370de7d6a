package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestInit scaffolds a module in each language into a directory outside the repository,
// builds it by running its README's build commands with nothing from the network but an
// AssemblyScript module's pinned compiler (GOPROXY=off, no workspace: the Go SDK, which
// is not published, must come with the scaffold), and runs it in the host's sandbox: it
// must pass a request through unchanged.
func TestInit(t *testing.T) {
	request, err := os.ReadFile(filepath.Join("..", "..", "plugins", "example-request.json"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		lang  string
		named []string // files that name the module
		sdk   []string // files of the SDK's copy
		tool  string   // the compiler the build needs, which make test installs
	}{
		{"go", []string{"README.md", "go/go.mod", "go/main.go"}, []string{"go/cocoon-sdk/go.mod", "go/cocoon-sdk/abi/guest/pre/pre.go"}, "go"},
		{"c", []string{"README.md", "c/main.c"}, []string{"c/cocoon.h", "c/cocoon_json.h"}, "clang-14"},
		{"as", []string{"README.md", "as/package.json", "as/package-lock.json", "as/asconfig.json", "as/assembly/index.ts"}, []string{"as/as-sdk/index.ts"}, "npm"},
	}
	for _, tt := range tests {
		t.Run(tt.lang, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "my-filter")
			code, stdout, stderr := cocoon(t, "", "init", "--lang", tt.lang, dir)
			if code != 0 || !strings.Contains(stdout, "Created "+dir) {
				t.Fatalf("init: exit %d, stdout %q, stderr %q", code, stdout, stderr)
			}
			for _, f := range tt.named {
				if b, err := os.ReadFile(filepath.Join(dir, f)); err != nil || !strings.Contains(string(b), "my-filter") {
					t.Errorf("%s: %v; want it to name the module", f, err)
				}
			}
			for _, f := range tt.sdk {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("the SDK's copy: %v", err)
				}
			}
			readme, _ := os.ReadFile(filepath.Join(dir, "README.md"))
			if !strings.Contains(string(readme), dir+"/"+tt.lang+"/my-filter.wasm") {
				t.Errorf("README does not give the build output:\n%s", readme)
			}
			// The README is all a module's author outside the repository has.
			for _, repoPath := range []string{"plugins/", "repository", "../"} {
				if strings.Contains(string(readme), repoPath) {
					t.Errorf("README refers to the repository (%q):\n%s", repoPath, readme)
				}
			}

			wasm := filepath.Join(dir, tt.lang, "my-filter.wasm")
			if _, err := exec.LookPath(tt.tool); err != nil {
				t.Fatalf("%s is not installed: make test installs it (scripts/test-deps.sh)", tt.tool)
			}
			build := strings.Join(fencedBlock(t, "the module's README", string(readme), "\n## Build\n"), "\n")
			cmd := exec.Command("sh", "-ec", build)
			cmd.Dir = filepath.Join(dir, tt.lang)
			cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build as the README says:\n%s\n%v\n%s", build, err, out)
			}
			code, stdout, stderr = cocoon(t, string(request), "run", wasm, "--hook", "pre")
			if code != 0 || strings.TrimSpace(stdout) != strings.TrimSpace(string(request)) {
				t.Errorf("run: exit %d, stdout %q, stderr %q; want the request unchanged", code, stdout, stderr)
			}

			// A second init never overwrites the module.
			if code, _, stderr := cocoon(t, "", "init", "--lang", tt.lang, dir); code != 1 || !strings.Contains(stderr, "already exists") {
				t.Errorf("init over an existing directory: exit %d, stderr %q", code, stderr)
			}
		})
	}
}

func TestInitUsage(t *testing.T) {
	for _, tt := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"init"}, "want one DIR"},
		{[]string{"init", "a", "b"}, "want one DIR"},
		{[]string{"init", "--lang", "rust", "x"}, `--lang "rust": want go, c or as`},
		{[]string{"init", "My_Module"}, `module name "My_Module"`},
	} {
		code, _, stderr := cocoon(t, "", tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tt.args, code, stderr, tt.stderr)
		}
	}
}
