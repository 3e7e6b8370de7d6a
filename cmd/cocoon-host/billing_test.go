package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/ton/wallet"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/escrow"
	"github.com/cocoonhost/cocoon/settle/tonemu"
)

// envBillingHelper makes TestServeBillingHelperProcess run serve with an emulated TON
// chain in which the test client's escrow is deployed.
const envBillingHelper = "COCOON_HOST_TEST_BILLING"

// The test client: its wallet key and its escrow's client key and parameters. The
// emulated chain is made anew at every start of the host, so the escrow must come out
// at the same address each time.
var (
	testClientWallet = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	testClientKey    = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0xC1}, 32))
)

const testDeposit = 50e9

// testEscrow is the test client's escrow with the host whose wallet seed and settlement
// key are given.
func testEscrow(seed []string, hostKey ed25519.PublicKey, api wallet.TonAPI) (escrow.Params, *wallet.Wallet, error) {
	host, err := wallet.FromSeedWithOptions(api, seed, wallet.ConfigV5R1Final{NetworkGlobalID: wallet.MainnetGlobalID})
	if err != nil {
		return escrow.Params{}, nil, err
	}
	client, err := wallet.FromPrivateKey(api, testClientWallet, wallet.ConfigV5R1Final{NetworkGlobalID: wallet.MainnetGlobalID})
	if err != nil {
		return escrow.Params{}, nil, err
	}
	return escrow.Params{ClientAddr: client.WalletAddress(), HostAddr: host.WalletAddress(), ClientKey: testClientKey.Public().(ed25519.PublicKey),
		HostKey: hostKey, Timeout: 3600, ChannelID: 1}, host, nil
}

// emulatedTON is dialTON for the helper process: a fresh chain with the host's wallet
// funded and the test client's escrow deployed.
func emulatedTON(ctx context.Context, cfg *serveConfig) (ton.APIClientWrapped, func(), error) {
	chain, err := emulatedChain(ctx, cfg)
	return chain, func() {}, err
}

func emulatedChain(ctx context.Context, cfg *serveConfig) (*tonemu.Chain, error) {
	chain, err := tonemu.New()
	if err != nil {
		return nil, err
	}
	words, err := readSecret(cfg.WalletSeedFile)
	if err != nil {
		return nil, err
	}
	sealer, err := openSealer(cfg, resolveAttestMode(cfg))
	if err != nil {
		return nil, err
	}
	key, _, err := settlementKey(cfg.Data, sealer)
	if err != nil {
		return nil, err
	}
	p, host, err := testEscrow(strings.Fields(words), key.Public().(ed25519.PublicKey), chain)
	if err != nil {
		return nil, err
	}
	if err := chain.Fund(host.WalletAddress(), bigNano(10e9)); err != nil {
		return nil, err
	}
	client, err := chain.NewWallet(testClientWallet, 100e9)
	if err != nil {
		return nil, err
	}
	si, err := p.StateInit()
	if err != nil {
		return nil, err
	}
	addr, err := p.Address(0)
	if err != nil {
		return nil, err
	}
	if err := tonemu.Send(ctx, client, addr, testDeposit, escrow.DepositBody(1), si); err != nil {
		return nil, err
	}
	return chain, nil
}

func TestServeBillingHelperProcess(t *testing.T) {
	if os.Getenv(envBillingHelper) != "1" {
		return
	}
	dialTON = emulatedTON
	args := os.Args
	for len(args) > 0 && args[0] != "--" {
		args = args[1:]
	}
	os.Exit(runCommand(args[1:], os.Stdout, os.Stderr))
}

// hostProcess is a cocoon-host serve running in its own process.
type hostProcess struct {
	cmd  *exec.Cmd
	base string
	logs *lockedBuffer
}

func startHostProcess(t *testing.T, args ...string) *hostProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestServeBillingHelperProcess$", "--", "serve", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), envBillingHelper+"=1", "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	h := startHostCommand(t, cmd)
	if h.base == "" {
		cmd.Wait()
		t.Fatalf("the host did not start; logs:\n%s", h.logs.String())
	}
	return h
}

