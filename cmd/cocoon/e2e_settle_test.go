package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/ton/wallet"
	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host/backend/embedded"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/escrow"
	"github.com/cocoonhost/cocoon/settle/ledger"
	"github.com/cocoonhost/cocoon/settle/tonemu"
	"github.com/cocoonhost/cocoon/web"
)

// modelDir is the stories260K folder: $COCOON_MODEL_DIR, or the shared copy beside the
// repository.
func modelDir() string {
	if dir := os.Getenv("COCOON_MODEL_DIR"); dir != "" {
		return dir
	}
	return filepath.Join("..", "..", "..", "shared", "models", "stories260K")
}

// The test host's prices: a token of completion costs 40× a token of prompt, so that a
// request bounded by max_tokens fits a 1 TON deposit and one bounded by the model's
// context (512 tokens) does not.
var e2ePrices = settle.PriceTable{PromptPerMillion: 100e9, CompletionPerMillion: 4000e9}

// billingHost is a billing Cocoon host on an emulated chain: the real web server, the
// settlement service and its bbolt ledger, the settler, simulated attestation that
// measures the settlement key, and the embedded model.
type billingHost struct {
	url, simRoot string
	chain        *tonemu.Chain
	key          ed25519.PrivateKey
	wallet       *wallet.Wallet
	ledger       *ledger.Ledger
	settler      *billing.Settler
}

// newBillingHost starts a host whose boot measures its settlement key, or the events of
// measured instead when given (nil: none).
func newBillingHost(t *testing.T, chain *tonemu.Chain, measured ...[]attest.Event) *billingHost {
	t.Helper()
	return newConfiguredBillingHost(t, chain, func(*web.Config) {}, measured...)
}

