package proxy

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/escrow"
	"github.com/cocoonhost/cocoon/settle/ledger"
	"github.com/cocoonhost/cocoon/settle/registry"
	"github.com/cocoonhost/cocoon/settle/tonemu"
	"github.com/cocoonhost/cocoon/web"
	"github.com/cocoonhost/cocoon/web/proxy/proxytest"
	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton/wallet"
)

// market is a registry on the emulated chain and the billing hosts that register on it.
type market struct {
	t     *testing.T
	chain *tonemu.Chain
	addr  *address.Address
	seed  byte
}

// allowedModel is the model identity the market's allowlist accepts.
const allowedModel = "m"

// newMarket deploys a registry whose allowlist accepts this test binary as host, the
// current ABI and sandbox policy, and the model allowedModel (any MRTD and RTMRs).
func newMarket(t *testing.T) *market {
	t.Helper()
	chain, err := tonemu.New()
	if err != nil {
		t.Fatal(err)
	}
	m := &market{t: t, chain: chain, seed: 0x10}
	owner := m.wallet()
	exe, err := attest.ExecutableSHA256()
	if err != nil {
		t.Fatal(err)
	}
	policy := sha256.Sum256(attest.SandboxPolicy())
	params := registry.Params{Owner: owner.WalletAddress(), MinStake: tlb.MustFromTON("1").Nano(), ChangeDelay: 3600, UnstakeDelay: 3600,
		Allowlist: registry.Allowlist{Entries: []registry.Entry{
			{Kind: registry.KindHostBinary, Value: exe[:]},
			{Kind: registry.KindABIVersion, Value: binary.BigEndian.AppendUint32(nil, abi.Version)},
			{Kind: registry.KindSandboxPolicy, Value: policy[:]},
			{Kind: registry.KindModel, Value: []byte(allowedModel)},
		}}}
	si, err := params.StateInit()
	if err != nil {
		t.Fatal(err)
	}
	if m.addr, err = params.Address(0); err != nil {
		t.Fatal(err)
	}
	if err := tonemu.Send(context.Background(), owner, m.addr, 1e9, registry.TopUpBody(0), si); err != nil {
		t.Fatal(err)
	}
	return m
}

// wallet is a new funded wallet.
func (m *market) wallet() *wallet.Wallet {
	m.t.Helper()
	m.seed++
	w, err := m.chain.NewWallet(seedKey(m.seed), 100e9)
	if err != nil {
		m.t.Fatal(err)
	}
	return w
}

func seedKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

// marketHost is a billing host of the market.
type marketHost struct {
	*proxytest.Host
	wallet *wallet.Wallet
	key    ed25519.PrivateKey // its settlement key
	boot   attest.Evidence
	prices *settle.Service
}

