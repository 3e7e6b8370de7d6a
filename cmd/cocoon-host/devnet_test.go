package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/ton/wallet"

	"github.com/cocoonhost/cocoon/cmd/internal/tonnet"
	"github.com/cocoonhost/cocoon/internal/nettest"
	"github.com/cocoonhost/cocoon/settle/registry"
	"github.com/cocoonhost/cocoon/settle/tonemu"
)

// startDevnet runs devnet until the test ends and returns its data directory and admin
// address once its config is written and it answers.
func startDevnet(t *testing.T) (dir, admin string) {
	t.Helper()
	dir = t.TempDir()
	cfg := devnetConfig{data: dir, listen: nettest.FreeLoopback(t), admin: nettest.FreeLoopback(t), behind: 48 * time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() { done <- runDevnet(ctx, cfg, 1000e9, &out, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("devnet: %v", err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get("http://" + cfg.admin + "/v1/time"); err == nil {
			resp.Body.Close()
			return dir, cfg.admin
		}
		if time.Now().After(deadline) {
			t.Fatal("devnet did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The devnet's files work with the clients' own dialing (proofs checked): the client
// wallet of client.seed holds its funds, and the chain's clock moves with the admin API
// but never past the machine's clock, where wallet messages would expire.
func TestDevnet(t *testing.T) {
	dir, admin := startDevnet(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	api, stop, err := tonnet.Dial(ctx, filepath.Join(dir, devnetTONConfig))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	words, err := os.ReadFile(filepath.Join(dir, devnetClientSeed))
	if err != nil {
		t.Fatal(err)
	}
	key, err := tonnet.SeedKey(strings.Fields(string(words)))
	if err != nil {
		t.Fatal(err)
	}
	w, err := wallet.FromPrivateKey(api, key, wallet.ConfigV5R1Final{NetworkGlobalID: wallet.MainnetGlobalID})
	if err != nil {
		t.Fatal(err)
	}
	block, err := api.GetMasterchainInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if balance, err := w.GetBalance(ctx, block); err != nil || balance.Nano().Int64() != 1000e9 {
		t.Fatalf("client wallet: %v, %v; want 1000 TON", balance, err)
	}

	// The registry is deployed, owned by the owner wallet, its address in
	// registry.address, and its allowlist admits this build: read over the liteserver,
	// proofs checked.
	b, err := os.ReadFile(filepath.Join(dir, devnetRegistryAddr))
	if err != nil {
		t.Fatal(err)
	}
	regAddr, err := address.ParseAddr(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", devnetRegistryAddr, err)
	}
	st, err := registry.GetState(ctx, api, regAddr)
	if err != nil {
		t.Fatal(err)
	}
	ownerKey, err := devnetKey(filepath.Join(dir, devnetOwnerSeed))
	if err != nil {
		t.Fatal(err)
	}
	owner, err := tonnet.WalletAddress(ownerKey, wallet.MainnetGlobalID)
	if err != nil {
		t.Fatal(err)
	}
	local, err := localAllowlist()
	if err != nil {
		t.Fatal(err)
	}
	if st.Owner.StringRaw() != owner.StringRaw() || st.MinStake.Int64() != devnetMinStake || len(st.Current.Entries) != len(local.Entries) || len(st.Hosts) != 0 {
		t.Fatalf("devnet registry %+v", st)
	}

	before, err := api.GetTime(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if behind := time.Since(time.Unix(int64(before), 0)); behind < 47*time.Hour || behind > 49*time.Hour {
		t.Fatalf("chain clock %v behind, want 48h", behind)
	}
	post := func(query string) (int, string) {
		resp, err := http.Post("http://"+admin+"/v1/advance?"+query, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("by=25h"); code != http.StatusOK {
		t.Fatalf("advance 25h: %d %s", code, body)
	}
	after, err := api.GetTime(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if moved := time.Duration(after-before) * time.Second; moved < 25*time.Hour || moved > 25*time.Hour+time.Minute {
		t.Fatalf("the clock moved %v, want 25h", moved)
	}
	// 23h more would put the chain past the machine's clock by more than a minute.
	if code, body := post("by=24h"); code != http.StatusConflict || !strings.Contains(body, "may not pass this machine's") {
		t.Fatalf("advance past the wall clock: %d %s; want 409", code, body)
	}
	if code, _ := post("by=-1h"); code != http.StatusBadRequest {
		t.Fatalf("negative advance: %d, want 400", code)
	}
}

func TestCheckLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:1": true, "[::1]:1": true, "0.0.0.0:1": false, "10.0.0.1:1": false, "localhost:1": false, "nohost": false} {
		if err := checkLoopback("--admin", addr); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v, want ok %v", addr, err, ok)
		}
	}
}

// TestProduceBlocks: the devnet seals blocks while time passes, and stops when told.
func TestProduceBlocks(t *testing.T) {
	chain, err := tonemu.New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- produceBlocks(ctx, chain, 5*time.Millisecond) }()
	first, err := chain.CurrentMasterchainInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := chain.CurrentMasterchainInfo(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if b.SeqNo >= first.SeqNo+3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("block %d after 10 s, from %d", b.SeqNo, first.SeqNo)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("produceBlocks returned %v", err)
	}
}
