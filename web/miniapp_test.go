package web

import (
	"strings"
	"testing"
)

// The host serves the Mini App under /app/ (package miniapp) beside its API, with the
// app's content security policy; /app leads there.
func TestServesMiniApp(t *testing.T) {
	f, _ := attested(t)
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/app/", 200, `<script type="module" src="app.js">`},
		{"GET", "/app", 200, `<script type="module" src="app.js">`}, // redirected to /app/
		{"GET", "/app/tonconnect-manifest.json", 200, `"name":"Cocoon"`},
		{"GET", "/app/missing.js", 404, "404 page not found"},
		{"PUT", "/app/app.js", 405, "the Mini App is read with GET"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			res := f.do(tc.method, tc.path, "", nil)
			if res.status != tc.status || !strings.Contains(string(res.body), tc.body) {
				t.Fatalf("%d %.200s, want %d with %q", res.status, res.body, tc.status, tc.body)
			}
			if csp := res.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self' 'wasm-unsafe-eval' 'unsafe-hashes'") {
				t.Errorf("not the Mini App's content security policy: %q", csp)
			}
		})
	}
}
