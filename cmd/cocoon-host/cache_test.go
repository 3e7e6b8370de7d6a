package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/internal/fstrace"
)

// tracedHost is `cocoon-host serve` from the repository root in a child process under
// fstrace, with the example pipeline loaded.
type tracedHost struct {
	p                  *fstrace.Process
	base, key, example string
	logs               *lockedBuffer
}

func startTracedHost(t *testing.T, root, data string, args ...string) *tracedHost {
	t.Helper()
	pr, pw := io.Pipe()
	h := &tracedHost{logs: &lockedBuffer{}}
	p, err := fstrace.Start(os.Args[0], fstrace.Options{
		Args:   append([]string{"-test.run=^TestServeBillingHelperProcess$", "--", "serve", "--listen", "127.0.0.1:0", "--data", data}, args...),
		Env:    append(os.Environ(), envBillingHelper+"=1"),
		Dir:    root,
		Stdout: pw, Stderr: h.logs,
	})
	if errors.Is(err, fstrace.ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	h.p = p
	t.Cleanup(func() { p.Kill(); p.Wait() })
	go func() { p.Wait(); pw.Close() }()
	for lines := bufio.NewScanner(pr); lines.Scan() && h.example == ""; {
		if v, ok := strings.CutPrefix(lines.Text(), "Listening on "); ok {
			h.base = v
		} else if v, ok := strings.CutPrefix(lines.Text(), "Example pipeline: "); ok {
			h.example = v
		}
	}
	go io.Copy(io.Discard, pr)
	key, err := readSecret(filepath.Join(data, apiKeyFile))
	if h.base == "" || h.example == "" || err != nil {
		t.Fatalf("the host did not start with the example pipeline (%v); logs:\n%s", err, h.logs.String())
	}
	h.key = key
	return h
}

// chat runs one request through the example pipeline: its Go module (pii-redactor) and
// its C module (output-guard) run.
func (h *tracedHost) chat(t *testing.T) {
	t.Helper()
	req, _ := http.NewRequest("POST", h.base+"/p/"+h.example+"/v1/chat/completions",
		strings.NewReader(`{"messages":[{"role":"user","content":"Mail me at ann@example.com"}],"max_tokens":8,"temperature":0}`))
	req.Header.Set("Authorization", "Bearer "+h.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("chat: %v; logs:\n%s", err, h.logs.String())
	}
	defer resp.Body.Close()
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK {
		t.Fatalf("chat: %s %s", resp.Status, body)
	}
}

// stop kills the host and returns its trace.
func (h *tracedHost) stop(t *testing.T) fstrace.Trace {
	t.Helper()
	h.p.Kill()
	tr, err := h.p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// forgeCompiledCode rewrites every wazero compilation cache entry under dir as the
// attack of issue 10 did: the native code replaced by ud2 instructions, the CRC32-C
// fixed so that wazero accepts it. It also plants a forged entry beside the real ones
// and garbage. It returns how many real entries it forged.
func forgeCompiledCode(t *testing.T, dir string) int {
	t.Helper()
	crc := crc32.MakeTable(crc32.Castagnoli)
	forged := 0
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		// WAZEVO, a version length and version, a function count, 8-byte offsets, the
		// code length, the code, its CRC32-C.
		if err != nil || !bytes.HasPrefix(b, []byte("WAZEVO")) {
			return nil
		}
		at := 6 + 1 + int(b[6])
		functions := int(binary.LittleEndian.Uint32(b[at:]))
		at += 4 + 8*functions
		codeLen := int(binary.LittleEndian.Uint64(b[at:]))
		code := b[at+8 : at+8+codeLen]
		for i := 0; i+1 < len(code); i += 2 {
			code[i], code[i+1] = 0x0f, 0x0b // ud2
		}
		binary.LittleEndian.PutUint32(b[at+8+codeLen:], crc32.Checksum(code, crc))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		forged++
		return nil
	})
	plant := filepath.Join(dir, "wazero-v1.12.0-amd64-linux")
	if err := os.MkdirAll(plant, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{
		strings.Repeat("ab", 32): append([]byte("WAZEVO\x07v1.12.0\x01\x00\x00\x00"), bytes.Repeat([]byte{0x0f, 0x0b}, 64)...),
		"garbage":                bytes.Repeat([]byte{0xff}, 4096),
	} {
		if err := os.WriteFile(filepath.Join(plant, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return forged
}

// TestServeNeverReadsCompiledCodeFromDisk is the attack of issue 10 on the compiled-code
// cache: between two starts of a host on one data directory, every compiled-code entry
// in DATA/cache is forged (its native code replaced by ud2, its checksum fixed) and
// more are planted. The host must not care: it keeps compiled code in memory only, so
// over both starts (traced with ptrace) it makes no system call naming any path under
// DATA/cache, and the second start serves the example pipeline. With a disk cache the
// first start writes entries there, and the second crashes on its first request.
func TestServeNeverReadsCompiledCodeFromDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the example pipeline twice under ptrace")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, examplePre)); err != nil {
		t.Fatalf("%v: run `make plugins` first", err)
	}
	data := t.TempDir()
	cache := filepath.Join(data, "cache")
	args := []string{"--model-dir", embeddedModelDir(t), "--attest", "sim"}

	h := startTracedHost(t, root, data, args...)
	h.chat(t)
	first := h.stop(t)

	forged := forgeCompiledCode(t, cache)
	start := time.Now()
	h = startTracedHost(t, root, data, args...)
	h.chat(t)
	second := h.stop(t)
	t.Logf("forged %d entries the first start left; the second start served in %v under ptrace", forged, time.Since(start).Round(time.Millisecond))

	for i, tr := range []fstrace.Trace{first, second} {
		if touched := tr.Touched(cache); len(touched) > 0 {
			t.Errorf("start %d made %d calls on DATA/cache, such as %s", i+1, len(touched), touched[0])
		}
		if len(tr.Touched(filepath.Join(data, "modules"))) == 0 {
			t.Errorf("start %d: the trace shows no call on DATA/modules: it does not see the host's file calls", i+1)
		}
	}
}
