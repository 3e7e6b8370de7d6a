package billing_test

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/escrow"
	"github.com/cocoonhost/cocoon/settle/tonemu"
)

// settler is a Settler of e's host on the chain's clock, logging to the test, that
// files what it reads in the service's escrow cache, as cocoon-host's does.
func (e *env) settler(threshold string, maxDelay time.Duration) *billing.Settler {
	e.t.Helper()
	return e.settlerWith(billing.SettlerConfig{Threshold: nano(threshold), MaxDelay: maxDelay, Escrows: e.escrows,
		Logger: slog.New(slog.NewTextHandler(e.t.Output(), nil))})
}

// settlerWith is a Settler of e's host on the chain's clock with cfg's threshold, delay,
// escrow cache, logger and store (default: e's ledger).
func (e *env) settlerWith(cfg billing.SettlerConfig) *billing.Settler {
	e.t.Helper()
	if cfg.Store == nil {
		cfg.Store = e.ledger
	}
	cfg.API, cfg.Wallet, cfg.Key, cfg.Now = e.chain, e.host, e.hostKey, e.chain.Now
	s, err := billing.NewSettler(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// spendTON bills account a completed request costing ton.
func (e *env) spendTON(account string, n int, ton string) {
	e.t.Helper()
	e.spend(e.svc, account, n, nano(ton)/1000, 0) // a prompt token is 1000 nanoTON
}

// sends are the host wallet's transactions on external messages: one per wallet send.
func (e *env) sends() []*tonemu.Transaction {
	var out []*tonemu.Transaction
	for _, tx := range e.chain.Transactions(e.host.WalletAddress()) {
		if tx.Tx.IO.In != nil && tx.Tx.IO.In.MsgType == tlb.MsgTypeExternalIn {
			out = append(out, tx)
		}
	}
	return out
}

// settle runs one round of s and checks that it sent one charge to each of accounts,
// all in one wallet transaction (none if there are none), and that each of them is now
// charged on-chain exactly what its receipts add up to, and recorded so.
func (e *env) settle(s *billing.Settler, accounts ...string) {
	e.t.Helper()
	before := len(e.sends())
	charged := make([]uint64, len(accounts))
	for i, a := range accounts {
		charged[i] = e.state(a).Charged.Uint64()
	}
	n, err := s.Settle(ctx)
	if err != nil || n != len(accounts) {
		e.t.Fatalf("Settle = %d, %v; want %d charges", n, err, len(accounts))
	}
	sends := e.sends()[before:]
	switch {
	case len(accounts) == 0 && len(sends) != 0:
		e.t.Fatalf("%d wallet transactions for no charge", len(sends))
	case len(accounts) == 0:
		return
	case len(sends) != 1 || int(sends[0].Tx.OutMsgCount) != len(accounts) || !sends[0].Success:
		e.t.Fatalf("%d wallet transactions for %d charges, want one with a message each", len(sends), len(accounts))
	}
	for i, a := range accounts {
		tx := e.chain.LastTransaction(address.MustParseRawAddr(a))
		if !tx.Success || !tx.Tx.IO.In.Msg.SenderAddr().Equals(e.host.WalletAddress()) {
			e.t.Fatalf("escrow %s: last transaction %+v is not the host's charge", a, tx)
		}
		if got := e.settled(a); got <= charged[i] {
			e.t.Fatalf("escrow %s still charged %d", a, got)
		}
	}
}

// settled checks that the escrow at account is charged what its verified receipt
// chain adds up to, and that the ledger records it settled, and returns the amount.
func (e *env) settled(account string) uint64 {
	e.t.Helper()
	_, cum := e.chainOf(account)
	charged := e.state(account).Charged.Uint64()
	if tot := e.totals(account); charged != cum || tot.Cumulative != cum || tot.Settled != cum || tot.SettledAt.IsZero() {
		e.t.Fatalf("escrow %s charged %d; receipts add up to %d; ledger %+v", account, charged, cum, tot)
	}
	return charged
}

// unsettled fails unless exactly accounts are unsettled in the ledger.
func (e *env) unsettled(accounts ...string) {
	e.t.Helper()
	list, err := e.ledger.Unsettled(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	got := map[string]bool{}
	for _, t := range list {
		got[t.Account] = true
	}
	for _, a := range accounts {
		if !got[a] {
			e.t.Fatalf("%s is settled, want it unsettled", a)
		}
		delete(got, a)
	}
	if len(got) != 0 {
		e.t.Fatalf("%v unsettled too", got)
	}
}

// gain fails unless the host's wallet gained about charged since it had before: all
// of it less what the charges cost in fees (under 0.01 TON each).
func (e *env) gain(before *big.Int, charged uint64, charges int) {
	e.t.Helper()
	gain := new(big.Int).Sub(e.chain.Balance(e.host.WalletAddress()), before)
	lo := new(big.Int).SetUint64(charged - uint64(charges)*nano("0.01"))
	if gain.Cmp(lo) < 0 || gain.Cmp(new(big.Int).SetUint64(charged)) >= 0 {
		e.t.Fatalf("the host's wallet gained %s for %d charged, want a little less", gain, charged)
	}
}

// TestSettlerBatches follows four escrows through the batching rules: under the
// threshold nothing is sent; past it, every due escrow is charged in one wallet
// transaction; a closing escrow is charged at the next round; the rest after the
// maximum delay.
func TestSettlerBatches(t *testing.T) {
	e := newEnv(t)
	s := e.settler("1", time.Hour)
	a, b, c, d := e.deploy(e.params(1), "5"), e.deploy(e.params(2), "5"), e.deploy(e.params(3), "5"), e.deploy(e.params(4), "5")
	for i, x := range []struct{ account, ton string }{{a, "0.6"}, {b, "0.9"}, {c, "0.1"}, {d, "0.2"}} {
		e.spendTON(x.account, i, x.ton)
	}
	e.settle(s)
	e.unsettled(a, b, c, d)

	// a and b pass the threshold.
	e.chain.Advance(10 * time.Minute)
	e.spendTON(a, 10, "0.5")
	e.spendTON(b, 11, "0.1")
	balance := e.chain.Balance(e.host.WalletAddress())
	e.settle(s, a, b)
	e.gain(balance, nano("2.1"), 2)
	e.unsettled(c, d)
	if st := e.state(c); st.Charged.Sign() != 0 {
		t.Fatalf("c charged %s", st.Charged)
	}
	e.settle(s) // nothing left due: nothing sent
	// The threshold is on what is not charged yet, not on the total.
	e.spendTON(a, 12, "0.3")
	e.settle(s)
	e.unsettled(a, c, d)

	// d's client asks for its money back: d is charged at the next round.
	e.requestWithdrawal(d)
	e.settle(s, d)
	e.unsettled(a, c)

	// c has waited since the first round: charged at the maximum delay, not before; a
	// waits from the round after its charge.
	e.chain.Advance(49*time.Minute + 59*time.Second)
	e.settle(s)
	e.chain.Advance(time.Second)
	e.settle(s, c)
	e.unsettled(a)
	e.chain.Advance(10 * time.Minute)
	e.settle(s, a)
	e.unsettled()
	e.settle(s)
}

// TestSettlerLostConfirmation: a charge that reached the chain but whose round did not
// record it (the host stopped, a read failed) is recorded from the escrow's Charged on
// the next round, and never sent again.
func TestSettlerLostConfirmation(t *testing.T) {
	e := newEnv(t)
	s := e.settler("1", time.Hour)
	acct := e.deploy(e.params(1), "5")
	e.spendTON(acct, 0, "1.5")
	e.charge(acct, nano("1.5"))
	e.settle(s)
	if got := e.settled(acct); got != nano("1.5") {
		t.Fatalf("settled %d", got)
	}
	e.unsettled()

	// Lost again, with more billed since: recorded, and the rest (1.5 TON) charged.
	e.spendTON(acct, 1, "2")
	e.charge(acct, nano("2"))
	e.settle(s, acct)
	if got := e.settled(acct); got != nano("3.5") {
		t.Fatalf("settled %d", got)
	}
}

// charge makes the host's wallet charge the escrow at account up to cumulative, as a
// settler round that never recorded it would have.
func (e *env) charge(account string, cumulative uint64) {
	e.t.Helper()
	a := address.MustParseRawAddr(account)
	sig, err := escrow.SignCharge(e.hostKey, a, new(big.Int).SetUint64(cumulative))
	if err != nil {
		e.t.Fatal(err)
	}
	body, err := escrow.ChargeBody(1, new(big.Int).SetUint64(cumulative), sig)
	if err != nil {
		e.t.Fatal(err)
	}
	e.send(e.host, a, "0.05", body, nil)
	e.succeeded(a)
}

// TestSettlerNeverAboveDeposit: a ledger that bills more than the escrow holds is
// charged the deposit (the contract would refuse more), and the rest once the client
// deposits more.
func TestSettlerNeverAboveDeposit(t *testing.T) {
	e := newEnv(t)
	s := e.settler("0.1", time.Hour)
	acct := e.deploy(e.params(1), "0.5")
	// Admission never bills past the deposit, so write the ledger directly.
	id, err := e.ledger.Reserve(ctx, billing.Reservation{Account: acct, RequestHash: settle.RequestHash([]byte("big")), MaxCost: math.MaxUint64, Limit: math.MaxUint64})
	if err != nil {
		t.Fatal(err)
	}
	r := &settle.Receipt{Account: acct, RequestHash: settle.RequestHash([]byte("big")), Usage: settle.Usage{PromptTokens: 800_000},
		Prices: prices, LoadMilli: 1000, MaxCost: math.MaxUint64, Status: settle.StatusCompleted, Time: e.chain.Now().Unix()}
	r.Cost = prices.Cost(r.Usage, r.LoadMilli, r.MaxCost)
	if err := e.ledger.Commit(ctx, id, r, nil, func(r *settle.Receipt) { r.Sign(e.hostKey) }); err != nil {
		t.Fatal(err)
	}

	if n, err := s.Settle(ctx); err != nil || n != 1 {
		t.Fatalf("Settle = %d, %v", n, err)
	}
	st := e.state(acct)
	if st.Charged.Uint64() != deposited("0.5") || e.totals(acct).Settled != deposited("0.5") {
		t.Fatalf("charged %s, ledger %+v; want the deposit %d", st.Charged, e.totals(acct), deposited("0.5"))
	}
	sends := len(e.sends())
	if n, err := s.Settle(ctx); err != nil || n != 0 || len(e.sends()) != sends {
		t.Fatalf("Settle = %d, %v with the deposit charged; want nothing sent", n, err)
	}
	e.unsettled(acct)
	e.deposit(acct, "1")
	e.settle(s, acct)
	e.unsettled()
}

// TestSettlerOffline: while the chain is unreachable the settler fails and changes
// nothing, the host goes on admitting within what it last saw of each escrow, and once
// the chain is back one round charges everything.
func TestSettlerOffline(t *testing.T) {
	e := newEnv(t)
	s := e.settler("1", time.Hour)
	a, b := e.deploy(e.params(1), "3"), e.deploy(e.params(2), "3")
	e.spendTON(a, 0, "1.2")
	e.spendTON(b, 1, "0.3")

	e.chain.SetOffline(true)
	if n, err := s.Settle(ctx); !errors.Is(err, tonemu.ErrOffline) || n != 0 {
		t.Fatalf("offline Settle = %d, %v; want tonemu.ErrOffline", n, err)
	}
	e.unsettled(a, b)
	if tot := e.totals(a); tot.Settled != 0 || tot.Cumulative != nano("1.2") {
		t.Fatalf("offline Settle changed the ledger: %+v", tot)
	}
	// Long past the escrow cache's TTL and the maximum delay, the host serves within
	// the deposits it last saw; past them, it cannot tell whether the client has
	// deposited more.
	e.chain.Advance(2 * time.Hour)
	e.spendTON(a, 2, "1")
	e.spendTON(b, 3, "1")
	_, err := e.admit(e.svc, e.admission(a, body(4), nano("1")/1000, 0))
	code(t, err, settle.CodeUnavailable, "cannot reach the TON network", "has 0.79 TON unspent") // 2.99 - 2.2
	if _, err := s.Settle(ctx); !errors.Is(err, tonemu.ErrOffline) {
		t.Fatalf("offline Settle: %v", err)
	}

	e.chain.SetOffline(false)
	balance := e.chain.Balance(e.host.WalletAddress())
	e.settle(s, a, b)
	e.gain(balance, nano("3.5"), 2)
	e.unsettled()
}

// TestSettlerEscrowAheadOfLedger: an escrow charged more than the ledger's receipts add
// up to (the ledger was restored from an older copy) must not stop the other escrows'
// settlement.
func TestSettlerEscrowAheadOfLedger(t *testing.T) {
	e := newEnv(t)
	s := e.settler("1", time.Hour)
	a, b := e.deploy(e.params(1), "3"), e.deploy(e.params(2), "3")
	e.spendTON(a, 0, "1.5")
	e.spendTON(b, 1, "0.5")
	e.charge(b, nano("1"))
	if n, err := s.Settle(ctx); n != 1 || e.state(a).Charged.Uint64() != nano("1.5") {
		t.Fatalf("Settle = %d, %v; a is charged %s, want 1.5 TON", n, err, e.state(a).Charged)
	}
}

// TestSettlerManyAccounts: more due escrows than a V5R1 wallet sends at once (255) take
// one wallet transaction per 255.
func TestSettlerManyAccounts(t *testing.T) {
	e := newEnv(t)
	// Each charge carries 0.05 TON for the escrow's gas, returned with the payout.
	if err := e.chain.Fund(e.host.WalletAddress(), tlb.MustFromTON("20").Nano()); err != nil {
		t.Fatal(err)
	}
	s := e.settler("1", time.Hour)
	accounts := make([]string, 260)
	for i := range accounts {
		accounts[i] = e.deploy(e.params(uint64(i+1)), "1.1")
		e.spendTON(accounts[i], i, "1")
	}
	before := len(e.sends())
	start := time.Now()
	if n, err := s.Settle(ctx); err != nil || n != len(accounts) {
		t.Fatalf("Settle = %d, %v", n, err)
	}
	t.Logf("%d charges settled in %v", len(accounts), time.Since(start))
	sends := e.sends()[before:]
	if len(sends) != 2 || sends[0].Tx.OutMsgCount != 255 || sends[1].Tx.OutMsgCount != 5 {
		t.Fatalf("%d wallet transactions, want two: of 255 and 5 charges", len(sends))
	}
	for _, a := range accounts {
		e.settled(a)
	}
	e.unsettled()
}

// TestSettlerMetrics: a round that fails (the chain offline) and one that charges two
// escrows are counted, and the time of the last good round is the chain's.
func TestSettlerMetrics(t *testing.T) {
	e := newEnv(t)
	m := billing.NewMetrics()
	s := e.settlerWith(billing.SettlerConfig{Threshold: nano("1"), MaxDelay: time.Hour, Metrics: m})
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collectors()...)
	a, b := e.deploy(e.params(1), "3"), e.deploy(e.params(2), "3")
	e.spendTON(a, 0, "1.2")
	e.spendTON(b, 1, "1.3")
	e.chain.SetOffline(true)
	if _, err := s.Settle(ctx); err == nil {
		t.Fatal("offline Settle succeeded")
	}
	e.chain.SetOffline(false)
	e.settle(s, a, b)
	scrape := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(scrape, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		"cocoon_settlement_charges_sent_total 2",
		fmt.Sprintf("cocoon_settlement_last_success_timestamp_seconds %v", float64(e.chain.Now().Unix())), // as the text format prints it
		`cocoon_settlement_rounds_total{result="failed"} 1`,
		`cocoon_settlement_rounds_total{result="ok"} 1`,
	} {
		if !strings.Contains(scrape.Body.String(), "\n"+want+"\n") {
			t.Errorf("metrics have no %q:\n%s", want, scrape.Body.String())
		}
	}
}
