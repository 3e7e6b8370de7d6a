package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/xssnick/tonutils-go/address"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/settle"
)

// signer signs requests to a host with an escrow's client key (settle.SignedRequest),
// in place of an API key.
type signer struct {
	account string // the escrow, raw form
	key     ed25519.PrivateKey
}

// sign sets req's signing headers for body, with a fresh nonce and the current time.
func (s *signer) sign(req *http.Request, body []byte) {
	settle.SignedRequest{Account: s.account, Timestamp: time.Now().Unix(), Nonce: settle.NewNonce(),
		Method: req.Method, Path: req.URL.Path, Body: body}.Sign(req.Header, s.key)
}

// keyOptions are --seed-file and --client-key-file, the two ways to give the client
// key.
type keyOptions struct{ seedFile, keyFile *string }

func addKeyFlags(fs *flag.FlagSet) *keyOptions {
	return &keyOptions{
		seedFile: fs.String("seed-file", "", "file with the 24 seed words of the client's TON wallet (V5R1); its key is the client key"),
		keyFile:  fs.String("client-key-file", "", "file with the client key as 64 hex digits (an ed25519 seed), when the wallet is elsewhere"),
	}
}

func (k *keyOptions) given() bool { return *k.seedFile != "" || *k.keyFile != "" }

// load reads the key given, or returns nil when none is.
func (k *keyOptions) load() (ed25519.PrivateKey, error) {
	switch {
	case *k.seedFile != "" && *k.keyFile != "":
		return nil, cli.UsageError("give --seed-file or --client-key-file, not both")
	case *k.seedFile != "":
		return readSeedFile(*k.seedFile)
	case *k.keyFile != "":
		return readKeyFile(*k.keyFile)
	}
	return nil, nil
}

// accountOptions are --escrow and the key flags.
type accountOptions struct {
	escrow *string
	key    *keyOptions
}

func addAccountFlags(fs *flag.FlagSet) *accountOptions {
	return &accountOptions{
		escrow: fs.String("escrow", "", "the escrow contract's address (raw 0:… or user-friendly EQ…)"),
		key:    addKeyFlags(fs),
	}
}

// given reports whether --escrow or a key flag was given.
func (a *accountOptions) given() bool {
	return *a.escrow != "" || a.key.given()
}

// address parses --escrow, which is required.
func (a *accountOptions) address() (*address.Address, error) {
	if *a.escrow == "" {
		return nil, cli.UsageError("no escrow: pass --escrow ADDR, as channel open printed it")
	}
	return parseAddress("escrow", *a.escrow)
}

// signer returns the signer of the escrow's requests: --escrow and a key are required.
func (a *accountOptions) signer() (*signer, error) {
	addr, err := a.address()
	if err != nil {
		return nil, err
	}
	k, err := a.key.load()
	switch {
	case err != nil:
		return nil, err
	case k == nil:
		return nil, cli.UsageError("requests for an escrow are signed with its client key: pass --seed-file (the wallet's seed words) or --client-key-file")
	}
	return &signer{account: addr.StringRaw(), key: k}, nil
}

// trustedHost is a host whose boot evidence the client verifies itself (over http as
// well as https): --host and the trust flags.
type trustedHost struct {
	base  *string
	trust func() (*attest.Policy, attest.EvidenceOptions, bool, error)
}

// addTrustedHostFlags adds --host (default def; "" makes it optional) and the trust
// flags.
func addTrustedHostFlags(fs *flag.FlagSet, def string) *trustedHost {
	help := "base URL of the host"
	if def != "" {
		help += " ($COCOON_HOST)"
	}
	return &trustedHost{base: fs.String("host", def, help), trust: trustFlags(fs)}
}

func (h *trustedHost) given() bool { return *h.base != "" }

// connect checks the flags and returns a client without an API key, with the policy
// and options to verify the host's evidence with.
func (h *trustedHost) connect() (*client, *attest.Policy, attest.EvidenceOptions, error) {
	if err := checkHostURL(*h.base); err != nil {
		return nil, nil, attest.EvidenceOptions{}, err
	}
	policy, opts, _, err := h.trust()
	if err != nil {
		return nil, nil, opts, err
	}
	c, err := newClient(*h.base, "", policy, opts)
	return c, policy, opts, err
}

// sendSigned makes a request with body (nil for none), signed by s, or with the API key
// when s is nil, and returns the response when its status is 2xx; any other status is
// an error that carries the host's message.
func (c *client) sendSigned(ctx context.Context, method, path string, body []byte, s *signer) (*http.Response, error) {
	resp, err := c.request(ctx, method, path, body, s)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, responseError(resp)
	}
	return resp, nil
}

// request makes a request as sendSigned does and returns the host's answer, whatever
// its status.
func (c *client) request(ctx context.Context, method, path string, body []byte, s *signer) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("--host %q: %w", c.base, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.do(req, func(r *http.Request) {
		if s != nil {
			s.sign(r, body)
		} else {
			r.Header.Set("Authorization", "Bearer "+c.key)
		}
	})
	if err != nil {
		return nil, c.doError(err)
	}
	return resp, nil
}

