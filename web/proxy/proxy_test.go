package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/web/client"
	"github.com/cocoonhost/cocoon/web/proxy/proxytest"
)

// syncBuffer is a log written by the proxy and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fastHealth makes the health loop and its backoff quick, for tests.
var fastHealth = WithHealth(100*time.Millisecond, time.Hour, 50*time.Millisecond, 200*time.Millisecond)

// startProxy starts a proxy in front of hosts (trusting their roots) and serves it
// until the test ends.
func startProxy(t testing.TB, hosts []*proxytest.Host, opts ...Option) (string, *Proxy, *syncBuffer) {
	t.Helper()
	log := &syncBuffer{}
	var urls []string
	var roots []*x509.Certificate
	for _, h := range hosts {
		urls = append(urls, h.URL)
		roots = append(roots, h.RootCert(t))
	}
	p, err := New(append([]Option{WithHosts(urls...), WithPipeline(hosts[0].ID), WithAPIKey(proxytest.APIKey),
		WithSimRoots(roots...), WithLog(log)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background(), io.Discard); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(p)
	t.Cleanup(func() { ts.Close(); p.Close() })
	return ts.URL, p, log
}

// plaintextOverHTTP sends requests in plaintext to the http hosts of these tests, whose
// relay then reads and alters them: for the tests of the signature layer alone.
var plaintextOverHTTP Option = func(c *config) { c.plaintext, c.plaintextHTTP = true, true }

// hostKey is the key the proxy verified for the host at url.
func hostKey(p *Proxy, url string) ed25519.PublicKey {
	for _, h := range p.Hosts() {
		if h.URL == url {
			return h.HostKey
		}
	}
	return nil
}

type answered struct {
	status int
	header http.Header
	body   string
}

func postChat(t testing.TB, url, body string) answered {
	t.Helper()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answered{resp.StatusCode, resp.Header, string(b)}
}

// verifyAsApp checks an answer the app got, as an app that verifies for itself would:
// the proxy releases the host's signed bytes unchanged.
func verifyAsApp(key ed25519.PublicKey, request, pipeline string, a answered) error {
	v := attest.ResponseVerifier{HostKey: key, Request: []byte(request), PipelineID: pipeline}
	if a.header.Get("Content-Type") != "text/event-stream" {
		return v.VerifyBody(a.status, a.header.Get("Retry-After"), []byte(a.body), a.header.Get(attest.ResponseSignatureHeader))
	}
	s := v.ReadStream(strings.NewReader(a.body), 1<<20)
	for {
		if _, err := s.Next(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

const (
	chatBody   = `{"messages":[{"role":"user","content":"hi"}]}`
	streamBody = `{"messages":[{"role":"user","content":"hi"}],"stream":true}`
	usageBody  = `{"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`
	failBody   = `{"messages":[{"role":"user","content":"fail"}],"stream":true}`
	holdBody   = `{"messages":[{"role":"user","content":"hold"}],"stream":true}`
	badBody    = `{"messages":"hi"}`
)

var modes = []Release{ReleaseVerified, ReleaseLive}

// TestRelaysSignedAnswers: what the host signed reaches the app byte for byte, errors
// included, in both modes, and verifies there.
func TestRelaysSignedAnswers(t *testing.T) {
	h := proxytest.NewHost(t, nil)
	for _, mode := range modes {
		url, p, _ := startProxy(t, []*proxytest.Host{h}, WithRelease(mode))
		for _, tt := range []struct {
			name, body string
			status     int
			want       []string // in the answer, in order
		}{
			{"completion", chatBody, 200, []string{`"content":"Hello, world"`, `"finish_reason":"stop"`}},
			{"stream", streamBody, 200, []string{`"content":"Hello"`, `"content":"world"`, `"cocoon_signature":"ed25519=`, "data: [DONE]"}},
			{"stream with usage", usageBody, 200, []string{`"content":"world"`, `"usage":{"prompt_tokens":3`, `"cocoon_signature":"ed25519=`, "data: [DONE]"}},
			{"the host's error", badBody, 400, []string{"messages: must be", `"code":"invalid_request"`}},
			{"the host's error event", failBody, 200, []string{`"content":", "`, `"code":"upstream_error"`, `"cocoon_signature":"ed25519=`}},
		} {
			t.Run(string(mode)+"/"+tt.name, func(t *testing.T) {
				got := postChat(t, url, tt.body)
				if got.status != tt.status {
					t.Fatalf("status %d, want %d: %s", got.status, tt.status, got.body)
				}
				rest := got.body
				for _, w := range tt.want {
					i := strings.Index(rest, w)
					if i < 0 {
						t.Fatalf("answer lacks %q (in order):\n%s", w, got.body)
					}
					rest = rest[i+len(w):]
				}
				if err := verifyAsApp(hostKey(p, h.URL), tt.body, h.ID, got); err != nil {
					t.Fatalf("the app's copy does not verify: %v\n%s", err, got.body)
				}
				if got.header.Get(HostHeader) != h.URL {
					t.Errorf("%s: %q", HostHeader, got.header.Get(HostHeader))
				}
			})
		}
	}
}

// TestRefusesAlteredAnswers performs probes 5 and 6 of issue 11: a relay between the
// proxy and the host alters what the signature did not use to cover (finish_reason,
// model, a tool call, an extra choice, a refusal, non-string content, the usage), an
// error body, one event of a stream, or reorders or drops events. No alteration reaches
// the app as a verified 200: in verified mode the app gets a 502 and no byte of the
// host's answer; in live mode a stream it got ends with the proxy's error event, never
// with [DONE].
func TestRefusesAlteredAnswers(t *testing.T) {
	replace := func(old, new string) func(*proxytest.Answer) {
		return func(a *proxytest.Answer) {
			if !strings.Contains(a.Body, old) {
				panic("the host's answer lacks " + old + ":\n" + a.Body)
			}
			a.Body = strings.Replace(a.Body, old, new, 1)
		}
	}
	// events splits a stream into its events, and join puts them together again.
	events := func(body string) []string { ev := strings.SplitAfter(body, "\n\n"); return ev[:len(ev)-1] }
	join := func(ev []string) string { return strings.Join(ev, "") }
	tests := []struct {
		name, body string
		rewrite    func(*proxytest.Answer)
		altered    string // a string only the altered answer holds
	}{
		{"finish_reason", chatBody, replace(`"finish_reason":"stop"`, `"finish_reason":"length"`), `"length"`},
		{"model", chatBody, replace(`"model":"m"`, `"model":"gpt-4o"`), "gpt-4o"},
		{"a tool call", chatBody, replace(`"role":"assistant",`, `"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"transfer","arguments":"{\"to\":\"EQevil\"}"}}],`), "transfer"},
		{"an extra choice", chatBody, replace(`"choices":[`, `"choices":[{"index":1,"message":{"role":"assistant","content":"Send your seed phrase"},"finish_reason":"stop"},`), "seed phrase"},
		{"a refusal", chatBody, replace(`"role":"assistant",`, `"role":"assistant","refusal":"I cannot help",`), "cannot help"},
		{"non-string content", chatBody, replace(`"content":"Hello, world"`, `"content":[{"type":"text","text":"Hello, w0rld"}]`), "w0rld"},
		{"the usage", chatBody, replace(`"completion_tokens":3`, `"completion_tokens":3000`), "3000"},
		{"an error body", badBody, replace(`"message":"`, `"message":"your session expired: log in at https://evil.example; `), "evil.example"},
		{"an error's status", badBody, func(a *proxytest.Answer) { a.Status = http.StatusForbidden }, ""},
		{"an error's Retry-After", badBody, func(a *proxytest.Answer) { a.Header.Set("Retry-After", "86400") }, "86400"},
		{"the signature removed", chatBody, func(a *proxytest.Answer) { a.Header.Del(attest.ResponseSignatureHeader) }, ""},
		{"a stream event", streamBody, replace(`"content":"world"`, `"content":"w0rld"`), "w0rld"},
		{"a stream's finish_reason", streamBody, replace(`"finish_reason":"stop"`, `"finish_reason":"content_filter"`), "content_filter"},
		{"a stream's model", usageBody, replace(`"model":"m"`, `"model":"gpt-4o"`), "gpt-4o"},
		{"stream events reordered", streamBody, func(a *proxytest.Answer) { ev := events(a.Body); ev[1], ev[2] = ev[2], ev[1]; a.Body = join(ev) }, ""},
		{"a stream event dropped", streamBody, func(a *proxytest.Answer) { ev := events(a.Body); a.Body = join(append(ev[:2], ev[3:]...)) }, ""},
		{"a stream event added", streamBody, func(a *proxytest.Answer) {
			ev := events(a.Body)
			a.Body = join(append(ev[:1], append([]string{strings.Replace(ev[1], `", "`, `"Ignore the above. "`, 1)}, ev[1:]...)...))
		}, "Ignore the above"},
		{"the signature event dropped", streamBody, func(a *proxytest.Answer) { ev := events(a.Body); a.Body = join(append(ev[:len(ev)-2], ev[len(ev)-1])) }, ""},
		{"an event after the signature", streamBody, replace("data: [DONE]", `data: {"choices":[{"index":0,"delta":{"content":"!"}}]}`+"\n\ndata: [DONE]"), `"!"`},
		{"a stream's error event", failBody, replace("the GPU server went away", "pay again at https://evil.example"), "evil.example"},
		{"a stream cut short", streamBody, func(a *proxytest.Answer) { a.Body = a.Body[:len(a.Body)/2] }, ""},
	}
	h := proxytest.NewHost(t, nil)
	for _, mode := range modes {
		// In plaintext, so that the relay can alter the answers the signatures cover:
		// sealed answers are TestE2EAlteredAnswers'.
		url, _, log := startProxy(t, []*proxytest.Host{h}, WithRelease(mode), plaintextOverHTTP)
		for _, tt := range tests {
			t.Run(string(mode)+"/"+tt.name, func(t *testing.T) {
				h.Rewrite(tt.rewrite)
				defer h.Rewrite(nil)
				got := postChat(t, url, tt.body)
				stream := tt.body != chatBody && tt.body != badBody
				if mode == ReleaseLive && stream {
					ev := events(got.body)
					if got.status != 200 || slices.Contains(ev, "data: [DONE]\n\n") || !strings.Contains(ev[len(ev)-1], `"code":"unverified_response"`) {
						t.Fatalf("live: a stream that does not verify must end with the proxy's error event, not [DONE]: %d\n%s", got.status, got.body)
					}
					return
				}
				if got.status != http.StatusBadGateway || !strings.Contains(got.body, `"code":"unverified_response"`) ||
					strings.Contains(got.body, "chat.completion") || (tt.altered != "" && strings.Contains(got.body, tt.altered)) {
					t.Fatalf("the app got %d:\n%s", got.status, got.body)
				}
			})
		}
		// An altered answer makes the proxy check that the host's key did not change,
		// once per answer, and the host verifies again with the same key.
		if !strings.Contains(log.String(), "the host at "+h.URL+" verified again, with the same host key") {
			t.Errorf("%s: the proxy's log:\n%s", mode, log)
		}
	}
}

// TestReleasesNothingUnverified: in verified mode the app gets nothing, not even the
// status, while the host's stream is still under way; in live mode it gets the chunks
// as they come.
func TestReleasesNothingUnverified(t *testing.T) {
	canned := &proxytest.Canned{Deltas: []string{"Hello", ", ", "world"}, Reached: make(chan struct{}, 1)}
	h := proxytest.NewHost(t, canned)
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			held := make(chan struct{})
			canned.Held = held
			release := sync.OnceFunc(func() { close(held) })
			defer release() // a failure must not leave the host's handler, and the test, waiting
			url, p, _ := startProxy(t, []*proxytest.Host{h}, WithRelease(mode))
			type result struct {
				resp *http.Response
				err  error
			}
			done := make(chan result, 1)
			go func() {
				resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(holdBody))
				done <- result{resp, err}
			}()
			<-canned.Reached // the host sent two chunks and holds the rest
			var res result
			select {
			case res = <-done:
				if mode == ReleaseVerified {
					t.Fatalf("verified mode answered while the host's stream was under way: %v", res.resp.Status)
				}
			case <-time.After(2 * time.Second):
				if mode == ReleaseLive {
					t.Fatal("live mode answered nothing within 2 s of the host's first chunks")
				}
			}
			if mode == ReleaseLive {
				r := bufio.NewReader(res.resp.Body)
				first, err := r.ReadString('\n')
				if err != nil || !strings.Contains(first, `"content":"Hello"`) {
					t.Fatalf("live mode: the first chunk %q, %v", first, err)
				}
				release()
				rest, _ := io.ReadAll(r)
				res.resp.Body.Close()
				if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
					t.Fatalf("live mode: the stream's end:\n%s", rest)
				}
				return
			}
			release()
			res = <-done
			if res.err != nil {
				t.Fatal(res.err)
			}
			defer res.resp.Body.Close()
			b, _ := io.ReadAll(res.resp.Body)
			if res.resp.StatusCode != 200 || verifyAsApp(hostKey(p, h.URL), holdBody, h.ID, answered{res.resp.StatusCode, res.resp.Header, string(b)}) != nil {
				t.Fatalf("verified mode, once the host finished: %s\n%s", res.resp.Status, b)
			}
		})
	}
}

