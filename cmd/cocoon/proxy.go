package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/web/proxy"
)

const defaultProxyListen = "127.0.0.1:8787"

// proxyContext is the context `cocoon proxy` serves until: SIGINT or SIGTERM.
var proxyContext = func() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// serveProxy runs `cocoon proxy`: it verifies each host and the pipeline on it, then
// serves a local OpenAI-compatible API that routes to the verified hosts and checks
// every answer against the answering host's attested key (web/proxy).
func serveProxy(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", `proxy --pipeline ID [--host URL | --hosts URL,URL,... | --registry ADDRESS --ton-config FILE [--allow-private-endpoints]] [--api-key KEY] [--policy FILE] [--trust-sim-root FILE]... [--collateral FILE] [--expect-module sha256:...]... [--release verified|live] [--plaintext] [--listen ADDR]

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
it, refused it before admission, or does not bill). A retry under an Idempotency-Key
goes only to the billing host the key went to (a 502 "host_error" while that host is
out of routing), and a host whose evidence measures a settlement key but that serves
no price list is refused. Each host is checked every 10 s
(GET /readyz, its price list) and verified afresh every 10 minutes; a host that fails is
taken out of routing and tried again with backoff. State changes are logged on stderr.

With --registry, the hosts are those registered on the market registry at ADDRESS
(settle/REGISTRY.md), read through the liteservers of --ton-config at start and every
10 s: a host that registers is verified and used, one that leaves is dropped. Besides
the checks above, a registered host is refused (and logged) unless its boot quote is the
one it registered, its measurements are on the registry's allowlist, and its price list
is the one it registered. Whoever registers chooses the endpoint, so the proxy refuses to
connect to a registered host whose name resolves, at each connection, to a loopback,
private, link-local (169.254.0.0/16, fe80::/10), unspecified, multicast or other
non-public address, and ignores HTTP(S)_PROXY for registered hosts;
--allow-private-endpoints lifts this, for a registry of hosts on a local network.

--release verified (the default) releases nothing unverified: a stream is held until its
signature event verifies, then released whole, so the app sees the text only at the end.
--release live forwards a stream's events as they arrive, before the signature at its end
is checked: the app may show text that turns out forged, and such a stream ends with an
error event "unverified_response" instead of "data: [DONE]", which the app must honour.

Every request, its body and its credentials (the API key, the idempotency key), is sealed
to the host's attested end-to-end key (web/E2E.md), and the answer opens only with this
request's keys: whatever sits between proxy and host sees the method, the path with the
pipeline id, sizes and timing, never a prompt, an answer or a key. A host without
end-to-end keys is refused. --plaintext sends requests in the clear instead, to https
hosts only, whose RA-TLS handshake pins the attested TLS key.

When an answer's signature does not verify, a host cannot open a sealed request, or an
https host presents another TLS key, the proxy verifies that host again (a restarted host
has new keys) and checks the answer, or seals the request anew, with the new keys.`, stderr)
	base := fs.String("host", envOr("COCOON_HOST", defaultHost), "base URL of the host ($COCOON_HOST); an https host is verified in the TLS handshake")
	hostList := fs.String("hosts", "", "comma-separated base URLs of the hosts to route to (instead of --host)")
	registryAddr := fs.String("registry", "", "route to the hosts registered on the market registry at this TON address (instead of --host or --hosts; needs --ton-config)")
	allowPrivate := fs.Bool("allow-private-endpoints", false, "with --registry: reach registered hosts on loopback, private and link-local addresses too (a local network, a devnet)")
	tonFlags := addTONFlags(fs)
	key := apiKeyFlag(fs, "API key sent to every host; when empty, each app request's own Authorization goes on")
	pipelineID := fs.String("pipeline", "", "the pipeline to serve (its 64-hex id)")
	var expect moduleList
	fs.Var(&expect, "expect-module", "a module hash the pipeline must run (repeatable)")
	trust := trustFlagsOf(fs, true)
	release := fs.String("release", string(proxy.ReleaseVerified), "how a streamed answer reaches the app: \"verified\" (held until its signature verifies) or \"live\" (as it arrives, unverified until its end)")
	plaintext := fs.Bool("plaintext", false, "send requests unsealed, over RA-TLS (https hosts) only")
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
	policy, opts, roots, _, err := trust()
	if err != nil {
		return err
	}
	popts := []proxy.Option{source, proxy.WithPipeline(*pipelineID), proxy.WithAPIKey(key()),
		proxy.WithTrust(*policy, opts), proxy.WithSimRoots(roots...), proxy.WithExpectModules(expect...),
		proxy.WithRelease(proxy.Release(*release)), proxy.WithLog(stderr)}
	if *plaintext {
		popts = append(popts, proxy.WithPlaintext())
	}
	if *allowPrivate {
		popts = append(popts, proxy.WithPrivateEndpoints())
	}
	p, err := proxy.New(popts...)
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
			fmt.Fprintf(stderr, "note: %s is not https: requests and answers cross the network sealed to its attested end-to-end key; a relay sees their sizes and timing\n", h.URL)
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
