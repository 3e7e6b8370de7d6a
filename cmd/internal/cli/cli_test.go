package cli

import (
	"bytes"
	"errors"
	"flag"
	"io"
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
		{[]string{"--nope"}, "", "", "flag provided but not defined: -nope"},
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
	for args, want := range map[string]int{"ok": 0, "fail": 1, "misuse": 2, "nosuch": 2, "": 2, "--help": 0} {
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
	}{
		{"from the variable", "sk-env", nil, "sk-env"},
		{"the flag wins", "sk-env", []string{"--api-key", "sk-flag"}, "sk-flag"},
		{"neither", "", nil, ""},
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
			fs.Usage()
			if !strings.Contains(help.String(), "the key (default $TEST_SECRET)") || tc.env != "" && strings.Contains(help.String(), tc.env) {
				t.Errorf("help:\n%s", help.String())
			}
		})
	}
}
