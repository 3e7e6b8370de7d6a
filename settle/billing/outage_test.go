package billing_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/ton"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/ledger"
)

// unreachable fails unless err is the 503 refusal of an escrow the host cannot read.
func unreachable(t testing.TB, err error, want ...string) {
	t.Helper()
	if se := code(t, err, settle.CodeUnavailable, append(want, "cannot reach the TON network")...); se.Status() != 503 {
		t.Fatalf("status %d, want 503", se.Status())
	}
}

// TestOutageAfterASettlementIsNotAReopen: the host settles an escrow with a settler
// that files nothing in the escrow cache, so the cached state is charged less than the
// ledger settled, as a reopened escrow's is; then the chain goes unreachable. Only the
// chain tells the two apart: the client is told the chain is unreachable (503, to
// retry), not that its escrow was closed and opened again (402), and nothing is held.
// Once the chain is back the same request is served.
func TestOutageAfterASettlementIsNotAReopen(t *testing.T) {
	e := newEnv(t)
	acct := e.deploy(e.params(1), "3")
	e.spendTON(acct, 1, "0.5") // cached: charged 0
	e.settle(e.settlerWith(billing.SettlerConfig{Threshold: nano("0.1"), MaxDelay: time.Hour}), acct)

	e.chain.SetOffline(true)
	r := e.admission(acct, body(2), 10, 10)
	_, err := e.admit(e.svc, r)
	unreachable(t, err, acct)
	if tot := e.totals(acct); tot.Held != 0 || tot.LastSeq != 1 {
		t.Fatalf("a refused request changed the ledger: %+v", tot)
	}
	e.chain.SetOffline(false)
	tk, err := e.admit(e.svc, r)
	if err != nil {
		t.Fatalf("the chain is back: %v", err)
	}
	tk.Release()
}

// TestSettlerFilesTheEscrowsItCharges: a settler given the service's escrow cache
// leaves in it the charged total it recorded, so that with the chain unreachable right
// after a settlement the host goes on serving the account within its deposit.
func TestSettlerFilesTheEscrowsItCharges(t *testing.T) {
	e := newEnv(t)
	acct := e.deploy(e.params(1), "3")
	e.spendTON(acct, 1, "0.5") // cached: charged 0
	e.settle(e.settler("0.1", time.Hour), acct)

	e.chain.SetOffline(true)
	st, err := e.escrows.Escrow(ctx, acct)
	if err != nil || st.Charged != nano("0.5") || st.Outdated {
		t.Fatalf("cached after the settlement: %+v, %v; want charged %d, not outdated", st, err, nano("0.5"))
	}
	e.spendTON(acct, 2, "0.1")
}

// gated is the chain, able to hold the next escrow read once it has its block: the
// read then answers the escrow as it was at that block.
type gated struct {
	ton.APIClientWrapped
	mu            sync.Mutex
	held, release chan struct{} // nil: reads pass
}

// hold makes g hold the next read: held is closed once it has its block, and the read
// goes on once release is closed.
func (g *gated) hold() (held, release chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held, g.release = make(chan struct{}), make(chan struct{})
	return g.held, g.release
}

func (g *gated) CurrentMasterchainInfo(ctx context.Context) (*ton.BlockIDExt, error) {
	b, err := g.APIClientWrapped.CurrentMasterchainInfo(ctx)
	g.mu.Lock()
	held, release := g.held, g.release
	g.held, g.release = nil, nil
	g.mu.Unlock()
	if held != nil {
		close(held)
		<-release
	}
	return b, err
}

// TestEscrowReadBegunBeforeASettlement: a request's chain read that began before the
// settler's charge ends after the settler filed the charged state: the read's older
// state does not replace it, else the cache would again be charged less than the
// ledger settled.
func TestEscrowReadBegunBeforeASettlement(t *testing.T) {
	e := newEnv(t)
	api := &gated{APIClientWrapped: e.chain}
	c := e.chainEscrows(api)
	acct := e.deploy(e.params(1), "3")
	e.spendTON(acct, 1, "0.5")
	held, release := api.hold()

	read := make(chan billing.EscrowState, 1)
	go func() {
		st, err := c.Escrow(ctx, acct)
		if err != nil {
			t.Error(err)
		}
		read <- st
	}()
	<-held
	e.settle(e.settlerWith(billing.SettlerConfig{Threshold: nano("0.1"), MaxDelay: time.Hour, Escrows: c}), acct)
	close(release)
	if st := <-read; st.Charged != nano("0.5") {
		t.Errorf("the read begun before the settlement answered charged %d, not the newer %d", st.Charged, nano("0.5"))
	}
	e.chain.SetOffline(true)
	if st, err := c.Escrow(ctx, acct); err != nil || st.Charged != nano("0.5") {
		t.Fatalf("cached: %+v, %v; want charged %d", st, err, nano("0.5"))
	}
}

