package billing_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/address"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/escrow"
)

// TestReopenedEscrowIsNotChargedTheOldReceipts follows a client that closes its escrow
// and opens one again with the same parameters (`cocoon channel open --channel-id N`):
// the same address, a new contract whose charged total starts at 0 again. The host's
// ledger names accounts by address; had it gone on with the old chain, the new escrow
// would be charged the old receipts' total a second time with its first charge. The
// host refuses the new instance instead (its records would bill it for what the old
// one paid) and never charges it.
func TestReopenedEscrowIsNotChargedTheOldReceipts(t *testing.T) {
	e := newEnv(t)
	p := e.params(7)
	s := e.settler("0.1", time.Hour)
	acct := e.closeUnsettled(s, p)
	oldTotal := e.totals(acct).Settled
	if again := e.deploy(p, "3"); again != acct {
		t.Fatalf("the same parameters gave another address, %s", again)
	}
	e.chain.Advance(escrowTTL)
	// Not the new contract's to pay.
	if n, err := s.Settle(ctx); err != nil || n != 0 || e.state(acct).Charged.Sign() != 0 {
		t.Fatalf("the settler sent %d charges (%v): the reopened escrow is charged %s for the closed one's receipts", n, err, e.state(acct).Charged)
	}

	tk, err := e.admit(e.svc, e.admission(acct, body(3), 500, 0))
	if err == nil {
		if _, err := tk.Finish(ctx, settle.Usage{PromptTokens: 500}, settle.StatusCompleted, nil); err != nil {
			t.Fatal(err)
		}
		e.requestWithdrawal(acct)
		e.chain.Advance(escrowTTL)
		s.Settle(ctx)
		t.Fatalf("the reopened escrow was served and charged %d nanoTON for a request of %d (the old escrow paid %d)",
			e.state(acct).Charged.Uint64(), nano("0.0005"), oldTotal)
	}
	code(t, err, settle.CodeUnknownAccount, "opened again")
	if n, err := s.Settle(ctx); err != nil || n != 0 || e.state(acct).Charged.Sign() != 0 {
		t.Fatalf("the settler sent %d charges (%v); the reopened escrow is charged %s", n, err, e.state(acct).Charged)
	}
}

// closeUnsettled deploys the escrow of p, bills it, has s settle it, bills it again,
// and lets the client withdraw everything before s's next round: the escrow is gone
// with 0.2 TON of receipts the host never charged. It returns the escrow's account.
func (e *env) closeUnsettled(s *billing.Settler, p escrow.Params) string {
	e.t.Helper()
	acct := e.deploy(p, "3")
	e.spendTON(acct, 1, "0.5")
	e.settle(s, acct)
	e.settled(acct)
	// A receipt the host has not charged yet when the client asks for its money
	// back, and no settlement round until the timeout: the host lost it.
	e.spendTON(acct, 2, "0.2")
	e.requestWithdrawal(acct)
	e.chain.Advance(time.Duration(p.Timeout)*time.Second + time.Minute)
	e.send(e.client, address.MustParseRawAddr(acct), "0.05", escrow.WithdrawBody(4), nil)
	e.succeeded(address.MustParseRawAddr(acct))
	return acct
}

// TestSettlerReportsAnAccountForItsOperatorOnce: an escrow gone with receipts
// uncharged, then opened again at the same address, is skipped by every settlement
// round until the operator acts. Each is logged once, at its level, and again only when
// what is logged changes; the other rounds log a debug line, not an error a minute.
func TestSettlerReportsAnAccountForItsOperatorOnce(t *testing.T) {
	e := newEnv(t)
	log := &logRecorder{}
	s := e.settlerWith(billing.SettlerConfig{Threshold: nano("0.1"), MaxDelay: time.Hour, Escrows: e.escrows, Logger: slog.New(log)})
	p := e.params(7)
	acct := e.closeUnsettled(s, p)
	const gone, reopened = "escrow gone before its last charge", "opened again at the same address"
	rounds := func(n int) {
		t.Helper()
		for range n {
			if sent, err := s.Settle(ctx); err != nil || sent != 0 {
				t.Fatalf("Settle = %d, %v; want nothing sent", sent, err)
			}
			e.chain.Advance(time.Minute)
		}
	}
	for _, step := range []struct {
		name   string
		before func()
		rounds int
		want   map[slog.Level]map[string]int
	}{
		{"gone", func() {}, 3, map[slog.Level]map[string]int{slog.LevelWarn: {gone: 1}, slog.LevelDebug: {gone: 2}}},
		{"opened again", func() { e.deploy(p, "3") }, 4, map[slog.Level]map[string]int{
			slog.LevelWarn: {gone: 1}, slog.LevelError: {reopened: 1}, slog.LevelDebug: {gone: 2, reopened: 3}}},
		// Its figures change (the new escrow charged, by a host that did not wait for
		// this one's report): logged at error level again.
		{"charged", func() { e.charge(acct, nano("0.01")) }, 2, map[slog.Level]map[string]int{
			slog.LevelWarn: {gone: 1}, slog.LevelError: {reopened: 2}, slog.LevelDebug: {gone: 2, reopened: 4}}},
	} {
		step.before()
		rounds(step.rounds)
		for level, msgs := range step.want {
			for msg, n := range msgs {
				if got := log.count(level, acct, msg); got != n {
					t.Fatalf("after %s: %d %v lines %q, want %d", step.name, got, level, msg, n)
				}
			}
		}
	}
}

// logRecorder is a slog.Handler that keeps every record, at every level.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}

func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// count is how many records at level about account have a message containing msg.
func (r *logRecorder) count(level slog.Level, account, msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.records {
		about := false
		rec.Attrs(func(a slog.Attr) bool {
			about = about || (a.Key == "account" && a.Value.String() == account)
			return !about
		})
		if rec.Level == level && about && strings.Contains(rec.Message, msg) {
			n++
		}
	}
	return n
}

// TestAdmissionAfterASettlementWithinTheCache: an escrow state cached before the
// host's latest charge (by a settler that files nothing in the cache) shows less
// charged than the ledger settled, as a reopened escrow does; admission reads the
// chain again rather than refuse the client.
func TestAdmissionAfterASettlementWithinTheCache(t *testing.T) {
	e := newEnv(t)
	acct := e.deploy(e.params(1), "3")
	e.spendTON(acct, 1, "0.5") // the escrow's state is cached, charged 0
	e.settle(e.settlerWith(billing.SettlerConfig{Threshold: nano("0.1"), MaxDelay: time.Hour}), acct)
	if r := e.spend(e.svc, acct, 2, 10, 10); r.Seq != 2 {
		t.Fatalf("seq %d, want 2", r.Seq)
	}
}
