package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testModelDir is the stories260K folder: $COCOON_MODEL_DIR, or the shared copy beside
// the repository.
func testModelDir() string {
	if dir := os.Getenv("COCOON_MODEL_DIR"); dir != "" {
		return dir
	}
	return filepath.Join("..", "..", "..", "shared", "models", "stories260K")
}

func TestGenerate(t *testing.T) {
	dir := testModelDir()
	golden, err := os.ReadFile(filepath.Join(dir, "golden_t0_n200.txt"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		env        string // COCOON_MODEL_DIR
		code       int
		stdout     string // exact, unless stdoutPart
		stdoutPart string
		stderrPart string
	}{
		{"golden", []string{"generate", "--model-dir", dir, "--temperature", "0", "--steps", "200"}, "", 0,
			string(golden), "", "stories260K: 1 prompt and 200 generated tokens"},
		{"golden from the environment", []string{"generate", "--temperature=0", "--steps=200"}, dir, 0,
			string(golden), "", "tokens/s (finish: length)"},
		{"prompt", []string{"generate", "--model-dir", dir, "--prompt", "Tim had a dog", "--seed", "5", "--steps", "20"}, "", 0,
			"", "Tim had a dog", "6 prompt and 20 generated tokens"},
		{"data directory", []string{"generate", "--data", t.TempDir()}, "", 1, "", "", "models/stories260K: download the default one with 'cocoon-host model pull --data "},
		{"negative steps", []string{"generate", "--model-dir", dir, "--steps", "-1"}, "", 2, "", "", "--steps must not be negative"},
		{"bad temperature", []string{"generate", "--model-dir", dir, "--temperature", "3"}, "", 2, "", "", "temperature must be between 0 and 2"},
		{"bad top-p", []string{"generate", "--model-dir", dir, "--top-p", "0"}, "", 2, "", "", "top_p must be greater than 0"},
		{"help", []string{"generate", "--help"}, "", 0, "", "Usage: cocoon-host generate", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("COCOON_MODEL_DIR", tt.env)
			var stdout, stderr bytes.Buffer
			code := runCommand(tt.args, &stdout, &stderr)
			okOut := stdout.String() == tt.stdout
			if tt.stdoutPart != "" {
				okOut = strings.HasPrefix(stdout.String(), tt.stdoutPart) && len(stdout.String()) > len(tt.stdoutPart)
			}
			if code != tt.code || !okOut || !strings.Contains(stderr.String(), tt.stderrPart) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr containing %q",
					code, stdout.String(), stderr.String(), tt.code, tt.stdout+tt.stdoutPart, tt.stderrPart)
			}
		})
	}
}
