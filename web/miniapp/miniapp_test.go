package miniapp

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The committed build of @tonconnect/ui is the package's own, byte for byte, at the
// version vendor/package-lock.json pins (installed by `make test`).
func TestVendoredTonConnect(t *testing.T) {
	installed, err := os.ReadFile(filepath.Join("vendor", "node_modules", "@tonconnect", "ui", "dist", "tonconnect-ui.min.js"))
	if err != nil {
		t.Fatalf("@tonconnect/ui is not installed (make test installs it: npm ci --prefix web/miniapp/vendor): %v", err)
	}
	committed, err := os.ReadFile(filepath.Join("static", "tonconnect-ui.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(installed, committed) {
		t.Fatal("static/tonconnect-ui.min.js is not the pinned package's dist/tonconnect-ui.min.js: copy it again (make miniapp-vendor)")
	}
}

func TestHandler(t *testing.T) {
	h := Handler()
	for _, tc := range []struct {
		method, path string
		status       int
		contentType  string
		body         string
	}{
		{"GET", "/app/", 200, "text/html; charset=utf-8", `<script type="module" src="app.js">`},
		{"GET", "/app/app.js", 200, "text/javascript; charset=utf-8", "import { connect, newClientKey, clientKeyFromSeed } from '/sdk/cocoon.js'"},
		{"GET", "/app/wallets.json", 200, "application/json", `"app_name": "tonkeeper"`},
		{"GET", "/app/tonconnect-manifest.json", 200, "application/json", `"url":"http://host.example/app/"`},
		{"HEAD", "/app/app.css", 200, "text/css; charset=utf-8", ""},
		{"GET", "/app/icon.png", 200, "image/png", ""},
		{"GET", "/app/telegram.js", 200, "text/javascript; charset=utf-8", "export const initData"},
		{"GET", "/app/icons/ton.svg", 200, "image/svg+xml", "<svg"},
		{"GET", "/app/tonconnect-ui.min.js", 200, "text/javascript; charset=utf-8", "/app/icons/ton.svg"},
		{"GET", "/app/missing.js", 404, "", ""},
		{"POST", "/app/", 405, "", ""},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(tc.method, "http://host.example"+tc.path, nil))
			if w.Code != tc.status {
				t.Fatalf("%s %s: %d %s", tc.method, tc.path, w.Code, w.Body)
			}
			if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
				t.Errorf("no content security policy: %q", csp)
			}
			if tc.contentType != "" && w.Header().Get("Content-Type") != tc.contentType {
				t.Errorf("Content-Type %q, want %q", w.Header().Get("Content-Type"), tc.contentType)
			}
			if !strings.Contains(w.Body.String(), tc.body) {
				t.Errorf("the body lacks %q", tc.body)
			}
		})
	}
}

// The manifest names the origin the wallet fetched it from: https behind a TLS proxy.
func TestManifestScheme(t *testing.T) {
	r := httptest.NewRequest("GET", "http://bot.example/app/tonconnect-manifest.json", nil)
	r.Header.Set("X-Forwarded-Proto", "https")
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, r)
	var m map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil || m["url"] != "https://bot.example/app/" || m["iconUrl"] != "https://bot.example/app/icon.png" {
		t.Fatalf("manifest %s (%v)", w.Body, err)
	}
}

