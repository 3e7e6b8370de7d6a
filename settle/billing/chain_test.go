package billing_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/ton"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/escrow"
)

// counting is the chain, counting the escrow reads made through it: each starts with
// one CurrentMasterchainInfo.
type counting struct {
	ton.APIClientWrapped
	reads atomic.Int64
}

func (c *counting) CurrentMasterchainInfo(ctx context.Context) (*ton.BlockIDExt, error) {
	c.reads.Add(1)
	return c.APIClientWrapped.CurrentMasterchainInfo(ctx)
}

// TestChainEscrows follows one escrow through ChainEscrows: its state as deployed, the
// cache within the TTL, new deposits, a charge and the withdrawal request after it,
// the chain going offline, and the escrow's end.
func TestChainEscrows(t *testing.T) {
	e := newEnv(t)
	api := &counting{APIClientWrapped: e.chain}
	c := e.chainEscrows(api)
	acct := e.deploy(e.params(1), "2")

	read := func(reads int64, want billing.EscrowState) {
		t.Helper()
		st, err := c.Escrow(ctx, acct)
		if err != nil {
			t.Fatal(err)
		}
		if !st.ClientKey.Equal(want.ClientKey) || !st.HostKey.Equal(want.HostKey) || st.HostAddr != want.HostAddr ||
			st.Deposited != want.Deposited || st.Charged != want.Charged || st.Closing != want.Closing || st.Timeout != want.Timeout {
			t.Fatalf("escrow state %+v, want %+v", st, want)
		}
		if n := api.reads.Load(); n != reads {
			t.Fatalf("%d chain reads, want %d", n, reads)
		}
	}
	want := billing.EscrowState{ClientKey: pub(e.clientKey), HostKey: pub(e.hostKey), HostAddr: e.host.WalletAddress().StringRaw(),
		Deposited: deposited("2"), Timeout: 3600}
	read(1, want)
	read(1, want)

	// A deposit shows after the TTL, not before.
	e.deposit(acct, "1")
	e.chain.Advance(escrowTTL - time.Second)
	read(1, want)
	e.chain.Advance(time.Second)
	want.Deposited += deposited("1")
	read(2, want)

	// So do a charge and a withdrawal request.
	cumulative := big.NewInt(int64(nano("0.7")))
	sig, err := escrow.SignCharge(e.hostKey, address.MustParseRawAddr(acct), cumulative)
	if err != nil {
		t.Fatal(err)
	}
	chargeBody, err := escrow.ChargeBody(1, cumulative, sig)
	if err != nil {
		t.Fatal(err)
	}
	e.send(e.host, address.MustParseRawAddr(acct), "0.05", chargeBody, nil)
	e.succeeded(address.MustParseRawAddr(acct))
	e.requestWithdrawal(acct)
	read(2, want)
	e.chain.Advance(escrowTTL)
	want.Charged, want.Closing = nano("0.7"), true
	read(3, want)

	// Offline: the last state read, however old, and a new try once per TTL, not on
	// every request (a real liteserver would make each one wait for its timeout).
	e.chain.SetOffline(true)
	lastRead := e.chain.Now()
	e.chain.Advance(time.Hour)
	read(4, want)
	read(4, want)
	// Served as outdated, as of the last read: a deposit since is not in it.
	if st, _ := c.Escrow(ctx, acct); !st.Outdated || !st.ReadAt.Equal(lastRead) {
		t.Fatalf("offline: outdated %v, read at %v; want outdated, read at %v", st.Outdated, st.ReadAt, lastRead)
	}
	e.chain.Advance(escrowTTL)
	read(5, want)
	// An escrow never read cannot be served.
	unseen := e.addr(e.params(2)).StringRaw()
	_, err = c.Escrow(ctx, unseen)
	if se := code(t, err, settle.CodeUnavailable, "cannot reach the TON network"); se.Status() != 503 {
		t.Fatalf("status %d", se.Status())
	}
	e.chain.SetOffline(false)

	// The client withdraws: the escrow is gone, and is not served from the cache, even
	// when the chain is offline again: for a TTL the host remembers it is gone, then it
	// cannot tell.
	e.send(e.client, address.MustParseRawAddr(acct), "0.05", escrow.WithdrawBody(4), nil)
	e.succeeded(address.MustParseRawAddr(acct))
	e.chain.Advance(escrowTTL)
	_, err = c.Escrow(ctx, acct)
	code(t, err, settle.CodeUnknownAccount, "no escrow at "+acct)
	e.chain.SetOffline(true)
	_, err = c.Escrow(ctx, acct)
	code(t, err, settle.CodeUnknownAccount, "no escrow at "+acct)
	e.chain.Advance(escrowTTL)
	_, err = c.Escrow(ctx, acct)
	code(t, err, settle.CodeUnavailable)
}

