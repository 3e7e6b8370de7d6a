package main

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/web/proxy"
)

const defaultProxyListen = "127.0.0.1:8787"

// proxyContext is the context `cocoon proxy` serves until: SIGINT or SIGTERM.
var proxyContext = func() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// rootList is the repeatable --trust-sim-root.
type rootList []string

func (r *rootList) String() string     { return strings.Join(*r, ",") }
func (r *rootList) Set(v string) error { *r = append(*r, v); return nil }

// serveProxy runs `cocoon proxy`: it verifies each host and the pipeline on it, then
// serves a local OpenAI-compatible API that routes to the verified hosts and checks
// every answer against the answering host's attested key (web/proxy).
func serveProxy(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", `proxy --pipeline ID [--host URL | --hosts URL,URL,... | --registry ADDRESS --ton-config FILE] [--api-key KEY] [--policy FILE] [--trust-sim-root FILE]... [--collateral FILE] [--expect-module sha256:...]... [--release verified|live] [--listen ADDR]

Serves a local OpenAI-compatible API (base URL http://ADDR/v1) for apps that cannot verify
a host themselves. At start it verifies each host's boot evidence and a fresh quote of the
pipeline's evidence, as cocoon verify does, and exits 1 when no host passes. It forwards
POST /v1/chat/completions to the pipeline on a verified host and answers GET /v1/models with
the pipeline's attested model. Every answer a host sends is signed by its attested key,
errors included, over every byte the app reads; an answer that does not verify never
reaches the app as the host's: it gets a 502 "unverified_response" instead.

With --hosts, requests go to the cheapest host (by each billing host's signed price list)
and among equal ones the least loaded; a request that failed before any byte reached the
app goes to another verified host when that cannot charge twice (the host never received
it, refused it before admission, or does not bill). Each host is checked every 10 s
(GET /readyz, its price list) and verified afresh every 10 minutes; a host that fails is
taken out of routing and tried again with backoff. State changes are logged on stderr.

With --registry, the hosts are those registered on the market registry at ADDRESS
(settle/REGISTRY.md), read through the liteservers of --ton-config at start and every
10 s: a host that registers is verified and used, one that leaves is dropped. Besides
the checks above, a registered host is refused (and logged) unless its boot quote is the
one it registered, its measurements are on the registry's allowlist, and its price list
is the one it registered.

--release verified (the default) releases nothing unverified: a stream is held until its
signature event verifies, then released whole, so the app sees the text only at the end.
--release live forwards a stream's events as they arrive, before the signature at its end
is checked: the app may show text that turns out forged, and such a stream ends with an
error event "unverified_response" instead of "data: [DONE]", which the app must honour.

When an answer's signature does not verify, or an https host presents another TLS key,
the proxy verifies that host again (a restarted host has a new key) and checks the answer
with the new key.`, stderr)
	base := fs.String("host", envOr("COCOON_HOST", defaultHost), "base URL of the host ($COCOON_HOST); an https host is verified in the TLS handshake")
	hostList := fs.String("hosts", "", "comma-separated base URLs of the hosts to route to (instead of --host)")
	registryAddr := fs.String("registry", "", "route to the hosts registered on the market registry at this TON address (instead of --host or --hosts; needs --ton-config)")
	tonFlags := addTONFlags(fs)
	key := apiKeyFlag(fs, "API key sent to every host; when empty, each app request's own Authorization goes on")
	pipelineID := fs.String("pipeline", "", "the pipeline to serve (its 64-hex id)")
	var expect moduleList
	fs.Var(&expect, "expect-module", "a module hash the pipeline must run (repeatable)")
	policyPath := fs.String("policy", "", "policy JSON file (default: allow any measurement, and say so)")
	var simRoots rootList
	fs.Var(&simRoots, "trust-sim-root", "trust simulated evidence under this root certificate (PEM), for testing only (repeatable: hosts on different simulators)")
	collateralPath := fs.String("collateral", "", "where Intel's collateral for the TCB status comes from: a cached file (JSON, see attest.Collateral), or \"online\" for Intel PCS")
	release := fs.String("release", string(proxy.ReleaseVerified), "how a streamed answer reaches the app: \"verified\" (held until its signature verifies) or \"live\" (as it arrives, unverified until its end)")
	listen := fs.String("listen", defaultProxyListen, "local address to serve on; any process that reaches it uses the API key")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	ctx, stop := proxyContext()
	defer stop()
	source, err := proxySource(ctx, fs, *base, *hostList, *registryAddr, tonFlags)
	if err != nil {
		return err
	}
	policy, opts, err := loadTrust(*policyPath, *collateralPath)
	if err != nil {
		return err
	}
	roots, err := loadSimRoots(simRoots)
	if err != nil {
		return err
	}
	p, err := proxy.New(source, proxy.WithPipeline(*pipelineID), proxy.WithAPIKey(key()),
		proxy.WithTrust(*policy, opts), proxy.WithSimRoots(roots...), proxy.WithExpectModules(expect...),
		proxy.WithRelease(proxy.Release(*release)), proxy.WithLog(stderr))
	if err != nil {
		return cli.UsageError(strings.TrimPrefix(err.Error(), "proxy: "))
	}
	if err := p.Start(ctx, stdout); err != nil {
		return err
	}
	defer p.Close()
	var ready []string
	for _, h := range p.Hosts() {
		if h.State == "ready" {
			ready = append(ready, h.URL)
		}
		if !strings.HasPrefix(h.URL, "https://") {
			fmt.Fprintf(stderr, "warning: %s is not https: requests and answers cross the network in clear (answers are still checked against the attested host key)\n", h.URL)
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	fmt.Fprintf(stdout, "\nserving pipeline %s of %s at http://%s/v1 (streams released %s)\n", *pipelineID, strings.Join(ready, ", "), ln.Addr(), *release)
	return serveUntil(ctx, ln, p)
}

// proxySource is where `cocoon proxy` finds its hosts: --registry (read through
// --ton-config's liteservers), --hosts or --host, of which one may be given. It fails
// with a usage error for more than one, or a malformed URL or address, and with the
// network's error when no liteserver answers.
func proxySource(ctx context.Context, fs *flag.FlagSet, base, hostList, registryAddr string, o *tonOptions) (proxy.Option, error) {
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if registryAddr != "" {
		if explicit["host"] || hostList != "" {
			return nil, cli.UsageError("--registry and --host or --hosts: give one of them")
		}
		addr, err := parseAddress("registry", registryAddr)
		if err != nil {
			return nil, err
		}
		if err := o.check(true); err != nil {
			return nil, err
		}
		api, err := o.dial(ctx)
		if err != nil {
			return nil, err
		}
		return proxy.WithSource(proxy.NewRegistry(api, addr)), nil
	}
	hosts := []string{base}
	if hostList != "" {
		if explicit["host"] {
			return nil, cli.UsageError("--host and --hosts: give one of them")
		}
		hosts = strings.Split(hostList, ",")
	}
	for _, h := range hosts {
		if err := checkHostURL(h); err != nil {
			return nil, err
		}
	}
	return proxy.WithHosts(hosts...), nil
}

// loadTrust loads --policy and --collateral; without them the policy allows any
// measurement and the TCB status is not evaluated.
func loadTrust(policyPath, collateralPath string) (*attest.Policy, attest.EvidenceOptions, error) {
	var opts attest.EvidenceOptions
	p := &attest.Policy{}
	var err error
	if policyPath != "" {
		if p, err = attest.LoadPolicy(policyPath); err != nil {
			return nil, opts, err
		}
	}
	switch collateralPath {
	case "":
	case "online":
		opts.Collateral = attest.OnlineCollateral()
	default:
		if opts.Collateral, err = attest.LoadCollateral(collateralPath); err != nil {
			return nil, opts, fmt.Errorf("--collateral: %w", err)
		}
	}
	return p, opts, nil
}

// loadSimRoots reads each --trust-sim-root.
func loadSimRoots(paths []string) ([]*x509.Certificate, error) {
	roots := make([]*x509.Certificate, len(paths))
	for i, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--trust-sim-root: %w", err)
		}
		if roots[i], err = attest.ParseCertificatePEM(b); err != nil {
			return nil, fmt.Errorf("--trust-sim-root %s: %w", path, err)
		}
	}
	return roots, nil
}

// proxyMaxBody bounds what the reviewer's page relay (web.go) copies of a host's
// answer, as the proxy bounds what it holds.
const proxyMaxBody = proxy.MaxBody

// writeProxyError answers with an error of the proxy's shape (web.go's relay).
func writeProxyError(w http.ResponseWriter, status int, code, message string) {
	(&proxy.Error{Status: status, Code: code, Message: message}).Write(w)
}