// newHost boots a host that bills perMillion nanoTON per million tokens (prompt and
// completion), measuring model as its model and its settlement key, and serves it.
func (m *market) newHost(perMillion uint64, model string) *marketHost {
	t := m.t
	t.Helper()
	h := &marketHost{Host: proxytest.NewHost(t, nil), wallet: m.wallet()}
	m.seed++
	h.key = seedKey(m.seed)
	store, err := ledger.Open(filepath.Join(t.TempDir(), "ledger.db"), make([]byte, ledger.MinMACKey))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	pricer, err := settle.NewPricer(settle.PriceTable{PromptPerMillion: perMillion, CompletionPerMillion: perMillion},
		settle.LoadCurve{MinMilli: 1000, MaxMilli: 1000, Smoothing: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if h.prices, err = settle.NewService(settle.Config{Store: store, Pricer: pricer, Escrows: settle.NewChainEscrows(m.chain, 0),
		Key: h.key, HostAddr: h.wallet.WalletAddress().StringRaw(), ComputeReserve: 100_000}); err != nil {
		t.Fatal(err)
	}
	// Boot again, as a billing host does: measuring its settlement key.
	h.Config = func(c *web.Config) {
		sim, err := attest.NewSim(h.Dir)
		if err != nil {
			t.Fatal(err)
		}
		if c.Attestation, err = attest.Boot(context.Background(), sim, "embedded", model,
			attest.SettlementKeyEvent(h.key.Public().(ed25519.PublicKey)), attest.SettlementKeyOriginEvent(attest.SettlementKeyGenerated)); err != nil {
			t.Fatal(err)
		}
		h.boot = c.Attestation.BootEvidence()
		c.Billing = h.prices
		// The proxy's API key bills to an escrow with this host.
		c.APIKeys = []web.APIKey{{Name: "t", Key: proxytest.APIKey, Account: m.escrow(h).String()}}
	}
	h.Start(t)
	return h
}

// escrow opens an escrow of 10 TON from a client to h.
func (m *market) escrow(h *marketHost) *address.Address {
	m.t.Helper()
	client := m.wallet()
	p := escrow.Params{ClientAddr: client.WalletAddress(), HostAddr: h.wallet.WalletAddress(), ClientKey: seedKey(m.seed).Public().(ed25519.PublicKey),
		HostKey: h.key.Public().(ed25519.PublicKey), Timeout: 3600, ChannelID: 1}
	si, err := p.StateInit()
	if err != nil {
		m.t.Fatal(err)
	}
	addr, err := p.Address(0)
	if err != nil {
		m.t.Fatal(err)
	}
	if err := tonemu.Send(context.Background(), client, addr, 10e9, escrow.DepositBody(1), si); err != nil {
		m.t.Fatal(err)
	}
	return addr
}

// registration is what h registers: its URL, price list and boot quote.
func (h *marketHost) registration() registry.Registration {
	return registry.Registration{Endpoint: h.URL, PriceHash: registry.PriceListHash(h.prices.PriceList()),
		EvidenceHash: registry.EvidenceHash(h.boot.Quote)}
}

// register signs reg with h's settlement key and sends it from h's wallet.
func (m *market) register(h *marketHost, reg registry.Registration) {
	m.t.Helper()
	r, err := registry.NewRegistrar(registry.RegistrarConfig{API: m.chain, Wallet: h.wallet, Key: h.key, Registry: m.addr, ConfirmTimeout: 5 * time.Second})
	if err != nil {
		m.t.Fatal(err)
	}
	if _, err := r.Sync(context.Background(), reg); err != nil {
		m.t.Fatal(err)
	}
}

// TestRegistryDiscovery is the acceptance test of issue 14's router over the registry:
// billing hosts registered on a registry (the emulated chain), the proxy with the
// registry as its source. The cheapest host is one whose measurements are not on the
// allowlist (it measures another model), the next cheapest registered a boot quote
// other than the one it serves (a record of another boot), and one changed its prices
// without registering them: each is refused, with its reason logged, and never gets a
// request; requests go to the cheapest verified host; a host that registers later,
// cheaper still, is discovered and takes the requests, and so does the one that
// published unregistered prices once it registers them.
func TestRegistryDiscovery(t *testing.T) {
	m := newMarket(t)
	unlisted := m.newHost(100_000_000, "sha256:"+strings.Repeat("0e", 32))
	staleBoot := m.newHost(200_000_000, allowedModel)
	cheap := m.newHost(500_000_000, allowedModel)
	dear := m.newHost(900_000_000, allowedModel)
	unregisteredPrices := m.newHost(300_000_000, allowedModel)
	late := m.newHost(400_000_000, allowedModel)

	m.register(unlisted, unlisted.registration())
	stale := staleBoot.registration()
	stale.EvidenceHash = registry.EvidenceHash(cheap.boot.Quote) // another host's boot
	m.register(staleBoot, stale)
	m.register(cheap, cheap.registration())
	m.register(dear, dear.registration())
	changed := unregisteredPrices.registration()
	changed.PriceHash[0] ^= 1 // it registered other prices than it publishes
	m.register(unregisteredPrices, changed)

	log := &syncBuffer{}
	roots := []*x509.Certificate{}
	for _, h := range []*marketHost{unlisted, staleBoot, cheap, dear, unregisteredPrices, late} {
		roots = append(roots, h.RootCert(t))
	}
	p, err := New(WithSource(NewRegistry(m.chain, m.addr)), WithPipeline(cheap.ID), WithAPIKey(proxytest.APIKey),
		WithSimRoots(roots...), WithLog(log), fastHealth)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background(), io.Discard); err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	states := func() map[string]string {
		out := map[string]string{}
		for _, s := range p.Hosts() {
			out[s.URL] = s.State
		}
		return out
	}
	for _, h := range []*marketHost{unlisted, staleBoot, unregisteredPrices} {
		if s := states()[h.URL]; s != "refused" {
			t.Errorf("host %s is %q, want refused; log:\n%s", h.URL, s, log)
		}
	}
	for _, want := range []string{
		"host " + unlisted.URL + ": new -> refused: refusing to proxy to " + unlisted.URL + ", which does not verify: registry: measurement not on the allowlist: model",
		"host " + staleBoot.URL + ": new -> refused: refusing to proxy to " + staleBoot.URL + ", which does not verify: registry: its boot quote hashes to",
		"host " + unregisteredPrices.URL + ": new -> refused: the host at " + unregisteredPrices.URL + " does not verify: its price list hashes to",
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	route := func(want *marketHost) {
		t.Helper()
		for range 5 {
			if got := postChatHandler(t, p, chatBody); got != want.URL {
				t.Fatalf("answered by %s, want %s; hosts %v", got, want.URL, states())
			}
		}
	}
	route(cheap)

	// A host registers later, cheaper than every verified one: it is discovered,
	// verified and routed to.
	m.register(late, late.registration())
	deadline := time.Now().Add(20 * time.Second)
	for states()[late.URL] != "ready" {
		if time.Now().After(deadline) {
			t.Fatalf("the late host is %q; log:\n%s", states()[late.URL], log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	route(late)

	// The host that published unregistered prices registers them: its listing changed,
	// so it is verified anew, and, the cheapest now, routed to.
	m.register(unregisteredPrices, unregisteredPrices.registration())
	deadline = time.Now().Add(20 * time.Second)
	for states()[unregisteredPrices.URL] != "ready" {
		if time.Now().After(deadline) {
			t.Fatalf("the host that registered its prices is %q; log:\n%s", states()[unregisteredPrices.URL], log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	route(unregisteredPrices)
	for _, h := range []*marketHost{unlisted, staleBoot} {
		if n := h.Asked("/chat/completions"); n != 0 {
			t.Errorf("the refused host %s got %d requests", h.URL, n)
		}
	}
}

// TestSameListing: a host listed again with anything changed (key, price-list hash,
// boot, allowlist) is a new listing, verified anew; the same claims are the same host.
func TestSameListing(t *testing.T) {
	allow := registry.Allowlist{Entries: []registry.Entry{{Kind: registry.KindModel, Value: []byte("m")}}}
	base := Host{URL: "http://a", SettlementKey: seedKey(1).Public().(ed25519.PublicKey), PriceListHash: []byte{1},
		Record: &Record{EvidenceHash: [32]byte{2}, Allowlist: allow}}
	for _, tc := range []struct {
		name string
		edit func(*Host)
		same bool
	}{
		{"unchanged", func(*Host) {}, true},
		{"another URL", func(h *Host) { h.URL = "http://b" }, false},
		{"another key", func(h *Host) { h.SettlementKey = seedKey(2).Public().(ed25519.PublicKey) }, false},
		{"new prices", func(h *Host) { h.PriceListHash = []byte{3} }, false},
		{"another boot", func(h *Host) { h.Record = &Record{EvidenceHash: [32]byte{4}, Allowlist: allow} }, false},
		{"allowlist changed", func(h *Host) {
			h.Record = &Record{EvidenceHash: [32]byte{2}, Allowlist: registry.Allowlist{Entries: []registry.Entry{{Kind: registry.KindModel, Value: []byte("n")}}}}
		}, false},
		{"no longer a registry's", func(h *Host) { h.Record = nil }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := base
			tc.edit(&h)
			if got := h.sameListing(base); got != tc.same {
				t.Errorf("sameListing %v, want %v", got, tc.same)
			}
		})
	}
}