// TestChainEscrowsRemembersUnknown performs the attack of a client that names an
// address with no escrow on every request: the chain is read once per TTL, not three
// queries per request, also when the requests come at once; and clients naming ever
// new addresses fill a bounded memory, not an unbounded one.
func TestChainEscrowsRemembersUnknown(t *testing.T) {
	e := newEnv(t)
	api := &counting{APIClientWrapped: e.chain}
	c := e.chainEscrows(api)
	never := e.addr(e.params(1)).StringRaw()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				_, err := c.Escrow(ctx, never)
				var se *billing.Error
				if !errors.As(err, &se) || se.Code != settle.CodeUnknownAccount {
					t.Errorf("err = %v, want unknown_account", err)
				}
			}
		})
	}
	wg.Wait()
	if n := api.reads.Load(); n != 1 {
		t.Fatalf("80 requests naming one address with no escrow made %d chain reads, want 1", n)
	}
	// Deployed since: seen once the TTL has passed.
	e.deploy(e.params(1), "1")
	e.chain.Advance(escrowTTL)
	if _, err := c.Escrow(ctx, never); err != nil || api.reads.Load() != 2 {
		t.Fatalf("after the TTL: %v, %d chain reads", err, api.reads.Load())
	}

	c.SetLimits(4, 8)
	for i := range 20 {
		c.Escrow(ctx, fmt.Sprintf("0:%064x", i+1))
		e.chain.Advance(time.Second) // each read later than the one before
	}
	for i := range 6 {
		c.Escrow(ctx, e.deploy(e.params(uint64(10+i)), "1"))
		e.chain.Advance(time.Second)
	}
	if cached, unknown := c.Remembered(); cached != 4 || unknown != 8 {
		t.Fatalf("remembers %d escrows and %d unknown addresses, want at most 4 and 8", cached, unknown)
	}
	// The most recent are the ones kept.
	before := api.reads.Load()
	c.Escrow(ctx, fmt.Sprintf("0:%064x", 20))
	if api.reads.Load() != before {
		t.Error("the last unknown address read was forgotten first")
	}
}

func TestChainEscrowsRefuseImpostors(t *testing.T) {
	e := newEnv(t)
	c := billing.NewChainEscrows(e.chain, escrowTTL)
	for _, tt := range []struct {
		name, account, want string
	}{
		{"never deployed", e.addr(e.params(1)).StringRaw(), "no escrow at"},
		{"a wallet", e.client.WalletAddress().StringRaw(), "not a Cocoon escrow"},
		{"escrow code with forged data", e.forged(e.params(2)), "not a Cocoon escrow"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Escrow(ctx, tt.account)
			if se := code(t, err, settle.CodeUnknownAccount, tt.want); se.Status() != 402 {
				t.Fatalf("status %d", se.Status())
			}
		})
	}
}

// TestChainEscrowsConcurrent reads escrows from many goroutines while the clock moves,
// for the race detector.
func TestChainEscrowsConcurrent(t *testing.T) {
	e := newEnv(t)
	accounts := []string{e.deploy(e.params(1), "1"), e.deploy(e.params(2), "2")}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				if g == 0 {
					e.chain.Advance(10 * time.Second)
				}
				st, err := e.escrows.Escrow(ctx, accounts[i%2])
				if err != nil || st.Deposited != deposited(map[int]string{0: "1", 1: "2"}[i%2]) {
					t.Errorf("escrow %d: %+v, %v", i%2, st, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