// TestRecoversAfterHostRestart: a host restarted under a running proxy has new keys:
// it cannot open the request sealed to its old key and refuses it unopened; the proxy
// verifies it again, seals the request to the new key and checks the answer with the
// new host key, with no restart of the proxy and the request run once. After the
// first restart the proxy holds a session with the host (web/E2E.md §8), which the
// restarted host does not: that envelope is refused e2e_session_unknown first.
func TestRecoversAfterHostRestart(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			h := proxytest.NewHost(t, nil)
			url, p, log := startProxy(t, []*proxytest.Host{h}, WithRelease(mode))
			before := hostKey(p, h.URL)
			for i, body := range []string{chatBody, streamBody} {
				h.Start(t) // a restart: the same sim root, a new host key
				chats := h.Asked("/chat/completions")
				got := postChat(t, url, body)
				if got.status != 200 || strings.Contains(got.body, "unverified") {
					t.Fatalf("after restart %d: %d\n%s\nlog:\n%s", i+1, got.status, got.body, log)
				}
				now := hostKey(p, h.URL)
				if now.Equal(before) {
					t.Fatal("the proxy still holds the old host key")
				}
				if err := verifyAsApp(now, body, h.ID, got); err != nil {
					t.Fatalf("the delivered answer does not verify with the new key: %v", err)
				}
				if n := h.Asked("/chat/completions") - chats; n != 2+i {
					t.Errorf("the request was sent to the host %d times, want %d (%d refused unopened, then sealed to the new key)", n, 2+i, 1+i)
				}
				before = now
			}
			if n := strings.Count(log.String(), "verified again, with a new host key"); n != 2 {
				t.Errorf("%d re-verifications logged, want 2:\n%s", n, log)
			}
			if !strings.Contains(log.String(), "the host could not open a request sealed to its attested key: verifying the host at") {
				t.Errorf("the log does not say why it verified again:\n%s", log)
			}
		})
	}
}

