// Package page serves the reviewer's web page: a plain HTML, CSS and JavaScript page
// that fetches a host's evidence, verifies it in the browser with the Go verifier
// compiled to WebAssembly (web/page/verifier), and shows what a reviewer needs to judge
// the host: the evidence mode, the TD's measurements and attributes, every measured
// event and where prompts go, each pipeline's manifest, every check with its verdict,
// and the evidence exactly as fetched, to download.
//
// The same page is served two ways. A host serves it at GET / (package web), which is
// convenient but proves nothing by itself: a host that lies can serve a page that lies.
// `cocoon verify --web` serves it from the reviewer's own build and relays the page's
// evidence requests to the host, so that nothing the host serves runs in the reviewer's
// browser. Config tells the page which of the two it is.
//
// The page's sources are in static/ and embedded as they are. The verifier
// (dist/verifier.wasm) and Go's wasm_exec.js (dist/wasm_exec.js) are build output of
// `make page` (web/page/build.sh), not committed; a build without them (a plain
// `go build` on a fresh clone) serves a page that says the verifier is missing, and
// Built reports false.
package page

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/cocoonhost/cocoon/attest"
)

var (
	//go:embed static
	static embed.FS
	//go:embed dist
	dist embed.FS
)

// AssetsPath is the path prefix of the page's assets: AssetsPath + "page.js" and so on.
// The page itself is at "/".
const AssetsPath = "/page/"

// Who serves the page, as Config.ServedBy says it.
const (
	// ServedByHost is a page served by the host under review.
	ServedByHost = "host"
	// ServedByLocal is a page served by `cocoon verify --web` from the reviewer's build.
	ServedByLocal = "local"
)

// Config is what the page is told at start, served as AssetsPath + "config.json". A
// host sets only ServedBy; `cocoon verify --web` also fills in what the reviewer gave
// on its command line, which the page shows in its fields, to be changed there.
type Config struct {
	// ServedBy is ServedByHost or ServedByLocal.
	ServedBy string `json:"served_by"`
	// Host is the URL of the host the page's requests reach (ServedByLocal only).
	Host string `json:"host,omitempty"`
	// TrustSimRoot is the PEM of a simulator root to trust, given explicitly.
	TrustSimRoot string `json:"trust_sim_root,omitempty"`
	// Policy is a policy to verify against, its trust_sim_root as PEM (the page reads
	// no files).
	Policy *attest.Policy `json:"policy,omitempty"`
	// Collateral is Intel's collateral for the TCB status, as `--collateral FILE` reads it.
	Collateral attest.Collateral `json:"collateral,omitempty"`
	// Pipelines are pipeline ids to verify besides those the host lists.
	Pipelines []string `json:"pipelines,omitempty"`
	// ExpectModules are module hashes each pipeline must run.
	ExpectModules []string `json:"expect_modules,omitempty"`
}

// verifierFile is the compiled verifier in dist/.
const verifierFile = "verifier.wasm"

// Built reports whether this binary embeds the page's verifier (`make page` ran
// before it was built).
func Built() bool {
	_, err := fs.Stat(dist, "dist/"+verifierFile)
	return err == nil
}

// ErrNotBuilt says that the binary was built without the page's verifier.
var ErrNotBuilt = errors.New("this binary was built without the reviewer's page's verifier: run `make page`, then build it again")

// contentSecurityPolicy lets the page run its own scripts and WebAssembly and talk to
// its own origin only: text of the evidence (which the host chooses) is only ever set
// as text, and even an injected element could load nothing and send nothing elsewhere.
const contentSecurityPolicy = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; " +
	"connect-src 'self'; img-src 'self' data:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

// asset is one file the page handler serves.
type asset struct {
	body        []byte
	contentType string
	etag        string
	gzipOnce    sync.Once
	gzipped     []byte
}

// gzip returns the asset gzipped, compressing it on the first call: the verifier is
// 15 MB and 3.6 MB gzipped, and compressing it costs about half a second once.
func (a *asset) gzip() []byte {
	a.gzipOnce.Do(func() {
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression) // a valid level never fails
		zw.Write(a.body)                                       // writes to a bytes.Buffer never fail
		zw.Close()
		a.gzipped = b.Bytes()
	})
	return a.gzipped
}

// Handler returns the handler of GET / (the page) and GET AssetsPath + name (its
// scripts, style, verifier and config). Anything else is a 404, and so is the
// verifier when Built is false, with a text that says how to build it. Responses are
// revalidated (ETag, no-cache), carry a content security policy that confines the page
// to its origin, and are gzipped for clients that accept it.
func Handler(cfg Config) http.Handler {
	config, _ := json.Marshal(cfg) // strings, bytes and maps of them always encode
	assets := map[string]*asset{AssetsPath + "config.json": newAsset(config, "application/json")}
	for _, tree := range []struct {
		fsys embed.FS
		dir  string
	}{{static, "static"}, {dist, "dist"}} {
		entries, _ := fs.ReadDir(tree.fsys, tree.dir) // embedded directories always read
		for _, e := range entries {
			if e.IsDir() || !strings.Contains(e.Name(), ".") || e.Name() == "README.md" {
				continue
			}
			b, _ := fs.ReadFile(tree.fsys, tree.dir+"/"+e.Name())
			assets[AssetsPath+e.Name()] = newAsset(b, contentType(e.Name()))
		}
	}
	assets["/"] = assets[AssetsPath+"index.html"]
	delete(assets, AssetsPath+"index.html")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		a := assets[r.URL.Path]
		switch {
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "the reviewer's page is read with GET", http.StatusMethodNotAllowed)
			return
		case a == nil && r.URL.Path == AssetsPath+verifierFile:
			http.Error(w, ErrNotBuilt.Error(), http.StatusNotFound)
			return
		case a == nil:
			http.Error(w, "no such file of the reviewer's page: "+r.URL.Path, http.StatusNotFound)
			return
		}
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("Vary", "Accept-Encoding")
		body, etag := a.body, a.etag
		if acceptsGzip(r) {
			body, etag = a.gzip(), a.etag+"-gzip"
			h.Set("Content-Encoding", "gzip")
		}
		h.Set("ETag", `"`+etag+`"`)
		// ServeContent answers If-None-Match with 304; the zero time sends no
		// Last-Modified, since embedded files have none.
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
}

func newAsset(b []byte, contentType string) *asset {
	sum := sha256.Sum256(b)
	return &asset{body: b, contentType: contentType, etag: hex.EncodeToString(sum[:16])}
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".wasm":
		return "application/wasm"
	case ".json":
		return "application/json"
	}
	return "application/octet-stream"
}

// acceptsGzip reports whether the request's Accept-Encoding lists gzip with a nonzero
// weight.
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(coding), "gzip") && strings.ReplaceAll(strings.TrimSpace(params), " ", "") != "q=0" {
				return true
			}
		}
	}
	return false
}
