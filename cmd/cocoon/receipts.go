package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/settle"
	webclient "github.com/cocoonhost/cocoon/web/client"
)

// receipts fetches an account's receipts from the host, or reads a saved chain, and
// verifies the chain against the host's settlement key.
func receipts(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", `receipts --host URL --escrow ADDR --seed-file FILE [--from N] [--out FILE] [trust flags]
       cocoon receipts --file FILE [--settlement-key HEX]

Fetches the escrow's receipts from the host (a request signed by the client key), or reads
a chain saved as JSON lines (by --out, or by chat --receipts), and verifies it: every
receipt signed by the host's settlement key, its cost what its usage comes to at its
prices, sequence numbers without gaps, each cumulative total the previous one plus the
receipt's cost. The settlement key is --settlement-key, or with --host the key the host's
verified attestation measures (trust flags as for verify). Prints one line per check and
the total charged, and exits 1 when a check fails.`, stderr)
	account := addAccountFlags(fs)
	host := addTrustedHostFlags(fs, "")
	from := fs.Uint64("from", 1, "with --host: the first sequence number to fetch")
	out := fs.String("out", "", "with --host: also save the receipts to this file, as JSON lines")
	file := fs.String("file", "", "verify the receipts saved in this file (JSON lines of receipts), offline")
	keyHex := fs.String("settlement-key", "", "the host's settlement key, 64 hex digits (with --host, default: the key its attestation measures)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case (*file == "") == !host.given():
		return cli.UsageError("give --host URL to fetch the receipts, or --file FILE to verify saved ones")
	case *file != "" && (account.given() || *out != "" || *from != 1):
		return cli.UsageError("--file verifies a saved chain offline: --escrow, --seed-file, --client-key-file, --out and --from are for --host")
	case *from == 0:
		return cli.UsageError("--from: sequence numbers start at 1")
	}
	var key ed25519.PublicKey
	source := "given by --settlement-key"
	if *keyHex != "" {
		b, err := hex.DecodeString(*keyHex)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return cli.UsageError(fmt.Sprintf("--settlement-key %q: want 64 hex digits, an ed25519 public key", *keyHex))
		}
		key = b
	}

	var list []settle.Receipt
	var view *settle.AccountView
	if *file != "" {
		var err error
		if list, err = webclient.ReadReceipts(*file); err != nil {
			return err
		}
	} else {
		c, err := host.connect()
		if err != nil {
			return err
		}
		s, err := account.signer()
		if err != nil {
			return err
		}
		ctx := context.Background()
		if key == nil {
			if key, err = c.AttestedSettlementKey(ctx); err != nil {
				return printFailedChecks(err, stderr)
			}
			source = "measured in the host's verified attestation"
		}
		if list, err = c.Receipts(ctx, s, *from); err != nil {
			return err
		}
		if view, err = c.Account(ctx, s); err != nil {
			return err
		}
		if *out != "" {
			if err := webclient.WriteReceipts(*out, list); err != nil {
				return err
			}
		}
	}
	if len(list) == 0 {
		return errors.New("no receipts to verify")
	}

	checks, total := webclient.CheckReceipts(list, key, source, view)
	ok := true
	for _, c := range checks {
		fmt.Fprintln(stdout, c)
		ok = ok && c.OK
	}
	if !ok {
		return errors.New("the receipts do not verify (see the FAIL lines above)")
	}
	_, err := fmt.Fprintf(stdout, "charged: %s TON in total for account %s (%d nanoTON)\n", settle.FormatTON(total), list[0].Account, total)
	return err
}
