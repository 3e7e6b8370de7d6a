// Package scripts holds the tests of the repository's shell scripts and of its Makefile's
// promises.
package scripts

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzModule writes a module of its own with fuzz.sh in its scripts folder, and files
// (path: content) besides go.mod, and returns its directory.
func fuzzModule(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	script, err := os.ReadFile("fuzz.sh")
	if err != nil {
		t.Fatal(err)
	}
	files["scripts/fuzz.sh"] = string(script)
	files["go.mod"] = "module example.com/fuzzed\n\ngo 1.26\n"
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Fuzz targets of the test module: two that pass in one package, one that fails at its
// seed in another, and a package without tests.
var fuzzedPackages = map[string]string{
	"a/a.go": "package a\n\nfunc Parse(b []byte) int { return len(b) }\n",
	"a/a_test.go": `package a

import "testing"

func FuzzParse(f *testing.F) {
	f.Add([]byte("x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if Parse(b) != len(b) {
			t.Fatal("length")
		}
	})
}

func FuzzAddedLater(f *testing.F) { f.Fuzz(func(t *testing.T, s string) {}) }

func TestNotFuzz(t *testing.T) {}
`,
	"b/b_test.go": `package b_test

import "testing"

func FuzzBoom(f *testing.F) {
	f.Add("boom")
	f.Fuzz(func(t *testing.T, s string) {
		if s == "boom" {
			t.Fatal("boom")
		}
	})
}
`,
	"c/c.go": "package c\n",
}

// TestFuzzRunsEveryTarget runs scripts/fuzz.sh, as make fuzz does, on a module of its
// own: it must find every fuzz target of every package without a list to edit, run each
// for FUZZTIME, keep going after a failure, name the target that failed and exit 1; and
// a package whose tests do not build must fail the run rather than lose its targets.
func TestFuzzRunsEveryTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("fuzzes three targets")
	}
	for _, tc := range []struct {
		name  string
		extra map[string]string
		args  []string
		code  int
		want  []string
	}{
		{"every target", nil, nil, 1, []string{
			"fuzz: 3 targets, 2000x each, inputs shrunk for at most 1s",
			"fuzz: FuzzParse (example.com/fuzzed/a)",
			"fuzz: FuzzAddedLater (example.com/fuzzed/a)",
			"fuzz: FuzzBoom (example.com/fuzzed/b)",
			"fuzz: 1 of 3 targets failed:\n  FuzzBoom (example.com/fuzzed/b)",
		}},
		{"the packages given", nil, []string{"./a/..."}, 0, []string{"fuzz: 2 targets, 2000x each, inputs shrunk for at most 1s", "fuzz: all 2 targets passed"}},
		{"tests that do not build", map[string]string{"d/d_test.go": "package d\n\nfunc FuzzBroken(f *testing.F) {}\n"}, nil, 1,
			[]string{"undefined: testing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{}
			for name, content := range fuzzedPackages {
				files[name] = content
			}
			for name, content := range tc.extra {
				files[name] = content
			}
			dir := fuzzModule(t, files)
			cmd := exec.Command(filepath.Join(dir, "scripts", "fuzz.sh"), tc.args...)
			cmd.Dir = dir
			// A count, not a duration: go test can report a fuzz target whose -fuzztime
			// of a second ran out while a loaded machine started its workers as failed
			// ("context deadline exceeded"), which is not what this test is about.
			cmd.Env = append(os.Environ(), "FUZZTIME=2000x")
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q", w)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

// TestFuzzRetriesGoTestDeadline: a target that go test reports as failed only because
// its time ran out ("context deadline exceeded", no failing input) runs once more and
// passes; one that fails so twice is named as failed.
func TestFuzzRetriesGoTestDeadline(t *testing.T) {
	realGo, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	for _, tc := range []struct {
		name     string
		flakes   int // how many fuzzing runs report the deadline before one passes
		code     int
		want     string
		attempts int
	}{
		{"once", 1, 0, "fuzz: all 2 targets passed", 3},
		{"every time", 99, 1, "fuzz: 2 of 2 targets failed", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := fuzzModule(t, map[string]string{"a/a.go": fuzzedPackages["a/a.go"], "a/a_test.go": fuzzedPackages["a/a_test.go"]})
			count := filepath.Join(dir, "fuzz-runs")
			// A go command that answers -list as go does and fails fuzzing runs as go
			// test does when its deadline passes, the first tc.flakes times.
			fake := filepath.Join(dir, "fakego")
			script := fmt.Sprintf(`#!/bin/sh
case "$*" in *-fuzz=*) ;; *) exec %q "$@" ;; esac
echo x >> %q
if [ "$(wc -l < %q)" -le %d ]; then
	echo "--- FAIL: FuzzX (1.09s)"; echo "    context deadline exceeded"; exit 1
fi
echo ok
`, realGo, count, count, tc.flakes)
			if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(filepath.Join(dir, "scripts", "fuzz.sh"))
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GO="+fake, "FUZZTIME=1s")
			out, _ := cmd.CombinedOutput()
			runs, _ := os.ReadFile(count)
			if code := cmd.ProcessState.ExitCode(); code != tc.code || !strings.Contains(string(out), tc.want) ||
				strings.Count(string(runs), "x") != tc.attempts {
				t.Errorf("exit %d after %d fuzzing runs, want %d after %d, saying %q:\n%s", code, strings.Count(string(runs), "x"), tc.code, tc.attempts, tc.want, out)
			}
		})
	}
}
