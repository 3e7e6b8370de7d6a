package tonemu

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/ton/wallet"
)

func newChain(t *testing.T) *Chain {
	t.Helper()
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newWallet(t *testing.T, c *Chain, seed byte) *wallet.Wallet {
	t.Helper()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	w, err := wallet.FromPrivateKey(c, key, wallet.ConfigV5R1Final{NetworkGlobalID: wallet.MainnetGlobalID})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func tons(s string) *big.Int { return tlb.MustFromTON(s).Nano() }

func seqno(t *testing.T, c *Chain, addr *address.Address) int64 {
	t.Helper()
	ctx := context.Background()
	head, err := c.CurrentMasterchainInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.RunGetMethod(ctx, head, addr, "seqno")
	if err != nil {
		t.Fatalf("seqno of %s: %v", addr, err)
	}
	n, err := res.Int(0)
	if err != nil {
		t.Fatal(err)
	}
	return n.Int64()
}

func status(t *testing.T, c *Chain, addr *address.Address) tlb.AccountStatus {
	t.Helper()
	ctx := context.Background()
	head, err := c.CurrentMasterchainInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := c.GetAccount(ctx, head, addr)
	if err != nil {
		t.Fatal(err)
	}
	if !acc.IsActive {
		return tlb.AccountStatusNonExist
	}
	return acc.State.Status
}

// between fails unless lo <= got <= hi.
func between(t *testing.T, what string, got, lo, hi *big.Int) {
	t.Helper()
	if got.Cmp(lo) < 0 || got.Cmp(hi) > 0 {
		t.Fatalf("%s = %s, want in [%s, %s]", what, got, lo, hi)
	}
}

func sub(a, b *big.Int) *big.Int { return new(big.Int).Sub(a, b) }

func TestWalletTransfers(t *testing.T) {
	ctx := context.Background()
	c := newChain(t)
	alice, bob := newWallet(t, c, 1), newWallet(t, c, 2)

	if err := c.Fund(alice.WalletAddress(), tons("10")); err != nil {
		t.Fatal(err)
	}
	if got := c.Balance(alice.WalletAddress()); got.Cmp(tons("10")) != 0 {
		t.Fatalf("funded balance = %s", got)
	}
	if st := status(t, c, alice.WalletAddress()); st != tlb.AccountStatusUninit {
		t.Fatalf("funded account is %s, want uninit", st)
	}

	// Alice's first send deploys her wallet (state init in the external message).
	tx, block, err := alice.SendWaitTransaction(ctx, &wallet.Message{
		Mode: wallet.PayGasSeparately + wallet.IgnoreErrors,
		InternalMessage: &tlb.InternalMessage{
			IHRDisabled: true, Bounce: false, DstAddr: bob.WalletAddress(), Amount: tlb.MustFromTON("1"),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if tx.EndStatus != tlb.AccountStatusActive {
		t.Fatalf("alice end status %s", tx.EndStatus)
	}
	if head, _ := c.CurrentMasterchainInfo(ctx); head.SeqNo != block.SeqNo {
		t.Fatalf("returned block %d, head %d", block.SeqNo, head.SeqNo)
	}
	if got := seqno(t, c, alice.WalletAddress()); got != 1 {
		t.Fatalf("alice seqno = %d, want 1", got)
	}
	// Bob's account did not exist: it is credited exactly, no code runs.
	if got := c.Balance(bob.WalletAddress()); got.Cmp(tons("1")) != 0 {
		t.Fatalf("bob balance = %s, want 1 TON", got)
	}
	if st := status(t, c, bob.WalletAddress()); st != tlb.AccountStatusUninit {
		t.Fatalf("bob is %s, want uninit", st)
	}
	// Alice paid 1 TON plus real fees (a few thousandths of a TON for a deploy).
	between(t, "alice balance", c.Balance(alice.WalletAddress()), tons("8.99"), sub(tons("9"), big.NewInt(1)))

	// Bob's first own send deploys his wallet; Alice's active wallet runs on
	// the incoming message and pays its gas out of it.
	aliceBefore := c.Balance(alice.WalletAddress())
	if err := bob.Transfer(ctx, alice.WalletAddress(), tlb.MustFromTON("0.5"), "back"); err != nil {
		t.Fatal(err)
	}
	if st := status(t, c, bob.WalletAddress()); st != tlb.AccountStatusActive {
		t.Fatalf("bob is %s after his first send, want active", st)
	}
	if got := seqno(t, c, bob.WalletAddress()); got != 1 {
		t.Fatalf("bob seqno = %d", got)
	}
	between(t, "bob balance", c.Balance(bob.WalletAddress()), tons("0.49"), sub(tons("0.5"), big.NewInt(1)))
	between(t, "alice gain", sub(c.Balance(alice.WalletAddress()), aliceBefore), tons("0.499"), tons("0.5"))
	last := c.LastTransaction(alice.WalletAddress())
	if last.ComputeSkipped || !last.Success || last.ExitCode != 0 || last.Aborted {
		t.Fatalf("alice's receive: %+v", last)
	}

	// Second send from Alice: seqno goes on.
	if err := alice.Transfer(ctx, bob.WalletAddress(), tlb.MustFromTON("0.1"), ""); err != nil {
		t.Fatal(err)
	}
	if got := seqno(t, c, alice.WalletAddress()); got != 2 {
		t.Fatalf("alice seqno = %d, want 2", got)
	}
}

func TestUnfundedWalletCannotSend(t *testing.T) {
	ctx := context.Background()
	c := newChain(t)
	poor, other := newWallet(t, c, 3), newWallet(t, c, 4)
	before, _ := c.CurrentMasterchainInfo(ctx)

	err := poor.TransferNoBounce(ctx, other.WalletAddress(), tlb.MustFromTON("1"), "")
	if !errors.Is(err, ErrNotAccepted) {
		t.Fatalf("err = %v, want ErrNotAccepted", err)
	}
	after, _ := c.CurrentMasterchainInfo(ctx)
	if after.SeqNo != before.SeqNo || len(c.Transactions(poor.WalletAddress())) != 0 {
		t.Fatal("a rejected external message changed the chain")
	}
}

func TestBounceFromUninitAccount(t *testing.T) {
	ctx := context.Background()
	c := newChain(t)
	alice := newWallet(t, c, 5)
	nobody := address.NewAddress(0, 0, bytes.Repeat([]byte{0xAB}, 32))
	if err := c.Fund(alice.WalletAddress(), tons("5")); err != nil {
		t.Fatal(err)
	}
	// Bounceable transfer to an account with no code: it bounces back.
	if err := alice.Transfer(ctx, nobody, tlb.MustFromTON("1"), ""); err != nil {
		t.Fatal(err)
	}
	got := c.LastTransaction(nobody)
	if got == nil || !got.ComputeSkipped || !got.Aborted || !got.Bounced {
		t.Fatalf("nobody's transaction: %+v", got)
	}
	if c.Balance(nobody).Sign() != 0 {
		t.Fatalf("nobody kept %s", c.Balance(nobody))
	}
	back := c.LastTransaction(alice.WalletAddress())
	if in := back.Tx.IO.In; in == nil || !in.AsInternal().Bounced {
		t.Fatalf("alice's last transaction is not the bounce: %+v", back)
	}
	between(t, "alice balance", c.Balance(alice.WalletAddress()), tons("4.98"), tons("5"))
}

func TestClockDrivesBlockTime(t *testing.T) {
	ctx := context.Background()
	c := newChain(t)
	alice, bob := newWallet(t, c, 6), newWallet(t, c, 7)
	if err := c.Fund(alice.WalletAddress(), tons("5")); err != nil {
		t.Fatal(err)
	}
	c.Advance(90 * time.Second)
	want := c.Now()
	if err := alice.TransferNoBounce(ctx, bob.WalletAddress(), tlb.MustFromTON("1"), ""); err != nil {
		t.Fatal(err)
	}
	if got := c.LastTransaction(alice.WalletAddress()).Tx.Now; int64(got) != want.Unix() {
		t.Fatalf("tx time %d, clock %d", got, want.Unix())
	}
	if got, _ := c.GetTime(ctx); int64(got) != want.Unix() {
		t.Fatalf("GetTime = %d, want %d", got, want.Unix())
	}
	// The wallet signs messages valid for 3 minutes of wall-clock time: an
	// hour later on the chain's clock they have expired, and are refused.
	c.Advance(time.Hour)
	err := alice.TransferNoBounce(ctx, bob.WalletAddress(), tlb.MustFromTON("1"), "")
	if !errors.Is(err, ErrNotAccepted) {
		t.Fatalf("expired message: err = %v, want ErrNotAccepted", err)
	}
}

func TestOffline(t *testing.T) {
	ctx := context.Background()
	c := newChain(t)
	alice, bob := newWallet(t, c, 8), newWallet(t, c, 9)
	if err := c.Fund(alice.WalletAddress(), tons("5")); err != nil {
		t.Fatal(err)
	}
	head, _ := c.CurrentMasterchainInfo(ctx)

	c.SetOffline(true)
	calls := map[string]func() error{
		"CurrentMasterchainInfo": func() error { _, err := c.CurrentMasterchainInfo(ctx); return err },
		"GetMasterchainInfo":     func() error { _, err := c.GetMasterchainInfo(ctx); return err },
		"GetTime":                func() error { _, err := c.GetTime(ctx); return err },
		"GetAccount":             func() error { _, err := c.GetAccount(ctx, head, alice.WalletAddress()); return err },
		"RunGetMethod":           func() error { _, err := c.RunGetMethod(ctx, head, alice.WalletAddress(), "seqno"); return err },
		"SendExternalMessage": func() error {
			return c.SendExternalMessage(ctx, &tlb.ExternalMessage{DstAddr: alice.WalletAddress()})
		},
		"ListTransactions": func() error { _, err := c.ListTransactions(ctx, alice.WalletAddress(), 1, 0, nil); return err },
		"GetTransaction":   func() error { _, err := c.GetTransaction(ctx, head, alice.WalletAddress(), 0); return err },
		"FindLastTransactionByInMsgHash": func() error {
			_, err := c.FindLastTransactionByInMsgHash(ctx, alice.WalletAddress(), nil)
			return err
		},
		"wallet.Transfer": func() error { return alice.Transfer(ctx, bob.WalletAddress(), tlb.MustFromTON("1"), "") },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrOffline) {
			t.Errorf("%s while offline: err = %v, want ErrOffline", name, err)
		}
	}

	c.SetOffline(false)
	if err := alice.TransferNoBounce(ctx, bob.WalletAddress(), tlb.MustFromTON("1"), ""); err != nil {
		t.Fatalf("back online: %v", err)
	}
}

func TestHistory(t *testing.T) {
	ctx := context.Background()
	c := newChain(t)
	alice, bob := newWallet(t, c, 10), newWallet(t, c, 11)
	if err := c.Fund(alice.WalletAddress(), tons("5")); err != nil {
		t.Fatal(err)
	}
	funded, _ := c.CurrentMasterchainInfo(ctx)
	hash, err := alice.SendManyGetInMsgHash(ctx, []*wallet.Message{{
		Mode:            wallet.PayGasSeparately,
		InternalMessage: &tlb.InternalMessage{IHRDisabled: true, DstAddr: bob.WalletAddress(), Amount: tlb.MustFromTON("2")},
	}})
	if err != nil {
		t.Fatal(err)
	}

	// The account as of the funding block is still readable.
	old, err := c.GetAccount(ctx, funded, alice.WalletAddress())
	if err != nil {
		t.Fatal(err)
	}
	if old.State.Status != tlb.AccountStatusUninit || old.State.Balance.Nano().Cmp(tons("5")) != 0 {
		t.Fatalf("old state: %s %s", old.State.Status, old.State.Balance)
	}
	if _, err := c.RunGetMethod(ctx, funded, alice.WalletAddress(), "seqno"); !isExit(err, ton.ErrCodeContractNotInitialized) {
		t.Fatalf("get-method on uninit account: %v", err)
	}

	found, err := c.FindLastTransactionByInMsgHash(ctx, alice.WalletAddress(), hash)
	if err != nil {
		t.Fatal(err)
	}
	head, _ := c.CurrentMasterchainInfo(ctx)
	acc, _ := c.GetAccount(ctx, head, alice.WalletAddress())
	if found.LT != acc.LastTxLT || !bytes.Equal(found.Hash, acc.LastTxHash) {
		t.Fatal("found transaction is not the account's last")
	}
	list, err := c.ListTransactions(ctx, alice.WalletAddress(), 10, acc.LastTxLT, acc.LastTxHash)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || !bytes.Equal(list[1].PrevTxHash, list[0].Hash) || list[1].PrevTxLT != list[0].LT {
		t.Fatalf("list of %d transactions is not a chain", len(list))
	}
	got, err := c.GetTransaction(ctx, head, alice.WalletAddress(), list[0].LT)
	if err != nil || !bytes.Equal(got.Hash, list[0].Hash) {
		t.Fatalf("GetTransaction: %v", err)
	}
	if _, err := c.GetTransaction(ctx, funded, alice.WalletAddress(), list[1].LT); !errors.Is(err, ton.ErrNoTransactionsWereFound) {
		t.Fatalf("transaction after the block: err = %v", err)
	}
	if _, err := c.GetAccount(ctx, &ton.BlockIDExt{SeqNo: head.SeqNo + 1}, alice.WalletAddress()); err == nil {
		t.Fatal("future block accepted")
	}
}

func isExit(err error, code int32) bool {
	var e ton.ContractExecError
	return errors.As(err, &e) && e.Code == code
}

func TestUnimplementedPanics(t *testing.T) {
	c := newChain(t)
	defer func() {
		msg, _ := recover().(string)
		if !strings.Contains(msg, "GetBlockData is not implemented") {
			t.Fatalf("panic %q", msg)
		}
	}()
	var api ton.APIClientWrapped = c
	_, _ = api.GetBlockData(context.Background(), nil)
}

func TestGetMethodResults(t *testing.T) {
	ctx := context.Background()
	c := newChain(t)
	alice, bob := newWallet(t, c, 12), newWallet(t, c, 13)
	if err := c.Fund(alice.WalletAddress(), tons("5")); err != nil {
		t.Fatal(err)
	}
	if err := alice.TransferNoBounce(ctx, bob.WalletAddress(), tlb.MustFromTON("1"), ""); err != nil {
		t.Fatal(err)
	}
	// tonutils-go's own helper runs get_public_key through the chain.
	key, err := wallet.GetPublicKey(ctx, c, alice.WalletAddress())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key, alice.PrivateKey().Public().(ed25519.PublicKey)) {
		t.Fatalf("get_public_key = %x", key)
	}
	head, _ := c.CurrentMasterchainInfo(ctx)
	if _, err := c.RunGetMethod(ctx, head, alice.WalletAddress(), "no_such_method"); !isExit(err, 11) {
		t.Fatalf("unknown get-method: %v, want exit code 11", err)
	}
}

// TestConcurrentUse exercises the lock: run it with -race.
func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	c := newChain(t)
	alice, bob := newWallet(t, c, 14), newWallet(t, c, 15)
	if err := c.Fund(alice.WalletAddress(), tons("5")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		var err error
		for range 5 {
			if err = alice.TransferNoBounce(ctx, bob.WalletAddress(), tlb.MustFromTON("0.1"), ""); err != nil {
				break
			}
		}
		done <- err
	}()
	for range 50 {
		head, err := c.CurrentMasterchainInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.GetAccount(ctx, head, bob.WalletAddress()); err != nil {
			t.Fatal(err)
		}
		c.Balance(alice.WalletAddress())
		c.Advance(0)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := c.Balance(bob.WalletAddress()); got.Cmp(tons("0.5")) != 0 {
		t.Fatalf("bob got %s, want 0.5 TON", got)
	}
}

// TestTickSealsABlock checks that Tick makes a new block carrying the head state, so
// that reads at the newest block see the accounts as they were and the clock's time
// (settle/registry's delay tests read get-methods at it).
func TestTickSealsABlock(t *testing.T) {
	ctx := context.Background()
	c := newChain(t)
	alice := newWallet(t, c, 6)
	if err := c.Fund(alice.WalletAddress(), tons("5")); err != nil {
		t.Fatal(err)
	}
	before, err := c.CurrentMasterchainInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Hour)
	c.Tick()
	after, err := c.CurrentMasterchainInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.SeqNo != before.SeqNo+1 {
		t.Fatalf("block %d after block %d", after.SeqNo, before.SeqNo)
	}
	acc, err := c.GetAccount(ctx, after, alice.WalletAddress())
	if err != nil || !acc.IsActive || acc.State.Balance.Nano().Cmp(tons("5")) != 0 {
		t.Fatalf("alice at the new block: %+v, %v", acc, err)
	}
	if got := c.blocks[after.SeqNo-1].now; int64(got) != c.Now().Unix() {
		t.Fatalf("block time %d, clock %d", got, c.Now().Unix())
	}
}