// getSigned is a signed GET that decodes the JSON answer into out.
func (c *client) getSigned(ctx context.Context, path string, s *signer, out any) error {
	resp, err := c.sendSigned(ctx, http.MethodGet, path, nil, s)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("the host's answer to GET %s is not the expected JSON: %w", path, err)
	}
	return nil
}

// priceList fetches GET /v1/pricing and checks its signature by the key it names.
// Whether that key is the host's attested settlement key is attestedKey's to check.
func (c *client) priceList(ctx context.Context) (*settle.PriceList, error) {
	resp, err := c.sendSigned(ctx, http.MethodGet, "/v1/pricing", nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var l settle.PriceList
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&l); err != nil {
		return nil, fmt.Errorf("the host's price list is not the expected JSON: %w", err)
	}
	if err := l.Verify(nil); err != nil {
		return nil, fmt.Errorf("the host's price list: %w", err)
	}
	return &l, nil
}

// verifiedBoot fetches the host's boot evidence and verifies it against p and opts
// (and, over https, that it is the evidence the TLS handshake verified). On failure it
// writes the failed checks to w.
func (c *client) verifiedBoot(ctx context.Context, p *attest.Policy, opts attest.EvidenceOptions, w io.Writer) (*attest.Evidence, error) {
	boot, err := c.evidence(ctx, "/v1/attestation")
	if err != nil {
		return nil, err
	}
	report, err := attest.VerifyEvidence(*boot, *p, opts)
	if err != nil {
		return nil, err
	}
	if c.ratls != nil {
		report.Checks = append(report.Checks, ratlsCheck(c.ratls, boot))
	}
	if !report.OK() {
		for _, check := range report.Checks {
			if !check.OK {
				fmt.Fprintln(w, check)
			}
		}
		return nil, fmt.Errorf("the host's attestation does not verify: do not trust %s (see the FAIL lines above; `cocoon verify` shows every check)", c.base)
	}
	return boot, nil
}

// attestedKey verifies the host's boot evidence (verifiedBoot) and returns the
// settlement key its verified event log measures. The event log replays to the quoted
// RTMR3, so the key is the one the attested host holds: receipts and charges signed by
// it come from that host.
func (c *client) attestedKey(ctx context.Context, p *attest.Policy, opts attest.EvidenceOptions, w io.Writer) (ed25519.PublicKey, error) {
	boot, err := c.verifiedBoot(ctx, p, opts, w)
	if err != nil {
		return nil, err
	}
	events, err := attest.ParseEventLog(boot.EventLog) // VerifyEvidence parsed and replayed it
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(events, func(e attest.Event) bool { return e.Type == attest.EventSettlementKey })
	if i < 0 {
		return nil, fmt.Errorf("the host at %s measures no settlement key at boot: its receipts and charges are not attested, refusing", c.base)
	}
	return ed25519.PublicKey(events[i].Data), nil
}

// settledHost verifies the host and its price list: the list must be signed by the
// attested settlement key.
func (c *client) settledHost(ctx context.Context, p *attest.Policy, opts attest.EvidenceOptions, w io.Writer) (*settle.PriceList, error) {
	key, err := c.attestedKey(ctx, p, opts, w)
	if err != nil {
		return nil, err
	}
	l, err := c.priceList(ctx)
	if err != nil {
		return nil, err
	}
	if !key.Equal(ed25519.PublicKey(l.HostKey)) {
		return nil, fmt.Errorf("the host's price list is signed by key %x, but its attestation measures settlement key %x: refusing", l.HostKey, key)
	}
	return l, nil
}

// account fetches the host's view of s's account.
func (c *client) account(ctx context.Context, s *signer) (*settle.AccountView, error) {
	var v settle.AccountView
	if err := c.getSigned(ctx, "/v1/accounts/"+s.account, s, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// cliOutput writes aligned "name  value" lines.
type cliOutput struct{ tw *tabwriter.Writer }

func newOutput(w io.Writer) *cliOutput { return &cliOutput{tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)} }

func (o *cliOutput) line(name, value string) { fmt.Fprintf(o.tw, "%s\t%s\n", name, value) }

func (o *cliOutput) flush() error { return o.tw.Flush() }

// envHost is the default --host of the commands that need one.
func envHost() string { return envOr("COCOON_HOST", defaultHost) }

// billedHostFlags adds --host, --api-key, the trust flags and the account flags; the
// returned function builds the client and, when --escrow or a key flag is given, the
// signer that signs each request in place of the API key. The trust flags are taken
// with an http host too, whose boot evidence the command verifies itself.
func billedHostFlags(fs *flag.FlagSet) func() (*client, *signer, error) {
	build := connectFlags(fs, "API key, from the file cocoon-host serve names at start; unused with --escrow", true)
	account := addAccountFlags(fs)
	return func() (*client, *signer, error) {
		missingKey := missingKey + ", or sign requests for an escrow with --escrow and --seed-file"
		var s *signer
		if account.given() {
			var err error
			if s, err = account.signer(); err != nil {
				return nil, nil, err
			}
			missingKey = ""
		}
		c, err := build(missingKey)
		return c, s, err
	}
}
