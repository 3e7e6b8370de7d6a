package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/attest/nvidia"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/host"
	webclient "github.com/cocoonhost/cocoon/web/client"
)

// defaultHost is where `cocoon-host serve` listens by default.
const defaultHost = webclient.DefaultHost

// hostFlags adds --host, --api-key and the trust flags (trustFlags) to fs; the returned
// function builds the client once fs is parsed. The trust flags say what the client
// trusts of an https host's RA-TLS evidence, so they need an https host.
func hostFlags(fs *flag.FlagSet) func() (*webclient.Client, error) {
	build := connectFlags(fs, "API key, from the file cocoon-host serve names at start", false)
	return func() (*webclient.Client, error) {
		return build(missingKey)
	}
}

// connectFlags adds what hostFlags adds, with keyUsage as --api-key's help. The returned
// function builds the client; with missingKey set, a missing API key is a usage error
// with that message. A command that verifies an http host's evidence itself
// (verifiesHTTP) takes the trust flags with an http host too, and the client says
// whether they were given (Client.Trusted).
func connectFlags(fs *flag.FlagSet, keyUsage string, verifiesHTTP bool) func(missingKey string) (*webclient.Client, error) {
	base := fs.String("host", envOr("COCOON_HOST", defaultHost), "base URL of the host ($COCOON_HOST); an https host is verified in the TLS handshake")
	build := connectFlagsOf(fs, nil, keyUsage, verifiesHTTP)
	return func(missingKey string) (*webclient.Client, error) { return build(*base, missingKey) }
}

// connectFlagsOf is connectFlags for a command that takes --host as hosts, repeatable
// (nil: the caller adds --host itself); the returned function builds the client of one
// host.
func connectFlagsOf(fs *flag.FlagSet, hosts flag.Value, keyUsage string, verifiesHTTP bool) func(base, missingKey string) (*webclient.Client, error) {
	if hosts != nil {
		fs.Var(hosts, "host", "base URL of a host ($COCOON_HOST), repeatable; an https host is verified in the TLS handshake")
	}
	key := apiKeyFlag(fs, keyUsage)
	trust := trustFlags(fs)
	return func(base, missingKey string) (*webclient.Client, error) {
		if err := checkHostURL(base); err != nil {
			return nil, err
		}
		key := key()
		if key == "" && missingKey != "" {
			return nil, cli.UsageError(missingKey)
		}
		policy, opts, set, err := trust()
		if err != nil {
			return nil, err
		}
		if set && !verifiesHTTP && !strings.HasPrefix(base, "https://") {
			return nil, cli.UsageError(fmt.Sprintf("--policy, --trust-sim-root and --collateral verify an https host in the TLS handshake; %s is not https", base))
		}
		options := []webclient.Option{webclient.WithAPIKey(key)}
		if set {
			options = append(options, webclient.WithTrust(*policy, opts))
		}
		return webclient.New(base, options...)
	}
}

// missingKey tells a user of a command that needs an API key how to give one.
const missingKey = "no API key: pass --api-key or set COCOON_API_KEY (cocoon-host serve prints the file it is in)"

// apiKeyFlag adds --api-key, whose default is $COCOON_API_KEY, never shown by --help;
// the returned function gives the key once fs is parsed.
func apiKeyFlag(fs *flag.FlagSet, usage string) func() string {
	return cli.SecretFlag(fs, "api-key", "COCOON_API_KEY", usage)
}

func checkHostURL(base string) error {
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return cli.UsageError(fmt.Sprintf("--host %q: want a URL such as %s", base, defaultHost))
	}
	return nil
}

// trustFlags adds --policy, --trust-sim-root and --collateral to fs; the returned
// function loads them once fs is parsed and says whether any was given. Without them,
// the policy allows any measurement, simulated evidence is refused, and the TCB status
// is not evaluated.
func trustFlags(fs *flag.FlagSet) func() (p *attest.Policy, opts attest.EvidenceOptions, set bool, err error) {
	load := trustFlagsOf(fs, false)
	return func() (*attest.Policy, attest.EvidenceOptions, bool, error) {
		p, opts, roots, set, err := load()
		if len(roots) == 1 {
			opts.SimRoot = roots[0]
		}
		return p, opts, set, err
	}
}

