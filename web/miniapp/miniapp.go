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
// (TestVendoredTonConnect checks it), so that `make run` needs Go alone. It is served
// with the three images it draws from raw.githubusercontent.com pointed at the app's
// own icons/ (tonConnectImages), so that opening the page sends a user's address to no
// one but the host.
package miniapp

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

//go:embed static
var static embed.FS

// Path is where the app is served: Path is its page, Path + name its files.
const Path = "/app/"

// manifestFile is TON Connect's app manifest, which wallets fetch to show the user
// which app asks them to connect. It names the app by the origin it was fetched from,
// so it is made per request rather than embedded.
const manifestFile = "tonconnect-manifest.json"

// contentSecurityPolicy confines the app to its own origin: its own scripts (Telegram's
// protocol included: static/telegram.js, not telegram.org's script) and WebAssembly
// (the verifier); TON Connect's inline styles; images of its own (the
// wallets' icons included: wallets.json names icons/) and data: URLs; requests to its
// own origin and to the HTTP bridges of the wallets wallets.json lists (walletBridges),
// which TON Connect reaches only when the user connects a wallet through one; and
// framing by Telegram's web clients only. Everything the host sends is set as text,
// never as HTML, so an injected element is not the app's way in. The one inline script
// allowed is the empty one (its sha256 below, with 'unsafe-hashes'): TON Connect's UI
// sets an empty ontouchstart attribute on the body.
var contentSecurityPolicy = "default-src 'none'; " +
	"script-src 'self' 'wasm-unsafe-eval' 'unsafe-hashes' 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='; " +
	"style-src 'self' 'unsafe-inline'; connect-src " + strings.Join(append([]string{"'self'"}, walletBridges()...), " ") + "; img-src 'self' data:; " +
	"form-action 'none'; base-uri 'none'; frame-ancestors 'self' https://web.telegram.org"

// walletBridges returns the origins of the HTTP bridges of the wallets static/wallets.json
// lists, sorted: TON Connect talks to a wallet on another device through its bridge
// (server-sent events and POSTs, end-to-end encrypted between the app and the wallet), so
// a user who connects such a wallet reveals their address to its bridge, and to no one
// else. It panics on a list bridgeOrigins refuses: it is embedded, and TestHandler reads it.
func walletBridges() []string {
	b, _ := static.ReadFile("static/wallets.json")
	origins, err := bridgeOrigins(b)
	if err != nil {
		panic("miniapp: static/wallets.json: " + err.Error())
	}
	return origins
}

// bridgeHost is what a bridge's host may be in the content security policy: a DNS name
// and an optional port. Anything else would not be one source: a wildcard ("*",
// "*.example") opens connect-src to every host, and ';', ',' or a quote would end the
// directive or add keywords, so that the list could rewrite the policy's other
// directives (a second img-src is ignored, an injected first one is not).
var bridgeHost = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:[0-9]{1,5})?$`)

// bridgeOrigins returns the https origins of a wallets.json list's "sse" bridges,
// sorted and without repeats; a bridge of another scheme is left out (the policy then
// blocks it). A list that is not JSON, or a bridge whose host is not a DNS name with an
// optional port (bridgeHost), is an error naming it.
func bridgeOrigins(list []byte) ([]string, error) {
	var wallets []struct {
		Bridge []struct{ Type, URL string }
	}
	if err := json.Unmarshal(list, &wallets); err != nil {
		return nil, err
	}
	var origins []string
	for _, w := range wallets {
		for _, br := range w.Bridge {
			u, err := url.Parse(br.URL)
			if br.Type != "sse" || err != nil || u.Scheme != "https" {
				continue
			}
			if !bridgeHost.MatchString(u.Host) {
				return nil, fmt.Errorf("the bridge %q has a host that is not a DNS name with an optional port", br.URL)
			}
			origins = append(origins, "https://"+u.Host)
		}
	}
	slices.Sort(origins)
	return slices.Compact(origins), nil
}

// tonConnectFile is the name of TON Connect's UI under static/ and Path.
const tonConnectFile = "tonconnect-ui.min.js"

// tonConnectImages are the images @tonconnect/ui 2.4.4 draws from GitHub, each with the
// app's own copy that the served build names instead: the TON logo in the middle of its
// QR code, Telegram's badge beside Telegram's wallet, WalletConnect's logo.
var tonConnectImages = [][2]string{
	{"https://raw.githubusercontent.com/ton-connect/sdk/main/assets/ton-icon-48.png", Path + "icons/ton.svg"},
	{"https://raw.githubusercontent.com/ton-connect/sdk/main/assets/tg.png", Path + "icons/telegram.svg"},
	{"https://raw.githubusercontent.com/ton-connect/sdk/main/assets/walletconnect-icon-288.png", Path + "icons/walletconnect.svg"},
}

// servedTonConnect returns the vendored static/tonconnect-ui.min.js with
// tonConnectImages replaced, made once, when the app's first page asks for it (a copy
// of its 420 KB, which a process that never serves the app does not make).
var servedTonConnect = sync.OnceValue(func() []byte {
	b, _ := static.ReadFile("static/" + tonConnectFile)
	for _, img := range tonConnectImages {
		b = bytes.ReplaceAll(b, []byte(img[0]), []byte(img[1]))
	}
	return b
})

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
		case r.URL.Path == Path+tonConnectFile:
			h.Set("Content-Type", "text/javascript; charset=utf-8")
			http.ServeContent(w, r, tonConnectFile, time.Time{}, bytes.NewReader(servedTonConnect()))
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
