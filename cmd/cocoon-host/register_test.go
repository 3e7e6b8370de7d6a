package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/ton/wallet"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/cmd/internal/tonnet"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/registry"
	"github.com/cocoonhost/cocoon/settle/tonemu"
)

var testRegistryOwner = testClientWallet // any funded key will do

// registryChain makes dialTON, for the test's duration, return an emulated chain with
// the billing test's escrow and, if deploy, a registry as devnet deploys it. It returns
// the registry's address (deployed or not) and a function that returns the chain once
// serve has dialed it.
func registryChain(t *testing.T, deploy bool) (*address.Address, func() *tonemu.Chain) {
	t.Helper()
	allow, err := localAllowlist()
	if err != nil {
		t.Fatal(err)
	}
	owner, err := tonnet.WalletAddress(testRegistryOwner, wallet.MainnetGlobalID)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := devnetRegistry(owner, allow).Address(0)
	if err != nil {
		t.Fatal(err)
	}
	saved := dialTON
	t.Cleanup(func() { dialTON = saved })
	var (
		mu     sync.Mutex
		last   *tonemu.Chain
		once   sync.Once
		dialed = make(chan struct{})
	)
	dialTON = func(ctx context.Context, cfg *serveConfig) (ton.APIClientWrapped, func(), error) {
		chain, err := emulatedChain(ctx, cfg)
		if err != nil {
			return nil, nil, err
		}
		if deploy {
			got, _, err := deployRegistry(ctx, chain, testRegistryOwner, 100e9, func(owner *address.Address) registry.Params {
				return devnetRegistry(owner, allow)
			})
			if err != nil {
				return nil, nil, err
			}
			if !got.Equals(addr) {
				return nil, nil, errors.New("the registry deployed at another address")
			}
		}
		mu.Lock()
		last = chain
		mu.Unlock()
		once.Do(func() { close(dialed) })
		return chain, func() {}, nil
	}
	return addr, func() *tonemu.Chain {
		select {
		case <-dialed:
		case <-time.After(30 * time.Second):
			t.Fatal("serve did not dial the chain")
		}
		mu.Lock()
		defer mu.Unlock()
		return last
	}
}

// TestServeRegistersItself runs the real serve path with --registry against the
// emulated chain and reads the registration back with the get-methods: the host's
// settlement key, endpoint and stake, the hash of the price list and of the boot quote it
// serves, and measurements the devnet allowlist admits.
func TestServeRegistersItself(t *testing.T) {
	model, err := filepath.Abs(testModelDir())
	if err != nil {
		t.Fatal(err)
	}
	bh := newBillingHost(t, "--model-dir", model)
	t.Chdir(filepath.Join("..", "..")) // startServe reads up to the example pipeline's line
	addr, chain := registryChain(t, true)
	const endpoint = "https://host.example:8443"
	r := startServe(t, append(bh.args, "--registry", addr.String(), "--registry-endpoint", endpoint)...)

	var hosts []registry.Host
	var allow registry.Allowlist
	deadline := time.Now().Add(30 * time.Second)
	for len(hosts) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no registration within 30 s; logs:\n%s", r.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
		if hosts, allow, err = registry.Hosts(context.Background(), chain(), addr); err != nil {
			t.Fatal(err)
		}
	}
	h := hosts[0]
	if len(hosts) != 1 || !h.Key.Equal(bh.key) || h.Endpoint != endpoint || h.Stake.Int64() != devnetMinStake {
		t.Fatalf("registered %+v; want one host with key %x, endpoint %s and the minimum stake", hosts, bh.key, endpoint)
	}

	// What a client checks (REGISTRY.md "Client checks") holds for the host's own
	// evidence and price list.
	var ev attest.Evidence
	getJSON(t, r.base+"/v1/attestation", &ev)
	if sha256.Sum256(ev.Quote) != h.EvidenceHash {
		t.Error("the registered evidence hash is not sha256 of the boot quote the host serves")
	}
	var prices settle.PriceList
	getJSON(t, r.base+"/v1/pricing", &prices)
	if err := prices.Verify(h.Key); err != nil {
		t.Errorf("price list: %v", err)
	}
	if registry.PriceListHash(prices) != h.PriceHash {
		t.Error("the registered price hash is not that of the price list the host serves")
	}
	events, err := attest.ParseEventLog(ev.EventLog)
	if err != nil {
		t.Fatal(err)
	}
	m := registry.Measurements{}
	for _, e := range events {
		if k, ok := registry.KindByName(string(e.Type)); ok {
			m[k] = e.Data
		}
		if e.Type == attest.EventSettlementKey && !bytes.Equal(e.Data, h.Key) {
			t.Error("the event log measures another settlement key than the registered one")
		}
	}
	if err := allow.Check(m); err != nil {
		t.Errorf("the devnet allowlist refuses the local host: %v", err)
	}
	if !strings.Contains(r.stdout.String(), "Registry: "+addr.String()) {
		t.Errorf("stdout does not name the registry:\n%s", r.stdout.String())
	}
	r.stop(t)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// TestServeRegistryFailure: a registry that is not there does not stop the host, which
