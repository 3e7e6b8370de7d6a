package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host"
)

// readmeBlock returns the lines of the fenced block that follows marker in the
// repository's README.md.
func readmeBlock(t *testing.T, marker string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return fencedBlock(t, "README.md", string(b), marker)
}

// readmeFence is one fenced block of the repository's README.md.
type readmeFence struct {
	line   int      // the line of its opening fence, from 1
	lang   string   // what follows the opening fence: sh, json, js, ... or ""
	marker string   // the HTML comment on the line before the fence, or ""
	lines  []string // its lines, fences excluded
}

// readmeFences returns every fenced block of the repository's README.md, in order.
func readmeFences(t *testing.T) []readmeFence {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var fences []readmeFence
	var open *readmeFence
	lines := strings.Split(string(b), "\n")
	for i, line := range lines {
		switch {
		case open == nil && strings.HasPrefix(line, "```"):
			open = &readmeFence{line: i + 1, lang: strings.TrimPrefix(line, "```")}
			if i > 0 && strings.HasPrefix(lines[i-1], "<!--") {
				open.marker = lines[i-1]
			}
		case open != nil && strings.HasPrefix(line, "```"):
			fences = append(fences, *open)
			open = nil
		case open != nil:
			open.lines = append(open.lines, line)
		}
	}
	if open != nil {
		t.Fatalf("README.md: the block of line %d is not closed", open.line)
	}
	return fences
}

// fencedBlock returns the lines of the fenced block that follows marker in text, the
// document name.
func fencedBlock(t *testing.T, name, text, marker string) []string {
	t.Helper()
	_, after, ok := strings.Cut(text, marker)
	if !ok {
		t.Fatalf("%s has no %q", name, marker)
	}
	lines := strings.Split(after, "\n")
	var block []string
	in := false
	for _, line := range lines[1:] {
		switch {
		case !in && strings.HasPrefix(line, "```"):
			in = true
		case in && strings.HasPrefix(line, "```"):
			return block
		case in:
			block = append(block, line)
		}
	}
	t.Fatalf("%s: no closed fenced block after %q", name, marker)
	return nil
}

// The README's example commands of "Verifying a host", run as written against a
// simulated host that serves the example's pipeline: each must succeed, and the JSON
// report must say strict and fresh.
func TestReadmeVerifyExample(t *testing.T) {
	h, url := newAttestHost(t)
	_, wasm := exampleRedactor(t)
	config := `{"roles": ["user", "system"]}`
	var err error
	if h.manifest, err = host.ParseManifest([]byte(`{"abi_version":1,"model":"stories260K","pre":[{"module":"` + host.HashOf(wasm) + `","config":` + config + `}]}`)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeTestFile(t, dir, "redactor.wasm", string(wasm))
	writeTestFile(t, dir, "redactor.json", config)
	example := readmeBlock(t, "<!-- verify-example:")
	t.Chdir(dir)
	vars := strings.NewReplacer("$HOST", url, "$SIM_ROOT", h.rootPath)
	ran := 0
	for _, line := range example {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		command, redirect, _ := strings.Cut(vars.Replace(line), " > ")
		args := strings.Fields(command)
		if args[0] != "cocoon" {
			t.Fatalf("README line %q: not a cocoon command", line)
		}
		var stdout, stderr bytes.Buffer
		if code := runCommand(args[1:], strings.NewReader(""), &stdout, &stderr); code != 0 {
			t.Fatalf("README line %q: exit %d\nstdout:\n%s\nstderr: %s", line, code, stdout.String(), stderr.String())
		}
		if redirect != "" {
			if err := os.WriteFile(strings.TrimSpace(redirect), stdout.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		ran++
	}
	if ran < 6 {
		t.Fatalf("ran %d README commands, want the 6 of the example", ran)
	}
	report, err := os.ReadFile("report.json")
	if err != nil || !strings.Contains(string(report), `"format":"cocoon-verify-report/v1","ok":true,"strict":true,"fresh":true`) {
		t.Errorf("report.json %v:\n%s", err, report)
	}
}

// The README's example policy is a valid policy.
func TestReadmePolicyExample(t *testing.T) {
	p, err := attest.ParsePolicy([]byte(strings.Join(readmeBlock(t, "<!-- policy-example:"), "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.MRTD) != 1 || len(p.Backends) != 1 || len(p.TDAttributes) != 1 || p.MinTCBStatus != attest.TCBUpToDate {
		t.Errorf("README policy parsed as %+v", p)
	}
}