// The page names no origin but its own: the served TON Connect build draws its images
// from icons/ (each image it drew from GitHub is still in the vendored build, so a new
// version that moves one fails here rather than sends users to GitHub), the wallets
// list's icons are the app's, and the content security policy allows images from the
// page's origin and data: URLs only, scripts from its origin only, and connections to
// its origin and the wallets' bridges only.
func TestOwnOriginOnly(t *testing.T) {
	vendored, err := static.ReadFile("static/" + tonConnectFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range tonConnectImages {
		if !bytes.Contains(vendored, []byte(img[0])) {
			t.Errorf("the vendored build no longer draws %s: check what it draws now", img[0])
		}
		if bytes.Contains(servedTonConnect(), []byte(img[0])) {
			t.Errorf("the served build still draws %s", img[0])
		}
		if _, err := static.ReadFile("static/" + strings.TrimPrefix(img[1], Path)); err != nil {
			t.Errorf("%s: %v", img[1], err)
		}
	}
	var wallets []struct{ Image string }
	b, _ := static.ReadFile("static/wallets.json")
	if err := json.Unmarshal(b, &wallets); err != nil || len(wallets) == 0 {
		t.Fatalf("wallets.json: %v", err)
	}
	for _, w := range wallets {
		if _, err := static.ReadFile("static/" + strings.TrimPrefix(w.Image, Path)); !strings.HasPrefix(w.Image, Path) || err != nil {
			t.Errorf("a wallet's icon %q is not one of the app's (%v)", w.Image, err)
		}
	}
	html, _ := static.ReadFile("static/index.html")
	if strings.Contains(string(html), "://") {
		t.Errorf("index.html names another origin:\n%s", html)
	}
	directives := map[string]string{}
	for _, d := range strings.Split(contentSecurityPolicy, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		directives[name] = value
	}
	for name, want := range map[string]string{
		"default-src": "'none'",
		"img-src":     "'self' data:",
		"script-src":  "'self' 'wasm-unsafe-eval' 'unsafe-hashes' 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",
		"connect-src": "'self' https://bridge.tonapi.io https://tonconnectbridge.mytonwallet.org https://walletbot.me",
	} {
		if directives[name] != want {
			t.Errorf("%s is %q, want %q", name, directives[name], want)
		}
	}
}

// TestBridgeOrigins: a wallets.json entry cannot widen the content security policy.
// Its bridges' origins are joined into connect-src as they are, so, before, a bridge
// host of "*" allowed every https origin, and one with a ';' ended connect-src and
// started a directive of its own (an img-src, which then wins over the policy's own,
// or a frame-ancestors): a list the policy is built from could rewrite the policy.
func TestBridgeOrigins(t *testing.T) {
	list := func(urls ...string) []byte {
		var bridges []map[string]string
		for _, u := range urls {
			bridges = append(bridges, map[string]string{"type": "sse", "url": u})
		}
		b, _ := json.Marshal([]map[string]any{{"app_name": "w", "bridge": bridges}})
		return b
	}
	for _, tc := range []struct {
		name string
		list []byte
		want string // the origins joined by spaces; "" with err
		err  string
	}{
		{"the embedded list", func() []byte { b, _ := static.ReadFile("static/wallets.json"); return b }(),
			"https://bridge.tonapi.io https://tonconnectbridge.mytonwallet.org https://walletbot.me", ""},
		{"sorted, repeats and non-https bridges dropped, ports kept", list("https://b.example/x", "http://plain.example/x", "https://a.example:8443/x", "https://b.example/y"),
			"https://a.example:8443 https://b.example", ""},
		{"every host", list("https://*/bridge"), "", "not a DNS name"},
		{"every subdomain", list("https://*.example/bridge"), "", "not a DNS name"},
		{"a directive of its own", list("https://a.example;img-src/bridge", "https://evil.example/x"), "", "not a DNS name"},
		{"a second source in one", list("https://a.example,b.example/bridge"), "", "not a DNS name"},
		{"a keyword", list("https://'unsafe-inline'/bridge"), "", "not a DNS name"},
		{"not JSON", []byte("{"), "", "unexpected end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := bridgeOrigins(tc.list)
			switch {
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("bridgeOrigins = %q, %v; want an error containing %q", got, err, tc.err)
			case tc.err == "" && err != nil:
				t.Fatal(err)
			case strings.Join(got, " ") != tc.want:
				t.Errorf("bridgeOrigins = %q, want %q", got, tc.want)
			}
		})
	}
}
