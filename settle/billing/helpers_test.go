package billing_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/ton/wallet"
	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/escrow"
	"github.com/cocoonhost/cocoon/settle/ledger"
	"github.com/cocoonhost/cocoon/settle/tonemu"
)

var ctx = context.Background()

// At the idle load (1000 thousandths) a prompt token costs 1000 nanoTON, a completion
// token 2000 and a microsecond of module compute 1: amounts that reach whole TON in a
// few large requests, so that settlement moves real money.
var prices = settle.PriceTable{PromptPerMillion: 1e9, CompletionPerMillion: 2e9, ComputePerMillion: 1e6}

// dearPrices are the prices of model "dear", ten times prices (model "m"'s). The env's
// host has no default table: any other model is not served.
var dearPrices = settle.PriceTable{PromptPerMillion: 1e10, CompletionPerMillion: 2e10, ComputePerMillion: 1e7}

// hostPrices are the env host's prices: "m" at prices, "dear" at dearPrices.
var hostPrices = settle.Prices{Models: []settle.ModelPrice{{Model: "m", Prices: prices}, {Model: "dear", Prices: dearPrices}}}

// computeReserve is the module compute admission reserves per request (µs).
const computeReserve = 1000

// curve is at 1000 thousandths when idle. Its smoothing is a nanosecond, so that one
// Observe moves the price at once: a test can change the quote between admission and
// Finish.
var curve = settle.LoadCurve{MinMilli: 1000, MaxMilli: 3000, Smoothing: time.Nanosecond}

// escrowTTL is how long ChainEscrows trusts a state it read (on the chain's clock).
const escrowTTL = time.Minute

func nano(ton string) uint64 { return tlb.MustFromTON(ton).Nano().Uint64() }

// deposited is what an escrow counts for a deposit message carrying ton.
func deposited(ton string) uint64 { return nano(ton) - escrow.DepositReserve }

// maxCost is what admission reserves for a request of up to prompt and completion
// tokens at the idle load.
func maxCost(prompt, completion uint64) uint64 {
	return prices.Cost(settle.Usage{PromptTokens: prompt, CompletionTokens: completion, ComputeUnits: computeReserve}, 1000, math.MaxUint64)
}

func key(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// env is a host serving escrows on an emulated chain: V5R1 wallets for the client, the
// host and a third party, the client's and the host's escrow keys (the host's is its
// settlement key), a real ledger, ChainEscrows and the Service, all on the chain's
// clock.
type env struct {
	t                   testing.TB
	chain               *tonemu.Chain
	client, host, other *wallet.Wallet
	clientKey, hostKey  ed25519.PrivateKey
	ledger              *ledger.Ledger
	ledgerPath          string
	escrows             *billing.ChainEscrows
	pricer              *billing.Pricer
	svc                 *billing.Service
}

func newEnv(t testing.TB) *env {
	t.Helper()
	chain, err := tonemu.New()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, chain: chain, clientKey: key(0xC1), hostKey: key(0x05)}
	e.client = e.wallet(1, "1000")
	e.host = e.wallet(2, "10")
	e.other = e.wallet(3, "10")
	e.ledgerPath = filepath.Join(t.TempDir(), "ledger.db")
	e.ledger = e.openLedger(e.ledgerPath)
	e.escrows = e.chainEscrows(chain)
	if e.pricer, err = billing.NewPricer(hostPrices, curve); err != nil {
		t.Fatal(err)
	}
	e.svc = e.service(e.ledger)
	return e
}

// chainEscrows is a ChainEscrows reading through api (e's chain, or a wrapper of it),
// on the chain's clock.
func (e *env) chainEscrows(api ton.APIClientWrapped) *billing.ChainEscrows {
	c := billing.NewChainEscrows(api, escrowTTL)
	c.SetClock(e.chain.Now)
	return c
}

// service is a Service of e's host on store, on the chain's clock.
func (e *env) service(store billing.Store) *billing.Service {
	e.t.Helper()
	return e.serviceWithClock(store, e.chain.Now)
}