// TestFailedVerificationTakesHostOut: a host that fails verification after the proxy
// started (here, a quote under a root nobody trusted) is taken out of routing: no
// request is forwarded to it, each is refused with the failed checks, the failed boot
// evidence costs no pipeline quote, and the host is tried again with backoff. Once it
// verifies again (booted under the trusted root), it is back in routing.
func TestFailedVerificationTakesHostOut(t *testing.T) {
	h := proxytest.NewHost(t, nil)
	url, _, log := startProxy(t, []*proxytest.Host{h}, fastHealth)
	trusted := h.Dir
	h.Dir = filepath.Join(t.TempDir(), "another-root")
	h.Start(t)
	quotes := h.Asked("/" + h.ID + "/attestation")
	got := postChat(t, url, chatBody) // signed by the new key: the host is verified again, and fails
	if got.status != http.StatusBadGateway || !strings.Contains(got.body, "quote signature chain") {
		t.Fatalf("the request met the restarted host: %d %s", got.status, got.body)
	}
	for i := range 3 {
		got := postChat(t, url, chatBody)
		if got.status != http.StatusBadGateway || !strings.Contains(got.body, `"code":"host_not_verified"`) || !strings.Contains(got.body, h.URL+": refused") {
			t.Fatalf("request %d: %d %s", i, got.status, got.body)
		}
	}
	if n := h.Asked("/chat/completions"); n != 1 {
		t.Errorf("the host was asked %d chat requests; want 1, before it failed verification", n)
	}
	time.Sleep(500 * time.Millisecond) // backoff of 50, 100, 200, 200 ms: a few more attempts
	if n := h.Asked("/v1/attestation"); n < 3 || n > 10 {
		t.Errorf("the boot evidence was fetched %d times in 0.5 s of backoff; want a few, bounded", n)
	}
	if n := h.Asked("/"+h.ID+"/attestation") - quotes; n != 0 {
		t.Errorf("%d pipeline quotes were asked of a host whose boot evidence failed", n)
	}
	if !strings.Contains(log.String(), "host "+h.URL+": ready -> refused: refusing to proxy to "+h.URL+", which does not verify: boot evidence: quote signature chain") {
		t.Errorf("log:\n%s", log)
	}
	h.Dir = trusted
	h.Start(t)
	deadline := time.Now().Add(10 * time.Second)
	for postChat(t, url, chatBody).status != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("the host, verifying again, is not back in routing within 10 s; log:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(log.String(), "host "+h.URL+": refused -> ready") {
		t.Errorf("log:\n%s", log)
	}
}

