package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/settle"
)

// receiptsPage is how many receipts one request fetches, the host's maximum.
const receiptsPage = 1000

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
		if list, err = readReceipts(*file); err != nil {
			return err
		}
	} else {
		c, policy, opts, err := host.connect()
		if err != nil {
			return err
		}
		s, err := account.signer()
		if err != nil {
			return err
		}
		ctx := context.Background()
		if key == nil {
			if key, err = c.attestedKey(ctx, policy, opts, stderr); err != nil {
				return err
			}
			source = "measured in the host's verified attestation"
		}
		if list, err = c.fetchReceipts(ctx, s, *from); err != nil {
			return err
		}
		if view, err = c.account(ctx, s); err != nil {
			return err
		}
		if *out != "" {
			if err := writeReceipts(*out, list); err != nil {
				return err
			}
		}
	}
	if len(list) == 0 {
		return errors.New("no receipts to verify")
	}

	checks, total := checkReceipts(list, key, source, view)
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

// checkReceipts verifies a chain of receipts against key (nil: the first receipt's own
// key, reported as not checked) and, when view is the host's, that the chain reaches
// the end of the host's ledger. It returns the checks and the chain's last cumulative.
func checkReceipts(list []settle.Receipt, key ed25519.PublicKey, source string, view *settle.AccountView) ([]attest.Check, uint64) {
	first, last := list[0], list[len(list)-1]
	var checks []attest.Check
	if key != nil {
		checks = append(checks, attest.Check{Name: "settlement key", OK: true, Detail: fmt.Sprintf("%x, %s", []byte(key), source)})
	} else {
		key = first.HostKey
		checks = append(checks, attest.Check{Name: "settlement key", OK: true, Skipped: true,
			Detail: fmt.Sprintf("not checked: the receipts name key %x; pass --settlement-key, or fetch them with --host, to check it is the host's attested key", first.HostKey)})
	}

	signatures := attest.Check{Name: "signatures", OK: true, Detail: fmt.Sprintf("%d receipts, each signed by the settlement key and costing what its usage comes to at its prices and load", len(list))}
	for i := range list {
		if err := list[i].Verify(key); err != nil {
			signatures = attest.Check{Name: "signatures", Detail: err.Error()}
			break
		}
	}
	checks = append(checks, signatures)

	total, err := settle.VerifyChain(list, key)
	if err != nil {
		checks = append(checks, attest.Check{Name: "chain", Detail: err.Error()})
		return checks, 0
	}
	checks = append(checks,
		attest.Check{Name: "chain", OK: true, Detail: fmt.Sprintf("account %s, seq %d to %d without gaps, each cumulative the previous one plus the receipt's cost", first.Account, first.Seq, last.Seq)},
		attest.Check{Name: "total", OK: true, Detail: fmt.Sprintf("%s TON charged by seq %d, of which %s TON by these %d receipts",
			settle.FormatTON(total), last.Seq, settle.FormatTON(total-(first.Cumulative-first.Cost)), len(list))})
	if view != nil {
		if view.LastSeq == last.Seq && view.Cumulative == last.Cumulative {
			checks = append(checks, attest.Check{Name: "complete", OK: true, Detail: fmt.Sprintf("the host's ledger ends at seq %d too, with the same total", last.Seq)})
		} else {
			checks = append(checks, attest.Check{Name: "complete", Detail: fmt.Sprintf("the host's ledger ends at seq %d with %s TON, the receipts served at seq %d with %s TON",
				view.LastSeq, settle.FormatTON(view.Cumulative), last.Seq, settle.FormatTON(last.Cumulative))})
		}
	}
	return checks, total
}

// fetchReceipts pages through the account's receipts from seq from on.
func (c *client) fetchReceipts(ctx context.Context, s *signer, from uint64) ([]settle.Receipt, error) {
	var all []settle.Receipt
	for {
		var page struct {
			Receipts []settle.Receipt `json:"receipts"`
		}
		path := "/v1/accounts/" + s.account + "/receipts?from=" + strconv.FormatUint(from, 10) + "&limit=" + strconv.Itoa(receiptsPage)
		if err := c.getSigned(ctx, path, s, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Receipts...)
		if len(page.Receipts) < receiptsPage {
			return all, nil
		}
		from = page.Receipts[len(page.Receipts)-1].Seq + 1
	}
}

// readReceipts reads a chain saved as JSON lines; blank lines are skipped.
func readReceipts(path string) ([]settle.Receipt, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var list []settle.Receipt
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var r settle.Receipt
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, fmt.Errorf("%s:%d: not a receipt: %w", path, n, err)
		}
		list = append(list, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return list, nil
}

// writeReceipts saves a chain as JSON lines.
func writeReceipts(path string, list []settle.Receipt) error {
	var b bytes.Buffer
	for i := range list {
		b.WriteString(list[i].MarshalHeader())
		b.WriteByte('\n')
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// appendReceipt adds one receipt to a chain saved as JSON lines.
func appendReceipt(path string, r *settle.Receipt) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = io.WriteString(f, r.MarshalHeader()+"\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
