package main

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/web/page"
)

// TestServeReviewerPage checks that the daemon serves the reviewer's page at / with the
// verifier this build embeds (make page), and pipeline evidence to a reviewer without a
// credential, which the page asks for.
func TestServeReviewerPage(t *testing.T) {
	model, err := filepath.Abs(testModelDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join("..", "..")) // startServe reads up to the example pipeline's line
	r := startServe(t, "--data", t.TempDir(), "--model-dir", model, "--attest", "sim")
	defer r.stop(t)

	wasmStatus, wasmType, wasmBody := http.StatusNotFound, "text/plain; charset=utf-8", "make page"
	if page.Built() {
		wasmStatus, wasmType, wasmBody = http.StatusOK, "application/wasm", "\x00asm"
	}
	for _, tc := range []struct {
		path        string
		status      int
		contentType string
		body        string
	}{
		{"/", http.StatusOK, "text/html; charset=utf-8", `<script src="/page/page.js" defer></script>`},
		{"/page/wasm_exec.js", http.StatusOK, "text/javascript; charset=utf-8", "Go"},
		{"/page/verifier.wasm", wasmStatus, wasmType, wasmBody},
		{"/v1/pipelines/" + r.example + "/attestation?nonce=" + strings.Repeat("0f", 16), http.StatusOK, "application/json", `"pipeline_id":"` + r.example + `"`},
	} {
		resp := r.request(t, "GET", tc.path, "", "")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != tc.contentType || !strings.Contains(string(b), tc.body) {
			t.Errorf("GET %s: %d %s %.100q, want %d %s with %q", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), b, tc.status, tc.contentType, tc.body)
		}
	}
}
