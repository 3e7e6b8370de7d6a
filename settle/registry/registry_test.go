package registry_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/contracts"
	"github.com/cocoonhost/cocoon/settle/registry"
	"github.com/cocoonhost/cocoon/settle/tonemu"
	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/ton/wallet"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

const (
	changeDelay  = 86400
	unstakeDelay = 7 * 86400
)

func nano(ton string) *big.Int { return tlb.MustFromTON(ton).Nano() }

func key(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func bytes32(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// allowA is the registry's initial allowlist.
var allowA = registry.Allowlist{Entries: []registry.Entry{
	{Kind: registry.KindHostBinary, Value: bytes32(0xAA)},
	{Kind: registry.KindABIVersion, Value: []byte{0, 0, 0, 1}},
	{Kind: registry.KindSandboxPolicy, Value: bytes32(0x50)},
	{Kind: registry.KindModel, Value: []byte("sha256:" + strings.Repeat("ab", 32))},
}}

// env is a chain with a deployed registry, its owner's wallet, a host's wallet
// and settlement key, and a third party's wallet.
type env struct {
	t                     *testing.T
	chain                 *tonemu.Chain
	owner, host, stranger *wallet.Wallet
	hostKey               ed25519.PrivateKey
	params                registry.Params
	addr                  *address.Address
}

func newEnv(t *testing.T) *env {
	t.Helper()
	chain, err := tonemu.New()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, chain: chain, hostKey: key(0x05)}
	e.owner = e.newWallet(1, "100")
	e.host = e.newWallet(2, "100")
	e.stranger = e.newWallet(3, "100")
	e.params = registry.Params{Owner: e.owner.WalletAddress(), MinStake: nano("10"),
		ChangeDelay: changeDelay, UnstakeDelay: unstakeDelay, Allowlist: allowA}
	si, err := e.params.StateInit()
	if err != nil {
		t.Fatal(err)
	}
	if e.addr, err = e.params.Address(0); err != nil {
		t.Fatal(err)
	}
	e.send(e.owner, "1", registry.TopUpBody(0), si)
	e.succeeded()
	return e
}

func (e *env) newWallet(seed byte, fund string) *wallet.Wallet {
	e.t.Helper()
	w, err := e.chain.NewWallet(key(seed), nano(fund).Uint64())
	if err != nil {
		e.t.Fatal(err)
	}
	return w
}

func (e *env) send(w *wallet.Wallet, value string, body *cell.Cell, si *tlb.StateInit) {
	e.t.Helper()
	if err := tonemu.Send(context.Background(), w, e.addr, nano(value).Uint64(), body, si); err != nil {
		e.t.Fatal(err)
	}
}

// exit returns the exit code of the registry's last transaction.
func (e *env) exit() registry.ExitCode {
	e.t.Helper()
	tx := e.chain.LastTransaction(e.addr)
	if tx == nil || tx.ComputeSkipped {
		e.t.Fatal("the registry ran no code")
	}
	return registry.ExitCode(tx.ExitCode)
}

func (e *env) succeeded() {
	e.t.Helper()
	if code := e.exit(); code != 0 {
		e.t.Fatalf("registry refused the message: %v", code)
	}
}

func (e *env) refused(want registry.ExitCode) {
	e.t.Helper()
	if code := e.exit(); code != want {
		e.t.Fatalf("exit code %v, want %v", code, want)
	}
}

func (e *env) state() *registry.State {
	e.t.Helper()
	st, err := registry.GetState(context.Background(), e.chain, e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func (e *env) registrar(stake *big.Int) *registry.Registrar {
	e.t.Helper()
	r, err := registry.NewRegistrar(registry.RegistrarConfig{API: e.chain, Wallet: e.host, Key: e.hostKey,
		Registry: e.addr, Stake: stake, ConfirmTimeout: 5 * time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// advance moves the chain's clock and seals a block at the new time, which
// get-methods then run at.
func (e *env) advance(d time.Duration) {
	e.chain.Advance(d)
	e.chain.Tick()
}

func (e *env) signed(seqno uint32) registry.Signed {
	return registry.Signed{Seqno: seqno, ValidUntil: uint32(e.chain.Now().Add(10 * time.Minute).Unix())}
}

var hostReg = registry.Registration{Endpoint: "https://host.example:8443", PriceHash: [32]byte{1}, EvidenceHash: [32]byte{2}}

func TestRegisterUpdateAndList(t *testing.T) {
	e := newEnv(t)
	r := e.registrar(nil)
	ctx := context.Background()
	walletBefore := e.chain.Balance(e.host.WalletAddress())
	if sent, err := r.Sync(ctx, hostReg); err != nil || !sent {
		t.Fatalf("first Sync: sent %v, %v", sent, err)
	}
	hosts, allow, err := registry.Hosts(ctx, e.chain, e.addr)
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 {
		t.Fatalf("%d hosts, want 1", len(hosts))
	}
	h := hosts[0]
	if h.Registration != hostReg || !h.Key.Equal(e.hostKey.Public()) || h.State != registry.HostActive ||
		h.Stake.Cmp(nano("10")) != 0 || h.Seqno != 1 || h.Wallet.StringRaw() != e.host.WalletAddress().StringRaw() {
		t.Fatalf("host record %+v", h)
	}
	if err := allow.Check(registry.Measurements{registry.KindHostBinary: bytes32(0xAA), registry.KindABIVersion: {0, 0, 0, 1},
		registry.KindSandboxPolicy: bytes32(0x50), registry.KindModel: []byte("sha256:" + strings.Repeat("ab", 32))}); err != nil {
		t.Fatalf("the initial allowlist: %v", err)
	}
	paid := new(big.Int).Sub(walletBefore, e.chain.Balance(e.host.WalletAddress()))
	if min, max := nano("10.05"), nano("10.1"); paid.Cmp(min) < 0 || paid.Cmp(max) > 0 {
		t.Fatalf("the wallet paid %v for a 10 TON stake", paid)
	}

	// Nothing changed: nothing is sent.
	if sent, err := r.Sync(ctx, hostReg); err != nil || sent {
		t.Fatalf("unchanged Sync: sent %v, %v", sent, err)
	}
	// A new price list is registered again, with the next seqno and the same stake.
	updated := hostReg
	updated.PriceHash = [32]byte{9}
	if sent, err := r.Sync(ctx, updated); err != nil || !sent {
		t.Fatalf("updated Sync: sent %v, %v", sent, err)
	}
	h = *e.state().Host(e.hostKey.Public().(ed25519.PublicKey))
	if h.Registration != updated || h.Seqno != 2 || h.Stake.Cmp(nano("10")) != 0 {
		t.Fatalf("updated record %+v", h)
	}
	// A larger stake asked for is topped up.
	if sent, err := e.registrar(nano("12")).Sync(ctx, updated); err != nil || !sent {
		t.Fatalf("stake Sync: sent %v, %v", sent, err)
	}
	if h = *e.state().Host(e.hostKey.Public().(ed25519.PublicKey)); h.Stake.Cmp(nano("12")) != 0 {
		t.Fatalf("stake %v, want 12 TON", h.Stake)
	}
}

func TestForgedRegistrationRefused(t *testing.T) {
	e := newEnv(t)
	hostPub := e.hostKey.Public().(ed25519.PublicKey)
	cases := []struct {
		name string
		body func() *cell.Cell
		from *wallet.Wallet
		want registry.ExitCode
	}{
		{"signed by another key", func() *cell.Cell {
			// The host's key in the body, the attacker's signature: an attacker
			// registering its own endpoint under the host's identity.
			digest, err := registry.RegisterDigest(e.addr, e.stranger.WalletAddress(), hostPub, hostReg, e.signed(1))
			if err != nil {
				t.Fatal(err)
			}
			return forgedRegister(t, hostPub, e.signed(1), ed25519.Sign(key(0x66), digest), hostReg)
		}, e.stranger, registry.ErrBadSignature},
		{"the host's signature sent from another wallet", func() *cell.Cell {
			body, err := registry.RegisterBody(e.hostKey, e.addr, e.host.WalletAddress(), hostReg, e.signed(1), 1)
			if err != nil {
				t.Fatal(err)
			}
			return body
		}, e.stranger, registry.ErrBadSignature},
		{"signed for another registry", func() *cell.Cell {
			other := e.params
			other.Nonce = 1
			otherAddr, err := other.Address(0)
			if err != nil {
				t.Fatal(err)
			}
			body, err := registry.RegisterBody(e.hostKey, otherAddr, e.host.WalletAddress(), hostReg, e.signed(1), 1)
			if err != nil {
				t.Fatal(err)
			}
			return body
		}, e.host, registry.ErrBadSignature},
		{"another endpoint than signed", func() *cell.Cell {
			digest, err := registry.RegisterDigest(e.addr, e.host.WalletAddress(), hostPub, hostReg, e.signed(1))
			if err != nil {
				t.Fatal(err)
			}
			evil := hostReg
			evil.Endpoint = "https://evil.example"
			return forgedRegister(t, hostPub, e.signed(1), ed25519.Sign(e.hostKey, digest), evil)
		}, e.host, registry.ErrBadSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			e.send(c.from, "10.1", c.body(), nil)
			e.refused(c.want)
			if hosts, _, err := registry.Hosts(context.Background(), e.chain, e.addr); err != nil || len(hosts) != 0 {
				t.Fatalf("hosts %v, %v: the forged registration was recorded", hosts, err)
			}
		})
	}
}

// forgedRegister builds a register body with any signature.
func forgedRegister(t *testing.T, hostKey ed25519.PublicKey, s registry.Signed, sig []byte, reg registry.Registration) *cell.Cell {
	t.Helper()
	info := cell.BeginCell().MustStoreSlice(reg.PriceHash[:], 256).MustStoreSlice(reg.EvidenceHash[:], 256).
		MustStoreRef(cell.BeginCell().MustStoreSlice([]byte(reg.Endpoint), uint(8*len(reg.Endpoint))).EndCell()).EndCell()
	return cell.BeginCell().MustStoreUInt(uint64(registry.OpRegister), 32).MustStoreUInt(1, 64).
		MustStoreSlice(hostKey, 256).MustStoreUInt(uint64(s.Seqno), 32).MustStoreUInt(uint64(s.ValidUntil), 32).
		MustStoreSlice(sig, 512).MustStoreRef(info).EndCell()
}

func TestReplayedRegistrationRefused(t *testing.T) {
	e := newEnv(t)
	body, err := registry.RegisterBody(e.hostKey, e.addr, e.host.WalletAddress(), hostReg, e.signed(1), 1)
	if err != nil {
		t.Fatal(err)
	}
	e.send(e.host, "10.05", body, nil)
	e.succeeded()
	e.send(e.host, "10.05", body, nil)
	e.refused(registry.ErrStaleSeqno)
	if n := e.state().NextSeqno(e.hostKey.Public().(ed25519.PublicKey)); n != 2 {
		t.Fatalf("next seqno %d, want 2", n)
	}
}

// laggingClock is a chain whose liteserver reports a time two hours behind
// the chain's, as a liteserver that lags or lies would.
type laggingClock struct{ *tonemu.Chain }

func (l laggingClock) GetTime(ctx context.Context) (uint32, error) {
	now, err := l.Chain.GetTime(ctx)
	return now - 7200, err
}

func (l laggingClock) WaitForBlock(uint32) ton.APIClientWrapped { return l }

func TestRegistrarReportsRefusal(t *testing.T) {
	e := newEnv(t)
	// The registrar signs valid_until from the time it is told, which is
	// already past on the chain: the registry refuses, and Sync says why
	// instead of waiting for a record that never comes.
	r, err := registry.NewRegistrar(registry.RegistrarConfig{API: laggingClock{e.chain}, Wallet: e.host, Key: e.hostKey,
		Registry: e.addr, ConfirmTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sent, err := r.Sync(context.Background(), hostReg)
	if !sent || !errors.Is(err, registry.ErrExpired) {
		t.Fatalf("Sync: sent %v, %v; want the registry's refusal as expired", sent, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Sync took %v to report a refusal", took)
	}
	if !strings.Contains(err.Error(), "expired (204)") {
		t.Fatalf("error %q does not name the exit code", err)
	}
}

func TestRegistrarSaysWhenTheWalletIsShort(t *testing.T) {
	e := newEnv(t)
	poor := e.newWallet(9, "5") // the stake is 10 TON
	r, err := registry.NewRegistrar(registry.RegistrarConfig{API: e.chain, Wallet: poor, Key: e.hostKey, Registry: e.addr})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sent, err := r.Sync(context.Background(), hostReg)
	if sent || err == nil || !strings.Contains(err.Error(), "holds 5 TON; the registration needs 10.05 TON") {
		t.Fatalf("Sync from a wallet short of the stake: sent %v, %v", sent, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %v to say so", took)
	}
}

func TestAllowlistChangeWithDelay(t *testing.T) {
	e := newEnv(t)
	start := e.chain.Now()
	allowB := registry.Allowlist{Entries: append([]registry.Entry{{Kind: registry.KindHostBinary, Value: bytes32(0xBB)}}, allowA.Entries[1:]...)}
	body, err := registry.ProposeAllowlistBody(allowB, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Only the owner may propose.
	e.send(e.stranger, "0.05", body, nil)
	e.refused(registry.ErrWrongSender)
	if st := e.state(); st.Pending != nil {
		t.Fatalf("a stranger's proposal is pending: %+v", st.Pending)
	}

	e.send(e.owner, "0.05", body, nil)
	e.succeeded()
	st := e.state()
	if st.Pending == nil || !st.Pending.ApplyAt.Equal(start.Add(changeDelay*time.Second)) {
		t.Fatalf("pending %+v, want one applying at %v", st.Pending, start.Add(changeDelay*time.Second))
	}
	wantEntries(t, st.Pending.Allowlist, allowB)
	wantEntries(t, st.Current, allowA)

	// A second before its time the change is neither in effect nor applicable.
	e.advance(changeDelay*time.Second - time.Second)
	wantEntries(t, e.state().Current, allowA)
	e.send(e.stranger, "0.05", registry.ApplyAllowlistBody(2), nil)
	e.refused(registry.ErrTooEarly)

	e.advance(time.Second)
	st = e.state()
	wantEntries(t, st.Current, allowB)
	if st.Pending != nil {
		t.Fatalf("pending %+v after it took effect", st.Pending)
	}
	// Once due it cannot be cancelled.
	e.send(e.owner, "0.05", registry.CancelAllowlistBody(3), nil)
	e.refused(registry.ErrNothingPending)
	wantEntries(t, e.state().Current, allowB)
}

func wantEntries(t *testing.T, got, want registry.Allowlist) {
	t.Helper()
	c1, err := got.Cell()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := want.Cell()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c1.Hash(), c2.Hash()) {
		t.Fatalf("allowlist %+v, want %+v", got.Entries, want.Entries)
	}
}

func TestDeregisterAndWithdrawStake(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.registrar(nil)
	if err := r.Deregister(ctx); !errors.Is(err, registry.ErrUnknownHost) {
		t.Fatalf("deregistering an unknown host: %v, want ErrUnknownHost", err)
	}
	if _, err := r.Sync(ctx, hostReg); err != nil {
		t.Fatal(err)
	}
	hostPub := e.hostKey.Public().(ed25519.PublicKey)
	if err := r.WithdrawStake(ctx); !errors.Is(err, registry.ErrNotLeaving) {
		t.Fatalf("withdrawing while active: %v, want ErrNotLeaving", err)
	}

	if err := r.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Deregister(ctx); !errors.Is(err, registry.ErrAlreadyLeaving) {
		t.Fatalf("a second deregistration: %v, want ErrAlreadyLeaving", err)
	}
	if hosts, _, err := registry.Hosts(ctx, e.chain, e.addr); err != nil || len(hosts) != 0 {
		t.Fatalf("a leaving host is still listed: %v, %v", hosts, err)
	}
	if h := e.state().Host(hostPub); h.State != registry.HostLeaving || h.LeavingAt.IsZero() {
		t.Fatalf("record %+v, want leaving", h)
	}

	e.advance(unstakeDelay*time.Second - time.Second)
	if err := r.WithdrawStake(ctx); !errors.Is(err, registry.ErrTooEarly) {
		t.Fatalf("withdrawing a second early: %v, want ErrTooEarly", err)
	}

	e.advance(time.Second)
	before := e.chain.Balance(e.host.WalletAddress())
	// Anyone may send the withdrawal; the stake goes to the wallet that staked it.
	withdraw, err := registry.WithdrawStakeBody(hostPub, 4)
	if err != nil {
		t.Fatal(err)
	}
	e.send(e.stranger, "0.05", withdraw, nil)
	e.succeeded()
	got := new(big.Int).Sub(e.chain.Balance(e.host.WalletAddress()), before)
	if got.Cmp(nano("10")) < 0 || got.Cmp(nano("10.05")) > 0 {
		t.Fatalf("the host's wallet got %v back for a 10 TON stake", got)
	}
	if h := e.state().Host(hostPub); h.State != registry.HostWithdrawn || h.Stake.Sign() != 0 {
		t.Fatalf("record %+v, want withdrawn", h)
	}
	if err := r.WithdrawStake(ctx); !errors.Is(err, registry.ErrUnknownHost) {
		t.Fatalf("withdrawing twice: %v, want ErrUnknownHost", err)
	}
	// The registrar registers again afterwards, with a fresh stake and the next seqno.
	if sent, err := r.Sync(ctx, hostReg); err != nil || !sent {
		t.Fatalf("re-registration: sent %v, %v", sent, err)
	}
	if h := e.state().Host(hostPub); h.State != registry.HostActive || h.Seqno != 3 || h.Stake.Cmp(nano("10")) != 0 {
		t.Fatalf("record %+v after re-registration", h)
	}
}

func TestRunRetriesUntilTheChainAnswers(t *testing.T) {
	e := newEnv(t)
	var logs lockedBuffer
	r, err := registry.NewRegistrar(registry.RegistrarConfig{API: e.chain, Wallet: e.host, Key: e.hostKey, Registry: e.addr,
		Interval: time.Hour, Backoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	e.chain.SetOffline(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, func() registry.Registration { return hostReg }) }()
	waitFor(t, func() bool { return strings.Count(logs.String(), "registration failed") >= 2 })
	if !strings.Contains(logs.String(), "chain is offline") {
		t.Fatalf("the log does not say why: %s", logs.String())
	}
	e.chain.SetOffline(false)
	waitFor(t, func() bool { return strings.Contains(logs.String(), "msg=registered") })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	if h := e.state().Host(e.hostKey.Public().(ed25519.PublicKey)); h == nil || h.Registration != hostReg {
		t.Fatalf("record %+v", h)
	}
}

// waitFor polls cond for up to 10 s (generous: it normally holds within milliseconds).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestGetStateRefusesOtherCode(t *testing.T) {
	e := newEnv(t)
	if _, err := registry.GetState(context.Background(), e.chain, e.owner.WalletAddress()); !errors.Is(err, registry.ErrWrongCode) {
		t.Fatalf("a wallet read as a registry: %v", err)
	}
	if _, err := registry.GetState(context.Background(), e.chain, address.NewAddress(0, 0, bytes32(0x77))); !errors.Is(err, registry.ErrNotDeployed) {
		t.Fatalf("an empty account read as a registry: %v", err)
	}
}

// TestForgedInitialDataRefused deploys the real registry code with initial data that
// does not start empty, as someone would to show clients a host record its key never
// signed: the account runs the right code and answers the get-methods, and GetState
// refuses it because its address is not what its settings give.
func TestForgedInitialDataRefused(t *testing.T) {
	e := newEnv(t)
	code, err := cell.FromBOC(contracts.RegistryCode)
	if err != nil {
		t.Fatal(err)
	}
	honest, err := e.params.Data()
	if err != nil {
		t.Fatal(err)
	}
	// The victim's key, the attacker's endpoint, a stake nobody paid.
	victim := key(0x42).Public().(ed25519.PublicKey)
	info := cell.BeginCell().MustStoreSlice(make([]byte, 32), 256).MustStoreSlice(make([]byte, 32), 256).
		MustStoreRef(cell.BeginCell().MustStoreSlice([]byte("https://evil.example"), 160).EndCell()).EndCell()
	record := cell.BeginCell().MustStoreUInt(1, 8).MustStoreAddr(e.stranger.WalletAddress()).MustStoreBigCoins(nano("1000")).
		MustStoreUInt(1, 32).MustStoreUInt(1, 32).MustStoreUInt(0, 32).MustStoreRef(info)
	hosts := cell.NewDict(256)
	if err := hosts.SetBuilder(cell.BeginCell().MustStoreSlice(victim, 256).EndCell(), record); err != nil {
		t.Fatal(err)
	}
	s := honest.MustBeginParse()
	config, allow, pending := s.MustLoadRef().MustToCell(), s.MustLoadMaybeRef(), s.MustLoadMaybeRef()
	if pending != nil {
		t.Fatal("the honest data has a pending change")
	}
	var allowCell *cell.Cell
	if allow != nil {
		allowCell = allow.MustToCell()
	}
	forged := cell.BeginCell().MustStoreRef(config).MustStoreMaybeRef(allowCell).MustStoreMaybeRef(nil).MustStoreDict(hosts).EndCell()
	si := &tlb.StateInit{Code: code, Data: forged}
	siCell, err := tlb.ToCell(si)
	if err != nil {
		t.Fatal(err)
	}
	addr := address.NewAddress(0, 0, siCell.Hash())
	if err := tonemu.Send(context.Background(), e.owner, addr, nano("1").Uint64(), registry.TopUpBody(0), si); err != nil {
		t.Fatal(err)
	}
	if tx := e.chain.LastTransaction(addr); tx == nil || !tx.Success {
		t.Fatal("the forged registry did not deploy")
	}
	if _, _, err := registry.Hosts(context.Background(), e.chain, addr); !errors.Is(err, registry.ErrWrongAddress) {
		t.Fatalf("Hosts of a registry with forged initial data: %v, want ErrWrongAddress", err)
	}
	// The honest registry, same settings, passes.
	if _, err := registry.GetState(context.Background(), e.chain, e.addr); err != nil {
		t.Fatal(err)
	}
}

func TestPriceListHash(t *testing.T) {
	hostKey := key(0x05)
	pricesOf := func(completion uint64, models ...string) settle.Prices {
		p := settle.SamePrices(settle.PriceTable{PromptPerMillion: 1, CompletionPerMillion: completion})
		for _, m := range models {
			p.Models = append(p.Models, settle.ModelPrice{Model: m, Prices: settle.PriceTable{PromptPerMillion: 5}})
		}
		return p
	}
	pricer := func(prices settle.Prices) *billing.Pricer {
		p, err := billing.NewPricer(prices, billing.DefaultLoadCurve)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := pricer(pricesOf(2, "a"))
	first := p.PriceList(hostKey, "0:00", 3600)
	time.Sleep(1100 * time.Millisecond)
	p.Observe(1, 1) // load moves the coefficient, time moves on
	later := p.PriceList(hostKey, "0:00", 3600)
	if later.Time == first.Time || later.LoadMilli == first.LoadMilli {
		t.Fatalf("the test needs lists that differ in time and load: %+v %+v", first, later)
	}
	if registry.PriceListHash(first) != registry.PriceListHash(later) {
		t.Fatal("the hash moves with load or time: the host would register every minute")
	}
	for name, l := range map[string]settle.PriceList{
		"price":       pricer(pricesOf(3, "a")).PriceList(hostKey, "0:00", 3600),
		"model":       pricer(pricesOf(2, "b")).PriceList(hostKey, "0:00", 3600),
		"model added": pricer(pricesOf(2, "a", "b")).PriceList(hostKey, "0:00", 3600),
		"no default":  pricer(settle.Prices{Models: pricesOf(2, "a").Models}).PriceList(hostKey, "0:00", 3600),
		"wallet":      p.PriceList(hostKey, "0:01", 3600),
		"timeout":     p.PriceList(hostKey, "0:00", 7200),
		"key":         p.PriceList(key(0x06), "0:00", 3600),
	} {
		if registry.PriceListHash(l) == registry.PriceListHash(first) {
			t.Errorf("another %s, the same hash", name)
		}
	}
}
