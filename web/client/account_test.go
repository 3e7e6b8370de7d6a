package client

import (
	"bytes"
	"crypto/ed25519"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/settle"
)

var (
	settlementKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, 32))
	account       = "0:" + strings.Repeat("ab", 32)
)

// receiptChain builds n receipts of one account, signed by key, as a host's ledger
// would.
func receiptChain(n int, key ed25519.PrivateKey) []settle.Receipt {
	var out []settle.Receipt
	var cum uint64
	for i := 1; i <= n; i++ {
		r := settle.Receipt{Account: account, Seq: uint64(i), RequestHash: settle.RequestHash([]byte{byte(i)}), Model: "m",
			Usage:  settle.Usage{PromptTokens: uint64(10 * i), CompletionTokens: uint64(20 * i)},
			Prices: settle.PriceTable{PromptPerMillion: 100_000, CompletionPerMillion: 400_000}, LoadMilli: 1000,
			MaxCost: math.MaxUint32, Status: settle.StatusCompleted, Time: 1_700_000_000 + int64(i)}
		r.Cost = r.Prices.Cost(r.Usage, r.LoadMilli, r.MaxCost)
		cum += r.Cost
		r.Cumulative = cum
		r.Sign(key)
		out = append(out, r)
	}
	return out
}

// TestCheckReceipts: each way a host can overcharge through its receipts (a receipt
// signed by another key, a cost above what its usage comes to, a total that skips, a
// gap, a chain that stops short of the host's ledger) fails its check.
func TestCheckReceipts(t *testing.T) {
	_, otherKey, _ := ed25519.GenerateKey(nil)
	pub := settlementKey.Public().(ed25519.PublicKey)
	for _, tt := range []struct {
		name   string
		list   func() []settle.Receipt
		key    ed25519.PublicKey
		view   *settle.AccountView
		failed string // the check that fails, "" for none
	}{
		{"a good chain", func() []settle.Receipt { return receiptChain(3, settlementKey) }, pub, nil, ""},
		{"complete", func() []settle.Receipt { return receiptChain(3, settlementKey) }, pub,
			&settle.AccountView{LastSeq: 3, Cumulative: receiptChain(3, settlementKey)[2].Cumulative}, ""},
		{"another key", func() []settle.Receipt { return receiptChain(3, otherKey) }, pub, nil, "signatures"},
		{"cost above usage, re-signed", func() []settle.Receipt {
			l := receiptChain(3, settlementKey)
			l[1].Cost++
			l[1].Cumulative++
			l[2].Cumulative++
			l[1].Sign(settlementKey)
			l[2].Sign(settlementKey)
			return l
		}, pub, nil, "signatures"},
		{"a gap", func() []settle.Receipt { l := receiptChain(3, settlementKey); return append(l[:1], l[2]) }, pub, nil, "chain"},
		{"stops short of the ledger", func() []settle.Receipt { return receiptChain(2, settlementKey) }, pub,
			&settle.AccountView{LastSeq: 3, Cumulative: receiptChain(3, settlementKey)[2].Cumulative}, "complete"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checks, total := CheckReceipts(tt.list(), tt.key, "given", tt.view)
			failed := ""
			for _, c := range checks {
				if !c.OK && failed == "" {
					failed = c.Name
				}
			}
			if failed != tt.failed {
				t.Fatalf("failed check %q, want %q: %v", failed, tt.failed, checks)
			}
			if tt.failed == "" && total == 0 {
				t.Errorf("total 0 for a good chain")
			}
		})
	}
	checks, _ := CheckReceipts(receiptChain(1, otherKey), nil, "", nil)
	if !checks[0].Skipped {
		t.Errorf("without a key the settlement key check is not marked skipped: %v", checks[0])
	}
}

// TestReceiptsFile: a chain written and appended to reads back the same; a line that
// is not a receipt names its line.
func TestReceiptsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "receipts.jsonl")
	l := receiptChain(3, settlementKey)
	if err := WriteReceipts(path, l[:2]); err != nil {
		t.Fatal(err)
	}
	if err := AppendReceipt(path, &l[2]); err != nil {
		t.Fatal(err)
	}
	back, err := ReadReceipts(path)
	if err != nil || len(back) != 3 || back[2].Cumulative != l[2].Cumulative {
		t.Fatalf("read back %d receipts, %v", len(back), err)
	}
	if _, err := settle.VerifyChain(back, settlementKey.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	WriteReceipts(bad, l[:1])
	AppendReceipt(bad, &l[1])
	appendLine(t, bad, "{not json")
	if _, err := ReadReceipts(bad); err == nil || !strings.Contains(err.Error(), "bad.jsonl:3: not a receipt") {
		t.Errorf("err %v, want one naming line 3", err)
	}
}

// TestCheckReceipt: a billed answer's receipt must be for the escrow that signed the
// request, and a signed request must come with one.
func TestCheckReceipt(t *testing.T) {
	r := receiptChain(1, settlementKey)[0]
	mine := NewSigner(account, settlementKey)
	other := NewSigner("0:"+strings.Repeat("cd", 32), settlementKey)
	for _, tt := range []struct {
		name string
		r    *settle.Receipt
		s    *Signer
		want bool
		ok   bool
	}{
		{"mine", &r, mine, false, true},
		{"another escrow's", &r, other, false, false},
		{"none for a signed request", nil, mine, false, false},
		{"none wanted", nil, nil, true, false},
		{"none, not billed", nil, nil, false, true},
		{"forged", func() *settle.Receipt { f := r; f.Cost++; return &f }(), mine, false, false},
	} {
		if err := CheckReceipt(tt.r, tt.s, tt.want); (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}
