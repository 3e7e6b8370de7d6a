// Package browser serves the browser client library (web/browser/README.md): one ES
// module, dist/cocoon.js, bundled by build.mjs from src/ and the npm packages of
// package-lock.json, committed so that a Go build needs no Node, and embedded here. The
// host serves it at Path; `make browser-check` (run by `make test`) rebuilds it and fails
// when the committed bytes are not what the sources build to.
package browser

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"
)

// Path is where a host serves the library.
const Path = "/sdk/cocoon.js"

//go:embed dist/cocoon.js
var bundle []byte

// Bundle returns the library's bytes.
func Bundle() []byte { return bytes.Clone(bundle) }

// Handler serves the library to GET and HEAD, revalidated by its ETag (the sha256 of
// its bytes), as JavaScript that a browser never sniffs as anything else. A page of
// another origin may import it (Access-Control-Allow-Origin: *): it holds no secret, and
// what it verifies comes from its caller's options.
func Handler() http.Handler {
	sum := sha256.Sum256(bundle)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the client library is read with GET", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("ETag", etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(bundle))
	})
}
