package page

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/attest"
)

func serve(h http.Handler, method, path string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestHandler checks every answer of the page handler: the page, its assets with their
// types, the verifier (or, in a build without it, a 404 that says how to build it), and
// refusals; each under the content security policy that keeps the page on its origin.
func TestHandler(t *testing.T) {
	h := Handler(Config{ServedBy: ServedByHost})
	verifierStatus, verifierType, verifierBody := http.StatusNotFound, "text/plain; charset=utf-8", "make page"
	if Built() {
		verifierStatus, verifierType, verifierBody = http.StatusOK, "application/wasm", "\x00asm"
	}
	for _, tc := range []struct {
		method, path string
		status       int
		contentType  string
		body         string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `<script src="/page/page.js" defer></script>`},
		{"GET", "/page/page.css", 200, "text/css; charset=utf-8", "--fail"},
		{"GET", "/page/page.js", 200, "text/javascript; charset=utf-8", "textContent"},
		{"GET", "/page/config.json", 200, "application/json", `{"served_by":"host"}`},
		{"GET", "/page/verifier.wasm", verifierStatus, verifierType, verifierBody},
		{"GET", "/page/index.html", 404, "text/plain; charset=utf-8", "no such file"},
		{"GET", "/page/README.md", 404, "text/plain; charset=utf-8", "no such file"},
		{"GET", "/page/../verifier/verifier.go", 404, "text/plain; charset=utf-8", "no such file"},
		{"POST", "/", 405, "text/plain; charset=utf-8", "GET"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := serve(h, tc.method, tc.path)
			if rec.Code != tc.status || rec.Header().Get("Content-Type") != tc.contentType || !strings.Contains(rec.Body.String(), tc.body) {
				t.Fatalf("%d %s %.100q, want %d %s with %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String(), tc.status, tc.contentType, tc.body)
			}
			if csp := rec.Header().Get("Content-Security-Policy"); csp != contentSecurityPolicy || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("headers %v", rec.Header())
			}
		})
	}
}

// TestHandlerGzipAndRevalidation checks that a gzipped answer is the same bytes once
// decompressed, that a client without gzip gets them plain, and that a client holding
// the current version gets a 304 without the body.
func TestHandlerGzipAndRevalidation(t *testing.T) {
	h := Handler(Config{ServedBy: ServedByHost})
	for _, path := range []string{"/", "/page/page.js"} {
		plain := serve(h, "GET", path)
		zipped := serve(h, "GET", path, "Accept-Encoding", "br, gzip")
		if zipped.Header().Get("Content-Encoding") != "gzip" || plain.Header().Get("Content-Encoding") != "" {
			t.Fatalf("%s: encodings %q and %q", path, zipped.Header().Get("Content-Encoding"), plain.Header().Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(zipped.Body)
		if err != nil {
			t.Fatal(err)
		}
		unzipped, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(unzipped, plain.Body.Bytes()) {
			t.Errorf("%s: gzipped answer is not the plain one (%v)", path, err)
		}
		if refused := serve(h, "GET", path, "Accept-Encoding", "gzip;q=0"); refused.Header().Get("Content-Encoding") != "" {
			t.Errorf("%s: gzip sent to a client that refuses it", path)
		}
		etag := plain.Header().Get("ETag")
		again := serve(h, "GET", path, "If-None-Match", etag)
		if etag == "" || again.Code != http.StatusNotModified || again.Body.Len() != 0 {
			t.Errorf("%s: revalidating ETag %q: %d with %d bytes", path, etag, again.Code, again.Body.Len())
		}
	}
}

// TestHandlerConfig checks that the page is told what the reviewer gave, the policy's
// simulator root as PEM.
func TestHandlerConfig(t *testing.T) {
	cfg := Config{ServedBy: ServedByLocal, Host: "https://host.example", TrustSimRoot: "-----BEGIN CERTIFICATE-----\n",
		Policy: &attest.Policy{Sealing: []string{"file"}}, Pipelines: []string{strings.Repeat("ab", 32)}}
	rec := serve(Handler(cfg), "GET", AssetsPath+"config.json")
	var got Config
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.ServedBy != cfg.ServedBy || got.Host != cfg.Host || got.TrustSimRoot != cfg.TrustSimRoot ||
		got.Policy == nil || got.Policy.Sealing[0] != "file" || got.Pipelines[0] != cfg.Pipelines[0] {
		t.Errorf("config.json is %s", rec.Body.Bytes())
	}
}

// BenchmarkHandler measures serving the page's script, gzipped, as a browser asks for
// it; against it, the same answer uncompressed.
func BenchmarkHandler(b *testing.B) {
	h := Handler(Config{ServedBy: ServedByHost})
	for _, enc := range []string{"identity", "gzip"} {
		b.Run(enc, func(b *testing.B) {
			for b.Loop() {
				serve(h, "GET", "/page/page.js", "Accept-Encoding", enc)
			}
		})
	}
}