// newConfiguredBillingHost is newBillingHost with configure applied to the web server's
// config before it starts.
func newConfiguredBillingHost(t *testing.T, chain *tonemu.Chain, configure func(*web.Config), measured ...[]attest.Event) *billingHost {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	h := &billingHost{chain: chain, simRoot: filepath.Join(dir, "attest", attest.SimRootFile)}
	_, h.key, _ = ed25519.GenerateKey(nil)
	var err error
	if h.wallet, err = wallet.FromPrivateKey(chain, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, 32)), wallet.ConfigV5R1Final{NetworkGlobalID: wallet.MainnetGlobalID}); err != nil {
		t.Fatal(err)
	}
	if err := chain.Fund(h.wallet.WalletAddress(), big.NewInt(5e9)); err != nil {
		t.Fatal(err)
	}
	if h.ledger, err = ledger.Open(filepath.Join(dir, "ledger.db"), make([]byte, ledger.MinMACKey)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.ledger.Close() })
	pricer, err := billing.NewPricer(settle.SamePrices(e2ePrices), settle.LoadCurve{MinMilli: 1000, MaxMilli: 1000, Smoothing: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	service, err := billing.NewService(billing.Config{Store: h.ledger, Pricer: pricer, Escrows: billing.NewChainEscrows(chain, 0),
		Key: h.key, HostAddr: h.wallet.WalletAddress().StringRaw(), ComputeReserve: 10_000_000,
		// The chain's clock cannot run ahead of the wallets' message lifetime (wall
		// clock plus minutes), so the escrow's timeout is a minute.
		MinTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if h.settler, err = billing.NewSettler(billing.SettlerConfig{Store: h.ledger, API: chain, Wallet: h.wallet, Key: h.key, Threshold: 1}); err != nil {
		t.Fatal(err)
	}

	sim, err := attest.NewSim(filepath.Join(dir, "attest"))
	if err != nil {
		t.Fatal(err)
	}
	events := []attest.Event{attest.SettlementKeyEvent(h.key.Public().(ed25519.PublicKey)), attest.SettlementKeyOriginEvent(attest.SettlementKeyGenerated)}
	if len(measured) > 0 {
		events = measured[0]
	}
	ah, err := attest.Boot(ctx, sim, "embedded", "stories260K", events...)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := embedded.New(modelDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := web.Config{Backend: engine, APIKeys: []web.APIKey{{Name: "operator", Key: "operator-key"}},
		Attestation: ah, Billing: service, MaxGenerations: 2}
	configure(&cfg)
	h.url = serveWeb(t, cfg)
	return h
}

// mustCocoon runs a command line that must succeed, with stdout containing each of want.
func mustCocoon(t *testing.T, want []string, args ...string) string {
	t.Helper()
	code, stdout, stderr := cocoon(t, "", args...)
	if code != 0 {
		t.Fatalf("cocoon %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
	}
	for _, w := range want {
		if !strings.Contains(stdout+stderr, w) {
			t.Fatalf("cocoon %s: output lacks %q\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), w, stdout, stderr)
		}
	}
	return stdout + stderr
}

// useChain makes the commands reach chain in place of the TON network.
func useChain(t *testing.T, chain *tonemu.Chain) {
	t.Helper()
	saved := dialTON
	dialTON = func(context.Context, string) (ton.APIClientWrapped, error) { return chain, nil }
	t.Cleanup(func() { dialTON = saved })
}

// The "done when": a client opens an escrow with the CLI, chats with signed
// requests that are admitted and billed, verifies its receipts, is refused what it
// cannot pay for and what is forged or replayed; the host settles on-chain; the client
// withdraws the rest.
func TestSettlementEndToEnd(t *testing.T) {
	chain, err := tonemu.New()
	if err != nil {
		t.Fatal(err)
	}
	useChain(t, chain)
	h := newBillingHost(t, chain)
	ctx := context.Background()
	dir := t.TempDir()

	// The client's wallet, funded.
	seed := filepath.Join(dir, "wallet.seed")
	if err := os.WriteFile(seed, []byte(strings.Join(wallet.NewSeed(), " ")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clientKey, err := readSeedFile(seed)
	if err != nil {
		t.Fatal(err)
	}
	clientWallet, err := wallet.FromPrivateKey(chain, clientKey, wallet.ConfigV5R1Final{NetworkGlobalID: wallet.MainnetGlobalID})
	if err != nil {
		t.Fatal(err)
	}
	if err := chain.Fund(clientWallet.WalletAddress(), big.NewInt(3e9)); err != nil {
		t.Fatal(err)
	}
	tonFlags := []string{"--ton-config", filepath.Join(dir, "unused-global-config.json")}
	trust := []string{"--host", h.url, "--trust-sim-root", h.simRoot}

	// Open: the host is verified and the escrow deployed with 1 TON.
	out := mustCocoon(t, []string{"settlement key " + hex.EncodeToString(h.key.Public().(ed25519.PublicKey)), "deposited   1.0 TON", "charged     0.0 TON", "withdrawal  not requested"},
		append(append([]string{"channel", "open", "--seed-file", seed, "--deposit", "1", "--timeout", "1m"}, trust...), tonFlags...)...)
	m := regexp.MustCompile(`(?m)^escrow\s+\S+ \((0:[0-9a-f]{64})\)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("channel open printed no escrow address:\n%s", out)
	}
	account := m[1]
	escrowAddr := address.MustParseRawAddr(account)
	st, err := escrow.GetState(ctx, chain, escrowAddr)
	if err != nil || st.Deposited.Cmp(big.NewInt(1e9)) != 0 || !st.ClientAddr.Equals(clientWallet.WalletAddress()) ||
		!st.HostAddr.Equals(h.wallet.WalletAddress()) || st.Timeout != 60 || !bytes.Equal(st.ClientKey, clientKey.Public().(ed25519.PublicKey)) {
		t.Fatalf("escrow after open: %+v, %v", st, err)
	}

	// More from the same wallet; then an escrow opened and funded from "another wallet"
	// with what --print prints.
	mustCocoon(t, []string{"deposited   1.5 TON"}, append([]string{"channel", "deposit", "--escrow", account, "--amount", "0.5", "--seed-file", seed}, tonFlags...)...)
	testPrintedTransfers(t, chain, clientWallet, trust)

	// Chat, streaming and not, signed with the client key: each answer has a receipt.
	receiptsFile := filepath.Join(dir, "receipts.jsonl")
	signed := []string{"--host", h.url, "--trust-sim-root", h.simRoot, "--escrow", account, "--seed-file", seed, "--receipts", receiptsFile, "--max-tokens", "16", "--temperature", "0"}
	for i, extra := range [][]string{nil, {"--no-stream"}, nil, {"--no-stream"}} {
		out := mustCocoon(t, []string{"receipt: seq " + string(rune('1'+i)) + ","}, append(append([]string{"chat"}, signed...), append(extra, "Once upon a time")...)...)
		if strings.Count(out, "\n") < 2 {
			t.Fatalf("chat printed no answer:\n%s", out)
		}
	}

	// A cap of the caller's own under the request's worst case: 402 max_price_exceeded,
	// before anything is held or charged (the receipts below are still the four).
	if code, _, stderr := cocoon(t, "", append(append([]string{"chat"}, signed...), "--max-price", "1", "Once")...); code != 1 || !strings.Contains(stderr, "402 Payment Required") || !strings.Contains(stderr, "over its max_price of 1 nanoTON") {
		t.Errorf("a request over its --max-price: exit %d, stderr %s", code, stderr)
	}

	// The receipts, fetched from the host and verified against its attested key, and
	// the chain the chat saved, verified offline.
	fetched := filepath.Join(dir, "fetched.jsonl")
	mustCocoon(t, []string{"ok   settlement key", "ok   signatures: 4 receipts", "ok   chain:", "ok   complete:", "charged: "},
		append([]string{"receipts", "--escrow", account, "--seed-file", seed, "--out", fetched}, trust...)...)
	hostKeyHex := hex.EncodeToString(h.key.Public().(ed25519.PublicKey))
	mustCocoon(t, []string{"ok   chain:"}, "receipts", "--file", receiptsFile, "--settlement-key", hostKeyHex)
	saved, _ := os.ReadFile(receiptsFile)
	if got, _ := os.ReadFile(fetched); !bytes.Equal(got, saved) {
		t.Errorf("receipts fetched:\n%s\ndiffer from those chat saved:\n%s", got, saved)
	}
	// A saved chain with a receipt missing, and one checked against another key, fail.
	lines := strings.SplitAfter(string(saved), "\n")
	gap := filepath.Join(dir, "gap.jsonl")
	os.WriteFile(gap, []byte(lines[0]+lines[2]+lines[3]), 0o644)
	if code, stdout, _ := cocoon(t, "", "receipts", "--file", gap, "--settlement-key", hostKeyHex); code != 1 || !strings.Contains(stdout, "FAIL chain: settle: invalid receipt: expected seq 2, found 3") {
		t.Errorf("a chain with a gap: exit %d\n%s", code, stdout)
	}
	if code, stdout, _ := cocoon(t, "", "receipts", "--file", receiptsFile, "--settlement-key", strings.Repeat("ab", 32)); code != 1 || !strings.Contains(stdout, "FAIL signatures: settle: invalid receipt: seq 1 is signed by another key") {
		t.Errorf("another key: exit %d\n%s", code, stdout)
	}

	// A request whose maximum cost (its prompt bounded by the 512-token context, no
	// max_tokens) exceeds the balance: 402, with the amount missing.
	code, _, stderr := cocoon(t, "", append([]string{"chat"}, "--host", h.url, "--trust-sim-root", h.simRoot, "--escrow", account, "--seed-file", seed, "Once")...)
	if code != 1 || !strings.Contains(stderr, "402 Payment Required") || !strings.Contains(stderr, "deposit at least") {
		t.Errorf("a request over the balance: exit %d, stderr %s", code, stderr)
	}

	// Forged and replayed signatures: 401.
	body := []byte(`{"messages":[{"role":"user","content":"Once"}],"max_tokens":4}`)
	post := func(sign func(*http.Request)) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, h.url+"/v1/chat/completions", bytes.NewReader(body))
		sign(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e apiError
		json.NewDecoder(resp.Body).Decode(&e)
		if e.Error == nil {
			return resp.StatusCode, ""
		}
		return resp.StatusCode, e.Error.Code
	}
	_, otherKey, _ := ed25519.GenerateKey(nil)
	forged := &signer{account: account, key: otherKey}
	if status, code := post(func(r *http.Request) { forged.sign(r, body) }); status != 401 || code != settle.CodeBadSignature {
		t.Errorf("forged signature: %d %s", status, code)
	}
	var captured http.Header
	if status, _ := post(func(r *http.Request) {
		(&signer{account: account, key: clientKey}).sign(r, body)
		captured = r.Header.Clone()
	}); status != 200 {
		t.Fatalf("signed request: %d", status)
	}
	if status, code := post(func(r *http.Request) { r.Header = captured }); status != 401 || code != settle.CodeReplay {
		t.Errorf("replayed request: %d %s", status, code)
	}

	// The host settles: the escrow pays it the last receipt's cumulative total.
	totals, err := h.ledger.Account(ctx, account)
	if err != nil || totals.LastSeq != 5 {
		t.Fatalf("ledger: %+v, %v", totals, err)
	}
	hostBefore := chain.Balance(h.wallet.WalletAddress())
	if n, err := h.settler.Settle(ctx); n != 1 || err != nil {
		t.Fatalf("Settle: %d charges, %v", n, err)
	}
	st, err = escrow.GetState(ctx, chain, escrowAddr)
	if err != nil || st.Charged.Uint64() != totals.Cumulative {
		t.Fatalf("escrow charged %v after settlement, want %d (%v)", st.Charged, totals.Cumulative, err)
	}
	if gain := new(big.Int).Sub(chain.Balance(h.wallet.WalletAddress()), hostBefore); gain.Sign() <= 0 || gain.Uint64() > totals.Cumulative {
		t.Errorf("host wallet gained %v nanoTON for a charge of %d", gain, totals.Cumulative)
	}
	unspent := 1.5e9 - totals.Cumulative
	mustCocoon(t, []string{"charged     " + settle.FormatTON(totals.Cumulative) + " TON", "unspent     " + settle.FormatTON(unspent) + " TON",
		"receipts     5, " + settle.FormatTON(totals.Cumulative) + " TON in total", "settled      " + settle.FormatTON(totals.Cumulative) + " TON"},
		append([]string{"channel", "status", "--escrow", account, "--host", h.url, "--seed-file", seed}, tonFlags...)...)

	// Withdrawal: the request, then too early, then past the timeout.
	withdraw := append([]string{"channel", "withdraw", "--escrow", account, "--seed-file", seed}, tonFlags...)
	mustCocoon(t, []string{"withdrawal requested", "withdrawable at"}, withdraw...)
	if code, _, stderr := cocoon(t, "", "chat", "--host", h.url, "--trust-sim-root", h.simRoot, "--escrow", account, "--seed-file", seed, "--max-tokens", "4", "Once"); code != 1 || !strings.Contains(stderr, "is closing") {
		t.Errorf("chat on a closing escrow: exit %d, %s", code, stderr)
	}
	if code, _, stderr := cocoon(t, "", withdraw...); code != 1 || !strings.Contains(stderr, "the escrow pays out from") {
		t.Errorf("withdraw before the timeout: exit %d, %s", code, stderr)
	}
	chain.Advance(61 * time.Second)
	clientBefore := chain.Balance(clientWallet.WalletAddress())
	mustCocoon(t, []string{"withdrawn: escrow", settle.FormatTON(unspent) + " TON of unspent deposit"}, withdraw...)
	refund := new(big.Int).Sub(chain.Balance(clientWallet.WalletAddress()), clientBefore)
	if refund.Cmp(new(big.Int).SetUint64(unspent)) < 0 || refund.Cmp(new(big.Int).SetUint64(unspent+100_000_000)) > 0 {
		t.Errorf("the client wallet got %v nanoTON back, want the unspent %d and part of the reserves", refund, unspent)
	}
	if _, err := escrow.GetState(ctx, chain, escrowAddr); !errors.Is(err, escrow.ErrNotDeployed) {
		t.Errorf("escrow after withdrawal: %v, want it gone", err)
	}
	if code, _, stderr := cocoon(t, "", append([]string{"channel", "status", "--escrow", account}, tonFlags...)...); code != 1 || !strings.Contains(stderr, "there is no escrow") {
		t.Errorf("status of a closed escrow: exit %d, %s", code, stderr)
	}
}

// testPrintedTransfers opens an escrow for a client key of its own with `channel open
// --print`, funds it with `channel deposit --print`, and sends what they print from
// clientWallet, as a wallet app would from the ton:// link.
func testPrintedTransfers(t *testing.T, chain *tonemu.Chain, clientWallet *wallet.Wallet, trust []string) {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "client.key")
	clientKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	os.WriteFile(keyFile, []byte(hex.EncodeToString(clientKey.Seed())+"\n"), 0o600)
	out := mustCocoon(t, []string{"Send this transfer", "amount      0.51 TON (510000000 nanoTON)", "link        ton://transfer/EQ"},
		append([]string{"channel", "open", "--print", "--client-address", clientWallet.WalletAddress().String(), "--client-key-file", keyFile,
			"--deposit", "0.5", "--channel-id", "7"}, trust...)...)
	field := func(out, name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `\s+(\S+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no %s in:\n%s", name, out)
		}
		return m[1]
	}
	account := regexp.MustCompile(`\((0:[0-9a-f]{64})\)`).FindStringSubmatch(out)[1]
	addr := address.MustParseRawAddr(account)
	send := func(out string, value uint64) {
		t.Helper()
		msg := transfer{to: addr, value: value, body: mustBOC(t, field(out, "body"))}
		if si := regexp.MustCompile(`(?m)^state init`).FindString(out); si != "" {
			msg.init = new(tlb.StateInit)
			if err := tlb.LoadFromCell(msg.init, mustBOC(t, field(out, "state init")).MustBeginParse()); err != nil {
				t.Fatal(err)
			}
		}
		if err := clientWallet.Send(context.Background(), msg.message()); err != nil {
			t.Fatal(err)
		}
	}
	send(out, 510_000_000)
	out = mustCocoon(t, []string{"body"}, "channel", "deposit", "--print", "--escrow", account, "--amount", "0.25")
	send(out, 260_000_000)
	st, err := escrow.GetState(context.Background(), chain, addr)
	if err != nil || st.Deposited.Uint64() != 750_000_000 || st.ChannelID != 7 || !bytes.Equal(st.ClientKey, clientKey.Public().(ed25519.PublicKey)) ||
		!st.ClientAddr.Equals(clientWallet.WalletAddress()) {
		t.Fatalf("the escrow opened from the printed transfers: %+v, %v", st, err)
	}
}

func mustBOC(t *testing.T, b64 string) *cell.Cell {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cell.FromBOC(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A client opens no escrow with a host whose price list is not signed by the
// settlement key its attestation measures, nor with one that measures none, nor with
// one whose attestation it cannot verify.
func TestChannelOpenRefusesUnattestedKeys(t *testing.T) {
	chain, err := tonemu.New()
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := ed25519.GenerateKey(nil)
	keyFile := filepath.Join(t.TempDir(), "client.key")
	os.WriteFile(keyFile, []byte(strings.Repeat("07", 32)), 0o600)
	tests := []struct {
		name     string
		measured []attest.Event
		trusted  bool
		stderr   string
	}{
		{"another key measured", []attest.Event{attest.SettlementKeyEvent(other), attest.SettlementKeyOriginEvent(attest.SettlementKeyGenerated)}, true, "but its attestation measures settlement key " + hex.EncodeToString(other)},
		{"no key measured", nil, true, "measures no settlement key at boot"},
		{"attestation not trusted", nil, false, "FAIL evidence mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newBillingHost(t, chain, tt.measured)
			args := []string{"channel", "open", "--print", "--host", h.url, "--client-address", "0:" + strings.Repeat("11", 32),
				"--client-key-file", keyFile, "--deposit", "1"}
			if tt.trusted {
				args = append(args, "--trust-sim-root", h.simRoot)
			}
			code, stdout, stderr := cocoon(t, "", args...)
			if code != 1 || strings.Contains(stdout, "Send this transfer") || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 1, stderr containing %q", code, stdout, stderr, tt.stderr)
			}
		})
	}
}
