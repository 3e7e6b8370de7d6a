package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestInit scaffolds a module in each language, builds it as the README says, and
// runs it in the host's sandbox: it must pass a request through unchanged.
func TestInit(t *testing.T) {
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	request, err := os.ReadFile(filepath.Join(repo, "plugins", "example-request.json"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		lang  string
		files []string
		build func(t *testing.T, dir, wasm string) *exec.Cmd
	}{
		{"go", []string{"README.md", "go/main.go", "go/hooks_wasip1.go"}, func(t *testing.T, dir, wasm string) *exec.Cmd {
			// Outside the repository, as the README says: a go.mod that requires the SDK.
			goMod := "module example.com/mine\n\ngo 1.26\n\nrequire github.com/cocoonhost/cocoon v0.0.0\n\nreplace github.com/cocoonhost/cocoon => " + repo + "\n"
			sum, err := os.ReadFile(filepath.Join(repo, "go.sum"))
			if err != nil {
				t.Fatal(err)
			}
			for name, data := range map[string]string{"go.mod": goMod, "go.sum": string(sum)} {
				if err := os.WriteFile(filepath.Join(filepath.Dir(dir), name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command("go", "build", "-trimpath", "-buildmode=c-shared", "-ldflags=-buildid=", "-o", wasm, "./"+filepath.Base(dir)+"/go")
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOFLAGS=-mod=mod")
			return cmd
		}},
		{"c", []string{"README.md", "c/main.c"}, func(t *testing.T, dir, wasm string) *exec.Cmd {
			if _, err := exec.LookPath("clang-14"); err != nil {
				t.Fatal("clang-14 is not installed: make test needs it (apt-get install clang-14 lld-14, as .ci/run does)")
			}
			return exec.Command("clang-14", "--target=wasm32", "-O2", "-nostdlib", "-ffreestanding", "-Wall", "-Wextra", "-Werror",
				"-I"+filepath.Join(repo, "plugins", "c-sdk"), "-Wl,--no-entry", "-o", wasm, filepath.Join(dir, "c", "main.c"))
		}},
		{"as", []string{"README.md", "as/package.json", "as/package-lock.json", "as/asconfig.json", "as/assembly/index.ts"}, func(t *testing.T, dir, wasm string) *exec.Cmd {
			// As the README says: the pinned compiler from the lock file, then the
			// package's build script, with nothing but the new directory.
			if _, err := exec.LookPath("npm"); err != nil {
				t.Fatal("npm is not installed: make test needs it (apt-get install nodejs npm, as .ci/run does)")
			}
			install := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--prefer-offline")
			install.Dir = filepath.Join(dir, "as")
			if out, err := install.CombinedOutput(); err != nil {
				t.Fatalf("npm ci: %v\n%s", err, out)
			}
			return exec.Command("npm", "run", "--prefix", filepath.Join(dir, "as"), "build")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.lang, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "my-filter")
			code, stdout, stderr := cocoon(t, "", "init", "--lang", tt.lang, dir)
			if code != 0 || !strings.Contains(stdout, "Created "+dir) {
				t.Fatalf("init: exit %d, stdout %q, stderr %q", code, stdout, stderr)
			}
			for _, f := range tt.files {
				b, err := os.ReadFile(filepath.Join(dir, f))
				if err != nil || !strings.Contains(string(b), "my-filter") && f != "go/hooks_wasip1.go" {
					t.Errorf("%s: %v; want it to name the module", f, err)
				}
			}
			if readme, _ := os.ReadFile(filepath.Join(dir, "README.md")); !strings.Contains(string(readme), dir+"/"+tt.lang+"/my-filter.wasm") {
				t.Errorf("README does not give the build output:\n%s", readme)
			}

			wasm := filepath.Join(dir, tt.lang, "my-filter.wasm")
			cmd := tt.build(t, dir, wasm)
			cmd.Dir = filepath.Dir(dir)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build: %v\n%s", err, out)
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
