// Package miniapp serves the sample Telegram Mini App: plain HTML, CSS and JavaScript
// (static/) that verifies the host in the browser with the browser library
// (/sdk/cocoon.js, web/browser), shows what it verified, funds an escrow with TON
// Connect and chats with every request sealed to the attested key and paid from the
// escrow. A host serves it at Path (package web mounts Handler there).
//
// Served by the host, the app's code reaches the browser through whatever sits in
// between: a relay that only records learns nothing from the chat (everything the app
// sends to the chat routes is sealed), but one that rewrites what it forwards could
// serve other code. README.md ("The sample Mini App") and RATIONALE.md say what that
// means and how to serve the files from the developer's own origin instead.
//
// The files are embedded as they are; static/tonconnect-ui.min.js is the browser build
// of @tonconnect/ui, copied byte for byte from the package pinned by vendor/'s lock file
// (TestVendoredTonConnect checks it), so that `make run` needs Go alone.
package miniapp

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// Path is where the app is served: Path is its page, Path + name its files.
const Path = "/app/"

// manifestFile is TON Connect's app manifest, which wallets fetch to show the user
// which app asks them to connect. It names the app by the origin it was fetched from,
// so it is made per request rather than embedded.
const manifestFile = "tonconnect-manifest.json"

// contentSecurityPolicy confines the app: its own scripts, Telegram's telegram-web-app.js
// (which Telegram documents as loaded from telegram.org) and WebAssembly (the
// verifier); TON Connect's inline styles; wallet icons and TON Connect's HTTP bridges
// over https; and framing by Telegram's web clients only. Everything the host sends is
// set as text, never as HTML, so an injected element is not the app's way in; connect-src
// must allow https: since the wallets' bridges are wherever each wallet runs them. The
// one inline script allowed is the empty one (its sha256 below, with 'unsafe-hashes'):
// TON Connect's UI sets an empty ontouchstart attribute on the body.
const contentSecurityPolicy = "default-src 'none'; " +
	"script-src 'self' 'wasm-unsafe-eval' https://telegram.org 'unsafe-hashes' 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='; " +
	"style-src 'self' 'unsafe-inline'; connect-src 'self' https:; img-src 'self' data: https:; " +
	"form-action 'none'; base-uri 'none'; frame-ancestors 'self' https://web.telegram.org"

// Handler returns the handler of GET and HEAD on Path and the files under it: the
// embedded files with a content security policy, revalidated on every load (no-cache),
// and the TON Connect manifest. Anything else under Path is a 404; other methods are a
// 405.
func Handler() http.Handler {
	sub, _ := fs.Sub(static, "static") // an embedded directory always exists
	files := http.StripPrefix(strings.TrimSuffix(Path, "/"), http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		switch {
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "the Mini App is read with GET", http.StatusMethodNotAllowed)
		case r.URL.Path == Path+manifestFile:
			writeManifest(w, r)
		default:
			files.ServeHTTP(w, r)
		}
	})
}

// writeManifest answers TON Connect's manifest for the origin the request reached:
// https when the connection was TLS or a TLS-terminating proxy says so
// (X-Forwarded-Proto), which only changes the name a wallet shows.
func writeManifest(w http.ResponseWriter, r *http.Request) {
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	origin := scheme + "://" + r.Host
	b, _ := json.Marshal(map[string]string{ // strings always encode
		"url":     origin + Path,
		"name":    "Cocoon",
		"iconUrl": origin + Path + "icon.png",
	})
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}
