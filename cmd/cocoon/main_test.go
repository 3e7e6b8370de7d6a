package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
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
		{"help", []string{"--help"}, "", 0, "", "Commands:"},
		{"command help", []string{"run", "--help"}, "", 0, "", "Usage: cocoon run FILE.wasm"},
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
