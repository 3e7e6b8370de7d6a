package billing_test

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/ton/wallet"
	bolt "go.etcd.io/bbolt"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/tonemu"
)

// errHostDied is what a wallet send returns when the host process dies right after its
// message reached the chain.
var errHostDied = errors.New("the host died before it heard back from the chain")

// diesAfterSend is the chain as a host sees it that dies right after its wallet sends:
// the message is processed, the answer never arrives.
type diesAfterSend struct{ *tonemu.Chain }

func (c diesAfterSend) SendExternalMessageWaitTransaction(ctx context.Context, ext *tlb.ExternalMessage) (*tlb.Transaction, *ton.BlockIDExt, []byte, error) {
	if _, _, _, err := c.Chain.SendExternalMessageWaitTransaction(ctx, ext); err != nil {
		return nil, nil, nil, err
	}
	return nil, nil, nil, errHostDied
}

// restart stops e's host and starts it again on the same ledger file and the same
// chain: the ledger is closed and reopened, and the service rebuilt on it. A settler
// made before the restart must not be used after it (the process that ran it is gone).
func (e *env) restart() {
	e.t.Helper()
	if err := e.ledger.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.ledger = e.openLedger(e.ledgerPath)
	e.svc = e.service(e.ledger)
}

// dyingSettler is a settler of e's host whose wallet's sends reach the chain but whose
// process dies before it learns so.
func (e *env) dyingSettler(threshold string, maxDelay time.Duration) *billing.Settler {
	e.t.Helper()
	w, err := wallet.FromPrivateKey(diesAfterSend{e.chain}, key(2), wallet.ConfigV5R1Final{NetworkGlobalID: wallet.MainnetGlobalID})
	if err != nil {
		e.t.Fatal(err)
	}
	if !w.WalletAddress().Equals(e.host.WalletAddress()) {
		e.t.Fatal("not the host's wallet")
	}
	w.GetSpec().(*wallet.SpecV5R1Final).SetMessagesTTL(30 * 24 * 3600) // as tonemu's wallets: the test moves the clock by hours
	s, err := billing.NewSettler(billing.SettlerConfig{Store: e.ledger, API: e.chain, Wallet: w, Key: e.hostKey,
		Threshold: nano(threshold), MaxDelay: maxDelay, Now: e.chain.Now, Logger: slog.New(slog.NewTextHandler(e.t.Output(), nil))})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// charges counts the charge messages the escrow at account has processed.
func (e *env) charges(account string) int {
	n := 0
	for _, tx := range e.chain.Transactions(address.MustParseRawAddr(account)) {
		if tx.Tx.IO.In != nil && tx.Tx.IO.In.MsgType == tlb.MsgTypeInternal && tx.Tx.IO.In.Msg.SenderAddr().Equals(e.host.WalletAddress()) {
			n++
		}
	}
	return n
}

// TestSettlerAcrossRestarts runs one host's settlement over three processes on one
// ledger file and one chain: the first settles and stops; the second dies in the middle
// of a round, after its charges reached the chain and before it recorded them; the
// third records them from the escrows without charging again, and settles what was
// billed since. Each escrow ends charged exactly what its receipts add up to, by one
// charge per round that sent one.
//
// The settler's "unsettled since" clock lives in memory: a restart starts it again, so
// an account under the threshold waits the maximum delay from the first round after the
// restart, not from when it first had an unsettled amount. A host restarted more often
// than its maximum delay charges such an account only at the threshold or when its
// client asks for a withdrawal; the escrow's timeout still leaves it time to.
func TestSettlerAcrossRestarts(t *testing.T) {
	e := newEnv(t)
	a, b := e.deploy(e.params(1), "10"), e.deploy(e.params(2), "10")

	// Process 1: a passes the threshold and is charged; b waits under it.
	s := e.settler("1", time.Hour)
	e.spendTON(a, 0, "1.5")
	e.spendTON(b, 1, "0.2")
	e.settle(s, a)
	e.unsettled(b)

	// Process 2 starts 50 minutes later; b is 50 minutes into its wait, but the new
	// settler does not know: it starts b's clock now.
	e.chain.Advance(50 * time.Minute)
	e.restart()
	s = e.dyingSettler("1", time.Hour)
	e.spendTON(a, 2, "1.2")
	if n, err := s.Settle(ctx); !errors.Is(err, errHostDied) || n != 0 {
		t.Fatalf("a round whose host dies after sending: %d, %v", n, err)
	}
	if got, want := e.state(a).Charged.Uint64(), nano("2.7"); got != want {
		t.Fatalf("the charge did not reach the chain: %d, want %d", got, want)
	}
	if tot := e.totals(a); tot.Settled != nano("1.5") {
		t.Fatalf("the dead round recorded its charge: %+v", tot)
	}

	// Process 3: the charge that reached the chain is recorded from the escrow, and not
	// sent again.
	e.chain.Advance(20 * time.Minute) // b: 70 minutes since process 1 saw it, 20 since process 3 does
	e.restart()
	s = e.settler("1", time.Hour)
	sends := len(e.sends())
	e.settle(s) // nothing due: a is charged already, b has waited 0 minutes in this process
	if len(e.sends()) != sends {
		t.Fatal("the restarted settler sent a charge already on-chain")
	}
	if got := e.settled(a); got != nano("2.7") {
		t.Fatalf("a settled %d after the restart, want 2.7 TON", got)
	}
	e.unsettled(b)
	e.chain.Advance(59 * time.Minute)
	e.settle(s)
	e.chain.Advance(time.Minute)
	e.settle(s, b) // an hour after process 3 first saw b

	e.spendTON(a, 3, "1.1")
	e.restart()
	e.settle(e.settler("1", time.Hour), a)
	e.unsettled()
	for account, want := range map[string]struct {
		total   string
		charges int
	}{a: {"3.8", 3}, b: {"0.2", 1}} {
		if got := e.settled(account); got != nano(want.total) {
			t.Errorf("escrow %s charged %d, want %s TON", account, got, want.total)
		}
		if n := e.charges(account); n != want.charges {
			t.Errorf("escrow %s processed %d charges, want %d", account, n, want.charges)
		}
	}
}

// TestSettlerNeverChargesATamperedAccount: between two starts, the machine's owner raises
// an account's cumulative total in the ledger file. The restarted host refuses the
// account (ledger_integrity) and its settler charges it nothing, while it still
// settles the others.
func TestSettlerNeverChargesATamperedAccount(t *testing.T) {
	e := newEnv(t)
	victim, other := e.deploy(e.params(1), "10"), e.deploy(e.params(2), "10")
	e.spendTON(victim, 0, "0.5")
	e.spendTON(other, 1, "1.5")
	if err := e.ledger.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(e.ledgerPath, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("accounts"))
		v := append([]byte(nil), b.Get([]byte(victim))...)
		binary.BigEndian.PutUint64(v[8:], binary.BigEndian.Uint64(v[8:])+nano("5")) // the cumulative total
		return b.Put([]byte(victim), v)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	e.ledger = e.openLedger(e.ledgerPath)
	e.svc = e.service(e.ledger)

	_, err = e.admit(e.svc, e.admission(victim, body(2), 10, 10))
	se := code(t, err, settle.CodeIntegrity, victim, "integrity")
	if se.Status() != 503 {
		t.Errorf("status %d, want 503", se.Status())
	}
	if _, err := e.svc.Account(ctx, victim); err == nil || !strings.Contains(err.Error(), "integrity") {
		t.Errorf("Account: %v", err)
	}
	e.settle(e.settler("1", time.Hour), other)
	if st := e.state(victim); st.Charged.Sign() != 0 {
		t.Fatalf("the tampered account was charged %s", st.Charged)
	}
	e.spend(e.svc, other, 3, 1000, 0) // the other account is served as before
}
