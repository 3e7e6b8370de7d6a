package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/web/proxy"
	"github.com/cocoonhost/cocoon/web/proxy/proxytest"
)

// The proxy refuses to start, exit 1 before it listens, when the host does not verify.
func TestProxyRefusesToStart(t *testing.T) {
	h := proxytest.NewHost(t, nil)
	other := proxytest.NewHost(t, nil)
	url, id, root := h.URL, h.ID, h.Root
	tests := []struct {
		name       string
		args       []string
		code       int
		stderrPart string
	}{
		{"sim not trusted", []string{"--host", url, "--pipeline", id}, 1,
			"refusing to proxy to " + url + ", which does not verify: boot evidence: quote signature chain: "},
		{"another sim root", []string{"--host", url, "--pipeline", id, "--trust-sim-root", other.Root}, 1,
			"boot evidence: quote signature chain: not signed by the given simulator root"},
		{"module not run", []string{"--host", url, "--pipeline", id, "--trust-sim-root", root, "--expect-module", moduleA}, 1,
			"pipeline evidence: expected modules: the pipeline does not run " + moduleA},
		{"unknown pipeline", []string{"--host", url, "--pipeline", strings.Repeat("ee", 32), "--trust-sim-root", root}, 1, "the host refused (404 Not Found)"},
		{"no pipeline", []string{"--host", url}, 2, "is not a pipeline id"},
		{"unknown release mode", []string{"--host", url, "--pipeline", id, "--release", "fast"}, 2, `release "fast": want "verified" or "live"`},
		{"--host and --hosts", []string{"--host", url, "--hosts", url + "," + other.URL, "--pipeline", id}, 2, "--host and --hosts: give one of them"},
		{"not a URL in --hosts", []string{"--hosts", url + ",127.0.0.1:1", "--pipeline", id}, 2, `--host "127.0.0.1:1": want a URL`},
		{"no host verifies", []string{"--hosts", url + "," + other.URL, "--pipeline", id}, 1,
			"no host verified:\n  refusing to proxy to " + url + ", which does not verify: boot evidence: quote signature chain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			// A free port: were the proxy to start, it would block here and time out.
			args := append([]string{"proxy", "--listen", "127.0.0.1:0", "--api-key", proxytest.APIKey}, tt.args...)
			code := runCommand(args, strings.NewReader(""), &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.stderrPart) {
				t.Fatalf("exit %d, want %d; stderr: %s\nwant stderr containing %q", code, tt.code, stderr.String(), tt.stderrPart)
			}
		})
	}
	if n := h.Asked("/" + id + "/attestation"); n != 1 {
		t.Errorf("%d pipeline quotes for the 3 starts that fetched evidence, 2 of which failed at the boot evidence; want 1", n)
	}
}

// TestProxyServesHosts: `cocoon proxy --hosts A,B` with a --trust-sim-root for each
// host's simulator verifies both, serves on --listen, routes requests to both, and
// exits 0 on its signal.
func TestProxyServesHosts(t *testing.T) {
	a, b := proxytest.NewHost(t, nil), proxytest.NewHost(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	old := proxyContext
	proxyContext = func() (context.Context, context.CancelFunc) { return ctx, cancel }
	defer func() { proxyContext = old }()
	stdout, stdoutW := io.Pipe()
	var stderr bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- runCommand([]string{"proxy", "--listen", "127.0.0.1:0", "--api-key", proxytest.APIKey, "--hosts", a.URL + "," + b.URL,
			"--pipeline", a.ID, "--trust-sim-root", a.Root, "--trust-sim-root", b.Root}, strings.NewReader(""), stdoutW, &stderr)
		stdoutW.Close()
	}()
	serving := regexp.MustCompile(`serving pipeline [0-9a-f]{64} of ` + regexp.QuoteMeta(a.URL+", "+b.URL) + ` at (http://127\.0\.0\.1:[0-9]+/v1)`)
	var base string
	lines := bufio.NewScanner(stdout)
	for base == "" && lines.Scan() {
		if m := serving.FindStringSubmatch(lines.Text()); m != nil {
			base = m[1]
		}
	}
	go io.Copy(io.Discard, stdout)
	if base == "" {
		t.Fatalf("the proxy did not serve; stderr:\n%s", stderr.String())
	}
	for range 40 {
		resp, err := http.Post(base+"/chat/completions", "application/json", strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get(proxy.HostHeader) == "" {
			t.Fatalf("%s from %q", resp.Status, resp.Header.Get(proxy.HostHeader))
		}
	}
	for _, h := range []*proxytest.Host{a, b} {
		if n := h.Asked("/chat/completions"); n == 0 {
			t.Errorf("the host at %s served none of 40 requests", h.URL)
		}
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit %d; stderr:\n%s", c, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the proxy did not stop within 15 s of its signal")
	}
}

