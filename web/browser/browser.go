// Package browser serves the browser client library (web/browser/README.md): one ES
// module, dist/cocoon.js, bundled by build.mjs from src/ and the npm packages of
// package-lock.json, committed so that a Go build needs no Node, and embedded here. The
// host serves it under Dir beside the verifier it loads; `make browser-check` (run by
// `make test`) rebuilds it and fails when the committed bytes are not what the sources
// build to.
package browser

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

// Dir is where a host serves the library and the verifier it loads: Dir + "cocoon.js",
// Dir + "verifier.wasm" and Dir + "wasm_exec.js". The library loads the verifier from
// the directory it was itself loaded from, so that the code a page runs comes from one
// place, never from the host or relay its requests go to.
const Dir = "/sdk/"

// Path is where a host serves the library itself.
const Path = Dir + "cocoon.js"

// verifierFiles are the files of the reviewer's page's verifier (package web/page) that
// the library loads.
var verifierFiles = map[string]bool{"verifier.wasm": true, "wasm_exec.js": true}

//go:embed dist/cocoon.js
var bundle []byte

// Bundle returns the library's bytes.
func Bundle() []byte { return bytes.Clone(bundle) }

// Handler serves the library at Path and the verifier's files under Dir, taken from
// verifier, the handler of the reviewer's page, which serves them under assets
// (page.AssetsPath), to GET and HEAD. The library is revalidated by its ETag (the
// sha256 of its bytes) and never sniffed as anything but JavaScript. A page of another
// origin may load them (Access-Control-Allow-Origin: *): they hold no secret, and what
// they verify comes from their caller's options. Any other path is a 404.
func Handler(verifier http.Handler, assets string) http.Handler {
	sum := sha256.Sum256(bundle)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "the client library is read with GET", http.StatusMethodNotAllowed)
			return
		}
		h.Set("Access-Control-Allow-Origin", "*")
		name, _ := strings.CutPrefix(r.URL.Path, Dir)
		switch {
		case r.URL.Path == Path:
			h.Set("Content-Type", "text/javascript; charset=utf-8")
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Cache-Control", "no-cache")
			h.Set("ETag", etag)
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(bundle))
		case verifierFiles[name]:
			r2 := r.Clone(r.Context())
			r2.URL.Path = assets + name
			verifier.ServeHTTP(w, r2)
		default:
			http.Error(w, "no such file of the client library: "+r.URL.Path, http.StatusNotFound)
		}
	})
}