// serviceWithClock is a Service of e's host on store whose clock is now: the host's
// own clock, which the machine's owner sets.
func (e *env) serviceWithClock(store billing.Store, now func() time.Time) *billing.Service {
	e.t.Helper()
	svc, err := billing.NewService(billing.Config{Store: store, Pricer: e.pricer, Escrows: e.escrows, Key: e.hostKey,
		HostAddr: e.host.WalletAddress().StringRaw(), ComputeReserve: computeReserve, Now: now})
	if err != nil {
		e.t.Fatal(err)
	}
	return svc
}

func (e *env) openLedger(path string) *ledger.Ledger {
	e.t.Helper()
	l, err := ledger.Open(path, make([]byte, ledger.MinMACKey), ledger.WithLogger(slog.New(slog.NewTextHandler(e.t.Output(), nil))))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { l.Close() })
	return l
}

// wallet is the V5R1 wallet of key(seed), credited with ton.
func (e *env) wallet(seed byte, ton string) *wallet.Wallet {
	e.t.Helper()
	w, err := e.chain.NewWallet(key(seed), tlb.MustFromTON(ton).Nano().Uint64())
	if err != nil {
		e.t.Fatal(err)
	}
	return w
}

// params are the parameters of the client's escrow number channel with the host.
func (e *env) params(channel uint64) escrow.Params {
	return escrow.Params{ClientAddr: e.client.WalletAddress(), HostAddr: e.host.WalletAddress(),
		ClientKey: pub(e.clientKey), HostKey: pub(e.hostKey), Timeout: 3600, ChannelID: channel}
}

