package web

import (
	"net/http"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/attest"
)

// TestPipelineEvidenceForReviewers performs what a reviewer who is not a client does:
// it asks for a pipeline's evidence with no credential, and gets evidence that
// verifies. Anonymous requests, however many, share one credential's share of the
// quote rate: the next one is refused while a client still gets its quote, so that
// reviewers cannot spend the quotes clients need. A wrong credential is still a 401,
// never taken for none.
func TestPipelineEvidenceForReviewers(t *testing.T) {
	f, roots := attested(t, func(c *Config, _ *recorder) { c.MaxQuotesPerSecond = 2 })
	id := pushExample(t, f)
	path := "/v1/pipelines/" + id + "/attestation?nonce=" + strings.Repeat("5a", 16)

	res := f.do("GET", path, "", nil)
	if res.status != http.StatusOK {
		t.Fatalf("a reviewer without a credential: %d %s", res.status, res.body)
	}
	var ev attest.Evidence
	res.json(t, &ev)
	verifyEvidence(t, ev, roots)
	if ev.PipelineID != id || ev.Manifest == nil {
		t.Errorf("the evidence is for %q, with manifest %s", ev.PipelineID, ev.Manifest)
	}

	// Another reviewer at once: the anonymous share (1 per second here) is spent.
	res = f.do("GET", path, "", nil)
	if e := res.apiErr(t); res.status != http.StatusTooManyRequests || e.Code != "quote_rate_limited" || res.header.Get("Retry-After") == "" {
		t.Errorf("a second anonymous request at once: %d %s %s", res.status, res.header, res.body)
	}
	if res := f.do("GET", path, ownerKey, nil); res.status != http.StatusOK {
		t.Errorf("a client after the reviewers spent their share: %d %s", res.status, res.body)
	}
	res = f.do("GET", path, "sk-wrong", nil)
	if e := res.apiErr(t); res.status != http.StatusUnauthorized || e.Code != "invalid_credentials" {
		t.Errorf("a wrong credential: %d %s", res.status, res.body)
	}
}

// TestServesReviewerPage checks that the host serves the reviewer's page at / and its
// assets under /page/, confined by a content security policy, the browser client
// library under /sdk/, and nothing else there.
func TestServesReviewerPage(t *testing.T) {
	f, _ := attested(t)
	for _, tc := range []struct {
		method, path string
		status       int
		contentType  string
		body         string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", "<title>Cocoon host: verify what runs</title>"},
		{"HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/page/page.js", 200, "text/javascript; charset=utf-8", "cocoonVerify"},
		{"GET", "/page/config.json", 200, "application/json", `{"served_by":"host"}`},
		{"GET", "/page/missing.js", 404, "text/plain; charset=utf-8", "no such file"},
		{"POST", "/", 405, "application/json", "method_not_allowed"},
		{"GET", "/sdk/cocoon.js", 200, "text/javascript; charset=utf-8", "cocoonCheckAnswer"},
		{"GET", "/sdk/page.js", 404, "text/plain; charset=utf-8", "no such file of the client library"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			res := f.do(tc.method, tc.path, "", nil)
			if res.status != tc.status || res.header.Get("Content-Type") != tc.contentType || !strings.Contains(string(res.body), tc.body) {
				t.Fatalf("%d %s %.200s, want %d %s with %q", res.status, res.header.Get("Content-Type"), res.body, tc.status, tc.contentType, tc.body)
			}
			if tc.method == "GET" && tc.status != 405 && !strings.HasPrefix(tc.path, "/sdk/") && !strings.Contains(res.header.Get("Content-Security-Policy"), "default-src 'none'") {
				t.Errorf("no content security policy: %v", res.header)
			}
		})
	}
}
