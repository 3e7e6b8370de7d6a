package cli

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		args       []string
		positional string
		hook       string
		err        string
	}{
		{[]string{"a.wasm", "--hook", "pre", "b.wasm"}, "a.wasm,b.wasm", "pre", ""},
		{[]string{"--hook=post", "a.wasm"}, "a.wasm", "post", ""},
		{[]string{"--nope"}, "", "", "flag provided but not defined: --nope"},
		{[]string{"--hook"}, "", "", "flag needs an argument: --hook"},
		{[]string{"--help"}, "", "", flag.ErrHelp.Error()},
	}
	for _, tt := range tests {
		fs := NewFlagSet("prog", "cmd", io.Discard)
		hook := fs.String("hook", "", "")
		got, err := Parse(fs, tt.args)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("Parse(%q) err = %v, want %q", tt.args, err, tt.err)
			}
			continue
		}
		if err != nil || strings.Join(got, ",") != tt.positional || *hook != tt.hook {
			t.Errorf("Parse(%q) = %q, hook %q, %v", tt.args, got, *hook, err)
		}
	}
	if err := ParseFlags(NewFlagSet("prog", "cmd", io.Discard), []string{"x"}); !errors.As(err, new(UsageError)) {
		t.Errorf("ParseFlags with an argument: %v, want a UsageError", err)
	}
}

func TestMainExitCodes(t *testing.T) {
	cmds := []Command{
		{Name: "ok", Run: func([]string, io.Reader, io.Writer, io.Writer) error { return nil }},
		{Name: "fail", Run: func([]string, io.Reader, io.Writer, io.Writer) error { return errors.New("boom") }},
		{Name: "misuse", Run: func([]string, io.Reader, io.Writer, io.Writer) error { return UsageError("bad flag") }},
	}
	for args, want := range map[string]int{"ok": 0, "fail": 1, "misuse": 2, "nosuch": 2, "": 2, "--help": 0, "help": 0, "help ok": 0, "help nosuch": 2} {
		var stderr bytes.Buffer
		if got := Main("prog", "about", cmds, strings.Fields(args), nil, io.Discard, &stderr); got != want {
			t.Errorf("Main(%q) = %d, want %d (stderr %q)", args, got, want, stderr.String())
		}
	}
}

func TestSecretFlag(t *testing.T) {
	for _, tc := range []struct {
		name, env string
		args      []string
		want      string
		warns     bool // a secret in the arguments, which other users read
	}{
		{"from the variable", "sk-env", nil, "sk-env", false},
		{"the flag wins", "sk-env", []string{"--api-key", "sk-flag"}, "sk-flag", true},
		{"the flag alone", "", []string{"--api-key=sk-flag"}, "sk-flag", true},
		{"neither", "", nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TEST_SECRET", tc.env)
			var help bytes.Buffer
			fs := NewFlagSet("prog", "cmd", &help)
			key := SecretFlag(fs, "api-key", "TEST_SECRET", "the key")
			if err := ParseFlags(fs, tc.args); err != nil {
				t.Fatal(err)
			}
			if got := key(); got != tc.want {
				t.Errorf("key %q, want %q", got, tc.want)
			}
			key() // warns once
			warning := help.String()
			if n := strings.Count(warning, "--api-key on the command line can be read by every user of this machine"); n != map[bool]int{true: 1}[tc.warns] ||
				tc.warns && !strings.Contains(warning, "set $TEST_SECRET instead") || strings.Contains(warning, "sk-") {
				t.Errorf("warnings (want %t, once, without the key):\n%s", tc.warns, warning)
			}
			help.Reset()
			fs.Usage()
			if !strings.Contains(help.String(), "the key (default $TEST_SECRET;") || tc.env != "" && strings.Contains(help.String(), tc.env) {
				t.Errorf("help:\n%s", help.String())
			}
		})
	}
}

// TestHelpAndErrors: help, asked for in any of its spellings, goes to stdout with exit 0
// (a user pipes it to less); a mistake goes to stderr with exit 2 and names flags as
// they are documented, --flag. The command list stays one column whatever the names.
func TestHelpAndErrors(t *testing.T) {
	run := func(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
		fs := NewFlagSet("prog", "run FILE [flags]\n\nRuns FILE.", stderr)
		fs.String("hook", "pre", "the `HOOK` to run")
		fs.Int("time-ms", 0, "time limit")
		_, err := Parse(fs, args)
		return err
	}
	cmds := []Command{
		{Name: "run", Summary: "run a file", Run: run},
		{Name: "pipeline-id", Summary: "a long name", Run: run},
		VersionCommand("prog"),
	}
	const runHelp = "Usage: prog run FILE [flags]\n\nRuns FILE.\n  --hook HOOK\n    \tthe HOOK to run (default \"pre\")\n  --time-ms int\n    \ttime limit\n"
	for _, tc := range []struct {
		args           string
		code           int
		stdout, stderr string // exact
	}{
		{"run --help", 0, runHelp, ""},
		{"run -h", 0, runHelp, ""},
		{"run x --help", 0, runHelp, ""},
		{"help run", 0, runHelp, ""},
		{"run --nope", 2, "", "prog run: flag provided but not defined: --nope\nRun 'prog help run' for its usage.\n"},
		{"run --time-ms x", 2, "", "prog run: invalid value \"x\" for flag --time-ms: parse error\nRun 'prog help run' for its usage.\n"},
		{"--version", 0, VersionLine("prog") + "\n", ""},
		{"version", 0, VersionLine("prog") + "\n", ""},
		{"help", 0, "about\n\nUsage: prog COMMAND [flags] [args]\n\nCommands:\n" +
			"  run          run a file\n" +
			"  pipeline-id  a long name\n" +
			"  version      print the version (also --version)\n" +
			"\nRun 'prog help COMMAND' (or 'prog COMMAND --help') for a command's flags.\n", ""},
	} {
		t.Run(tc.args, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main("prog", "about", cmds, strings.Fields(tc.args), nil, &stdout, &stderr)
			if code != tc.code || stdout.String() != tc.stdout || stderr.String() != tc.stderr {
				t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d, stdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
			}
		})
	}
	if !strings.HasPrefix(VersionLine("prog"), "prog "+Version+" go") {
		t.Errorf("VersionLine = %q", VersionLine("prog"))
	}
}

// TestReadPrivateFile: a secret file other users may read is refused, saying how to fix
// it and never what it holds; the owner's alone is read.
func TestReadPrivateFile(t *testing.T) {
	const secret = "word1 word2 word3"
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true}, {0o400, true}, {0o700, true},
		{0o640, false}, {0o604, false}, {0o644, false},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "seed")
			if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			b, err := ReadPrivateFile(path)
			switch {
			case tc.ok && (err != nil || string(b) != secret):
				t.Errorf("read %q, %v", b, err)
			case !tc.ok && (err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) || strings.Contains(err.Error(), "word1")):
				t.Errorf("mode %04o: %q, %v", tc.mode, b, err)
			}
		})
	}
}
