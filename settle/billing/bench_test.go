package billing_test

import (
	"math"
	"testing"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
)

// The benchmarks of a request's hot path come in pairs measured in the same run: the
// Service's (Authenticate and Admit: the timestamp, the escrow from ChainEscrows' cache,
// the client's signature, the quote, the ledger) and the ledger's alone, so that the
// admission's own cost is the difference. Client-side signing happens before the timer
// starts: it is the client's cost, not the host's.

// signedAdmissions are n requests to account for up to 100 prompt and 100 completion
// tokens, each signed with a new nonce.
func (e *env) signedAdmissions(account string, n int) []request {
	out := make([]request, n)
	for i := range out {
		out[i] = e.admission(account, body(i), 100, 100)
	}
	return out
}

// requestHashes are n distinct request hashes, for the ledger-only baselines.
func requestHashes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = settle.RequestHash(body(i))
	}
	return out
}

func opsPerSecond(b *testing.B, n int) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkAdmitFinish is a billed request's whole settlement cost: a signed request's
// Authenticate and Admit, and Finish with its receipt signature and the ledger's fsync.
func BenchmarkAdmitFinish(b *testing.B) {
	e := newEnv(b)
	acct := e.deploy(e.params(1), "100")
	requests := e.signedAdmissions(acct, b.N)
	usage := settle.Usage{PromptTokens: 50, CompletionTokens: 50}
	if _, err := e.escrows.Escrow(ctx, acct); err != nil { // cached from here on
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		tk, err := e.admit(e.svc, requests[i])
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tk.Finish(ctx, usage, settle.StatusCompleted, nil); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSecond(b, b.N)
}

// BenchmarkReserveCommit is BenchmarkAdmitFinish's baseline: the same receipts through
// the ledger alone (Reserve, and Commit with the receipt signature and the fsync).
func BenchmarkReserveCommit(b *testing.B) {
	e := newEnv(b)
	acct := e.deploy(e.params(1), "100")
	hashes := requestHashes(b.N)
	limit := deposited("100")
	cost := maxCost(100, 100)
	now := e.chain.Now().Unix()
	b.ResetTimer()
	for i := range b.N {
		hash := hashes[i]
		id, err := e.ledger.Reserve(ctx, billing.Reservation{Account: acct, RequestHash: hash, MaxCost: cost, Limit: limit})
		if err != nil {
			b.Fatal(err)
		}
		receipt := &settle.Receipt{Account: acct, RequestHash: hash, Model: "m", Usage: settle.Usage{PromptTokens: 50, CompletionTokens: 50},
			Prices: prices, LoadMilli: 1000, MaxCost: cost, Status: settle.StatusCompleted, Time: now}
		receipt.Cost = prices.Cost(receipt.Usage, receipt.LoadMilli, cost)
		if err := e.ledger.Commit(ctx, id, receipt, nil, func(r *settle.Receipt) { r.Sign(e.hostKey) }); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSecond(b, b.N)
}

// BenchmarkAdmitSigned is the admission check alone: a signed request's Authenticate
// and Admit against an escrow in ChainEscrows' cache. The holds add up (on a deposit
// that covers them all), as a host's do while their requests run.
func BenchmarkAdmitSigned(b *testing.B) {
	e := newEnv(b)
	acct := e.deploy(e.params(1), "100")
	requests := e.signedAdmissions(acct, b.N)
	if _, err := e.escrows.Escrow(ctx, acct); err != nil { // cached from here on
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := e.admit(e.svc, requests[i]); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSecond(b, b.N)
}

// BenchmarkReserve is BenchmarkAdmitSigned's baseline: the same holds through the
// ledger alone (with no limit: this one runs far more iterations than a deposit of
// 100 TON covers).
func BenchmarkReserve(b *testing.B) {
	e := newEnv(b)
	acct := e.deploy(e.params(1), "100")
	hashes := requestHashes(b.N)
	cost := maxCost(100, 100)
	b.ResetTimer()
	for i := range b.N {
		if _, err := e.ledger.Reserve(ctx, billing.Reservation{Account: acct, RequestHash: hashes[i], MaxCost: cost, Limit: math.MaxUint64}); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSecond(b, b.N)
}

// BenchmarkVerifyChain1000 is what a client (or an auditor) spends checking an
// account's history: VerifyChain on 1000 receipts the Service made.
func BenchmarkVerifyChain1000(b *testing.B) {
	e := newEnv(b)
	acct := e.deploy(e.params(1), "100")
	for i := range 1000 {
		e.spend(e.svc, acct, i, 100, 100)
	}
	receipts, err := e.svc.Receipts(ctx, acct, 1, math.MaxInt32)
	if err != nil || len(receipts) != 1000 {
		b.Fatalf("%d receipts, %v", len(receipts), err)
	}
	want := e.totals(acct).Cumulative
	key := e.svc.PublicKey()
	for b.Loop() {
		if cum, err := settle.VerifyChain(receipts, key); err != nil || cum != want {
			b.Fatalf("VerifyChain = %d, %v; want %d", cum, err, want)
		}
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "receipts/s")
}
