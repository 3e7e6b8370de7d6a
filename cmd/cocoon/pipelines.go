package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/host"
)

// defaultHost is where `cocoon-host serve` listens by default.
const defaultHost = "http://127.0.0.1:8080"

// client calls a host's API with an API key.
type client struct {
	base string // without a trailing slash
	key  string
	http *http.Client
	// ratls verifies an https host inside each TLS handshake and pins its key; it is
	// nil for an http host, which nothing verifies.
	ratls *attest.RATLSVerifier
	// policy and opts are what the host's evidence is verified against; trusted is set
	// when they were given (rather than the defaults).
	policy  *attest.Policy
	opts    attest.EvidenceOptions
	trusted bool
	// log, when set, is told of the waits the host asks for (do).
	log io.Writer
}

// hostFlags adds --host, --api-key and the trust flags (trustFlags) to fs; the returned
// function builds the client once fs is parsed. The trust flags say what the client
// trusts of an https host's RA-TLS evidence, so they need an https host.
func hostFlags(fs *flag.FlagSet) func() (*client, error) {
	build := connectFlags(fs, "API key, from the file cocoon-host serve names at start", false)
	return func() (*client, error) {
		return build(missingKey)
	}
}

// connectFlags adds what hostFlags adds, with keyUsage as --api-key's help. The returned
// function builds the client; with missingKey set, a missing API key is a usage error
// with that message. A command that verifies an http host's evidence itself
// (verifiesHTTP) takes the trust flags with an http host too, and the client says
// whether they were given (client.trusted).
func connectFlags(fs *flag.FlagSet, keyUsage string, verifiesHTTP bool) func(missingKey string) (*client, error) {
	base := fs.String("host", envOr("COCOON_HOST", defaultHost), "base URL of the host ($COCOON_HOST); an https host is verified in the TLS handshake")
	key := apiKeyFlag(fs, keyUsage)
	trust := trustFlags(fs)
	return func(missingKey string) (*client, error) {
		if err := checkHostURL(*base); err != nil {
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
		if set && !verifiesHTTP && !strings.HasPrefix(*base, "https://") {
			return nil, cli.UsageError(fmt.Sprintf("--policy, --trust-sim-root and --collateral verify an https host in the TLS handshake; %s is not https", *base))
		}
		c, err := newClient(*base, key, policy, opts)
		if err == nil {
			c.trusted = set
		}
		return c, err
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
	policyPath := fs.String("policy", "", "policy JSON file (default: allow any measurement, and say so)")
	simRootPath := fs.String("trust-sim-root", "", "trust simulated evidence under this root certificate (PEM), for testing only")
	collateralPath := fs.String("collateral", "", "where Intel's collateral for the TCB status comes from: a cached file (JSON, see attest.Collateral), or \"online\" for Intel PCS")
	return func() (*attest.Policy, attest.EvidenceOptions, bool, error) {
		var opts attest.EvidenceOptions
		p := &attest.Policy{}
		set := *policyPath != "" || *simRootPath != "" || *collateralPath != ""
		var err error
		if *policyPath != "" {
			if p, err = attest.LoadPolicy(*policyPath); err != nil {
				return nil, opts, false, err
			}
		}
		switch *collateralPath {
		case "":
		case "online":
			opts.Collateral = attest.OnlineCollateral()
		default:
			if opts.Collateral, err = attest.LoadCollateral(*collateralPath); err != nil {
				return nil, opts, false, fmt.Errorf("--collateral: %w", err)
			}
		}
		if *simRootPath != "" {
			b, err := os.ReadFile(*simRootPath)
			if err != nil {
				return nil, opts, false, fmt.Errorf("--trust-sim-root: %w", err)
			}
			if opts.SimRoot, err = attest.ParseCertificatePEM(b); err != nil {
				return nil, opts, false, fmt.Errorf("--trust-sim-root %s: %w", *simRootPath, err)
			}
		}
		return p, opts, set, nil
	}
}

// newClient returns a client of the host at base. For an https base every connection's
// handshake verifies the host's RA-TLS certificate against p and opts and the
// first verified TLS key is pinned for the client's life.
func newClient(base, key string, p *attest.Policy, opts attest.EvidenceOptions) (*client, error) {
	c := &client{base: strings.TrimSuffix(base, "/"), key: key, http: http.DefaultClient, policy: p, opts: opts}
	if !strings.HasPrefix(base, "https://") {
		return c, nil
	}
	v, err := attest.NewRATLSVerifier(*p, opts)
	if err != nil {
		return nil, err
	}
	c.ratls = v
	c.http = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: v.TLSConfig()}}
	return c, nil
}

