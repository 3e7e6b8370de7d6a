package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/host/backend/plugin"
)

// envHelper makes TestBackendHelperProcess run the command line after "--", so that the
// test binary can stand in for cocoon-host as a plugin program.
const envHelper = "COCOON_HOST_TEST_HELPER"

func TestBackendHelperProcess(t *testing.T) {
	if os.Getenv(envHelper) != "1" {
		return
	}
	args := os.Args
	for len(args) > 0 && args[0] != "--" {
		args = args[1:]
	}
	os.Exit(runCommand(args[1:], os.Stdout, os.Stderr))
}

// hostCommand is the command the host would build with plugin.SelfCommand("backend", ...),
// run through the test binary.
func hostCommand(args ...string) *exec.Cmd {
	cmd := plugin.SelfCommand(append([]string{"-test.run=^TestBackendHelperProcess$", "--", "backend"}, args...)...)
	// Under -race, a process otherwise waits a second before it exits.
	cmd.Env = append(os.Environ(), envHelper+"=1", "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	return cmd
}

func embeddedModelDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("COCOON_MODEL_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "models", "stories260K")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBackendCommandUsage(t *testing.T) {
	t.Setenv(plugin.Handshake.MagicCookieKey, "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"backend"}, "--kind must be one of: embedded"},
		{[]string{"backend", "--kind", "gpu"}, "--kind must be one of: embedded"},
		{[]string{"backend", "--kind", "embedded", "extra"}, `unexpected argument "extra"`},
		{[]string{"backend", "--kind", "embedded"}, "it is not run by hand"},
	} {
		var stderr bytes.Buffer
		if code := runCommand(tc.args, &bytes.Buffer{}, &stderr); code != 2 {
			t.Errorf("%q: exit code %d, want 2", tc.args, code)
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: stderr %q does not say %q", tc.args, stderr.String(), tc.want)
		}
	}
}

// TestBackendCommandServesEmbedded runs the embedded engine out of process the way the
// host does, and checks that greedy generation through the plugin boundary reproduces
// the golden text.
func TestBackendCommandServesEmbedded(t *testing.T) {
	dir := embeddedModelDir(t)
	golden, err := os.ReadFile(filepath.Join(dir, "golden_t0_n200.txt"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := plugin.Launch(hostCommand("--kind", "embedded", "--model-dir", dir), &plugin.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	models, err := b.Models(context.Background())
	if err != nil || len(models) != 1 || models[0] != (backend.Model{ID: "stories260K", OwnedBy: "cocoon", ContextLength: 512}) {
		t.Errorf("Models() = %+v, %v", models, err)
	}
	var text strings.Builder
	zero := 0.0
	res, err := b.Generate(context.Background(), &backend.Request{MaxTokens: 200, Temperature: &zero}, func(d string) error {
		text.WriteString(d)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if text.String() != string(golden) {
		t.Errorf("greedy 200 tokens through the plugin:\n got %q\nwant %q", text.String(), golden)
	}
	want := backend.Result{FinishReason: "length", Usage: backend.Usage{PromptTokens: 1, CompletionTokens: 200}, Model: "stories260K"}
	if res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}

	// The engine's own errors keep their code across the boundary.
	hot := 3.0
	_, err = b.Generate(context.Background(), &backend.Request{Temperature: &hot}, func(string) error { return nil })
	var be *backend.Error
	if !errors.As(err, &be) || be.Code != backend.CodeInvalidRequest || be.Status != 400 || !strings.Contains(be.Message, "temperature") {
		t.Errorf("temperature 3: %v, want a CodeInvalidRequest error about the temperature", err)
	}
}

func TestBackendCommandReportsBadModel(t *testing.T) {
	_, err := plugin.Launch(hostCommand("--kind", "embedded", "--model-dir", t.TempDir()), &plugin.Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		t.Fatal("Launch succeeded on an empty model folder")
	}
	for _, want := range []string{"exited before it was ready (exit status 1)", "cocoon-host backend: embedded: model folder"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