func (e *env) addr(p escrow.Params) *address.Address {
	e.t.Helper()
	a, err := p.Address(0)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// send makes w send a bounceable message of ton with body (and si, if not nil) to dst
// through the wallet's real signing path.
func (e *env) send(w *wallet.Wallet, dst *address.Address, ton string, body *cell.Cell, si *tlb.StateInit) {
	e.t.Helper()
	if err := tonemu.Send(ctx, w, dst, tlb.MustFromTON(ton).Nano().Uint64(), body, si); err != nil {
		e.t.Fatal(err)
	}
}

// succeeded fails unless addr's last transaction ran its code successfully.
func (e *env) succeeded(addr *address.Address) {
	e.t.Helper()
	if tx := e.chain.LastTransaction(addr); tx == nil || !tx.Success || tx.Aborted {
		e.t.Fatalf("last transaction on %s did not succeed: %+v", addr, tx)
	}
}

// deploy deploys the escrow of p from the client's wallet with a first deposit of ton
// and returns its account name (raw address).
func (e *env) deploy(p escrow.Params, ton string) string {
	e.t.Helper()
	si, err := p.StateInit()
	if err != nil {
		e.t.Fatal(err)
	}
	a := e.addr(p)
	e.send(e.client, a, ton, escrow.DepositBody(1), si)
	e.succeeded(a)
	return a.StringRaw()
}

// deposit adds a deposit of ton to the escrow at account.
func (e *env) deposit(account, ton string) {
	e.t.Helper()
	a := address.MustParseRawAddr(account)
	e.send(e.client, a, ton, escrow.DepositBody(2), nil)
	e.succeeded(a)
}

// requestWithdrawal makes the client ask the escrow at account for its money back.
func (e *env) requestWithdrawal(account string) {
	e.t.Helper()
	a := address.MustParseRawAddr(account)
	e.send(e.client, a, "0.05", escrow.RequestWithdrawalBody(3), nil)
	e.succeeded(a)
}

// forged deploys the real escrow code with the initial data of p but 1000 TON
// "deposited" that nobody paid: its get-method looks fine, its address gives it away.
func (e *env) forged(p escrow.Params) string {
	e.t.Helper()
	genuine, err := p.Data()
	if err != nil {
		e.t.Fatal(err)
	}
	gs := genuine.MustBeginParse()
	head := cell.BeginCell().MustStoreUInt(gs.MustLoadUInt(64), 64).MustStoreUInt(gs.MustLoadUInt(32), 32).MustStoreUInt(gs.MustLoadUInt(32), 32)
	gs.MustLoadBigCoins()
	gs.MustLoadBigCoins()
	data := head.MustStoreBigCoins(tlb.MustFromTON("1000").Nano()).MustStoreCoins(0).MustStoreBuilder(gs.ToBuilder()).EndCell()
	code, err := escrow.Code()
	if err != nil {
		e.t.Fatal(err)
	}
	si := &tlb.StateInit{Code: code, Data: data}
	a := si.CalcAddress(0)
	e.send(e.client, a, "0.05", escrow.DepositBody(1), si)
	e.succeeded(a)
	return a.StringRaw()
}

// state reads the escrow at account from the chain.
func (e *env) state(account string) *escrow.State {
	e.t.Helper()
	st, err := escrow.GetState(ctx, e.chain, address.MustParseRawAddr(account))
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// body is a chat request body that differs for every n.
func body(n int) []byte {
	return fmt.Appendf(nil, `{"model":"m","messages":[{"role":"user","content":"question %d"}]}`, n)
}

// request is a request as a client sends it: signed with the escrow's client key
// (Signed and Signature set) or under an API key the operator mapped to the account
// (Signed nil). admit authenticates and admits it as the web layer does.
type request struct {
	billing.Admission
	Signed    *settle.SignedRequest
	Signature []byte
}

// admission is a request to account for up to prompt and completion tokens, signed now
// by the client key with a fresh nonce.
func (e *env) admission(account string, b []byte, prompt, completion uint64) request {
	sr := settle.SignedRequest{Account: account, Timestamp: e.chain.Now().Unix(), Nonce: settle.NewNonce(),
		Method: "POST", Path: "/v1/chat/completions", Body: b}
	return e.sign(request{Admission: billing.Admission{Account: account, MaxPromptTokens: prompt, MaxCompletionTokens: completion, Model: "m"},
		Signed: &sr}, e.clientKey)
}

// sign (re)signs r's signed request with k.
func (e *env) sign(r request, k ed25519.PrivateKey) request {
	r.Signature = ed25519.Sign(k, r.Signed.SigningString())
	return r
}

// admit authenticates r if it is signed, then admits it through svc.
func (e *env) admit(svc *billing.Service, r request) (*billing.Ticket, error) {
	a := r.Admission
	if r.Signed != nil {
		v, err := svc.Authenticate(ctx, *r.Signed, r.Signature)
		if err != nil {
			return nil, err
		}
		a.Verified = v
	}
	return svc.Admit(ctx, a)
}

// spend admits a request to account and finishes it at usage, returning the receipt.
func (e *env) spend(svc *billing.Service, account string, n int, prompt, completion uint64) *settle.Receipt {
	e.t.Helper()
	tk, err := e.admit(svc, e.admission(account, body(n), prompt, completion))
	if err != nil {
		e.t.Fatalf("admit %d: %v", n, err)
	}
	r, err := tk.Finish(ctx, settle.Usage{PromptTokens: prompt, CompletionTokens: completion}, settle.StatusCompleted, nil)
	if err != nil {
		e.t.Fatalf("finish %d: %v", n, err)
	}
	return r
}

// chainOf reads account's whole receipt chain and verifies it against the settlement
// key, returning the receipts and their cumulative total.
func (e *env) chainOf(account string) ([]settle.Receipt, uint64) {
	e.t.Helper()
	rs, err := e.svc.Receipts(ctx, account, 1, math.MaxInt32)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(rs) == 0 {
		return nil, 0
	}
	cum, err := settle.VerifyChain(rs, e.svc.PublicKey())
	if err != nil {
		e.t.Fatal(err)
	}
	return rs, cum
}

// totals are account's ledger totals.
func (e *env) totals(account string) billing.AccountTotals {
	e.t.Helper()
	t, err := e.ledger.Account(ctx, account)
	if err != nil {
		e.t.Fatal(err)
	}
	return t
}

// code fails unless err is a *billing.Error with code and a message containing each
// of want.
func code(t testing.TB, err error, code string, want ...string) *billing.Error {
	t.Helper()
	var se *billing.Error
	if !errors.As(err, &se) || se.Code != code {
		t.Fatalf("err = %v, want a *billing.Error %s", err, code)
	}
	for _, w := range want {
		if !bytes.Contains([]byte(se.Message), []byte(w)) {
			t.Fatalf("message %q does not say %q", se.Message, w)
		}
	}
	return se
}
