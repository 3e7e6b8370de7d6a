package tonemu

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/liteclient"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/ton/wallet"

	"github.com/cocoonhost/cocoon/internal/nettest"
)

// serveChain serves chain on loopback and returns a client that checks proofs, as
// cmd/internal/tonnet dials one.
func serveChain(t testing.TB, chain *Chain) ton.APIClientWrapped {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	srv := NewServer(chain, key)
	addr := nettest.FreeLoopback(t)
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe(addr) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	cfg, err := GlobalConfig(addr, key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	pool := liteclient.NewConnectionPool()
	t.Cleanup(pool.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var dialErr error
	for range 50 { // the server may not listen yet
		if dialErr = pool.AddConnectionsFromConfig(ctx, cfg); dialErr == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if dialErr != nil {
		t.Fatal(dialErr)
	}
	client := ton.NewAPIClient(pool, ton.ProofCheckPolicyFast)
	client.SetTrustedBlockFromConfig(cfg)
	return client.WithRetryTimeout(0, 0)
}

// A wallet on the served chain works through a proof-checking client as on testnet:
// balance, get-method, a transfer waited for by its transaction, and an account that
// does not exist.
func TestServerWalletRoundTrip(t *testing.T) {
	chain, err := New()
	if err != nil {
		t.Fatal(err)
	}
	chain.FollowWallClock()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	if _, err := chain.NewWallet(key, 3e9); err != nil {
		t.Fatal(err)
	}
	api := serveChain(t, chain)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	w, err := wallet.FromPrivateKey(api, key, wallet.ConfigV5R1Final{NetworkGlobalID: wallet.MainnetGlobalID})
	if err != nil {
		t.Fatal(err)
	}
	block, err := api.CurrentMasterchainInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	balance, err := w.GetBalance(ctx, block)
	if err != nil {
		t.Fatal(err)
	}
	if balance.Nano().Int64() != 3e9 {
		t.Fatalf("balance %s, want 3 TON", balance)
	}

	dst := address.NewAddress(0, 0, bytes.Repeat([]byte{9}, 32))
	acc, err := api.GetAccount(ctx, block, dst)
	if err != nil || acc.IsActive {
		t.Fatalf("absent account: %+v, %v; want inactive", acc, err)
	}
	tx, _, err := w.SendWaitTransaction(ctx, &wallet.Message{Mode: wallet.PayGasSeparately + wallet.IgnoreErrors,
		InternalMessage: &tlb.InternalMessage{IHRDisabled: true, DstAddr: dst, Amount: tlb.MustFromTON("1")}})
	if err != nil {
		t.Fatal(err)
	}
	if tx == nil || !bytes.Equal(tx.AccountAddr, w.WalletAddress().Data()) {
		t.Fatalf("transaction %v is not the wallet's", tx)
	}
	block, err = api.GetMasterchainInfo(ctx) // not CurrentMasterchainInfo: it caches the block for a second
	if err != nil {
		t.Fatal(err)
	}
	acc, err = api.WaitForBlock(block.SeqNo).GetAccount(ctx, block, dst)
	if err != nil {
		t.Fatal(err)
	}
	if !acc.IsActive || acc.State.Balance.Nano().Int64() != 1e9 {
		t.Fatalf("destination: %+v; want 1 TON ", acc)
	}
	res, err := api.RunGetMethod(ctx, block, w.WalletAddress(), "seqno")
	if err != nil {
		t.Fatal(err)
	}
	if seqno, err := res.Int(0); err != nil || seqno.Int64() != 1 {
		t.Fatalf("seqno %v, %v; want 1", seqno, err)
	}
	if _, err := api.RunGetMethod(ctx, block, dst, "seqno"); !errors.As(err, new(ton.ContractExecError)) {
		t.Fatalf("get-method on an uninitialised account: %v, want a ContractExecError", err)
	}
	now, err := api.GetTime(ctx)
	if err != nil || time.Since(time.Unix(int64(now), 0)).Abs() > time.Minute {
		t.Fatalf("chain time %d, %v: want the wall clock's", now, err)
	}
}

// A block id the chain did not make (a root hash changed) is refused rather than
// answered: the proofs are for the chain's own blocks only.
func TestServerRefusesForeignBlock(t *testing.T) {
	chain, err := New()
	if err != nil {
		t.Fatal(err)
	}
	api := serveChain(t, chain)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	block, err := api.CurrentMasterchainInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	forged := block.Copy()
	forged.RootHash = bytes.Repeat([]byte{1}, 32)
	_, err = api.GetAccount(ctx, forged, genesis)
	if err == nil || !strings.Contains(err.Error(), "not this chain's") {
		t.Fatalf("foreign block: %v, want a refusal", err)
	}
}
