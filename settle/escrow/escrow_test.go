package escrow_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/settle/escrow"
	"github.com/cocoonhost/cocoon/settle/tonemu"
	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton/wallet"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

const timeout = 3600 // seconds, the escrows' withdrawal window

func nano(ton string) *big.Int { return tlb.MustFromTON(ton).Nano() }

func key(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

// env is a chain with three funded V5R1 wallets (client, host, and a third
// party) and the escrow keys of the client and the host, which are not their
// wallet keys.
type env struct {
	t                   *testing.T
	chain               *tonemu.Chain
	client, host, other *wallet.Wallet
	clientKey, hostKey  ed25519.PrivateKey
}

func newEnv(t *testing.T) *env {
	t.Helper()
	chain, err := tonemu.New()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, chain: chain, clientKey: key(0xC1), hostKey: key(0x05)}
	e.client = e.newWallet(1, "100")
	e.host = e.newWallet(2, "10")
	e.other = e.newWallet(3, "10")
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

func (e *env) params(channel uint64) escrow.Params {
	return escrow.Params{
		ClientAddr: e.client.WalletAddress(),
		HostAddr:   e.host.WalletAddress(),
		ClientKey:  e.clientKey.Public().(ed25519.PublicKey),
		HostKey:    e.hostKey.Public().(ed25519.PublicKey),
		Timeout:    timeout,
		ChannelID:  channel,
	}
}

func (e *env) addr(p escrow.Params) *address.Address {
	e.t.Helper()
	a, err := p.Address(0)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// send makes w send a bounceable message with value and body to dst (with
// si, if not nil), through the wallet's real signing path.
func (e *env) send(w *wallet.Wallet, dst *address.Address, value string, body *cell.Cell, si *tlb.StateInit) {
	e.t.Helper()
	if err := tonemu.Send(context.Background(), w, dst, nano(value).Uint64(), body, si); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) state(addr *address.Address) *escrow.State {
	e.t.Helper()
	st, err := escrow.GetState(context.Background(), e.chain, addr)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// deploy deploys the escrow of p with a first deposit of value.
func (e *env) deploy(p escrow.Params, value string) *address.Address {
	e.t.Helper()
	si, err := p.StateInit()
	if err != nil {
		e.t.Fatal(err)
	}
	addr := e.addr(p)
	e.send(e.client, addr, value, escrow.DepositBody(1), si)
	e.succeeded(addr)
	return addr
}

func (e *env) charge(addr *address.Address, from *wallet.Wallet, signer ed25519.PrivateKey, sigAddr *address.Address, cumulative *big.Int, queryID uint64) {
	e.t.Helper()
	sig, err := escrow.SignCharge(signer, sigAddr, cumulative)
	if err != nil {
		e.t.Fatal(err)
	}
	body, err := escrow.ChargeBody(queryID, cumulative, sig)
	if err != nil {
		e.t.Fatal(err)
	}
	e.send(from, addr, "0.05", body, nil)
}

func (e *env) close(addr *address.Address, from *wallet.Wallet, clientKey, hostKey ed25519.PrivateKey, sigAddr *address.Address, cumulative *big.Int) {
	e.t.Helper()
	cs, err := escrow.SignClose(clientKey, sigAddr, cumulative)
	if err != nil {
		e.t.Fatal(err)
	}
	hs, err := escrow.SignClose(hostKey, sigAddr, cumulative)
	if err != nil {
		e.t.Fatal(err)
	}
	body, err := escrow.CloseBody(7, cumulative, cs, hs)
	if err != nil {
		e.t.Fatal(err)
	}
	e.send(from, addr, "0.05", body, nil)
}

// succeeded fails unless addr's last transaction ran its code successfully.
func (e *env) succeeded(addr *address.Address) {
	e.t.Helper()
	tx := e.chain.LastTransaction(addr)
	if tx == nil || tx.ComputeSkipped || !tx.Success || tx.Aborted {
		e.t.Fatalf("last transaction on %s did not succeed: %+v", addr, tx)
	}
}

// rejected runs send and checks that the escrow refused it with code,
// bounced the message, and kept its state.
func (e *env) rejected(addr *address.Address, code escrow.ExitCode, send func()) {
	e.t.Helper()
	before := e.state(addr)
	n := len(e.chain.Transactions(addr))
	send()
	txs := e.chain.Transactions(addr)
	if len(txs) != n+1 {
		e.t.Fatalf("%d new transactions on the escrow, want 1", len(txs)-n)
	}
	tx := txs[n]
	if tx.ExitCode != int32(code) || tx.Success || !tx.Aborted || !tx.Bounced {
		e.t.Fatalf("want rejection with %v, got exit code %d success=%v aborted=%v bounced=%v",
			code, tx.ExitCode, tx.Success, tx.Aborted, tx.Bounced)
	}
	after := e.state(addr)
	sameState(e.t, after, before)
}

func sameState(t *testing.T, got, want *escrow.State) {
	t.Helper()
	if got.ChannelID != want.ChannelID || got.Timeout != want.Timeout || got.CloseRequestedAt != want.CloseRequestedAt ||
		got.Deposited.Cmp(want.Deposited) != 0 || got.Charged.Cmp(want.Charged) != 0 ||
		!bytes.Equal(got.ClientKey, want.ClientKey) || !bytes.Equal(got.HostKey, want.HostKey) ||
		!got.ClientAddr.Equals(want.ClientAddr) || !got.HostAddr.Equals(want.HostAddr) {
		t.Fatalf("escrow state changed:\n got %+v\nwant %+v", got, want)
	}
}

func between(t *testing.T, what string, got, lo, hi *big.Int) {
	t.Helper()
	if got.Cmp(lo) < 0 || got.Cmp(hi) > 0 {
		t.Fatalf("%s = %s, want in [%s, %s]", what, got, lo, hi)
	}
}

func sub(a, b *big.Int) *big.Int { return new(big.Int).Sub(a, b) }
func add(a, b *big.Int) *big.Int { return new(big.Int).Add(a, b) }

// lastIn checks that addr's last transaction received a body starting with
// op and queryID (the contract's payout or refund).
func lastIn(t *testing.T, c *tonemu.Chain, addr *address.Address, op uint32, queryID uint64) {
	t.Helper()
	in := c.LastTransaction(addr).Tx.IO.In
	if in == nil || in.MsgType != tlb.MsgTypeInternal {
		t.Fatalf("last transaction on %s has no internal in-message", addr)
	}
	s := in.AsInternal().Body.MustBeginParse()
	gotOp, _ := s.LoadUInt(32)
	gotQ, _ := s.LoadUInt(64)
	if uint32(gotOp) != op || gotQ != queryID {
		t.Fatalf("in-message op %#x query %d, want %#x %d", gotOp, gotQ, op, queryID)
	}
}

// TestLifecycle runs an escrow from deployment to withdrawal through the
// client's and host's wallets, with every rejection on the way.
func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	p := e.params(1)
	addr := e.deploy(p, "5")

	// Deployed at Params.Address, which agrees with tonutils-go's own
	// state-init address computation.
	si, _ := p.StateInit()
	if !addr.Equals(si.CalcAddress(0)) {
		t.Fatalf("Params.Address %s, tonutils-go computes %s", addr, si.CalcAddress(0))
	}
	st := e.state(addr)
	deposited := sub(nano("5"), big.NewInt(escrow.DepositReserve))
	want := &escrow.State{Params: p, Deposited: deposited, Charged: new(big.Int)}
	sameState(t, st, want)
	codeHash, _ := escrow.CodeHash()
	if !bytes.Equal(st.CodeHash, codeHash) || st.CheckOpen() != nil || st.Unspent().Cmp(deposited) != 0 {
		t.Fatalf("state after deploy: %+v", st)
	}
	between(t, "escrow balance", st.Balance, sub(nano("5"), nano("0.01")), nano("5"))

	// A second deposit adds to the first.
	e.send(e.client, addr, "1", escrow.DepositBody(2), nil)
	e.succeeded(addr)
	deposited = add(deposited, sub(nano("1"), big.NewInt(escrow.DepositReserve)))
	if got := e.state(addr).Deposited; got.Cmp(deposited) != 0 {
		t.Fatalf("deposited %s after second deposit, want %s", got, deposited)
	}

	// Two charges: the host is paid the difference each time (minus its
	// own fees), and the payout echoes the query id.
	for i, cumulative := range []*big.Int{nano("1"), nano("2.5")} {
		paid := sub(cumulative, e.state(addr).Charged)
		hostBefore := e.chain.Balance(e.host.WalletAddress())
		e.charge(addr, e.host, e.hostKey, addr, cumulative, uint64(100+i))
		e.succeeded(addr)
		if got := e.state(addr).Charged; got.Cmp(cumulative) != 0 {
			t.Fatalf("charged %s, want %s", got, cumulative)
		}
		between(t, "host gain", sub(e.chain.Balance(e.host.WalletAddress()), hostBefore), sub(paid, nano("0.02")), paid)
		lastIn(t, e.chain, e.host.WalletAddress(), escrow.OpPayout, uint64(100+i))
	}
	charged := nano("2.5")

	other := e.addr(e.params(99)) // an escrow of the same parties, never deployed
	rejections := []struct {
		name string
		code escrow.ExitCode
		send func()
	}{
		{"deposit from host", escrow.ErrWrongSender, func() { e.send(e.host, addr, "1", escrow.DepositBody(3), nil) }},
		{"charge from client", escrow.ErrWrongSender, func() { e.charge(addr, e.client, e.hostKey, addr, nano("3"), 3) }},
		{"charge from third party", escrow.ErrWrongSender, func() { e.charge(addr, e.other, e.hostKey, addr, nano("3"), 3) }},
		{"request from host", escrow.ErrWrongSender, func() { e.send(e.host, addr, "0.05", escrow.RequestWithdrawalBody(3), nil) }},
		{"withdraw from host", escrow.ErrWrongSender, func() { e.send(e.host, addr, "0.05", escrow.WithdrawBody(3), nil) }},
		{"charge signed by client key", escrow.ErrBadSignature, func() { e.charge(addr, e.host, e.clientKey, addr, nano("3"), 3) }},
		{"charge signed for another escrow", escrow.ErrBadSignature, func() { e.charge(addr, e.host, e.hostKey, other, nano("3"), 3) }},
		{"charge equal to charged", escrow.ErrNotIncreasing, func() { e.charge(addr, e.host, e.hostKey, addr, charged, 3) }},
		{"charge below charged", escrow.ErrNotIncreasing, func() { e.charge(addr, e.host, e.hostKey, addr, nano("1"), 3) }},
		{"charge over deposit", escrow.ErrOverDeposit, func() { e.charge(addr, e.host, e.hostKey, addr, add(deposited, big.NewInt(1)), 3) }},
		{"withdraw without request", escrow.ErrNotRequested, func() { e.send(e.client, addr, "0.05", escrow.WithdrawBody(3), nil) }},
		{"deposit of exactly the reserve", escrow.ErrDepositTooSmall, func() { e.send(e.client, addr, "0.01", escrow.DepositBody(3), nil) }},
		{"unknown op", escrow.ErrUnknownOp, func() {
			e.send(e.client, addr, "0.05", cell.BeginCell().MustStoreUInt(0x434f4406, 32).MustStoreUInt(3, 64).EndCell(), nil)
		}},
		{"empty body", escrow.ErrUnknownOp, func() { e.send(e.client, addr, "0.05", nil, nil) }},
	}
	for _, r := range rejections {
		t.Run(r.name, func(t *testing.T) {
			e.t = t
			defer func() { e.t = nil }()
			e.rejected(addr, r.code, r.send)
		})
	}
	e.t = t
	// Charging the whole deposit is fine.
	e.charge(addr, e.host, e.hostKey, addr, deposited, 5)
	e.succeeded(addr)
	charged = deposited
	e.rejected(addr, escrow.ErrOverDeposit, func() { e.charge(addr, e.host, e.hostKey, addr, add(deposited, big.NewInt(1)), 6) })
	// More money after that: the host may charge it too.
	e.send(e.client, addr, "2", escrow.DepositBody(6), nil)
	e.succeeded(addr)
	deposited = add(deposited, sub(nano("2"), big.NewInt(escrow.DepositReserve)))

	// The client asks for its money back; the clock starts.
	e.send(e.client, addr, "0.05", escrow.RequestWithdrawalBody(8), nil)
	e.succeeded(addr)
	st = e.state(addr)
	if int64(st.CloseRequestedAt) != e.chain.Now().Unix() {
		t.Fatalf("close_requested_at %d, clock %d", st.CloseRequestedAt, e.chain.Now().Unix())
	}
	if !errors.Is(st.CheckOpen(), escrow.ErrClosing) {
		t.Fatalf("CheckOpen = %v, want ErrClosing", st.CheckOpen())
	}
	at, ok := st.WithdrawableAt()
	if !ok || at.Unix() != int64(st.CloseRequestedAt)+timeout {
		t.Fatalf("WithdrawableAt = %v, %v", at, ok)
	}

	e.rejected(addr, escrow.ErrAlreadyRequested, func() { e.send(e.client, addr, "0.05", escrow.RequestWithdrawalBody(9), nil) })
	e.rejected(addr, escrow.ErrClosing, func() { e.send(e.client, addr, "1", escrow.DepositBody(9), nil) })
	e.rejected(addr, escrow.ErrTooEarly, func() { e.send(e.client, addr, "0.05", escrow.WithdrawBody(9), nil) })
	e.chain.Advance((timeout - 1) * time.Second)
	e.rejected(addr, escrow.ErrTooEarly, func() { e.send(e.client, addr, "0.05", escrow.WithdrawBody(9), nil) })

	// The host commits its last charge inside the window.
	last := sub(deposited, nano("0.5"))
	e.charge(addr, e.host, e.hostKey, addr, last, 10)
	e.succeeded(addr)

	// Exactly at the deadline the client withdraws everything left, and the
	// contract is gone.
	e.chain.Advance(time.Second)
	st = e.state(addr)
	clientBefore := e.chain.Balance(e.client.WalletAddress())
	e.send(e.client, addr, "0.05", escrow.WithdrawBody(11), nil)
	e.succeeded(addr)
	between(t, "client refund", sub(e.chain.Balance(e.client.WalletAddress()), clientBefore),
		sub(st.Balance, nano("0.02")), st.Balance)
	if st.Balance.Cmp(st.Unspent()) <= 0 {
		t.Fatalf("balance %s does not cover the unspent %s", st.Balance, st.Unspent())
	}
	lastIn(t, e.chain, e.client.WalletAddress(), escrow.OpRefund, 11)
	if _, err := escrow.GetState(context.Background(), e.chain, addr); !errors.Is(err, escrow.ErrNotDeployed) {
		t.Fatalf("GetState after withdrawal: %v, want ErrNotDeployed", err)
	}
	if e.chain.Balance(addr).Sign() != 0 {
		t.Fatalf("escrow keeps %s after withdrawal", e.chain.Balance(addr))
	}
}

func TestCooperativeClose(t *testing.T) {
	e := newEnv(t)
	p := e.params(2)
	addr := e.deploy(p, "3")
	e.charge(addr, e.host, e.hostKey, addr, nano("1"), 1)
	e.succeeded(addr)
	deposited := sub(nano("3"), big.NewInt(escrow.DepositReserve))
	other := e.addr(e.params(99))

	for _, r := range []struct {
		name               string
		code               escrow.ExitCode
		clientKey, hostKey ed25519.PrivateKey
		sigAddr            *address.Address
		cumulative         *big.Int
	}{
		{"client signature by host key", escrow.ErrBadSignature, e.hostKey, e.hostKey, addr, nano("2")},
		{"host signature by client key", escrow.ErrBadSignature, e.clientKey, e.clientKey, addr, nano("2")},
		{"signatures for another escrow", escrow.ErrBadSignature, e.clientKey, e.hostKey, other, nano("2")},
		{"below charged", escrow.ErrNotIncreasing, e.clientKey, e.hostKey, addr, nano("0.5")},
		{"over deposit", escrow.ErrOverDeposit, e.clientKey, e.hostKey, addr, add(deposited, big.NewInt(1))},
	} {
		t.Run(r.name, func(t *testing.T) {
			e.t = t
			defer func() { e.t = nil }()
			e.rejected(addr, r.code, func() { e.close(addr, e.other, r.clientKey, r.hostKey, r.sigAddr, r.cumulative) })
		})
	}
	e.t = t

	// Anyone may submit a close signed by both: the host gets exactly the
	// difference (less the gas its wallet spends receiving it), the client
	// the rest, and the contract is destroyed.
	st := e.state(addr)
	hostBefore := e.chain.Balance(e.host.WalletAddress())
	clientBefore := e.chain.Balance(e.client.WalletAddress())
	e.close(addr, e.other, e.clientKey, e.hostKey, addr, nano("2"))
	e.succeeded(addr)
	between(t, "host gain", sub(e.chain.Balance(e.host.WalletAddress()), hostBefore), sub(nano("1"), nano("0.001")), nano("1"))
	lastIn(t, e.chain, e.host.WalletAddress(), escrow.OpPayout, 7)
	rest := sub(st.Balance, nano("1"))
	between(t, "client refund", sub(e.chain.Balance(e.client.WalletAddress()), clientBefore), sub(rest, nano("0.01")), add(rest, nano("0.05")))
	lastIn(t, e.chain, e.client.WalletAddress(), escrow.OpRefund, 7)
	if _, err := escrow.GetState(context.Background(), e.chain, addr); !errors.Is(err, escrow.ErrNotDeployed) {
		t.Fatalf("GetState after close: %v, want ErrNotDeployed", err)
	}
}

func TestCooperativeCloseWithoutPayout(t *testing.T) {
	e := newEnv(t)
	addr := e.deploy(e.params(3), "2")
	hostTxs := len(e.chain.Transactions(e.host.WalletAddress()))
	// Closing at what was charged (nothing) pays the host nothing: no
	// message to it at all.
	e.close(addr, e.client, e.clientKey, e.hostKey, addr, new(big.Int))
	e.succeeded(addr)
	if n := len(e.chain.Transactions(e.host.WalletAddress())); n != hostTxs {
		t.Fatalf("host got %d messages from a close at zero", n-hostTxs)
	}
	lastIn(t, e.chain, e.client.WalletAddress(), escrow.OpRefund, 7)
	if e.chain.Balance(addr).Sign() != 0 {
		t.Fatal("escrow not emptied")
	}
}

func TestGetStateRefusesImpostors(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)

	if _, err := escrow.GetState(ctx, e.chain, e.addr(e.params(4))); !errors.Is(err, escrow.ErrNotDeployed) {
		t.Fatalf("never deployed: %v, want ErrNotDeployed", err)
	}
	// A wallet is an active contract, but not an escrow.
	if _, err := escrow.GetState(ctx, e.chain, e.client.WalletAddress()); !errors.Is(err, escrow.ErrNotDeployed) {
		t.Fatalf("uninit wallet: %v, want ErrNotDeployed", err)
	}
	e.send(e.client, e.host.WalletAddress(), "0.1", nil, nil) // deploys the client's wallet
	if _, err := escrow.GetState(ctx, e.chain, e.client.WalletAddress()); !errors.Is(err, escrow.ErrWrongCode) {
		t.Fatalf("wallet: %v, want ErrWrongCode", err)
	}

	// The real code with forged initial data: 1000 TON "deposited" that
	// nobody paid. Its get-method looks fine; its address gives it away.
	p := e.params(5)
	genuine, err := p.Data()
	if err != nil {
		t.Fatal(err)
	}
	gs := genuine.MustBeginParse()
	head := cell.BeginCell().
		MustStoreUInt(gs.MustLoadUInt(64), 64).
		MustStoreUInt(gs.MustLoadUInt(32), 32).
		MustStoreUInt(gs.MustLoadUInt(32), 32)
	gs.MustLoadBigCoins()
	gs.MustLoadBigCoins()
	forged := head.MustStoreBigCoins(nano("1000")).MustStoreCoins(0).MustStoreBuilder(gs.ToBuilder()).EndCell()
	code, _ := escrow.Code()
	si := &tlb.StateInit{Code: code, Data: forged}
	fake := si.CalcAddress(0)
	e.send(e.client, fake, "0.05", escrow.DepositBody(1), si)
	e.succeeded(fake)
	if _, err := escrow.GetState(ctx, e.chain, fake); !errors.Is(err, escrow.ErrWrongAddress) {
		t.Fatalf("forged data: %v, want ErrWrongAddress", err)
	}

	e.chain.SetOffline(true)
	defer e.chain.SetOffline(false)
	if _, err := escrow.GetState(ctx, e.chain, fake); !errors.Is(err, tonemu.ErrOffline) {
		t.Fatalf("offline: %v, want tonemu.ErrOffline", err)
	}
}

// TestDataLayout checks the initial data cell bit for bit against
// ESCROW.md's "Storage" (the contract reading it back is checked by
// TestLifecycle's GetState).
func TestDataLayout(t *testing.T) {
	e := newEnv(t)
	p := e.params(0x0102030405060708)
	data, err := p.Data()
	if err != nil {
		t.Fatal(err)
	}
	want := cell.BeginCell().
		MustStoreSlice([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 64).
		MustStoreUInt(timeout, 32).
		MustStoreUInt(0, 32).
		MustStoreUInt(0, 4). // deposited: Coins zero is a zero length
		MustStoreUInt(0, 4).
		MustStoreSlice(p.ClientKey, 256).
		MustStoreSlice(p.HostKey, 256).
		MustStoreRef(cell.BeginCell().MustStoreAddr(p.ClientAddr).MustStoreAddr(p.HostAddr).EndCell()).
		EndCell()
	if !bytes.Equal(data.Hash(), want.Hash()) {
		t.Fatalf("data cell:\n%s\nwant\n%s", data.Dump(), want.Dump())
	}
	if data.BitsSize() != 64+32+32+4+4+256+256 || data.RefsNum() != 1 {
		t.Fatalf("data cell has %d bits, %d refs", data.BitsSize(), data.RefsNum())
	}

	bad := p
	bad.HostKey = bad.HostKey[:31]
	if _, err := bad.Data(); err == nil {
		t.Fatal("31-byte key accepted")
	}
	bad = p
	bad.ClientAddr = address.NewAddressNone()
	if _, err := bad.Data(); err == nil {
		t.Fatal("addr_none accepted")
	}
}

// TestChargeDigestGolden pins the charge digest's encoding: the hash of the
// cell [0x434f4402:uint32 escrow:MsgAddressInt cumulative:Coins], computed
// here by hand from TVM's cell hashing rule, and as a fixed value.
func TestChargeDigestGolden(t *testing.T) {
	escrowAddr := address.NewAddress(0, 0, bytes.Repeat([]byte{0xAB}, 32))
	cumulative := big.NewInt(1_500_000_000) // 0x59682F00: 4 bytes

	// Cell bits: op (32) | addr_std$10 anycast$0 workchain:int8 hash:bits256 (267) |
	// Coins: len:uint4=4, value:4 bytes (36) = 335 bits. An ordinary cell's
	// hash is sha256(d1 d2 data) with d1 = refs = 0, d2 = floor(335/8) +
	// ceil(335/8) = 83 and the data padded by a 1 bit then zeros.
	bits := "01000011010011110100010000000010" + "100" + "00000000"
	for range 32 {
		bits += "10101011"
	}
	bits += "0100" + "01011001011010000010111100000000"
	if len(bits) != 335 {
		t.Fatalf("%d bits", len(bits))
	}
	bits += "1"
	for len(bits)%8 != 0 {
		bits += "0"
	}
	raw := []byte{0, 83}
	for i := 0; i < len(bits); i += 8 {
		var b byte
		for _, c := range bits[i : i+8] {
			b = b<<1 | byte(c-'0')
		}
		raw = append(raw, b)
	}
	byHand := sha256.Sum256(raw)

	got, err := escrow.ChargeDigest(escrowAddr, cumulative)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, byHand[:]) {
		t.Fatalf("ChargeDigest = %x, by hand %x", got, byHand)
	}
	const golden = "30305244f08850d6cbece05a3c581e76f14dea37c888bdde5945358b8a061d86"
	if hex.EncodeToString(got) != golden {
		t.Fatalf("ChargeDigest = %x, golden %s", got, golden)
	}

	// The close digest differs only in the op.
	closeDigest, err := escrow.CloseDigest(escrowAddr, cumulative)
	if err != nil || bytes.Equal(closeDigest, got) {
		t.Fatalf("CloseDigest = %x, %v", closeDigest, err)
	}
	for _, bad := range []*big.Int{nil, big.NewInt(-1), new(big.Int).Lsh(big.NewInt(1), 120)} {
		if _, err := escrow.ChargeDigest(escrowAddr, bad); err == nil {
			t.Errorf("amount %v accepted", bad)
		}
	}
	if _, err := escrow.ChargeBody(1, cumulative, make([]byte, 63)); err == nil {
		t.Error("63-byte signature accepted")
	}
}
