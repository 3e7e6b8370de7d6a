package weights

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// write creates files (path -> content) under a new folder and returns it.
func write(t testing.TB, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for p, b := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// specRoot computes the root as the package doc writes it, one file and one chunk after
// another: the reference Measure must agree with.
func specRoot(files map[string][]byte, paths []string) string {
	root := sha256.New()
	root.Write([]byte("cocoon model weights v1\n"))
	for _, p := range paths {
		b := files[p]
		fh := sha256.New()
		fh.Write([]byte{1})
		fh.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		for off := 0; off < len(b); off += 4 << 20 {
			c := sha256.Sum256(append([]byte{0}, b[off:min(off+4<<20, len(b))]...))
			fh.Write(c[:])
		}
		root.Write(binary.BigEndian.AppendUint32(nil, uint32(len(p))))
		root.Write([]byte(p))
		root.Write(fh.Sum(nil))
	}
	return "sha256-tree:" + hex.EncodeToString(root.Sum(nil))
}

func TestMeasureFollowsTheFormat(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), (9<<20)/16+3) // three chunks, the last short
	exact := bytes.Repeat([]byte{7}, 4<<20)                       // exactly one chunk
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		order []string // byte order of the paths
	}{
		{"one file", map[string][]byte{"model.bin": []byte("weights")}, []string{"model.bin"}},
		{"an empty file", map[string][]byte{"empty": nil, "x": {1}}, []string{"empty", "x"}},
		{"chunks", map[string][]byte{"big.safetensors": big, "exact.bin": exact}, []string{"big.safetensors", "exact.bin"}},
		// "a.b" sorts before "a/b" in bytes ('.' < '/'), after it in a walk of folders.
		{"byte order of whole paths", map[string][]byte{"a/b": {1}, "a.b": {2}, "a0": {3}}, []string{"a.b", "a/b", "a0"}},
		{"nested", map[string][]byte{"config.json": []byte("{}"), "shards/00001.bin": {1, 2}, "shards/00002.bin": {3}}, []string{"config.json", "shards/00001.bin", "shards/00002.bin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := write(t, tc.files)
			for _, workers := range []int{1, 3, 0} {
				m, err := Measure(dir, workers)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := m.Root.String(), specRoot(tc.files, tc.order); got != want {
					t.Errorf("workers %d: %s, want %s", workers, got, want)
				}
				if m.Files != len(tc.files) {
					t.Errorf("%d files, want %d", m.Files, len(tc.files))
				}
			}
		})
	}
}

// TestMeasureVector pins the format: another implementation of version 1 must give this
// root for this folder.
func TestMeasureVector(t *testing.T) {
	dir := write(t, map[string][]byte{"config.json": []byte(`{"dim":64}`), "model.bin": bytes.Repeat([]byte{0xab}, 5<<20)})
	m, err := Measure(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	const want = "sha256-tree:15ba8f45da26d7a6460afe1b660fd6c79ccd67802e40b4149289664ec6233f14" // computed by a Python script from the package doc
	if m.Root.String() != want || m.Bytes != 5<<20+10 {
		t.Errorf("%s (%d bytes), want %s", m.Root, m.Bytes, want)
	}
}

// TestMeasureSeesEveryChange: any change a reader of the folder could see gives another
// root.
func TestMeasureSeesEveryChange(t *testing.T) {
	base := map[string][]byte{"a/model.bin": bytes.Repeat([]byte{1}, 5<<20), "b.json": []byte("{}")}
	rootOf := func(files map[string][]byte) Digest {
		m, err := Measure(write(t, files), 0)
		if err != nil {
			t.Fatal(err)
		}
		return m.Root
	}
	want := rootOf(base)
	flipped := bytes.Clone(base["a/model.bin"])
	flipped[len(flipped)-1] ^= 1
	for name, files := range map[string]map[string][]byte{
		"a byte in the second chunk":  {"a/model.bin": flipped, "b.json": []byte("{}")},
		"a file renamed":              {"a/model.bin": base["a/model.bin"], "c.json": []byte("{}")},
		"a file moved to a folder":    {"a/model.bin": base["a/model.bin"], "a/b.json": []byte("{}")},
		"a file added":                {"a/model.bin": base["a/model.bin"], "b.json": []byte("{}"), "c": nil},
		"a byte moved between files":  {"a/model.bin": base["a/model.bin"][1:], "b.json": []byte("\x01{}")},
		"a file truncated to nothing": {"a/model.bin": nil, "b.json": []byte("{}")},
	} {
		if rootOf(files) == want {
			t.Errorf("%s: the root did not change", name)
		}
	}
}

func TestMeasureRefuses(t *testing.T) {
	link := write(t, map[string][]byte{"model.bin": {1}})
	if err := os.Symlink("/etc/passwd", filepath.Join(link, "tokenizer.json")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, dir, want string }{
		{"a symbolic link", link, "tokenizer.json is not a regular file"},
		{"an empty folder", t.TempDir(), "holds no files"},
		{"no folder", filepath.Join(t.TempDir(), "none"), "no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if m, err := Measure(tc.dir, 0); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, %v; want an error with %q", m.Root, err, tc.want)
			}
		})
	}
}

// BenchmarkMeasure measures 256 MiB of weights (in the page cache) on one worker and on
// one per processor: the second's MB/s against the first's is what hashing in parallel
// buys, and 1000/(MB/s) the seconds per GB.
func BenchmarkMeasure(b *testing.B) {
	const shard = 64 << 20
	files := map[string][]byte{}
	for i := range 4 {
		files["model-0000"+string(rune('1'+i))+".safetensors"] = bytes.Repeat([]byte{byte(i)}, shard)
	}
	dir := write(b, files)
	for _, bc := range []struct {
		name    string
		workers int
	}{{"one-worker", 1}, {"all-processors", runtime.NumCPU()}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(4 * shard)
			for b.Loop() {
				if _, err := Measure(dir, bc.workers); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
