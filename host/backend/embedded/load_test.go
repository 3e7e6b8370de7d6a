package embedded

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyModel copies the test model's files into a temporary folder, minus SHA256SUMS
// unless withSums, and returns the folder.
func copyModel(t *testing.T, withSums bool) string {
	t.Helper()
	dir := t.TempDir()
	names := []string{"stories260K.bin", "tok512.bin"}
	if withSums {
		names = append(names, SumsFile)
	}
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(modelDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestNewErrors(t *testing.T) {
	write := func(dir, name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit := func(dir, name string, f func([]byte) []byte) {
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, f(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	flip := func(b []byte) []byte { b[len(b)/2] ^= 1; return b }
	truncate := func(b []byte) []byte { return b[:len(b)-100] }
	tests := []struct {
		name     string
		withSums bool
		setup    func(dir string)
		want     string
	}{
		{"checkpoint does not match SHA256SUMS", true, func(dir string) { edit(dir, "stories260K.bin", flip) },
			"stories260K.bin does not match SHA256SUMS: its sha256 is "},
		{"tokenizer does not match SHA256SUMS", true, func(dir string) { edit(dir, "tok512.bin", flip) },
			"tok512.bin does not match SHA256SUMS"},
		{"truncated and listed: the hash is the cause", true, func(dir string) { edit(dir, "stories260K.bin", truncate) },
			"stories260K.bin does not match SHA256SUMS"},
		{"file missing from SHA256SUMS", true, func(dir string) {
			write(dir, SumsFile, "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696  stories260K.bin\n")
		}, "SHA256SUMS has no entry for tok512.bin"},
		{"malformed SHA256SUMS", true, func(dir string) { write(dir, SumsFile, "not a checksum line\n") },
			"SHA256SUMS line 1 is not"},
		{"truncated checkpoint", false, func(dir string) { edit(dir, "stories260K.bin", truncate) },
			"stories260K.bin: llama2: checkpoint is 1056440 bytes, its header (dim 64, 5 layers, vocab 512, seq_len 512) needs exactly 1056540"},
		{"truncated tokenizer", false, func(dir string) { edit(dir, "tok512.bin", truncate) },
			"tok512.bin: llama2: tokenizer is truncated at piece"},
		{"not a checkpoint", false, func(dir string) { write(dir, "stories260K.bin", strings.Repeat("<html>nope</html>\n", 50)) },
			"stories260K.bin: llama2: not a llama2.c checkpoint"},
		{"tokenizer of another model", false, func(dir string) {
			data, _ := os.ReadFile(filepath.Join(dir, "tok512.bin"))
			write(dir, "tok512.bin", string(data)+"\x00\x00\x00\x00\x01\x00\x00\x00x")
		}, "tok512.bin: llama2: tokenizer has 9 bytes after its 512 pieces"},
		{"two checkpoints", false, func(dir string) { write(dir, "other.bin", "x") },
			`found checkpoints ["other.bin" "stories260K.bin"] and tokenizers ["tok512.bin"]`},
		{"no tokenizer", false, func(dir string) { os.Remove(filepath.Join(dir, "tok512.bin")) },
			"one tokenizer (tokenizer.bin or tokN.bin)"},
		{"no folder", false, func(dir string) { os.RemoveAll(dir) }, "model folder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyModel(t, tt.withSums)
			tt.setup(dir)
			_, err := New(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNewWithoutSums(t *testing.T) {
	dir := copyModel(t, false)
	if err := os.Rename(filepath.Join(dir, "stories260K.bin"), filepath.Join(dir, "my-model.bin")); err != nil {
		t.Fatal(err)
	}
	b, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.id != "my-model" || b.WeightsSHA256() != open(t).WeightsSHA256() {
		t.Errorf("id %q, sha256 %s", b.id, b.WeightsSHA256())
	}
}

func TestReadSumsFormats(t *testing.T) {
	dir := t.TempDir()
	const sum = "B0A507E7AD0F626624F17112325E66691F9076D622E1D3274D103D00299F2696"
	content := sum + " *binary-mode.bin\n\n" + strings.ToLower(sum) + "  text mode.bin\n"
	if err := os.WriteFile(filepath.Join(dir, SumsFile), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	sums, err := readSums(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 2 || sums["binary-mode.bin"] != strings.ToLower(sum) || sums["text mode.bin"] != strings.ToLower(sum) {
		t.Errorf("readSums = %v", sums)
	}
}