// startHostCommand starts cmd, a host (TestServeBillingHelperProcess, perhaps through a
// shell), and waits until it says where it listens; base stays empty if it never does.
func startHostCommand(t *testing.T, cmd *exec.Cmd) *hostProcess {
	t.Helper()
	h := &hostProcess{cmd: cmd, logs: &lockedBuffer{}}
	cmd.Stderr = h.logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if v, ok := strings.CutPrefix(lines.Text(), "Listening on "); ok {
			h.base = v
			break
		}
	}
	go io.Copy(io.Discard, out)
	return h
}

// kill ends the host with SIGKILL: no shutdown, no deferred code, no flush.
func (h *hostProcess) kill(t *testing.T) {
	t.Helper()
	if err := h.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	h.cmd.Wait()
}

// billedClient sends requests signed with the test client's escrow key.
type billedClient struct {
	account string
	base    string
}

func (c *billedClient) do(ctx context.Context, method, path, idempotencyKey string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	settle.SignedRequest{Account: c.account, Timestamp: time.Now().Unix(), Nonce: settle.NewNonce(), Method: method, Path: path,
		IdempotencyKey: idempotencyKey, Body: body}.Sign(req.Header, testClientKey)
	return http.DefaultClient.Do(req)
}

// chat sends one billed request and returns its receipt, or an error if the answer did
// not arrive whole.
func (c *billedClient) chat(ctx context.Context, key string, stream bool) (*settle.Receipt, bool, error) {
	body := fmt.Appendf(nil, `{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8,"temperature":0,"stream":%t}`, stream)
	resp, err := c.do(ctx, "POST", "/v1/chat/completions", key, body)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, false, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, false, fmt.Errorf("%d %s", resp.StatusCode, raw)
	}
	replayed := resp.Header.Get("Idempotent-Replayed") == "true"
	var r settle.Receipt
	if !stream {
		return &r, replayed, json.Unmarshal([]byte(resp.Header.Get(settle.ReceiptHeader)), &r)
	}
	if !bytes.HasSuffix(raw, []byte("data: [DONE]\n\n")) {
		return nil, false, fmt.Errorf("the stream did not end: %s", raw)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if data, ok := strings.CutPrefix(line, "data: "); ok && strings.Contains(data, `"cocoon_receipt"`) {
			var ev struct {
				Receipt *settle.Receipt `json:"cocoon_receipt"`
			}
			if err := json.Unmarshal([]byte(data), &ev); err != nil || ev.Receipt == nil {
				return nil, false, fmt.Errorf("receipt event %q: %v", data, err)
			}
			return ev.Receipt, replayed, nil
		}
	}
	return nil, false, fmt.Errorf("a stream without a receipt: %s", raw)
}

// receipts reads the account's whole chain from the host.
func (c *billedClient) receipts(t *testing.T) []settle.Receipt {
	t.Helper()
	resp, err := c.do(context.Background(), "GET", "/v1/accounts/"+c.account+"/receipts", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct{ Receipts []settle.Receipt }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("receipts: %d %v", resp.StatusCode, err)
	}
	return list.Receipts
}

// billingHost is a billing host's data directory and arguments, with the test client's
// escrow (on the emulated chain every start of the host makes anew).
type billingHost struct {
	args   []string
	data   string
	seed   []string // the host wallet's
	client *billedClient
	key    ed25519.PublicKey // the settlement key
}

