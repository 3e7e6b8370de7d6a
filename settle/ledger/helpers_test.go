package ledger_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/ledger"
)

var ctx = context.Background()

// hostKey signs every receipt in these tests; it is fixed so that the crash test's child
// process signs with the same key.
var hostKey = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))

// prices make a prompt token cost 1 nanoTON at load 1000, so a receipt for n prompt
// tokens costs n (capped at its MaxCost) and still verifies.
var prices = settle.PriceTable{PromptPerMillion: 1_000_000, CompletionPerMillion: 3_000_000}

// macKey authenticates the records of every ledger in these tests, the crash test's
// child included.
var macKey = bytes.Repeat([]byte{0x4d}, ledger.MinMACKey)

func sign(r *settle.Receipt) { r.Sign(hostKey) }

func account(i int) string { return fmt.Sprintf("0:%064x", i) }

func hash(parts ...any) string { return settle.RequestHash(fmt.Append(nil, parts...)) }

// bill is the receipt for res's request costing cost (at most res.MaxCost).
func bill(res billing.Reservation, cost uint64) *settle.Receipt {
	r := &settle.Receipt{
		Account:     res.Account,
		RequestHash: res.RequestHash,
		Model:       "test-model",
		Usage:       settle.Usage{PromptTokens: cost},
		Prices:      prices,
		LoadMilli:   1000,
		MaxCost:     res.MaxCost,
		Status:      settle.StatusCompleted,
		Time:        time.Now().Unix(),
	}
	r.Cost = prices.Cost(r.Usage, r.LoadMilli, r.MaxCost)
	return r
}

// openLedger opens path (a new file in a temporary directory if empty) and closes it at
// the end of the test.
func openLedger(t testing.TB, path string) (*ledger.Ledger, string) {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "ledger.db")
	}
	l, err := ledger.Open(path, macKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, path
}

// reopen closes l and opens its file again.
func reopen(t testing.TB, l *ledger.Ledger, path string) *ledger.Ledger {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, _ = openLedger(t, path)
	return l
}

// commit reserves res and commits it at cost with response, returning the receipt.
func commit(t testing.TB, l *ledger.Ledger, res billing.Reservation, cost uint64, response []byte) settle.Receipt {
	t.Helper()
	id, err := l.Reserve(ctx, res)
	if err != nil {
		t.Fatalf("reserve %s: %v", res.RequestHash, err)
	}
	r := bill(res, cost)
	if err := l.Commit(ctx, id, r, response, sign); err != nil {
		t.Fatalf("commit %s: %v", res.RequestHash, err)
	}
	return *r
}

// verifyAll checks every account's whole chain against hostKey and its totals, that no
// request hash is billed twice, and returns each account's receipts.
func verifyAll(t testing.TB, l *ledger.Ledger, accounts []string) map[string][]settle.Receipt {
	t.Helper()
	chains := make(map[string][]settle.Receipt)
	seen := make(map[string]string)
	for _, a := range accounts {
		totals, err := l.Account(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := l.Receipts(ctx, a, 1, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(rs)) != totals.LastSeq {
			t.Fatalf("account %s: %d receipts, last seq %d", a, len(rs), totals.LastSeq)
		}
		if len(rs) == 0 {
			continue
		}
		if rs[0].Seq != 1 {
			t.Fatalf("account %s: chain starts at seq %d", a, rs[0].Seq)
		}
		cum, err := settle.VerifyChain(rs, hostKey.Public().(ed25519.PublicKey))
		if err != nil {
			t.Fatalf("account %s: %v", a, err)
		}
		if cum != totals.Cumulative {
			t.Fatalf("account %s: chain adds up to %d, totals say %d", a, cum, totals.Cumulative)
		}
		for _, r := range rs {
			key := r.Account + " " + r.RequestHash
			if prev, dup := seen[key]; dup {
				t.Fatalf("request %s billed twice: %s and seq %d", r.RequestHash, prev, r.Seq)
			}
			seen[key] = fmt.Sprint("seq ", r.Seq)
		}
		chains[a] = rs
	}
	return chains
}
