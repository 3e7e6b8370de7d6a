package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the repository this package is in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// copyTree copies the source tree at src to dst, as a reviewer's checkout at another
// path: every file but version control, npm packages and build outputs.
func copyTree(t *testing.T, src, dst string) string {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		switch {
		case d.Name() == ".git", d.Name() == "node_modules", rel == "bin", rel == ".cocoon":
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		case d.IsDir():
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		case !d.Type().IsRegular():
			return fmt.Errorf("%s: not a regular file", path)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// needTools fails the test when a tool that make test needs is missing.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: make test needs it", tool)
		}
	}
}

// makeHost runs `make host` in dir and returns the binary it built.
func makeHost(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("make", append([]string{"--no-print-directory", "host"}, args...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make host in %s: %v\n%s", dir, err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "bin", "cocoon-host"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hostGoVersion is the Makefile's HOST_GO_VERSION, the toolchain make host builds with.
func hostGoVersion(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command("make", "-s", "--no-print-directory", "--eval", "print-host-go-version: ; @echo $(HOST_GO_VERSION)", "print-host-go-version")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil || !regexp.MustCompile(`^go1\.\d+\.\d+\n$`).Match(out) {
		t.Fatalf("the Makefile's HOST_GO_VERSION: %q, %v", out, err)
	}
	return strings.TrimSpace(string(out))
}

// TestHostBuildIsReproducible builds the host with `make host` in two checkouts at
// different paths, one of them a git repository with a commit (whose hash and time a
// default build would stamp into the binary), and requires the same bytes: the
// host-binary measurement a reviewer recomputes must not depend on where or when the
// source was checked out. It then checks that make host refuses another toolchain.
func TestHostBuildIsReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the host twice")
	}
	needTools(t, "make", "bash", "git")
	root := repoRoot(t)
	a := copyTree(t, root, filepath.Join(t.TempDir(), "cocoon"))
	b := copyTree(t, root, filepath.Join(t.TempDir(), "a", "checkout", "at", "another", "path", "cocoon"))
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"-c", "user.name=r", "-c", "user.email=r@example.com", "commit", "-q", "-m", "checkout"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = b
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", args[0], err, out)
		}
	}
	binA, binB := makeHost(t, a), makeHost(t, b)
	if !bytes.Equal(binA, binB) {
		t.Fatalf("make host built different binaries in %s and %s (%d and %d bytes): the host's measurement depends on the checkout", a, b, len(binA), len(binB))
	}

	// Another toolchain gives other bytes: make host refuses it rather than build a host
	// whose measurement matches no published one. GOPROXY=off keeps the go command from
	// downloading it.
	other := "go1.26.7"
	if runtime.Version() == other {
		other = "go1.26.8"
	}
	if err := os.Remove(filepath.Join(a, "bin", "cocoon-host")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "--no-print-directory", "host", "HOST_GO_VERSION="+other)
	cmd.Dir, cmd.Env = a, append(os.Environ(), "GOPROXY=off")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the host is built with "+other+", and this go command cannot run it") {
		t.Errorf("make host with HOST_GO_VERSION=%s: %v, output:\n%s\nwant a refusal naming it", other, err, out)
	}
	if _, err := os.Stat(filepath.Join(a, "bin", "cocoon-host")); !os.IsNotExist(err) {
		t.Errorf("make host with another toolchain left a binary: %v", err)
	}
}

// readmeSection returns the README section under heading, up to the next heading of the
// same or a higher level.
func readmeSection(t *testing.T, root, heading string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no %q section", heading)
	}
	level := strings.Repeat("#", strings.Index(heading, " "))
	if i := regexp.MustCompile(`(?m)^#{1,` + fmt.Sprint(len(level)) + `} `).FindStringIndex(section); i != nil {
		section = section[:i[0]]
	}
	return section
}

