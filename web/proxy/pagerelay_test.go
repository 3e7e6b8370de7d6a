package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/cocoonhost/cocoon/web/client"
)

// startPageRelay serves a PageRelay to hostURL with apiKey on a loopback port, with a
// stand-in page (GET / only, as web/page serves it), and returns its URL and port.
func startPageRelay(t *testing.T, hostURL, apiKey string) (string, string) {
	t.Helper()
	c, err := client.New(hostURL, client.WithAPIKey(apiKey))
	if err != nil {
		t.Fatal(err)
	}
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method != http.MethodGet:
			http.Error(w, "", http.StatusMethodNotAllowed)
		case r.URL.Path != "/":
			http.NotFound(w, r)
		default:
			io.WriteString(w, "<title>the page</title>")
		}
	})
	ts := httptest.NewUnstartedServer(nil)
	ts.Config.Handler = NewPageRelay(c, page, ts.Listener.Addr())
	ts.Start()
	t.Cleanup(ts.Close)
	_, port, _ := strings.Cut(strings.TrimPrefix(ts.URL, "http://"), ":")
	return ts.URL, port
}

// TestPageRelay checks what the reviewer's page relay relays to the host and what it
// refuses: only GETs of the evidence routes reach the host, with the page's credential
// or else the relay's; the host's answer, 429 and Retry-After included, reaches the
// page as it is; and a request whose Host is not a loopback name (a web site that
// rebinds its own name to the relay's address, to read what the relay fetches with the
// reviewer's key) is refused before anything is relayed. To an http host off this
// machine (remote: http://0.0.0.0:port, which dials the same test server but is not a
// loopback name, so it stands for a host behind a recording relay) no credential goes
// in the clear: the page's is refused with a 400 naming plaintext and nothing is sent,
// and the relay's is left off. Before, the page's went to such a host as it came.
func TestPageRelay(t *testing.T) {
	var (
		mu      sync.Mutex
		relayed []string
	)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		relayed = append(relayed, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		if r.URL.Query().Get("nonce") == "busy" {
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusTooManyRequests)
		}
		io.WriteString(w, `{"from":"host"}`)
	}))
	t.Cleanup(upstream.Close)
	relay, port := startPageRelay(t, upstream.URL, "relay-key")
	remoteRelay, _ := startPageRelay(t, strings.Replace(upstream.URL, "127.0.0.1", "0.0.0.0", 1), "relay-key")
	id := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, method, path, host, auth string
		remote                         bool // relayed to the host as a remote http host
		status                         int
		relayed                        string // what the host saw, "" for nothing
		header, body                   string // a header that must be set, and body text
	}{
		{name: "boot evidence", method: "GET", path: "/v1/attestation", status: 200,
			relayed: "GET /v1/attestation? Bearer relay-key", body: `{"from":"host"}`},
		{name: "the page's own credential", method: "GET", path: "/v1/pipelines", auth: "Bearer page-key", status: 200,
			relayed: "GET /v1/pipelines? Bearer page-key"},
		{name: "pipeline evidence", method: "GET", path: "/v1/pipelines/" + id + "/attestation?nonce=00ff", status: 200,
			relayed: "GET /v1/pipelines/" + id + "/attestation?nonce=00ff Bearer relay-key"},
		{name: "rate-limited", method: "GET", path: "/v1/pipelines/" + id + "/attestation?nonce=busy", status: 429,
			relayed: "GET /v1/pipelines/" + id + "/attestation?nonce=busy Bearer relay-key", header: "Retry-After"},
		{name: "the page", method: "GET", path: "/", status: 200, body: "<title>the page</title>"},
		{name: "the page by localhost", method: "GET", path: "/", host: "localhost:" + port, status: 200},
		{name: "a chat is not relayed", method: "POST", path: "/v1/chat/completions", status: 405},
		{name: "logs are not relayed", method: "GET", path: "/v1/pipelines/" + id + "/logs", status: 404},
		{name: "an upload is not relayed", method: "POST", path: "/v1/pipelines", status: 405, body: `"code":"method_not_allowed"`},
		{name: "rebound name, page", method: "GET", path: "/", host: "evil.example:" + port, status: 421, body: "loopback names only"},
		{name: "rebound name, pipelines", method: "GET", path: "/v1/pipelines", host: "evil.example:" + port, status: 421, body: `"code":"not_loopback"`},
		{name: "loopback, another port", method: "GET", path: "/v1/pipelines", host: "127.0.0.1:1", status: 421},
		{name: "the page's credential to a remote http host", method: "GET", path: "/v1/pipelines", auth: "Bearer page-key", remote: true,
			status: 400, body: "refusing to send the Authorization header in plaintext"},
		{name: "Telegram init data to a remote http host", method: "GET", path: "/v1/pipelines", auth: "tma user=1&hash=00", remote: true,
			status: 400, body: `"code":"invalid_request"`},
		{name: "no credential to a remote http host: nor the relay's", method: "GET", path: "/v1/pipelines", remote: true, status: 200,
			relayed: "GET /v1/pipelines? "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			relayed = nil
			mu.Unlock()
			base := relay
			if tc.remote {
				base = remoteRelay
			}
			req, _ := http.NewRequest(tc.method, base+tc.path, nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.body) {
				t.Fatalf("%d %.200s, want %d with %q", resp.StatusCode, body, tc.status, tc.body)
			}
			mu.Lock()
			got := strings.Join(relayed, "; ")
			mu.Unlock()
			if got != tc.relayed {
				t.Errorf("the host saw %q, want %q", got, tc.relayed)
			}
			if tc.header != "" && resp.Header.Get(tc.header) == "" {
				t.Errorf("no %s in %v", tc.header, resp.Header)
			}
		})
	}

	unreachable, _ := startPageRelay(t, "http://127.0.0.1:1", "")
	resp, err := http.Get(unreachable + "/v1/attestation")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), `"code":"host_unreachable"`) || !strings.Contains(string(body), "cannot reach the host") {
		t.Errorf("an unreachable host: %d %s", resp.StatusCode, body)
	}
}