// doError words an error of c.http.Do: a handshake the RA-TLS verifier refused is a
// failed verification, anything else an unreachable host.
func (c *client) doError(err error) error {
	cause := cmp.Or(errors.Unwrap(err), err) // the url.Error's cause, or a context's error
	if errors.Is(err, attest.ErrRATLS) {
		return fmt.Errorf("refusing the host at %s: %w", c.base, cause)
	}
	return fmt.Errorf("cannot reach the host at %s (is cocoon-host serve running there? see --host and COCOON_HOST): %w", c.base, cause)
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// send makes a request with body as JSON (none if nil), with the API key, and returns
// the response when its status is 2xx. Any other status is an error that carries the
// host's message.
func (c *client) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	return c.sendSigned(ctx, method, path, b, nil)
}

// call is send that decodes the JSON answer into out.
func (c *client) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("the host's answer to %s %s is not the expected JSON: %w", method, path, err)
	}
	return nil
}

// apiError is the OpenAI error shape the host answers with.
type apiError struct {
	Error *struct {
		Message string `json:"message"`
		Code    string `json:"code"`
	} `json:"error"`
}

// responseError words a failed response: the host's own message when it sent one.
func responseError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e apiError
	if json.Unmarshal(b, &e) == nil && e.Error != nil && e.Error.Message != "" {
		return fmt.Errorf("the host refused (%s): %s", resp.Status, e.Error.Message)
	}
	return fmt.Errorf("the host answered %s (%s %s), not an API error: is --host a Cocoon host?", resp.Status, resp.Request.Method, resp.Request.URL.Path)
}

// pipelineInfo is a pipeline as the host shows it.
type pipelineInfo struct {
	ID       string          `json:"id"`
	BaseURL  string          `json:"base_url"`
	Manifest json.RawMessage `json:"manifest"`
	Modules  []string        `json:"modules"`
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
		var answer struct {
			Deleted bool `json:"deleted"`
		}
		if err := c.call(ctx, http.MethodDelete, "/v1/pipelines/"+id, nil, &answer); err != nil {
			return err
		}
		if !answer.Deleted {
			_, err := fmt.Fprintf(stdout, "withdrew this key from %s; its other owners keep it\n", id)
			return err
		}
		_, err := fmt.Fprintf(stdout, "deleted %s\n", id)
		return err
	case "show":
		var p pipelineInfo
		if err := c.call(ctx, http.MethodGet, "/v1/pipelines/"+id, nil, &p); err != nil {
			return err
		}
		var out bytes.Buffer
		if err := json.Indent(&out, p.Manifest, "", "  "); err != nil {
			return fmt.Errorf("the host's manifest is not JSON: %w", err)
		}
		out.WriteByte('\n')
		_, err := out.WriteTo(stdout)
		return err
	}
	var list struct {
		Data []struct {
			ID       string        `json:"id"`
			Manifest host.Manifest `json:"manifest"`
		} `json:"data"`
	}
	if err := c.call(ctx, http.MethodGet, "/v1/pipelines", nil, &list); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tMODEL\tPRE\tPOST")
	for _, p := range list.Data {
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