// trustFlagsOf is trustFlags returning the simulator roots apart, for a command that
// verifies many hosts: with repeatable set, --trust-sim-root may be given once per
// simulator (hosts on different simulators), else at most once.
func trustFlagsOf(fs *flag.FlagSet, repeatable bool) func() (p *attest.Policy, opts attest.EvidenceOptions, simRoots []*x509.Certificate, set bool, err error) {
	policyPath := fs.String("policy", "", "policy JSON file (default: allow any measurement, and say so)")
	simRootPaths := &simRootList{repeatable: repeatable}
	usage := "trust simulated evidence under this root certificate (PEM), for testing only"
	if repeatable {
		usage += " (repeatable: hosts on different simulators)"
	}
	fs.Var(simRootPaths, "trust-sim-root", usage)
	collateralPath := fs.String("collateral", "", "where Intel's collateral for the TCB status comes from: a cached file (JSON, see attest.Collateral), or \"online\" for Intel PCS")
	return func() (*attest.Policy, attest.EvidenceOptions, []*x509.Certificate, bool, error) {
		var opts attest.EvidenceOptions
		p := &attest.Policy{}
		set := *policyPath != "" || len(simRootPaths.paths) > 0 || *collateralPath != ""
		var err error
		if *policyPath != "" {
			if p, err = attest.LoadPolicy(*policyPath); err != nil {
				return nil, opts, nil, false, err
			}
		}
		switch *collateralPath {
		case "":
		case "online":
			opts.Collateral = attest.OnlineCollateral()
		default:
			if opts.Collateral, err = attest.LoadCollateral(*collateralPath); err != nil {
				return nil, opts, nil, false, fmt.Errorf("--collateral: %w", err)
			}
		}
		roots := make([]*x509.Certificate, len(simRootPaths.paths))
		for i, path := range simRootPaths.paths {
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, opts, nil, false, fmt.Errorf("--trust-sim-root: %w", err)
			}
			if roots[i], err = attest.ParseCertificatePEM(b); err != nil {
				return nil, opts, nil, false, fmt.Errorf("--trust-sim-root %s: %w", path, err)
			}
		}
		return p, withGPUTrust(p, opts), roots, set, nil
	}
}

// withGPUTrust returns opts with what makes GPU evidence cheap to verify again: a
// GPUCache, so that the chains and RIMs of GPUs already seen are not verified anew (a
// proxy re-verifies its hosts; verify checks boot then pipeline evidence), and p's RIM
// files verified once, here, for every verification under p and opts' GPU roots
// (attest.LoadGPURIMs). RIM files that do not verify are left to each verification,
// which fails on their line and says why. Call it again after changing opts'
// SimGPURoots: RIMs loaded under other roots are refused.
func withGPUTrust(p *attest.Policy, opts attest.EvidenceOptions) attest.EvidenceOptions {
	opts.GPUCache, opts.GPURIMs = nvidia.NewCache(), nil
	if rims, err := attest.LoadGPURIMs(p, opts); err == nil {
		opts.GPURIMs = rims
	}
	return opts
}

// simRootList is --trust-sim-root's files: one, or as many as given when repeatable.
type simRootList struct {
	paths      []string
	repeatable bool
}

func (l *simRootList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.paths, ",")
}

func (l *simRootList) Set(v string) error {
	if len(l.paths) > 0 && !l.repeatable {
		return errors.New("given twice: this command trusts one simulator root")
	}
	l.paths = append(l.paths, v)
	return nil
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// pipelines lists the host's pipelines, or prints one's manifest.
func pipelines(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", "pipelines [show ID | delete ID] [--host URL] [--api-key KEY]\n\nLists the host's pipelines; 'show ID' prints a pipeline's manifest; 'delete ID' withdraws\nyour key's ownership (the host removes the pipeline when no owner is left).", stderr)
	newClient := hostFlags(fs)
	pos, err := cli.Parse(fs, args)
	if err != nil {
		return err
	}
	var verb, id string
	switch {
	case len(pos) == 0:
	case len(pos) == 2 && (pos[0] == "show" || pos[0] == "delete"):
		verb, id = pos[0], pos[1]
		if err := host.CheckHash("sha256:" + id); err != nil {
			return cli.UsageError(fmt.Sprintf("%q is not a pipeline id: an id is 64 lowercase hex digits", id))
		}
	case pos[0] == "show" || pos[0] == "delete":
		return cli.UsageError(fmt.Sprintf("usage: cocoon pipelines %s ID", pos[0]))
	default:
		return cli.UsageError(fmt.Sprintf("unexpected argument %q (did you mean 'pipelines show ID'?)", pos[0]))
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	ctx := context.Background()
	switch verb {
	case "delete":
		deleted, err := c.DeletePipeline(ctx, id)
		if err != nil {
			return err
		}
		if !deleted {
			_, err := fmt.Fprintf(stdout, "withdrew this key from %s; its other owners keep it\n", id)
			return err
		}
		_, err = fmt.Fprintf(stdout, "deleted %s\n", id)
		return err
	case "show":
		p, err := c.Pipeline(ctx, id)
		if err != nil {
			return err
		}
		var out bytes.Buffer
		if err := json.Indent(&out, p.Manifest, "", "  "); err != nil {
			return fmt.Errorf("the host's manifest is not JSON: %w", err)
		}
		out.WriteByte('\n')
		_, err = out.WriteTo(stdout)
		return err
	}
	list, err := c.Pipelines(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tMODEL\tPRE\tPOST")
	for _, p := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.ID, p.Manifest.Model, stageSummary(p.Manifest.Pre), stageSummary(p.Manifest.Post))
	}
	return tw.Flush()
}

// stageSummary names a stage's modules by their short hashes, in order.
func stageSummary(mms []host.ManifestModule) string {
	if len(mms) == 0 {
		return "-"
	}
	names := make([]string, len(mms))
	for i, mm := range mms {
		names[i] = shortHash(mm.Module)
	}
	return strings.Join(names, ",")
}

// shortHash is "sha256:" and the first 12 hex digits, as a reader compares hashes.
func shortHash(h string) string {
	if len(h) > len("sha256:")+12 {
		return h[:len("sha256:")+12]
	}
	return h
}
