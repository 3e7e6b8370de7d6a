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

// TestProxyRegistryUsage: --registry excludes --host and --hosts, needs --ton-config and
// a TON address.
func TestProxyRegistryUsage(t *testing.T) {
	t.Setenv("COCOON_TON_CONFIG", "")
	const addr = "0:" + "ab" + "000000000000000000000000000000000000000000000000000000000000cd"
	for _, tt := range []struct {
		name, stderr string
		args         []string
	}{
		{"with --hosts", "--registry and --host or --hosts: give one of them", []string{"--registry", addr, "--hosts", "http://a,http://b", "--ton-config", "x"}},
		{"with --host", "--registry and --host or --hosts: give one of them", []string{"--registry", addr, "--host", "http://a", "--ton-config", "x"}},
		{"no --ton-config", "no TON network access: pass --ton-config FILE", []string{"--registry", addr}},
		{"not an address", "--registry: ", []string{"--registry", "host.example", "--ton-config", "x"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"proxy", "--listen", "127.0.0.1:0", "--pipeline", strings.Repeat("ab", 32)}, tt.args...)
			if code := runCommand(args, strings.NewReader(""), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tt.stderr) {
				t.Fatalf("exit %d, want 2; stderr: %s\nwant stderr containing %q", code, stderr.String(), tt.stderr)
			}
		})
	}
}

// TestProxyServesRegistry: `cocoon proxy --registry` discovers the hosts registered on
// the registry (the emulated chain in place of --ton-config's network), refuses the
// cheapest, whose measured model is not on the registry's allowlist, and logs why,
// serves through the other, and exits 0 on its signal.
func TestProxyServesRegistry(t *testing.T) {
	m := proxytest.NewMarket(t)
	unlisted := m.NewHost(100_000_000, "sha256:"+strings.Repeat("0e", 32))
	allowed := m.NewHost(500_000_000, proxytest.MarketModel)
	m.Register(unlisted, unlisted.Registration())
	m.Register(allowed, allowed.Registration())
	useChain(t, m.Chain)

	cp := startCLIProxy(t, `serving pipeline [0-9a-f]{64} of `+regexp.QuoteMeta(allowed.URL)+` at http`, "--registry", m.Addr.String(), "--allow-private-endpoints",
		"--ton-config", "devnet.json", "--pipeline", allowed.ID, "--trust-sim-root", allowed.Root, "--trust-sim-root", unlisted.Root)
	base := cp.base
	for range 10 {
		resp, err := http.Post(base+"/chat/completions", "application/json", strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get(proxy.HostHeader) != allowed.URL {
			t.Fatalf("%s from %q", resp.Status, resp.Header.Get(proxy.HostHeader))
		}
	}
	if n := unlisted.Asked("/chat/completions"); n != 0 {
		t.Errorf("the host not on the allowlist got %d requests", n)
	}
	stderr := cp.stop(t)
	if want := "host " + unlisted.URL + ": new -> refused: refusing to proxy to " + unlisted.URL + ", which does not verify: registry: measurement not on the allowlist: model"; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
}

// TestProxyRegistryRefusesPrivateEndpoints: without --allow-private-endpoints,
// `cocoon proxy --registry` refuses a host registered at a loopback address, says why
// and how to allow it, and exits 1 with no host to serve.
func TestProxyRegistryRefusesPrivateEndpoints(t *testing.T) {
	m := proxytest.NewMarket(t)
	local := m.NewHost(500_000_000, proxytest.MarketModel)
	m.Register(local, local.Registration())
	useChain(t, m.Chain)
	var stdout, stderr bytes.Buffer
	args := []string{"proxy", "--listen", "127.0.0.1:0", "--registry", m.Addr.String(), "--ton-config", "devnet.json",
		"--pipeline", local.ID, "--trust-sim-root", local.Root}
	if code := runCommand(args, strings.NewReader(""), &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr.String())
	}
	for _, want := range []string{"its endpoint resolves to 127.0.0.1, a loopback address", "--allow-private-endpoints"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if n := local.Asked(""); n != 0 {
		t.Errorf("the host was reached %d times", n)
	}
}

// cliProxy is `cocoon proxy` running in the test until stop.
type cliProxy struct {
	base   string // its API's base URL
	cancel context.CancelFunc
	code   chan int
	stderr *bytes.Buffer
}

// startCLIProxy runs `cocoon proxy --listen 127.0.0.1:0 --api-key proxytest.APIKey
// args...`, waits for the line that says what it serves and where, and fails unless the
// regexp serving matches it.
func startCLIProxy(t *testing.T, serving string, args ...string) *cliProxy {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	old := proxyContext
	proxyContext = func() (context.Context, context.CancelFunc) { return ctx, cancel }
	stdout, stdoutW := io.Pipe()
	cp := &cliProxy{cancel: cancel, code: make(chan int, 1), stderr: &bytes.Buffer{}}
	exited := make(chan struct{})
	// A test that fails midway still stops the proxy and waits for it, before the hosts
	// it holds connections to close.
	t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
		}
		proxyContext = old
	})
	go func() {
		defer close(exited)
		cp.code <- runCommand(append([]string{"proxy", "--listen", "127.0.0.1:0", "--api-key", proxytest.APIKey}, args...), strings.NewReader(""), stdoutW, cp.stderr)
		stdoutW.Close()
	}()
	line := regexp.MustCompile(`^serving pipeline .* at (http://127\.0\.0\.1:[0-9]+/v1)`)
	lines := bufio.NewScanner(stdout)
	var got []string
	for got == nil && lines.Scan() {
		got = line.FindStringSubmatch(lines.Text())
	}
	go io.Copy(io.Discard, stdout)
	switch {
	case got == nil:
		<-cp.code
		t.Fatalf("the proxy did not serve; stderr:\n%s", cp.stderr)
	case !regexp.MustCompile(serving).MatchString(got[0]):
		t.Fatalf("the proxy serves %q, want %s", got[0], serving)
	}
	cp.base = got[1]
	return cp
}

// stop signals the proxy, checks that it exits 0 within 15 s, and returns its stderr.
func (cp *cliProxy) stop(t *testing.T) string {
	t.Helper()
	cp.cancel()
	select {
	case c := <-cp.code:
		if c != 0 {
			t.Fatalf("exit %d; stderr:\n%s", c, cp.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the proxy did not stop within 15 s of its signal")
	}
	return cp.stderr.String()
}
