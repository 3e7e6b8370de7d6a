package web

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestAllowedOrigins: a page of an allowed origin gets its preflights answered and
// the answers it may read marked for it, the signature and receipt headers exposed; a
// page of any other origin, or of any origin on a host that allows none, gets nothing
// that lets a browser hand it an answer; credentials in the browser's sense are never
// allowed.
func TestAllowedOrigins(t *testing.T) {
	const app, other = "https://app.example.com", "https://evil.example"
	allowing, _ := attested(t, func(c *Config, _ *recorder) { c.AllowedOrigins = []string{app} })
	anyOrigin, _ := attested(t, func(c *Config, _ *recorder) { c.AllowedOrigins = []string{"*"} })
	closed, _ := attested(t)
	send := func(f *fixture, method, path, origin string, header http.Header, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, f.http.URL+path, strings.NewReader(body))
		req.Header = header.Clone()
		if req.Header == nil {
			req.Header = http.Header{}
		}
		req.Header.Set("Origin", origin)
		resp, err := f.http.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	preflight := http.Header{"Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"authorization,content-type"}}
	chat := http.Header{"Authorization": {"Bearer " + ownerKey}, "Content-Type": {"application/json"}}
	const body = `{"messages":[{"role":"user","content":"x"}],"max_tokens":2}`
	for _, tc := range []struct {
		name           string
		f              *fixture
		method, path   string
		origin         string
		header         http.Header
		status         int
		allowed        string // Access-Control-Allow-Origin
		exposes        bool   // Cocoon-Signature among the exposed headers
		preflightReply bool   // the methods and headers allowed
	}{
		{"preflight of a chat", allowing, http.MethodOptions, "/v1/chat/completions", app, preflight, http.StatusNoContent, app, false, true},
		{"preflight of a pipeline's chat", allowing, http.MethodOptions, "/p/" + strings.Repeat("ab", 32) + "/v1/chat/completions", app, preflight, http.StatusNoContent, app, false, true},
		{"chat", allowing, http.MethodPost, "/v1/chat/completions", app, chat, http.StatusOK, app, true, false},
		{"evidence", allowing, http.MethodGet, "/v1/attestation", app, nil, http.StatusOK, app, true, false},
		{"a refusal is readable too", allowing, http.MethodPost, "/v1/chat/completions", app, http.Header{"Content-Type": {"application/json"}}, http.StatusUnauthorized, app, true, false},
		{"preflight of another origin", allowing, http.MethodOptions, "/v1/chat/completions", other, preflight, http.StatusMethodNotAllowed, "", false, false},
		{"chat of another origin runs, unreadable", allowing, http.MethodPost, "/v1/chat/completions", other, chat, http.StatusOK, "", false, false},
		{"any origin", anyOrigin, http.MethodOptions, "/v1/chat/completions", other, preflight, http.StatusNoContent, other, false, true},
		{"a host that allows none", closed, http.MethodOptions, "/v1/chat/completions", app, preflight, http.StatusMethodNotAllowed, "", false, false},
		{"a host that allows none, chat", closed, http.MethodPost, "/v1/chat/completions", app, chat, http.StatusOK, "", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := send(tc.f, tc.method, tc.path, tc.origin, tc.header, body)
			h := resp.Header
			if resp.StatusCode != tc.status || h.Get("Access-Control-Allow-Origin") != tc.allowed {
				t.Fatalf("%d, Access-Control-Allow-Origin %q; want %d, %q", resp.StatusCode, h.Get("Access-Control-Allow-Origin"), tc.status, tc.allowed)
			}
			if h.Get("Access-Control-Allow-Credentials") != "" {
				t.Error("credentials allowed")
			}
			if tc.allowed != "" && !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
				t.Errorf("Vary %q: an answer marked for one origin must not be cached for another", h.Values("Vary"))
			}
			exposed := h.Get("Access-Control-Expose-Headers")
			if got := strings.Contains(exposed, "Cocoon-Signature") && strings.Contains(exposed, "Cocoon-Receipt"); got != tc.exposes {
				t.Errorf("Access-Control-Expose-Headers %q", exposed)
			}
			methods, headers := h.Get("Access-Control-Allow-Methods"), h.Get("Access-Control-Allow-Headers")
			if got := strings.Contains(methods, "POST") && strings.Contains(headers, "Authorization") &&
				strings.Contains(headers, "Cocoon-Client-Signature") && strings.Contains(headers, "Content-Type"); got != tc.preflightReply {
				t.Errorf("Access-Control-Allow-Methods %q, -Headers %q", methods, headers)
			}
		})
	}
}

func TestCheckOrigins(t *testing.T) {
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"https://app.example.com", true},
		{"http://localhost:5173", true},
		{"https://[::1]:8443", true},
		{"*", true},
		{"https://app.example.com/", false},
		{"https://app.example.com/app", false},
		{"app.example.com", false},
		{"ftp://app.example.com", false},
		{"https://App.example.com", false},
		{"HTTPS://app.example.com", false},
		{"https://user@app.example.com", false},
		{"https://app.example.com?x", false},
		{"https://app.example.com#x", false},
		{"null", false},
		{"", false},
	} {
		if err := checkOrigins([]string{tc.origin}); (err == nil) != tc.ok {
			t.Errorf("%q: %v", tc.origin, err)
		}
	}
}
