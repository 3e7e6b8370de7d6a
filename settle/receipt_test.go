package settle

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

var (
	testKey     = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	testPub     = testKey.Public().(ed25519.PublicKey)
	testAccount = "0:" + strings.Repeat("ab", 32)
	testPrices  = PriceTable{PromptPerMillion: 100_000, CompletionPerMillion: 400_000, ComputePerMillion: 10_000}
)

// chain builds n signed receipts of one account, as the ledger would.
func chain(n int) []Receipt {
	var out []Receipt
	var cum uint64
	for i := 1; i <= n; i++ {
		r := Receipt{Account: testAccount, Seq: uint64(i), RequestHash: RequestHash([]byte{byte(i)}), Pipeline: "p", Model: "m",
			Usage: Usage{PromptTokens: uint64(10 * i), CompletionTokens: uint64(20 * i), ComputeUnits: 300}, Prices: testPrices,
			LoadMilli: 1000, MaxCost: math.MaxUint32, Status: StatusCompleted, Time: 1_700_000_000 + int64(i)}
		r.Cost = r.Prices.Cost(r.Usage, r.LoadMilli, r.MaxCost)
		cum += r.Cost
		r.Cumulative = cum
		r.Sign(testKey)
		out = append(out, r)
	}
	return out
}

func TestReceiptSignature(t *testing.T) {
	r := chain(1)[0]
	if err := r.Verify(testPub); err != nil {
		t.Fatal(err)
	}
	// Every signed member matters.
	for name, tamper := range map[string]func(*Receipt){
		"account":      func(r *Receipt) { r.Account = "0:" + strings.Repeat("cd", 32) },
		"seq":          func(r *Receipt) { r.Seq++ },
		"request hash": func(r *Receipt) { r.RequestHash = RequestHash(nil) },
		"pipeline":     func(r *Receipt) { r.Pipeline = "q" },
		"model":        func(r *Receipt) { r.Model = "n" },
		"max cost":     func(r *Receipt) { r.MaxCost-- },
		"cumulative":   func(r *Receipt) { r.Cumulative++ },
		"status":       func(r *Receipt) { r.Status = StatusFailed },
		"time":         func(r *Receipt) { r.Time++ },
		"host key":     func(r *Receipt) { r.HostKey = bytes.Repeat([]byte{1}, 32) },
		"signature":    func(r *Receipt) { r.Signature[0] ^= 1 },
		// Usage and price changes also break the cost check; re-deriving the cost
		// shows the signature alone catches them.
		"tokens": func(r *Receipt) { r.Usage.CompletionTokens++; r.Cost = r.Prices.Cost(r.Usage, r.LoadMilli, r.MaxCost) },
		"price":  func(r *Receipt) { r.Prices.PromptPerMillion++; r.Cost = r.Prices.Cost(r.Usage, r.LoadMilli, r.MaxCost) },
		"load":   func(r *Receipt) { r.LoadMilli++; r.Cost = r.Prices.Cost(r.Usage, r.LoadMilli, r.MaxCost) },
	} {
		bad := r
		bad.Signature = append([]byte(nil), r.Signature...)
		tamper(&bad)
		if err := bad.Verify(nil); !errors.Is(err, ErrReceipt) {
			t.Errorf("a receipt with a changed %s: %v", name, err)
		}
	}
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, 32))
	if err := r.Verify(other.Public().(ed25519.PublicKey)); err == nil {
		t.Error("a receipt verifies against another host's key")
	}
	// A host that signs a wrong cost is caught even with a valid signature.
	wrong := r
	wrong.Cost++
	wrong.Sign(testKey)
	if err := wrong.Verify(testPub); err == nil || !strings.Contains(err.Error(), "its usage at its prices") {
		t.Errorf("an overcharge: %v", err)
	}
	unknown := r
	unknown.Status = "refunded"
	unknown.Sign(testKey)
	if err := unknown.Verify(testPub); err == nil {
		t.Error("an unknown status verifies")
	}
}

func TestReceiptJSONRoundTrip(t *testing.T) {
	r := chain(1)[0]
	var back Receipt
	if err := json.Unmarshal([]byte(r.MarshalHeader()), &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Verify(testPub); err != nil {
		t.Fatalf("a receipt does not verify after its header encoding: %v", err)
	}
	// Amounts are strings, so that JavaScript clients read them exactly.
	if !strings.Contains(r.MarshalHeader(), `"cumulative":"`) {
		t.Errorf("cumulative is not a JSON string: %s", r.MarshalHeader())
	}
}

func TestVerifyChain(t *testing.T) {
	good := chain(5)
	total, err := VerifyChain(good, testPub)
	if err != nil || total != good[4].Cumulative {
		t.Fatalf("VerifyChain = %d, %v; want %d", total, err, good[4].Cumulative)
	}
	if total, err := VerifyChain(good[2:], testPub); err != nil || total != good[4].Cumulative {
		t.Fatalf("a chain from seq 3: %d, %v", total, err)
	}

	otherAccount := chain(5)
	otherAccount[3].Account = "0:" + strings.Repeat("cd", 32)
	otherAccount[3].Sign(testKey)
	skewed := chain(5)
	skewed[2].Cumulative += 5
	skewed[2].Sign(testKey)
	badStart := chain(2)
	badStart[0].Cumulative += 7
	badStart[0].Sign(testKey)
	for _, tt := range []struct {
		name     string
		receipts []Receipt
		want     string
	}{
		{"empty", nil, "no receipts"},
		{"a gap", append(append([]Receipt{}, good[:2]...), good[3:]...), "expected seq 3, found 4"},
		{"reordered", []Receipt{good[0], good[2], good[1]}, "expected seq 2, found 3"},
		{"a duplicate", []Receipt{good[0], good[1], good[1]}, "expected seq 3, found 2"},
		{"another account", otherAccount, "is for account"},
		{"a sum that does not add up", skewed, "cumulative"},
		{"a first receipt that does not start at its cost", badStart, "cannot follow"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := VerifyChain(tt.receipts, testPub); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("VerifyChain: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func BenchmarkReceiptSign(b *testing.B) {
	r := chain(1)[0]
	b.ReportAllocs()
	for b.Loop() {
		r.Sign(testKey)
	}
}

func BenchmarkReceiptVerify(b *testing.B) {
	r := chain(1)[0]
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Verify(testPub); err != nil {
			b.Fatal(err)
		}
	}
}