// shellBlocks returns the ```sh blocks of markdown text.
func shellBlocks(text string) []string {
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(text, -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// bash runs script in dir under `bash -euo pipefail` and returns its output and exit code.
func bash(t *testing.T, dir, script string) (string, int) {
	t.Helper()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	return string(out), code
}

// startBuiltHost starts bin/cocoon-host serve in dir with the simulator and returns its
// base URL and data directory. The host is stopped with SIGTERM when the test ends.
func startBuiltHost(t *testing.T, dir string) (base, data string) {
	t.Helper()
	model, err := filepath.Abs(testModelDir())
	if err != nil {
		t.Fatal(err)
	}
	data = t.TempDir()
	cmd := exec.Command(filepath.Join(dir, "bin", "cocoon-host"), "serve", "--listen", "127.0.0.1:0", "--data", data, "--model-dir", model, "--attest", "sim")
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-done
			t.Error("the host did not stop within a minute of SIGTERM")
		}
	})
	lines := bufio.NewScanner(stdout)
	for base == "" && lines.Scan() {
		if v, ok := strings.CutPrefix(lines.Text(), "Listening on "); ok {
			base = v
		}
	}
	go io.Copy(io.Discard, stdout)
	if base == "" {
		t.Fatalf("the host printed no address; logs:\n%s", logs.String())
	}
	return base, data
}

// TestREADMERebuildTheHost runs the README's "Rebuilding the host" commands in a
// checkout: make host, --version and sha256sum must give one measurement, built with
// the toolchain the README and the Makefile name; a host started from that binary
// measures it in its event log, and `cocoon verify` with a policy that pins it passes,
// while one that pins another binary fails.
func TestREADMERebuildTheHost(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the host")
	}
	needTools(t, "make", "bash", "sha256sum")
	root := repoRoot(t)
	section := readmeSection(t, root, "## Rebuilding the host")
	blocks := shellBlocks(section)
	if len(blocks) != 2 {
		t.Fatalf("the README section has %d sh blocks, want 2: the rebuild, then the verification", len(blocks))
	}
	dir := copyTree(t, root, filepath.Join(t.TempDir(), "cocoon"))
	goVersion := hostGoVersion(t, dir)
	if !strings.Contains(section, "`"+goVersion+"`") {
		t.Errorf("the README section does not name the toolchain the Makefile builds with, `%s`", goVersion)
	}

	out, code := bash(t, dir, blocks[0])
	if code != 0 {
		t.Fatalf("the rebuild commands exited %d:\n%s", code, out)
	}
	m := regexp.MustCompile(`(?m)^cocoon-host \S+ (go\S+) linux/amd64\nhost-binary (sha256:([0-9a-f]{64}))$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the rebuild commands printed no --version output:\n%s", out)
	}
	if m[1] != goVersion {
		t.Errorf("the binary was built with %s, want %s", m[1], goVersion)
	}
	if !regexp.MustCompile(`(?m)^` + m[3] + `  bin/cocoon-host$`).MatchString(out) {
		t.Errorf("sha256sum does not print --version's measurement %s:\n%s", m[2], out)
	}
	measurement := m[2]
	if got := fileMeasurement(t, filepath.Join(dir, "bin", "cocoon-host")); got != measurement {
		t.Errorf("--version prints %s, the file's sha256 is %s", measurement, got)
	}

	base, data := startBuiltHost(t, dir)
	verify := strings.ReplaceAll(blocks[1], "URL", base)
	for _, tc := range []struct {
		name   string
		pinned string
		code   int
		line   string // a line of the report
	}{
		{"the rebuilt binary", measurement, 0, "ok   host binary: " + measurement + " is allowed by the policy"},
		{"another binary", "sha256:" + strings.Repeat("0", 64), 1, "FAIL host binary: " + measurement + " is not among"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The README's policy; trust_sim_root only because this host is simulated.
			policy := fmt.Sprintf(`{"host_binary": [%q], "trust_sim_root": %q}`, tc.pinned, filepath.Join(data, "attest", "sim-root.pem"))
			if err := os.WriteFile(filepath.Join(dir, "policy.json"), []byte(policy), 0o644); err != nil {
				t.Fatal(err)
			}
			out, code := bash(t, dir, verify)
			if code != tc.code || !strings.Contains(out, tc.line) {
				t.Errorf("%s exited %d, want %d and the line %q:\n%s", verify, code, tc.code, tc.line, out)
			}
		})
	}
}