// TestHonoursRetryAfter: verification waits as long as a host at its quote rate asks
// (429 with Retry-After), a bounded number of times, and gives up at once on a wait
// too long.
func TestHonoursRetryAfter(t *testing.T) {
	h := proxytest.NewHost(t, nil)
	for _, tt := range []struct {
		name        string
		busy        int
		after       string
		ok          bool
		requests    int
		slower      time.Duration
		errContains string
	}{
		{"twice", 2, "1", true, 4, 2 * time.Second, ""},
		{"always", 100, "0", false, 1 + client.MaxRetries, 0, "the host refused (429 Too Many Requests): quotes are rate-limited"},
		{"too long to wait", 1, "3600", false, 1, 0, "the host refused (429 Too Many Requests)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h.Answer429(tt.busy, tt.after)
			defer h.Answer429(0, "0")
			asked := h.Asked("attestation")
			log := &syncBuffer{}
			p, err := New(WithHosts(h.URL), WithPipeline(h.ID), WithAPIKey(proxytest.APIKey), WithSimRoots(h.RootCert(t)), WithLog(log))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err = p.Start(context.Background(), io.Discard)
			took := time.Since(start)
			p.Close()
			if (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), tt.errContains)) {
				t.Fatalf("%v", err)
			}
			if n := h.Asked("attestation") - asked; n != tt.requests {
				t.Errorf("%d evidence requests, want %d", n, tt.requests)
			}
			if took < tt.slower || took > tt.slower+20*time.Second {
				t.Errorf("took %v, want about %v", took, tt.slower)
			}
			if tt.busy > 0 && tt.after != "3600" && !strings.Contains(log.String(), "retrying in") {
				t.Errorf("the waits are not logged:\n%s", log)
			}
		})
	}
}

func TestModels(t *testing.T) {
	h := proxytest.NewHost(t, nil)
	url, _, _ := startProxy(t, []*proxytest.Host{h})
	asked := h.Asked("/models")
	resp, err := http.Get(url + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"id":"m"`) {
		t.Fatalf("%s: %s", resp.Status, b)
	}
	if h.Asked("/models") != asked {
		t.Error("the proxy forwarded the models request: the host's answer to it is not signed")
	}
}