// TestOutdatedDepositIsNotInsufficient: the client deposits more, and the chain is
// unreachable once the host's state of the escrow is due to be read again. The host
// cannot see the deposit: it tells the client it cannot reach the chain (503, to
// retry), not to deposit more (402) as it does when it knows the deposit. Within what
// it last saw it goes on serving.
func TestOutdatedDepositIsNotInsufficient(t *testing.T) {
	e := newEnv(t)
	acct := e.deploy(e.params(1), "1")
	e.spendTON(acct, 1, "0.5")
	left := deposited("1") - nano("0.5")
	_, err := e.admit(e.svc, e.admission(acct, body(2), nano("1")/1000, 0))
	code(t, err, settle.CodeInsufficient, settle.FormatTON(left)+" TON unspent")

	e.deposit(acct, "5")
	e.chain.Advance(escrowTTL)
	e.chain.SetOffline(true)
	_, err = e.admit(e.svc, e.admission(acct, body(3), nano("1")/1000, 0))
	unreachable(t, err, acct, settle.FormatTON(left)+" TON unspent")
	e.spendTON(acct, 4, "0.1")

	e.chain.SetOffline(false)
	e.chain.Advance(escrowTTL)
	e.spendTON(acct, 5, "1")
}

// TestCancelledEscrowReadIsNotAnOutage: a caller that goes away while its escrow is
// read (an unauthenticated request may name any account) does not make the host take
// the chain for unreachable: the next request reads the chain, sees the deposit made
// since, and is not served an outdated state; a request that shared the abandoned read
// reads the chain itself.
func TestCancelledEscrowReadIsNotAnOutage(t *testing.T) {
	e := newEnv(t)
	api := &gated{APIClientWrapped: e.chain}
	c := e.chainEscrows(api)
	acct := e.deploy(e.params(1), "1")
	if _, err := c.Escrow(ctx, acct); err != nil {
		t.Fatal(err)
	}
	e.deposit(acct, "2")
	e.chain.Advance(escrowTTL)
	want := deposited("1") + deposited("2")

	gone, cancel := context.WithCancel(ctx)
	cancel()
	_, err := c.Escrow(gone, acct)
	code(t, err, settle.CodeUnavailable, "context canceled")
	if st, err := c.Escrow(ctx, acct); err != nil || st.Deposited != want || st.Outdated {
		t.Fatalf("after a cancelled read: %+v, %v; want %d deposited, not outdated", st, err, want)
	}

	// A read held until its caller goes away, shared by another request.
	e.deposit(acct, "2")
	e.chain.Advance(escrowTTL)
	want += deposited("2")
	held, release := api.hold()
	leaving, leave := context.WithCancel(ctx)
	first := make(chan error, 1)
	go func() {
		_, err := c.Escrow(leaving, acct)
		first <- err
	}()
	<-held
	shared := make(chan error, 1)
	go func() {
		st, err := c.Escrow(ctx, acct)
		if err == nil && (st.Deposited != want || st.Outdated) {
			err = fmt.Errorf("%+v, want %d deposited, not outdated", st, want)
		}
		shared <- err
	}()
	time.Sleep(50 * time.Millisecond) // time to join the read under way (passes too if it did not)
	leave()
	close(release)
	code(t, <-first, settle.CodeUnavailable, "context canceled")
	if err := <-shared; err != nil {
		t.Fatalf("the request that shared the abandoned read: %v", err)
	}
}

// filedFirst is a ledger that checks, when the settler records a settlement, that the
// escrow cache already holds the charged total, without reading the chain: else an
// admission between the two would find the cache behind the ledger, as if the escrow
// had been reopened.
type filedFirst struct {
	*ledger.Ledger
	t       testing.TB
	cache   *billing.ChainEscrows
	api     *counting
	records int
}

func (f *filedFirst) RecordSettlement(ctx context.Context, account string, charged uint64, at time.Time) error {
	f.records++
	reads := f.api.reads.Load()
	st, err := f.cache.Escrow(ctx, account)
	if err != nil || st.Charged < charged || f.api.reads.Load() != reads {
		f.t.Errorf("settlement of %d recorded while the cache holds %+v, %v (%d chain reads to find it)", charged, st, err, f.api.reads.Load()-reads)
	}
	return f.Ledger.RecordSettlement(ctx, account, charged, at)
}

// TestSettlerFilesBeforeItRecords: the settler files the escrow state it read in the
// cache before it records a settlement from it, after a confirmed charge and after one
// whose confirmation was lost (found at the next round).
func TestSettlerFilesBeforeItRecords(t *testing.T) {
	e := newEnv(t)
	api := &counting{APIClientWrapped: e.chain}
	cache := billing.NewChainEscrows(api, time.Hour) // no read for being old
	cache.SetClock(e.chain.Now)
	store := &filedFirst{Ledger: e.ledger, t: t, cache: cache, api: api}
	s := e.settlerWith(billing.SettlerConfig{Store: store, Threshold: nano("0.1"), MaxDelay: time.Hour, Escrows: cache})
	acct := e.deploy(e.params(1), "5")
	e.spendTON(acct, 1, "0.5")
	if _, err := cache.Escrow(ctx, acct); err != nil { // cached: charged 0
		t.Fatal(err)
	}
	e.settle(s, acct)
	e.spendTON(acct, 2, "0.5")
	e.charge(acct, nano("1")) // a charge whose confirmation was lost
	e.settle(s)
	if store.records != 2 {
		t.Fatalf("%d settlements recorded, want 2", store.records)
	}
}
