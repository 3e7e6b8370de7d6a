package web

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/attest"
)

// attested is a fixture whose server attests with the simulator, and the pool that
// trusts the simulator's root.
func attested(t *testing.T, configure ...func(*Config, *recorder)) (*fixture, *x509.CertPool) {
	t.Helper()
	h, sim := bootSim(t)
	roots := x509.NewCertPool()
	roots.AddCert(sim.Root())
	f := newFixture(t, append([]func(*Config, *recorder){func(c *Config, _ *recorder) { c.Attestation = h }}, configure...)...)
	return f, roots
}

// simAttestation is an attested host on the simulator.
func simAttestation(t *testing.T) *attest.Host {
	h, _ := bootSim(t)
	return h
}

func bootSim(t testing.TB) (*attest.Host, *attest.Sim) {
	t.Helper()
	engine, _ := shared(t)
	sim, err := attest.NewSim(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h, err := attest.Boot(context.Background(), sim, "embedded", "sha256:"+engine.WeightsSHA256())
	if err != nil {
		t.Fatal(err)
	}
	return h, sim
}

// verifyEvidence checks the quote, the event log against RTMR3, and returns the quote.
func verifyEvidence(t *testing.T, ev attest.Evidence, roots *x509.CertPool) *attest.Quote {
	t.Helper()
	if ev.Mode != attest.ModeSim {
		t.Errorf("mode %q, want sim", ev.Mode)
	}
	if _, err := attest.VerifyQuote(ev.Quote, attest.VerifyOptions{}); !errors.Is(err, attest.ErrUntrustedRoot) {
		t.Errorf("sim quote without its root trusted: %v", err)
	}
	q, err := attest.VerifyQuote(ev.Quote, attest.VerifyOptions{TrustedRoots: roots})
	if err != nil {
		t.Fatal(err)
	}
	events, err := attest.ParseEventLog(ev.EventLog)
	if err != nil {
		t.Fatal(err)
	}
	if err := attest.VerifyLog(events, q.RTMRs[3]); err != nil {
		t.Fatal(err)
	}
	return q
}

func TestBootAttestation(t *testing.T) {
	f, roots := attested(t)
	res := f.do("GET", "/v1/attestation", "", nil) // no credential needed
	if res.status != http.StatusOK {
		t.Fatalf("%d %s", res.status, res.body)
	}
	var ev attest.Evidence
	res.json(t, &ev)
	q := verifyEvidence(t, ev, roots)
	events, _ := attest.ParseEventLog(ev.EventLog)
	digest, _ := attest.Replay(events)
	want, err := attest.BootReportData(ev.HostKey, ev.TLSKey, digest)
	if err != nil {
		t.Fatal(err)
	}
	if q.ReportData != want {
		t.Error("REPORTDATA is not BootReportData of the served host key, TLS key and log")
	}
	if ev.PipelineID != "" || ev.Nonce != nil || ev.Manifest != nil {
		t.Errorf("boot evidence carries pipeline fields: %+v", ev)
	}
}

// Fresh boot evidence binds the client's nonce: a client verifies that the host runs
// now, not only that it booted once.
func TestFreshBootAttestation(t *testing.T) {
	h, sim := bootSim(t)
	f := newFixture(t, func(c *Config, _ *recorder) { c.Attestation = h })
	nonce := []byte(strings.Repeat("n", 32))
	res := f.do("GET", "/v1/attestation?nonce="+hex.EncodeToString(nonce), "", nil) // no credential needed
	if res.status != http.StatusOK {
		t.Fatalf("%d %s", res.status, res.body)
	}
	ev, err := attest.ParseEvidence(res.body)
	if err != nil {
		t.Fatal(err)
	}
	r, err := attest.VerifyEvidence(*ev, attest.Policy{}, attest.EvidenceOptions{SimRoot: sim.Root(), Nonce: nonce})
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || !r.Fresh {
		t.Fatalf("fresh boot evidence: ok %t, fresh %t:\n%s", r.OK(), r.Fresh, r)
	}
	// The boot quote itself is not fresh, and does not pass for fresh evidence.
	boot := f.do("GET", "/v1/attestation", "", nil)
	bootEv, err := attest.ParseEvidence(boot.body)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := attest.VerifyEvidence(*bootEv, attest.Policy{}, attest.EvidenceOptions{SimRoot: sim.Root()}); !r.OK() || r.Fresh {
		t.Errorf("boot evidence: ok %t, fresh %t:\n%s", r.OK(), r.Fresh, r)
	}
	bootEv.Nonce = nonce
	if r, _ := attest.VerifyEvidence(*bootEv, attest.Policy{}, attest.EvidenceOptions{SimRoot: sim.Root(), Nonce: nonce}); r.OK() {
		t.Errorf("the boot quote with the client's nonce pasted in verifies:\n%s", r)
	}
	for name, query := range map[string]string{
		"empty": "", "not hex": "zz" + strings.Repeat("ab", 16), "short": strings.Repeat("ab", 15), "long": strings.Repeat("ab", 65),
	} {
		if res := f.do("GET", "/v1/attestation?nonce="+query, "", nil); res.status != http.StatusBadRequest || res.apiErr(t).Code != "invalid_request" {
			t.Errorf("%s nonce: %d %s", name, res.status, res.body)
		}
	}
}

// fromAddress returns a client whose connections to f come from the loopback address
// ip, a client of its own to the host.
func fromAddress(t *testing.T, f *fixture, ip string) func(path, key string) response {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	t.Cleanup(c.CloseIdleConnections)
	return func(path, key string) response {
		t.Helper()
		req, err := http.NewRequest("GET", f.http.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		setAuth(req, key)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return response{resp.StatusCode, resp.Header, b}
	}
}

// TestFreshBootAttestationRateLimit performs the attack of an unauthenticated client
// spending the host's quotes: each client address gets its share of the boot quotes,
// all of them together the host's, and none of that is taken from pipeline evidence.
func TestFreshBootAttestationRateLimit(t *testing.T) {
	f, _ := attested(t, func(c *Config, _ *recorder) { c.MaxQuotesPerSecond = 2 })
	id := pushExample(t, f)
	boot := "/v1/attestation?nonce=" + strings.Repeat("cd", 16)
	first, second, third := fromAddress(t, f, "127.0.0.1"), fromAddress(t, f, "127.0.0.2"), fromAddress(t, f, "127.0.0.3")
	if res := first(boot, ""); res.status != http.StatusOK {
		t.Fatalf("first fresh boot quote: %d %s", res.status, res.body)
	}
	res := first(boot, "")
	if e := res.apiErr(t); res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") != "1" || e.Code != "quote_rate_limited" ||
		!strings.Contains(e.Message, "1 quotes per second for each client address") {
		t.Errorf("the same address at once: %d %s %s", res.status, res.header, res.body)
	}
	if res := second(boot, ""); res.status != http.StatusOK {
		t.Errorf("another address after the first took its share: %d %s", res.status, res.body)
	}
	if res := third(boot, ""); res.status != http.StatusTooManyRequests || !strings.Contains(res.apiErr(t).Message, "2 quotes per second on this host") {
		t.Errorf("a third address over the host's rate: %d %s", res.status, res.body)
	}
	// The boot budget is spent; pipeline evidence's is whole, and the boot quote free.
	for _, key := range []string{ownerKey, otherKey} {
		if res := third("/v1/pipelines/"+id+"/attestation?nonce="+strings.Repeat("ef", 16), key); res.status != http.StatusOK {
			t.Errorf("pipeline evidence after the boot quotes were spent: %d %s", res.status, res.body)
		}
	}
	if res := third("/v1/attestation", ""); res.status != http.StatusOK {
		t.Errorf("the boot quote after the fresh ones were spent: %d %s", res.status, res.body)
	}
}

func TestNoAttestation(t *testing.T) {
	f := newFixture(t)
	if res := f.do("GET", "/v1/attestation", "", nil); res.status != http.StatusNotFound || res.apiErr(t).Code != "attestation_unavailable" {
		t.Errorf("%d %s", res.status, res.body)
	}
	res := f.do("POST", "/v1/chat/completions", ownerKey, `{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4}`)
	if res.status != http.StatusOK || res.header.Get(attest.ResponseSignatureHeader) != "" {
		t.Errorf("%d, signature %q without attestation", res.status, res.header.Get(attest.ResponseSignatureHeader))
	}
}

func TestPipelineAttestation(t *testing.T) {
	f, roots := attested(t)
	id := pushExample(t, f)
	nonce := make([]byte, 32)
	for i := range nonce {
		nonce[i] = byte(i * 7)
	}
	res := f.do("GET", "/v1/pipelines/"+id+"/attestation?nonce="+hex.EncodeToString(nonce), ownerKey, nil)
	if res.status != http.StatusOK {
		t.Fatalf("%d %s", res.status, res.body)
	}
	var ev attest.Evidence
	res.json(t, &ev)
	q := verifyEvidence(t, ev, roots)
	manifestHash := sha256.Sum256(ev.Manifest)
	if hex.EncodeToString(manifestHash[:]) != id || ev.PipelineID != id {
		t.Errorf("manifest hashes to %x, pipeline_id %q, want %s", manifestHash, ev.PipelineID, id)
	}
	want, err := attest.PipelineReportData(nonce, manifestHash, ev.HostKey)
	if err != nil {
		t.Fatal(err)
	}
	if q.ReportData != want {
		t.Error("REPORTDATA does not bind the nonce, the manifest and the host key")
	}
	boot := f.do("GET", "/v1/attestation", "", nil)
	var bootEv attest.Evidence
	boot.json(t, &bootEv)
	if string(bootEv.HostKey) != string(ev.HostKey) {
		t.Error("pipeline evidence names another host key than boot evidence")
	}
}

func TestPipelineAttestationRefusals(t *testing.T) {
	f, _ := attested(t)
	id := pushExample(t, f)
	good := strings.Repeat("ab", 16)
	for _, tc := range []struct {
		name, path, key string
		status          int
		code            string
	}{
		{"no nonce", "/v1/pipelines/" + id + "/attestation", ownerKey, 400, "invalid_request"},
		{"not hex", "/v1/pipelines/" + id + "/attestation?nonce=zz" + good, ownerKey, 400, "invalid_request"},
		{"short nonce", "/v1/pipelines/" + id + "/attestation?nonce=" + strings.Repeat("ab", 15), ownerKey, 400, "invalid_request"},
		{"long nonce", "/v1/pipelines/" + id + "/attestation?nonce=" + strings.Repeat("ab", 65), ownerKey, 400, "invalid_request"},
		{"unknown pipeline", "/v1/pipelines/" + strings.Repeat("0", 64) + "/attestation?nonce=" + good, ownerKey, 404, "pipeline_not_found"},
		{"wrong credential", "/v1/pipelines/" + id + "/attestation?nonce=" + good, "sk-wrong", 401, "invalid_credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.do("GET", tc.path, tc.key, nil)
			if res.status != tc.status {
				t.Fatalf("%d %s, want %d", res.status, res.body, tc.status)
			}
			if e := res.apiErr(t); tc.code != "" && e.Code != tc.code {
				t.Errorf("code %q, want %q", e.Code, tc.code)
			}
		})
	}
}

// TestPipelineAttestationRateLimit performs the attack of one client spending the
// host's quotes: it gets its share, and then a 429 while another client still gets
// evidence.
func TestPipelineAttestationRateLimit(t *testing.T) {
	f, _ := attested(t, func(c *Config, _ *recorder) { c.MaxQuotesPerSecond = 2 })
	id := pushExample(t, f)
	path := "/v1/pipelines/" + id + "/attestation?nonce=" + strings.Repeat("cd", 16)
	if res := f.do("GET", path, ownerKey, nil); res.status != http.StatusOK {
		t.Fatalf("first quote: %d %s", res.status, res.body)
	}
	res := f.do("GET", path, ownerKey, nil)
	if e := res.apiErr(t); res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") != "1" || e.Code != "quote_rate_limited" ||
		!strings.Contains(e.Message, "1 quotes per second for each credential") {
		t.Errorf("the same client at once: %d %s %s", res.status, res.header, res.body)
	}
	if res := f.do("GET", path, otherKey, nil); res.status != http.StatusOK {
		t.Errorf("another client after the first took its share: %d %s", res.status, res.body)
	}
	if res := f.do("GET", path, telegramAuth(t), nil); res.status != http.StatusTooManyRequests || !strings.Contains(res.apiErr(t).Message, "2 quotes per second on this host") {
		t.Errorf("a third client over the host's rate: %d %s", res.status, res.body)
	}
}

func TestQuoteLimiter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newQuoteLimiter(2, "credential") // 2 per second host-wide, bursts of 2; 1 per second per credential
	for i, tc := range []struct {
		at   time.Duration
		who  string
		wait int // Retry-After of a refusal; 0 for a quote
	}{
		{0, "a", 0}, {0, "a", 1}, // a's share
		{0, "b", 0}, // the host's burst
		{0, "c", 1}, // the host's rate
		{500 * time.Millisecond, "c", 0},
		{600 * time.Millisecond, "a", 1},
		{time.Second, "a", 0}, // a's share refilled
		{10 * time.Second, "a", 0}, {10 * time.Second, "a", 1},
	} {
		err := l.take(tc.who, t0.Add(tc.at))
		var e *apiError
		switch {
		case tc.wait == 0 && err != nil:
			t.Errorf("take %d (%s at %v): %v, want a quote", i, tc.who, tc.at, err)
		case tc.wait != 0 && (!errors.As(err, &e) || e.Status != 429 || e.RetryAfter != tc.wait):
			t.Errorf("take %d (%s at %v): %v, want a 429 with Retry-After %d", i, tc.who, tc.at, err, tc.wait)
		}
	}
	// However many clients ask, only those whose share has not refilled are kept.
	for i := range 10_000 {
		l.take(fmt.Sprint("client-", i), t0.Add(20*time.Second+time.Duration(i)*time.Millisecond))
	}
	if n := len(l.credentials); n > 2*2+1 {
		t.Errorf("%d credentials kept after 10,000 asked, want at most twice the rate + 1", n)
	}
	// A credential's burst is half the host's.
	l = newQuoteLimiter(10, "credential")
	for i := range 6 {
		if err := l.take("a", t0); (err == nil) != (i < 5) {
			t.Errorf("take %d of a burst at rate 10: %v", i, err)
		}
	}
}

// pushExample uploads the example pipeline (redactor, and a guard that changes the
// backend's text) and returns its id.
func pushExample(t *testing.T, f *fixture) string {
	pii := plugin(t, "pii-redactor/go/pii-redactor.wasm")
	guard := plugin(t, "output-guard/c/output-guard.wasm")
	return f.push(`{"abi_version":1,"model":"stories260K",
		"pre":[{"module":"`+hashOf(pii)+`"}],
		"post":[{"module":"`+hashOf(guard)+`","config":{"words":["was","the","a"],"replacement":"***"}}]}`, pii, guard)
}