// says in its log why it cannot register and retries; unless the operator asked for the
// registration to be required, when serve fails at start with the reason.
func TestServeRegistryFailure(t *testing.T) {
	model, err := filepath.Abs(testModelDir())
	if err != nil {
		t.Fatal(err)
	}
	bh := newBillingHost(t, "--model-dir", model)
	t.Chdir(filepath.Join("..", ".."))
	addr, _ := registryChain(t, false)
	args := append(bh.args, "--registry", addr.String(), "--registry-endpoint", "https://host.example")

	r := startServe(t, args...)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(r.logs.String(), "registration failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no failure logged within 30 s; logs:\n%s", r.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(r.logs.String(), "no active contract at this address") {
		t.Errorf("the log does not say why:\n%s", r.logs.String())
	}
	resp, err := http.Get(r.base + "/v1/pricing")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the host does not serve while it cannot register: %v %v", resp, err)
	}
	resp.Body.Close()
	r.stop(t)

	var stderr lockedBuffer
	err = runServe(context.Background(), append([]string{"--listen", "127.0.0.1:0", "--registry-required"}, args...), &lockedBuffer{}, &stderr)
	if err == nil || !strings.Contains(err.Error(), "registry_required") || !strings.Contains(err.Error(), "no active contract at this address") {
		t.Fatalf("serve --registry-required with no registry: %v; want it to fail saying why", err)
	}
}

func TestRegistryConfigCheck(t *testing.T) {
	const addr = "EQBvW8Z5huBkMJYdnfAEM5JqTNkuWX3diqYENkWsIL0XggGG"
	cases := []struct {
		name    string
		cfg     registryConfig
		billing bool
		bad     string // in the error; "" for accepted
	}{
		{"off", registryConfig{}, false, ""},
		{"on", registryConfig{Registry: addr, RegistryEndpoint: "https://h.example:8443", RegistryStake: "5"}, true, ""},
		{"raw address", registryConfig{Registry: "0:" + strings.Repeat("ab", 32), RegistryEndpoint: "http://127.0.0.1:8080"}, true, ""},
		{"without billing", registryConfig{Registry: addr, RegistryEndpoint: "https://h.example"}, false, "needs billing"},
		{"endpoint without registry", registryConfig{RegistryEndpoint: "https://h.example"}, true, "need --registry"},
		{"bad address", registryConfig{Registry: "nope", RegistryEndpoint: "https://h.example"}, true, "not a TON address"},
		{"no endpoint", registryConfig{Registry: addr}, true, "--registry-endpoint"},
		{"endpoint not a URL", registryConfig{Registry: addr, RegistryEndpoint: "h.example:8443"}, true, "--registry-endpoint"},
		{"endpoint too long", registryConfig{Registry: addr, RegistryEndpoint: "https://" + strings.Repeat("a", 120) + ".example"}, true, "holds 127 at most"},
		{"bad stake", registryConfig{Registry: addr, RegistryEndpoint: "https://h.example", RegistryStake: "lots"}, true, "registry_stake"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.check(c.billing)
			if c.bad == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.bad) {
				t.Fatalf("got %v, want an error with %q", err, c.bad)
			}
		})
	}
}

