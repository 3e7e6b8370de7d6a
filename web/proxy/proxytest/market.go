package proxytest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/escrow"
	"github.com/cocoonhost/cocoon/settle/ledger"
	"github.com/cocoonhost/cocoon/settle/registry"
	"github.com/cocoonhost/cocoon/settle/tonemu"
	"github.com/cocoonhost/cocoon/web"
	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton/wallet"
)

// Market is a registry (settle/REGISTRY.md) on the emulated chain, for the billing
// hosts of NewHost to register on.
type Market struct {
	Chain *tonemu.Chain
	// Addr is the registry's address.
	Addr *address.Address
	t    testing.TB
	seed byte
}

// MarketModel is the model identity the market's allowlist accepts: Canned's model.
const MarketModel = "m"

// NewMarket deploys a registry whose allowlist accepts this test binary as host, the
// current ABI and sandbox policy, and the model MarketModel (any MRTD and RTMRs).
func NewMarket(t testing.TB) *Market {
	t.Helper()
	chain, err := tonemu.New()
	if err != nil {
		t.Fatal(err)
	}
	m := &Market{t: t, Chain: chain, seed: 0x10}
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
			{Kind: registry.KindModel, Value: []byte(MarketModel)},
		}}}
	si, err := params.StateInit()
	if err != nil {
		t.Fatal(err)
	}
	if m.Addr, err = params.Address(0); err != nil {
		t.Fatal(err)
	}
	if err := tonemu.Send(context.Background(), owner, m.Addr, 1e9, registry.TopUpBody(0), si); err != nil {
		t.Fatal(err)
	}
	return m
}

// wallet is a new funded wallet.
func (m *Market) wallet() *wallet.Wallet {
	m.t.Helper()
	m.seed++
	w, err := m.Chain.NewWallet(seedKey(m.seed), 100e9)
	if err != nil {
		m.t.Fatal(err)
	}
	return w
}

func seedKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

// BillingHost is a host that bills, to escrows on the market's chain.
type BillingHost struct {
	*Host
	Wallet *wallet.Wallet
	// Key is its settlement key.
	Key ed25519.PrivateKey
	// Boot is its boot evidence.
	Boot    attest.Evidence
	Billing *billing.Service
	// Escrow is the escrow (raw address) the proxy's API key bills to.
	Escrow string
}

// NewHost boots a host that bills perMillion nanoTON per million tokens (prompt and
// completion), measuring model as its model and its settlement key, and serves it. The proxy's
// API key, APIKey, bills to an escrow of 10 TON with it.
func (m *Market) NewHost(perMillion uint64, model string) *BillingHost {
	m.t.Helper()
	return m.newHost(samePrices(perMillion), model, false)
}

// NewHostPrices is NewHost with the host's prices given whole (per model).
func (m *Market) NewHostPrices(prices settle.Prices, model string) *BillingHost {
	m.t.Helper()
	return m.newHost(prices, model, false)
}

// NewRATLSHost is NewHost served over RA-TLS: a client's handshake verifies the host's
// attestation, and no relay can alter or inject an answer.
func (m *Market) NewRATLSHost(perMillion uint64, model string) *BillingHost {
	m.t.Helper()
	return m.newHost(samePrices(perMillion), model, true)
}

// samePrices is perMillion nanoTON per million tokens, prompt and completion, for every
// model.
func samePrices(perMillion uint64) settle.Prices {
	return settle.SamePrices(settle.PriceTable{PromptPerMillion: perMillion, CompletionPerMillion: perMillion})
}

func (m *Market) newHost(prices settle.Prices, model string, ratls bool) *BillingHost {
	t := m.t
	t.Helper()
	h := &BillingHost{Host: newHost(t, nil, ratls), Wallet: m.wallet()}
	m.seed++
	h.Key = seedKey(m.seed)
	store, err := ledger.Open(filepath.Join(t.TempDir(), "ledger.db"), make([]byte, ledger.MinMACKey))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	pricer, err := billing.NewPricer(prices, settle.LoadCurve{MinMilli: 1000, MaxMilli: 1000, Smoothing: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if h.Billing, err = billing.NewService(billing.Config{Store: store, Pricer: pricer, Escrows: billing.NewChainEscrows(m.Chain, 0),
		Key: h.Key, HostAddr: h.Wallet.WalletAddress().StringRaw(), ComputeReserve: 100_000}); err != nil {
		t.Fatal(err)
	}
	// Boot as a billing host does: measuring its settlement key.
	h.Config = func(c *web.Config) {
		sim, err := attest.NewSim(h.Dir)
		if err != nil {
			t.Fatal(err)
		}
		if c.Attestation, err = attest.Boot(context.Background(), sim, "embedded", model,
			attest.SettlementKeyEvent(h.Key.Public().(ed25519.PublicKey)), attest.SettlementKeyOriginEvent(attest.SettlementKeyGenerated)); err != nil {
			t.Fatal(err)
		}
		h.Boot = c.Attestation.BootEvidence()
		c.Billing = h.Billing
		// The proxy's API key bills to an escrow with this host.
		h.Escrow = m.escrow(h).StringRaw()
		c.APIKeys = []web.APIKey{{Name: "t", Key: APIKey, Account: h.Escrow}}
	}
	h.Start(t)
	return h
}

// escrow opens an escrow of 10 TON from a client to h.
func (m *Market) escrow(h *BillingHost) *address.Address {
	m.t.Helper()
	client := m.wallet()
	p := escrow.Params{ClientAddr: client.WalletAddress(), HostAddr: h.Wallet.WalletAddress(), ClientKey: seedKey(m.seed).Public().(ed25519.PublicKey),
		HostKey: h.Key.Public().(ed25519.PublicKey), Timeout: 3600, ChannelID: 1}
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

// Registration is what h registers: its URL, price list and boot quote.
func (h *BillingHost) Registration() registry.Registration {
	return registry.Registration{Endpoint: h.URL, PriceHash: registry.PriceListHash(h.Billing.PriceList()),
		EvidenceHash: registry.EvidenceHash(h.Boot.Quote)}
}

// Register signs reg with h's settlement key and sends it from h's wallet.
func (m *Market) Register(h *BillingHost, reg registry.Registration) {
	m.t.Helper()
	r, err := registry.NewRegistrar(registry.RegistrarConfig{API: m.Chain, Wallet: h.Wallet, Key: h.Key, Registry: m.Addr, ConfirmTimeout: 5 * time.Second})
	if err != nil {
		m.t.Fatal(err)
	}
	if _, err := r.Sync(context.Background(), reg); err != nil {
		m.t.Fatal(err)
	}
}
