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

// TestCheckReceipt: the receipt of a billed answer passes only when the attested
// settlement key signed it, for the pipeline, escrow and request the client sent, at
// the prices of the host's price list for its model, within the list's load curve.
// Each forged receipt is signed by the settlement key (a lying host) unless the case
// is about the key, and costs what its usage comes to, so that only CheckReceipt's
// own checks catch it.
func TestCheckReceipt(t *testing.T) {
	list := testPriceList(testKey)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, 32))
	good := chain(1)[0]
	forged := func(change func(*Receipt), key ed25519.PrivateKey) Receipt {
		r := good
		change(&r)
		r.Cost = r.Prices.Cost(r.Usage, r.LoadMilli, r.MaxCost)
		r.Cumulative = r.Cost
		r.Sign(key)
		return r
	}
	want := ReceiptWant{SettlementKey: testPub, PriceList: list, Pipeline: good.Pipeline, Account: good.Account, RequestHash: good.RequestHash}
	otherList := testPriceList(other)
	for _, tt := range []struct {
		name   string
		r      Receipt
		change func(*ReceiptWant)
		err    string // "" when it passes
	}{
		{"good", good, nil, ""},
		{"good, without what the client does not know", good, func(w *ReceiptWant) { w.PriceList, w.Account, w.RequestHash = nil, "", "" }, ""},
		{"good, at the top of the curve", forged(func(r *Receipt) { r.LoadMilli = 2000 }, testKey), nil, ""},
		{"signed by a key not attested", forged(func(*Receipt) {}, other), nil, "signed by another key"},
		{"no attested settlement key", good, func(w *ReceiptWant) { w.SettlementKey = nil }, "measures no settlement key"},
		{"another pipeline", forged(func(r *Receipt) { r.Pipeline = "q" }, testKey), nil, `for pipeline "q", the request went to "p"`},
		{"the bare endpoint's, for a pipeline's request", forged(func(r *Receipt) { r.Pipeline = "" }, testKey), nil, "for pipeline"},
		{"another account", forged(func(r *Receipt) { r.Account = "0:" + strings.Repeat("cd", 32) }, testKey), nil, "not for escrow"},
		{"another request", forged(func(r *Receipt) { r.RequestHash = RequestHash([]byte("another")) }, testKey), nil, "not this one"},
		{"prices off the list", forged(func(r *Receipt) { r.Prices.CompletionPerMillion *= 2 }, testKey), nil, "not the price list's"},
		{"a model the list does not price", forged(func(r *Receipt) { r.Model = "unlisted" }, testKey), nil, "not the price list's"},
		{"load above the curve", forged(func(r *Receipt) { r.LoadMilli = 2001 }, testKey), nil, "not the price list's"},
		{"load below the curve", forged(func(r *Receipt) { r.LoadMilli = 999 }, testKey), nil, "not the price list's"},
		{"a price list of another key", good, func(w *ReceiptWant) { w.PriceList = otherList }, "not signed by the expected key"},
		{"seq 0", func() Receipt { r := good; r.Seq = 0; r.Sign(testKey); return r }(), nil, "cannot follow from its cost"},
		{"a total below its own cost", func() Receipt { r := good; r.Seq, r.Cumulative = 2, r.Cost-1; r.Sign(testKey); return r }(), nil, "cannot follow from its cost"},
		{"the first bill with a total above its cost", func() Receipt { r := good; r.Cumulative += 5; r.Sign(testKey); return r }(), nil, "cannot follow from its cost"},
		{"a later bill with a total above its cost", func() Receipt { r := good; r.Seq, r.Cumulative = 7, r.Cost+5; r.Sign(testKey); return r }(), nil, ""},
		{"overcharged", func() Receipt { r := good; r.Cost++; r.Cumulative++; r.Sign(testKey); return r }(), nil, "its usage at its prices"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := want
			if tt.change != nil {
				tt.change(&w)
			}
			err := CheckReceipt(&tt.r, w)
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrReceipt) || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err %v, want an ErrReceipt containing %q", err, tt.err)
			}
		})
	}
}

// testPriceList is a price list of testPrices for model "m", at loads from 1000‰ to
// 2000‰, signed by key.
func testPriceList(key ed25519.PrivateKey) *PriceList {
	curve := LoadCurve{MinMilli: 1000, MaxMilli: 2000}
	l := &PriceList{Prices: Prices{Models: []ModelPrice{{Model: "m", Prices: testPrices}}}, Windows: SameWindow(DefaultContextWindow), LoadMilli: curve.Coefficient(0), Curve: curve,
		Wallet: "0:" + strings.Repeat("01", 32)}
	l.Sign(key)
	return l
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
	// A chain whose numbers wrap past 2⁶⁴−1 to 0 (a ledger's counter overflowing, or a
	// host hiding that it started a chain over) and one that starts at 0, which no
	// host issues: both refused, as CheckReceipt refuses seq 0.
	resequenced := func(seqs ...uint64) []Receipt {
		rs := chain(len(seqs))
		for i := range rs {
			rs[i].Seq = seqs[i]
			rs[i].Sign(testKey)
		}
		return rs
	}
	for _, tt := range []struct {
		name     string
		receipts []Receipt
		want     string
	}{
		{"empty", nil, "no receipts"},
		{"numbers that wrap", resequenced(math.MaxUint64-1, math.MaxUint64, 0), "after seq 18446744073709551615"},
		{"from seq 0", resequenced(0, 1, 2), "seq 0"},
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

// BenchmarkCheckReceipt is a client's work on each billed answer it reads: the
// receipt's signature and the price list's, and the list's JSON encoding.
// Compare with BenchmarkReceiptVerify, the receipt's signature alone.
func BenchmarkCheckReceipt(b *testing.B) {
	r := chain(1)[0]
	want := ReceiptWant{SettlementKey: testPub, PriceList: testPriceList(testKey), Pipeline: r.Pipeline, Account: r.Account, RequestHash: r.RequestHash}
	for b.Loop() {
		if err := CheckReceipt(&r, want); err != nil {
			b.Fatal(err)
		}
	}
}
