package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"regexp"
	"strings"
	"testing"
)

const request = `{"model":"m","messages":[{"role":"user","content":"hi"}]}`

func TestCLI(t *testing.T) {
	spec, err := os.ReadFile("../../host/testdata/spec_example.wasm")
	if err != nil {
		t.Fatalf("%v: run `make plugins` first", err)
	}
	sum := sha256.Sum256(spec)
	tests := []struct {
		name       string
		args       []string
		stdin      string
		code       int
		stdout     string // exact
		stderrPart string
	}{
		{"measure", []string{"measure", "../../host/testdata/spec_example.wasm"}, "", 0,
			"sha256:" + hex.EncodeToString(sum[:]) + "  ../../host/testdata/spec_example.wasm\n", ""},
		{"measure without file", []string{"measure"}, "", 2, "", "no file given"},
		{"run pre", []string{"run", "../../host/testdata/spec_example.wasm", "--hook", "pre"}, request, 0, request + "\n", ""},
		{"run pre with logs", []string{"run", "--hook=pre", "--config-json", "G", "../../host/testdata/misbehave.wasm"}, request, 0, request + "\n", "info log: pre ran"},
		{"run chunk", []string{"run", "../../host/testdata/hold.wasm", "--hook", "chunk"}, "once\nupon\n", 0, "ONCE\nUPON\n", ""},
		{"run rejection", []string{"run", "../../host/testdata/misbehave.wasm", "--hook", "pre", "--config-json", "r"}, request, 1, "", "rejected with status 403: blocked by policy"},
		{"run timeout", []string{"run", "../../host/testdata/misbehave.wasm", "--hook", "pre", "--config-json", "L", "--time-ms", "20"}, request, 1, "", "time limit of 20ms (timeout)"},
		{"run invalid module", []string{"run", "../../host/testdata/wrong_abi.wasm", "--hook", "pre"}, request, 1, "", "module targets ABI v2"},
		{"run bad hook", []string{"run", "x.wasm", "--hook", "middle"}, "", 2, "", "--hook must be pre, post or chunk"},
		{"run bad input", []string{"run", "../../host/testdata/spec_example.wasm", "--hook", "pre"}, "[]", 1, "", "not a chat completion request"},
		{"run output without messages", []string{"run", "../../host/testdata/spec_example.wasm", "--hook", "pre"}, "{}", 1, "", "cocoon_pre returned an invalid chat request (messages: missing: a chat request needs a non-empty array of messages) (invalid_output)"},
		{"validate", []string{"validate", "../../host/testdata/spec_example.wasm", "../../host/testdata/unknown_import.wasm"}, "", 1, "", "1 of 2 modules are invalid"},
		{"unknown command", []string{"frobnicate"}, "", 2, "", `unknown command "frobnicate"`},
		{"help", []string{"--help"}, "", 0, "", ""},
		{"command help", []string{"run", "--help"}, "", 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runCommand(tt.args, strings.NewReader(tt.stdin), &stdout, &stderr)
			if code != tt.code || stdout.String() != tt.stdout && tt.stdout != "" || !strings.Contains(stderr.String(), tt.stderrPart) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr containing %q",
					code, stdout.String(), stderr.String(), tt.code, tt.stdout, tt.stderrPart)
			}
		})
	}
}

// TestHelpHidesSecrets: --help of every command names the variables that hold secrets
// and never shows their values, which would land in terminals, scrollback and CI logs;
// the value is still what the commands use.
func TestHelpHidesSecrets(t *testing.T) {
	const secret = "sk-from-the-environment-7d1c"
	t.Setenv("COCOON_API_KEY", secret)
	var withKey int
	for _, c := range commands {
		for _, args := range [][]string{{c.Name, "--help"}, {c.Name, "open", "--help"}} {
			code, stdout, stderr := cocoon(t, "", args...)
			if strings.Contains(stdout+stderr, secret) {
				t.Errorf("cocoon %s shows $COCOON_API_KEY's value (exit %d):\n%s%s", strings.Join(args, " "), code, stdout, stderr)
			}
			if strings.Contains(stdout, "--api-key") {
				withKey++
				if !strings.Contains(stdout, "(default $COCOON_API_KEY;") {
					t.Errorf("cocoon %s --help does not name $COCOON_API_KEY:\n%s", c.Name, stdout)
				}
			}
		}
	}
	if withKey < 5 {
		t.Errorf("only %d commands' help shows --api-key", withKey)
	}
	// The variable still gives the key: a host that refuses it says so, where a missing
	// key would be a usage error.
	base := testHost(t)
	t.Setenv("COCOON_API_KEY", "sk-wrong")
	if code, _, stderr := cocoon(t, "", "pipelines", "--host", base); code != 1 || !strings.Contains(stderr, "the API key is not valid") {
		t.Errorf("with $COCOON_API_KEY: exit %d, %s", code, stderr)
	}
	t.Setenv("COCOON_API_KEY", testKey)
	if code, _, stderr := cocoon(t, "", "pipelines", "--host", base); code != 0 || stderr != "" {
		t.Errorf("with $COCOON_API_KEY: exit %d, %s", code, stderr)
	}
}

// TestAPIKeyInArgumentsWarns: a key given as --api-key sits in the process's arguments,
// which every user of the machine reads (/proc/PID/cmdline) while it runs, as long as
// `cocoon proxy` serves. The command still works, and says so on stderr, naming the
// variable to use instead and never the key.
func TestAPIKeyInArgumentsWarns(t *testing.T) {
	base := testHost(t)
	t.Setenv("COCOON_API_KEY", "")
	code, stdout, stderr := cocoon(t, "", "pipelines", "--host", base, "--api-key", testKey)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "--api-key on the command line can be read by every user of this machine") || !strings.Contains(stderr, "set $COCOON_API_KEY instead") {
		t.Errorf("no warning on stderr: %q", stderr)
	}
	if strings.Contains(stdout+stderr, testKey) {
		t.Errorf("the key is on screen:\n%s%s", stdout, stderr)
	}
}

// singleDashFlag finds a flag spelled -flag in help text; ours are spelled --flag.
var singleDashFlag = regexp.MustCompile(`(^|[\s\[(|,'"])-[a-z][a-z-]+`)

// TestEveryCommandHelp: `help CMD` and `CMD --help` print the command's help to stdout
// and exit 0, with nothing on stderr, and spell every flag --flag.
func TestEveryCommandHelp(t *testing.T) {
	for _, c := range commands {
		for _, args := range [][]string{{c.Name, "--help"}, {"help", c.Name}} {
			code, stdout, stderr := cocoon(t, "", args...)
			if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "Usage: cocoon "+c.Name) {
				t.Errorf("cocoon %s: exit %d, stdout %q, stderr %q; want exit 0 and the usage on stdout", strings.Join(args, " "), code, stdout, stderr)
			}
			if m := singleDashFlag.FindString(stdout); m != "" {
				t.Errorf("cocoon %s spells a flag %q:\n%s", strings.Join(args, " "), m, stdout)
			}
		}
	}
}