// TestRegistryCommand drives cocoon-host registry against one emulated chain: status
// shows the host, deregister starts the unstake delay, withdraw is refused before its
// end and returns the stake after it.
func TestRegistryCommand(t *testing.T) {
	bh := newBillingHost(t)
	allow, err := localAllowlist()
	if err != nil {
		t.Fatal(err)
	}
	saved := dialTON
	t.Cleanup(func() { dialTON = saved })
	var chain *tonemu.Chain
	var addr *address.Address
	dialTON = func(ctx context.Context, cfg *serveConfig) (ton.APIClientWrapped, func(), error) {
		if chain == nil {
			if chain, err = emulatedChain(ctx, cfg); err != nil {
				return nil, nil, err
			}
			// An unstake delay of a minute: the command's wallet signs messages
			// valid for three minutes of the machine's time, which the chain's clock
			// must not pass.
			if addr, _, err = deployRegistry(ctx, chain, testRegistryOwner, 100e9, func(owner *address.Address) registry.Params {
				p := devnetRegistry(owner, allow)
				p.UnstakeDelay = 60
				return p
			}); err != nil {
				return nil, nil, err
			}
		}
		return chain, func() {}, nil
	}
	run := func(action string) (string, error) {
		var out lockedBuffer
		args := append([]string{action}, bh.args...)
		if addr != nil {
			args = append(args, "--registry", addr.String(), "--registry-endpoint", "https://host.example")
		}
		err := registryCommand(args, &out, io.Discard)
		return out.String(), err
	}
	if _, err := run("status"); err == nil || !strings.Contains(err.Error(), "--registry") {
		t.Fatalf("status without --registry: %v", err)
	}
	cfg, err := parseServeFlags(bh.args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := dialTON(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	// The host registers as serve would.
	w, err := wallet.FromSeedWithOptions(chain, bh.seed, wallet.ConfigV5R1Final{NetworkGlobalID: wallet.MainnetGlobalID})
	if err != nil {
		t.Fatal(err)
	}
	r, err := registry.NewRegistrar(registry.RegistrarConfig{API: chain, Wallet: w, Key: simSettlementKey(t, bh.data), Registry: addr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sync(context.Background(), registry.Registration{Endpoint: "https://host.example"}); err != nil {
		t.Fatal(err)
	}

	if out, err := run("status"); err != nil || !strings.Contains(out, "active https://host.example stake 1.0 TON, seqno 1 (this host)") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if out, err := run("deregister"); err != nil || !strings.Contains(out, "Deregistered") {
		t.Fatalf("deregister: %v\n%s", err, out)
	}
	if _, err := run("withdraw"); !errors.Is(err, registry.ErrTooEarly) {
		t.Fatalf("withdraw before the delay: %v, want too early", err)
	}
	chain.Advance(time.Minute)
	chain.Tick()
	before := chain.Balance(w.WalletAddress())
	if out, err := run("withdraw"); err != nil || !strings.Contains(out, "Stake returned") {
		t.Fatalf("withdraw: %v\n%s", err, out)
	}
	if got := new(big.Int).Sub(chain.Balance(w.WalletAddress()), before); got.Int64() < devnetMinStake-50e6 {
		t.Fatalf("the wallet got %v back", got)
	}
}

// TestRegistryOwnerCommand: the owner proposes an allowlist from the command line; it is
// pending for the delay, apply is refused before its end and the change is in effect
// after it; a wallet that is not the owner's is refused before anything is sent, and a
// cancel with nothing pending gets the registry's reason.
func TestRegistryOwnerCommand(t *testing.T) {
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "owner.seed")
	ownerKey, err := tonnet.CreateSeedFile(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	strangerFile := filepath.Join(dir, "stranger.seed")
	if _, err := tonnet.CreateSeedFile(strangerFile); err != nil {
		t.Fatal(err)
	}
	chain, err := tonemu.New()
	if err != nil {
		t.Fatal(err)
	}
	// Behind the machine's clock, as devnet's: the command's wallet signs messages valid
	// for minutes of the machine's time, and the test moves the chain by the delay.
	chain.SetNow(time.Now().Add(-2 * time.Hour))
	local, err := localAllowlist()
	if err != nil {
		t.Fatal(err)
	}
	addr, _, err := deployRegistry(context.Background(), chain, ownerKey, 100e9, func(owner *address.Address) registry.Params {
		return devnetRegistry(owner, local)
	})
	if err != nil {
		t.Fatal(err)
	}
	saved := dialTON
	t.Cleanup(func() { dialTON = saved })
	dialTON = func(context.Context, *serveConfig) (ton.APIClientWrapped, func(), error) {
		return chain, func() {}, nil
	}
	run := func(args ...string) (string, error) {
		var out lockedBuffer
		err := registryCommand(append(args, "--registry", addr.String(), "--ton-config", "emulated"), &out, io.Discard)
		return out.String(), err
	}

	newModel := "model=sha256:" + strings.Repeat("cd", 32)
	args := []string{"propose", "--owner-seed-file", seedFile, "--allow", newModel,
		"--allow", "host-binary=" + hex.EncodeToString(local.Entries[0].Value),
		"--allow", fmt.Sprintf("abi-version=%d", abi.Version),
		"--allow", "sandbox-policy=" + hex.EncodeToString(local.Entries[2].Value)}
	if _, err := run(append([]string{"propose", "--owner-seed-file", strangerFile}, args[3:]...)...); err == nil || !strings.Contains(err.Error(), "the registry's owner is") {
		t.Fatalf("propose from a stranger: %v", err)
	}
	out, err := run(args...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Allowlist from ") || !strings.Contains(out, strings.Repeat("cd", 32)) {
		t.Fatalf("propose printed:\n%s", out)
	}
	if _, err := run("apply", "--owner-seed-file", seedFile); !errors.Is(err, registry.ErrTooEarly) {
		t.Fatalf("apply before the delay: %v, want too early", err)
	}
	chain.Advance(devnetChangeDelay * time.Second)
	chain.Tick()
	if _, err := run("apply", "--owner-seed-file", seedFile); err != nil {
		t.Fatal(err)
	}
	st, err := registry.GetState(context.Background(), chain, addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Current.Check(registry.Measurements{registry.KindHostBinary: local.Entries[0].Value, registry.KindABIVersion: local.Entries[1].Value,
		registry.KindSandboxPolicy: local.Entries[2].Value, registry.KindModel: []byte(strings.TrimPrefix(newModel, "model="))}); err != nil || st.Pending != nil {
		t.Fatalf("after the delay: %v, pending %v", err, st.Pending)
	}
	if _, err := run("cancel", "--owner-seed-file", seedFile); !errors.Is(err, registry.ErrNothingPending) {
		t.Fatalf("cancel with nothing pending: %v", err)
	}
}

func TestParseAllowEntry(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for in, ok := range map[string]bool{
		"host-binary=" + h: true, "abi-version=1": true, "sandbox-policy=" + h: true, "model=sha256:" + h: true,
		"mrtd=" + strings.Repeat("ab", 48): true, "rtmr2=" + strings.Repeat("ab", 48): true,
		"host-binary=" + h[:62]: false, "host-binary=zz": false, "abi-version=x": false, "abi-version=-1": false,
		"model=": false, "mrtd=" + h: false, "gpu=" + h: false, "host-binary": false,
	} {
		if _, err := parseAllowEntry(in); (err == nil) != ok {
			t.Errorf("parseAllowEntry(%q) = %v, want ok %v", in, err, ok)
		}
	}
}
