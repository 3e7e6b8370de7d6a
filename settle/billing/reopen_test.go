package billing_test

import (
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/address"

	"github.com/cocoonhost/cocoon/settle"
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
	acct := e.deploy(p, "3")
	e.spendTON(acct, 1, "0.5")
	s := e.settler("0.1", time.Hour)
	e.settle(s, acct)
	oldTotal := e.settled(acct)
	// A receipt the host has not charged yet when the client asks for its money
	// back, and no settlement round until the timeout: the host lost it.
	e.spendTON(acct, 2, "0.2")
	e.requestWithdrawal(acct)

	e.chain.Advance(time.Duration(p.Timeout)*time.Second + time.Minute)
	e.send(e.client, address.MustParseRawAddr(acct), "0.05", escrow.WithdrawBody(4), nil)
	e.succeeded(address.MustParseRawAddr(acct))
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

// TestAdmissionAfterASettlementWithinTheCache: an escrow state cached before the
// host's latest charge shows less charged than the ledger settled, as a reopened
// escrow does; admission reads the chain again rather than refuse the client.
func TestAdmissionAfterASettlementWithinTheCache(t *testing.T) {
	e := newEnv(t)
	acct := e.deploy(e.params(1), "3")
	e.spendTON(acct, 1, "0.5") // the escrow's state is cached, charged 0
	e.settle(e.settler("0.1", time.Hour), acct)
	if r := e.spend(e.svc, acct, 2, 10, 10); r.Seq != 2 {
		t.Fatalf("seq %d, want 2", r.Seq)
	}
}