// TestChatChecksSignatures: cocoon chat checks the answer against the attested host
// key when it has one (over http, from the boot evidence it verifies first with the
// trust flags), errors included, and fails on an altered answer; without a key it says
// that the answer is not verified.
func TestChatChecksSignatures(t *testing.T) {
	h := proxytest.NewHost(t, nil)
	trusted := []string{"chat", "--host", h.URL, "--api-key", proxytest.APIKey, "--pipeline", h.ID, "--trust-sim-root", h.Root}
	unknown := append(trusted, "--no-stream", "--pipeline", strings.Repeat("ee", 32))
	alter := func(a *proxytest.Answer) { a.Body = strings.Replace(a.Body, "world", "w0rld", 1) }
	for _, tt := range []struct {
		name    string
		args    []string
		rewrite func(*proxytest.Answer)
		code    int
		stdout  string
		stderr  string
	}{
		{"stream", trusted, nil, 0, "Hello, world\n", ""},
		{"whole", append(trusted, "--no-stream"), nil, 0, "Hello, world\n", ""},
		{"the host's error", unknown, nil, 1, "", "the host refused (404 Not Found): no pipeline with id"},
		{"altered stream", trusted, alter, 1, "Hello, w0rld", "the answer above is not signed by the attested host key: do not trust it"},
		{"altered completion", append(trusted, "--no-stream"), alter, 1, "",
			"the host's answer (200 OK) is not signed by the attested host key, so it is not shown"},
		{"altered error", unknown, func(a *proxytest.Answer) { a.Status = http.StatusInternalServerError }, 1, "",
			"the host's answer (500 Internal Server Error) is not signed by the attested host key"},
		{"not verified", []string{"chat", "--host", h.URL, "--api-key", proxytest.APIKey, "--pipeline", h.ID}, nil, 0, "Hello, world\n",
			"note: the answer is not verified"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.rewrite != nil {
				h.Rewrite(tt.rewrite)
				defer h.Rewrite(nil)
			}
			var stdout, stderr bytes.Buffer
			code := runCommand(append(tt.args, "hi"), strings.NewReader(""), &stdout, &stderr)
			verifying := tt.name != "not verified"
			if code != tt.code || !strings.HasPrefix(stdout.String(), tt.stdout) || !strings.Contains(stderr.String(), tt.stderr) ||
				(verifying && strings.Contains(stderr.String(), "not verified")) {
				t.Fatalf("exit %d; stdout %q; stderr %q", code, stdout.String(), stderr.String())
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		status int
		value  string
		wait   time.Duration
		ok     bool
	}{
		{429, "2", 2 * time.Second, true},
		{503, "0", 0, true},
		{429, now.Add(10 * time.Second).Format(http.TimeFormat), 10 * time.Second, true},
		{429, now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{429, "31", 0, false},
		{429, "99999999999999999999", 0, false},
		{429, "-1", 0, false},
		{429, "soon", 0, false},
		{429, "", 0, false},
		{500, "1", 0, false},
		{200, "1", 0, false},
	} {
		resp := &http.Response{StatusCode: tt.status, Header: http.Header{"Retry-After": {tt.value}}}
		if wait, ok := retryAfter(resp, now); ok != tt.ok || (ok && wait != tt.wait) {
			t.Errorf("%d Retry-After %q: %v %v, want %v %v", tt.status, tt.value, wait, ok, tt.wait, tt.ok)
		}
	}
}
