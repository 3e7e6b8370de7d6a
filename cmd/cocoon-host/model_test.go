package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/host/backend/embedded"
)

// modelServer serves the test model's files as their public home does; damage, when
// set, changes what it serves for a file.
func modelServer(t *testing.T, damage func(name string, w http.ResponseWriter, data []byte) bool) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/stories260K/")
		data, err := os.ReadFile(filepath.Join(testModelDir(), filepath.Base(name)))
		if err != nil || name != filepath.Base(name) {
			http.NotFound(w, r)
			return
		}
		if damage != nil && damage(name, w, data) {
			return
		}
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestModelPull(t *testing.T) {
	tests := []struct {
		name       string
		damage     func(name string, w http.ResponseWriter, data []byte) bool
		code       int
		stderrPart string
	}{
		{"ok", nil, 0, ""},
		{"corrupted", func(name string, w http.ResponseWriter, data []byte) bool {
			if name != "tok512.bin" {
				return false
			}
			data = bytes.Clone(data)
			data[100] ^= 1
			w.Write(data)
			return true
		}, 1, "downloaded tok512.bin has sha256 "},
		{"not found", func(name string, w http.ResponseWriter, data []byte) bool {
			if name != "stories260K.bin" {
				return false
			}
			http.NotFound(w, nil)
			return true
		}, 1, "server answered 404 Not Found"},
		{"truncated body", func(name string, w http.ResponseWriter, data []byte) bool {
			if name != "stories260K.bin" {
				return false
			}
			w.Header().Set("Content-Length", "1056540")
			w.Write(data[:1000])
			return true
		}, 1, "downloading stories260K.bin: unexpected EOF"},
		{"short file", func(name string, w http.ResponseWriter, data []byte) bool {
			if name != "stories260K.bin" {
				return false
			}
			w.Write(data[:1000])
			return true
		}, 1, "got 1000 bytes, want 1056540"},
		{"too long", func(name string, w http.ResponseWriter, data []byte) bool {
			if name != "tok512.bin" {
				return false
			}
			w.Write(append(bytes.Clone(data), '!'))
			return true
		}, 1, "got 6228 bytes, want 6227"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := modelServer(t, tt.damage)
			data := t.TempDir()
			var stdout, stderr bytes.Buffer
			code := runCommand([]string{"model", "pull", "--data", data, "--source", srv.URL + "/stories260K/"}, &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.stderrPart) {
				t.Fatalf("exit %d, stderr %q; want exit %d, stderr containing %q", code, stderr.String(), tt.code, tt.stderrPart)
			}
			dir := filepath.Join(data, "models", "stories260K")
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.HasSuffix(e.Name(), ".tmp") {
					t.Errorf("left a temporary file %s", e.Name())
				}
			}
			if tt.code != 0 {
				if _, err := os.Stat(filepath.Join(dir, embedded.SumsFile)); err == nil {
					t.Error("wrote SHA256SUMS after a failed pull")
				}
				return
			}
			var sums strings.Builder
			for _, name := range []string{"stories260K.bin", "tok512.bin"} {
				got, err1 := os.ReadFile(filepath.Join(dir, name))
				want, err2 := os.ReadFile(filepath.Join(testModelDir(), name))
				if err1 != nil || err2 != nil || !bytes.Equal(got, want) {
					t.Errorf("%s differs from the source (%v, %v)", name, err1, err2)
				}
				fmt.Fprintf(&sums, "%x  %s\n", sha256.Sum256(want), name)
			}
			if got, _ := os.ReadFile(filepath.Join(dir, embedded.SumsFile)); string(got) != sums.String() {
				t.Errorf("SHA256SUMS is %q, want %q", got, sums.String())
			}
			if _, err := embedded.New(dir); err != nil {
				t.Errorf("the pulled model does not load: %v", err)
			}
			// A second pull finds the files and downloads nothing.
			srv.Close()
			stdout.Reset()
			if code := runCommand([]string{"model", "pull", "--data", data, "--source", srv.URL}, &stdout, &stderr); code != 0 || strings.Count(stdout.String(), ": present") != 2 {
				t.Errorf("second pull: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
			}
		})
	}
}

func TestModelUsage(t *testing.T) {
	for _, args := range [][]string{{"model"}, {"model", "push"}, {"model", "pull", "extra"}} {
		var stdout, stderr bytes.Buffer
		if code := runCommand(args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, stderr %q; want 2", args, code, stderr.String())
		}
	}
}
