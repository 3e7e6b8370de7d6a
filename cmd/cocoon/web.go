package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/host"
	webclient "github.com/cocoonhost/cocoon/web/client"
	"github.com/cocoonhost/cocoon/web/page"
	"github.com/cocoonhost/cocoon/web/proxy"
)

const defaultWebListen = "127.0.0.1:8789"

// wantsWeb reports whether a verify command line asks for the reviewer's page (--web).
func wantsWeb(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--web", "-web", "--web=true", "-web=true":
			return true
		}
	}
	return false
}

// pipelineList is a repeatable --pipeline flag.
type pipelineList []string

func (p *pipelineList) String() string { return strings.Join(*p, ",") }

func (p *pipelineList) Set(v string) error {
	if host.CheckHash("sha256:"+v) != nil {
		return fmt.Errorf("%q is not a pipeline id: an id is 64 lowercase hex digits", v)
	}
	*p = append(*p, v)
	return nil
}

// verifyWeb runs `cocoon verify --web`: it serves the reviewer's page from this build
// and relays the page's evidence requests to the host, so that the page verifies the
// host in the browser with code the reviewer built, and nothing the host serves runs
// there. It serves until SIGINT or SIGTERM.
func verifyWeb(args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runWeb(ctx, args, stdout, stderr)
}

// runWeb is verifyWeb until ctx is done.
func runWeb(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", `verify --web [--host URL] [--listen ADDR] [--api-key KEY] [--pipeline ID]... [--expect-module sha256:...]... [--trust-sim-root FILE] [--policy FILE] [--collateral FILE]

Serves the reviewer's page from this build of cocoon at http://ADDR/ and relays its
requests for evidence (GET /v1/attestation, /v1/pipelines and
/v1/pipelines/{id}/attestation) to the host. The page verifies the evidence in the
browser with the verifier of this build, compiled to WebAssembly by make page, and shows
every check, measurement, event and manifest. The trust flags only fill in the page's
fields, where they can be changed; nothing is trusted that is not given. No credential
goes in plaintext to an http host off this machine: the page's API key is refused
there, and --api-key left off.`, stderr)
	fs.Bool("web", true, "serve the reviewer's page (this mode)")
	base := fs.String("host", envOr("COCOON_HOST", defaultHost), "base URL of the host ($COCOON_HOST); an https host's RA-TLS certificate is verified against the trust flags")
	key := apiKeyFlag(fs, "API key the relay sends when the page sends none, over https or to a loopback host only: the page can then list the host's pipelines, and its quotes count against this key")
	listen := fs.String("listen", defaultWebListen, "local address to serve the page on")
	var pipelines pipelineList
	fs.Var(&pipelines, "pipeline", "a pipeline to verify, besides those the host lists (repeatable)")
	var expect moduleList
	fs.Var(&expect, "expect-module", "a module hash every pipeline must run (repeatable)")
	trust := trustFlags(fs)
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := checkHostURL(*base); err != nil {
		return err
	}
	if !page.Built() {
		return page.ErrNotBuilt
	}
	policy, opts, _, err := trust()
	if err != nil {
		return err
	}
	cfg, err := pageConfig(*base, policy, opts)
	if err != nil {
		return err
	}
	cfg.Pipelines, cfg.ExpectModules = pipelines, expect
	c, err := webclient.New(*base, webclient.WithAPIKey(key()), webclient.WithTrust(*policy, opts))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	fmt.Fprintf(stdout, "The reviewer's page for %s, served from this build: http://%s/\n", c.BaseURL(), ln.Addr())
	return serveUntil(ctx, ln, proxy.NewPageRelay(c, page.Handler(cfg), ln.Addr()))
}

// pageConfig is what the page is told of the reviewer's command line: the simulator
// root and the policy's as PEM text, since the page reads no files, and the collateral
// file. Collateral fetched online cannot be given: the page reaches nothing but the
// relay.
func pageConfig(base string, policy *attest.Policy, opts attest.EvidenceOptions) (page.Config, error) {
	cfg := page.Config{ServedBy: page.ServedByLocal, Host: strings.TrimSuffix(base, "/")}
	if opts.SimRoot != nil {
		cfg.TrustSimRoot = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: opts.SimRoot.Raw}))
	}
	if policy != nil && !isEmptyPolicy(policy) {
		p := *policy
		root, err := p.SimRoot()
		if err != nil {
			return cfg, err
		}
		if root != nil {
			p.TrustSimRoot = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}))
		}
		cfg.Policy = &p
	}
	switch c := opts.Collateral.(type) {
	case attest.Collateral:
		cfg.Collateral = c
	case *attest.RecordingSource:
		return cfg, cli.UsageError("--collateral online: the page reaches no server but the host; fetch it with cocoon verify --collateral online --save-collateral FILE, then give --collateral FILE")
	}
	return cfg, nil
}

func isEmptyPolicy(p *attest.Policy) bool {
	b, _ := json.Marshal(p)
	return string(b) == "{}"
}

// serveUntil serves h on ln until ctx is done, then shuts the server down, letting
// requests in flight finish for up to 10 seconds. It returns when the server has
// stopped: nil after a shutdown, the error that stopped it otherwise.
func serveUntil(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdown)
	<-errc // Serve returned ErrServerClosed
	return err
}