func newBillingHost(t *testing.T, extra ...string) *billingHost {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	seed := wallet.NewSeed()
	seedFile := filepath.Join(dir, "seed")
	cfgFile := filepath.Join(dir, "config.json")
	if err := os.WriteFile(seedFile, []byte(strings.Join(seed, " ")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`{"wallet_seed_file": %q, "ton_config": "emulated", "prices": {"prompt_per_million": 1000000000, "completion_per_million": 3000000000, "compute_per_million": 1000000}}`, seedFile)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	key := simSettlementKey(t, data) // created now, as the host's first start would
	p, _, err := testEscrow(seed, key.Public().(ed25519.PublicKey), nil)
	if err != nil {
		t.Fatal(err)
	}
	escrowAddr, err := p.Address(0)
	if err != nil {
		t.Fatal(err)
	}
	return &billingHost{args: append([]string{"--data", data, "--attest", "sim", "--config", cfgFile}, extra...),
		data: data, seed: seed, client: &billedClient{account: escrowAddr.StringRaw()}, key: key.Public().(ed25519.PublicKey)}
}

// TestServeBillingSIGKILL kills a billing host with SIGKILL while clients load it, three
// times over, restarting it on the same data directory: every receipt a client got is
// in the ledger unchanged, the chain has no gap and adds up, and retrying the requests
// that were cut off (with their idempotency keys) charges none of them twice.
func TestServeBillingSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the host four times")
	}
	bh := newBillingHost(t, "--model-dir", embeddedModelDir(t))
	args, client, hostKey := bh.args, bh.client, bh.key
	h := startHostProcess(t, args...)

	got := map[string]*settle.Receipt{} // idempotency key -> the receipt the client got
	type request struct {
		key    string
		stream bool
	}
	var cutOff []request // requests whose answer did not arrive
	var next atomic.Int64
	for round := range 3 {
		client.base = h.base
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					key, stream := fmt.Sprintf("req-%d", next.Add(1)), (w+i)%2 == 0
					r, _, err := client.chat(context.Background(), key, stream)
					mu.Lock()
					if err != nil {
						cutOff = append(cutOff, request{key, stream})
						mu.Unlock()
						return // the host is gone
					}
					got[key] = r
					mu.Unlock()
				}
			}()
		}
		// Kill the host once the clients have had some answers this round.
		want := 15 * (round + 1)
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			n := len(got)
			mu.Unlock()
			if n >= want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d answers in 30 s; logs:\n%s", n, h.logs.String())
			}
		}
		h.kill(t)
		wg.Wait()
		h = startHostProcess(t, args...)
		client.base = h.base
		checkLedger(t, client, hostKey, got)
	}

	// Retry what was cut off: each key gets exactly one receipt, whether its first try
	// committed before the kill (the retry gets the stored answer) or not (it runs now).
	replays := 0
	for _, req := range cutOff {
		r, replayed, err := client.chat(context.Background(), req.key, req.stream)
		if err != nil {
			t.Fatalf("retry %s: %v", req.key, err)
		}
		if replayed {
			replays++
		}
		got[req.key] = r
	}
	all := checkLedger(t, client, hostKey, got)
	// Every request has exactly one receipt: none lost, none charged twice.
	if len(all) != len(got) {
		t.Fatalf("%d receipts in the ledger for %d requests", len(all), len(got))
	}
	t.Logf("%d receipts over 3 kills; %d requests cut off and retried, %d of them had committed before the kill", len(all), len(cutOff), replays)
}

// checkLedger reads the host's receipt chain and checks it against what clients got.
func checkLedger(t *testing.T, c *billedClient, hostKey ed25519.PublicKey, got map[string]*settle.Receipt) []settle.Receipt {
	t.Helper()
	all := c.receipts(t)
	if _, err := settle.VerifyChain(all, hostKey); err != nil {
		t.Fatalf("after a SIGKILL the chain does not verify: %v", err)
	}
	seen := map[string]bool{}
	for _, r := range all {
		if seen[r.RequestHash] {
			t.Fatalf("request %s has two receipts", r.RequestHash)
		}
		seen[r.RequestHash] = true
	}
	for k, r := range got {
		if r.Seq == 0 || r.Seq > uint64(len(all)) {
			t.Fatalf("the receipt of %s (seq %d) is missing from the ledger (%d receipts)", k, r.Seq, len(all))
		}
		if stored := all[r.Seq-1]; stored.MarshalHeader() != r.MarshalHeader() {
			t.Fatalf("the ledger's receipt %d differs from the one the client got:\n%s\n%s", r.Seq, stored.MarshalHeader(), r.MarshalHeader())
		}
	}
	return all
}

// bigNano is n nanoTON as the emulator takes it.
func bigNano(n uint64) *big.Int { return new(big.Int).SetUint64(n) }
