package main

import (
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/xssnick/tonutils-go/address"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	webclient "github.com/cocoonhost/cocoon/web/client"
)

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
func (a *accountOptions) signer() (*webclient.Signer, error) {
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
	return webclient.NewSigner(addr.StringRaw(), k), nil
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

// connect checks the flags and returns a client without an API key, which verifies
// the host's evidence against the trust flags.
func (h *trustedHost) connect() (*webclient.Client, error) {
	if err := checkHostURL(*h.base); err != nil {
		return nil, err
	}
	policy, opts, _, err := h.trust()
	if err != nil {
		return nil, err
	}
	return webclient.New(*h.base, webclient.WithTrust(*policy, opts))
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
func billedHostFlags(fs *flag.FlagSet) func() (*webclient.Client, *webclient.Signer, error) {
	build := connectFlags(fs, "API key, from the file cocoon-host serve names at start; unused with --escrow", true)
	account := addAccountFlags(fs)
	return func() (*webclient.Client, *webclient.Signer, error) {
		missingKey := missingKey + ", or sign requests for an escrow with --escrow and --seed-file"
		var s *webclient.Signer
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
