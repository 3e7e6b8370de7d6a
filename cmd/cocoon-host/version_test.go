package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
)

// versionOutput is what `cocoon-host --version` prints; its submatch is the measurement.
var versionOutput = regexp.MustCompile(`^cocoon-host (\S+) (go\S+) (\S+/\S+)\nhost-binary (sha256:[0-9a-f]{64})\n$`)

// measurementOf returns the measurement in --version's output, or fails the test when
// the output is not --version's.
func measurementOf(t *testing.T, stdout string) string {
	t.Helper()
	m := versionOutput.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("--version printed %q, want %q", stdout, versionOutput)
	}
	return m[4]
}

// fileMeasurement is the sha256 of the file at path, as sha256sum computes it.
func fileMeasurement(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestVersion(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want := fileMeasurement(t, self)
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"--version"}, 0, ""},
		{[]string{"-version"}, 0, ""},
		{[]string{"version"}, 0, ""},
		{[]string{"--version", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"version", "--nope"}, 2, "flag provided but not defined"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runCommand(tc.args, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tc.code, tc.stderr)
			}
			if code != 0 {
				return
			}
			if got := measurementOf(t, stdout.String()); got != want {
				t.Errorf("--version measures %s, want %s: the sha256 of this executable", got, want)
			}
			if m := versionOutput.FindStringSubmatch(stdout.String()); m[1] != cli.Version || m[2] != runtime.Version() || m[3] != runtime.GOOS+"/"+runtime.GOARCH {
				t.Errorf("--version says %q %q %q, want %q %q %s/%s", m[1], m[2], m[3], cli.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			}
		})
	}
}

// TestVersionMeasuresWhatServeAttests checks that the measurement --version prints is the
// host-binary event of the evidence the same binary serves: a reviewer who pins what
// --version prints pins what the verifier checks.
func TestVersionMeasuresWhatServeAttests(t *testing.T) {
	model, err := filepath.Abs(testModelDir())
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	if code := runCommand([]string{"--version"}, &stdout, &bytes.Buffer{}); code != 0 {
		t.Fatalf("--version: exit %d", code)
	}
	printed := measurementOf(t, stdout.String())

	t.Chdir(filepath.Join("..", "..")) // startServe reads up to the example pipeline's line
	r := startServe(t, "--data", t.TempDir(), "--model-dir", model, "--attest", "sim")
	defer r.stop(t)
	events := bootEvents(t, r.base)
	served := measured(events, attest.EventHostBinary)
	if served == "" {
		t.Fatal("the served event log measures no host binary")
	}
	if want := "sha256:" + hex.EncodeToString([]byte(served)); printed != want {
		t.Errorf("--version prints %s, the served host-binary event measures %s", printed, want)
	}
}

// TestEveryCommandHelp: `help CMD` and `CMD --help` print the command's help to stdout
// and exit 0, with nothing on stderr, and spell every flag --flag.
func TestEveryCommandHelp(t *testing.T) {
	singleDashFlag := regexp.MustCompile(`(^|[\s\[(|,'"])-[a-z][a-z-]+`)
	for _, c := range commands {
		for _, args := range [][]string{{c.Name, "--help"}, {"help", c.Name}} {
			var stdout, stderr bytes.Buffer
			code := runCommand(args, &stdout, &stderr)
			if code != 0 || stderr.Len() != 0 || !strings.HasPrefix(stdout.String(), "Usage: cocoon-host "+c.Name) {
				t.Errorf("cocoon-host %s: exit %d, stdout %q, stderr %q; want exit 0 and the usage on stdout", strings.Join(args, " "), code, stdout.String(), stderr.String())
			}
			if m := singleDashFlag.FindString(stdout.String()); m != "" {
				t.Errorf("cocoon-host %s spells a flag %q:\n%s", strings.Join(args, " "), m, stdout.String())
			}
		}
	}
}
