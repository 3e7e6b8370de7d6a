package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/ton/wallet"
	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/cmd/internal/tonnet"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/escrow"
)

// dialTON connects to TON through the liteservers of a global config file (as published
// at ton.org/global-config.json). Tests replace it with an emulated chain. The
// connections last as long as the command's process.
var dialTON = func(ctx context.Context, configPath string) (ton.APIClientWrapped, error) {
	api, _, err := tonnet.Dial(ctx, configPath)
	if err != nil {
		return nil, fmt.Errorf("--ton-config: %w", err)
	}
	return api, nil
}

// escrowWait bounds how long a command waits, polling every escrowPoll, for the escrow
// to show a transaction its wallet sent: on TON the escrow's transaction lands a few
// blocks after the wallet's.
const (
	escrowWait = 2 * time.Minute
	escrowPoll = 2 * time.Second
)

// opValue is the TON (nanoTON) sent with a withdrawal request or a withdrawal for the
// escrow's gas. It is not lost: the withdrawal returns the escrow's whole balance.
const opValue = 50_000_000

// tonAmount is a flag holding a TON amount in nanoTON (see tonnet.ParseTON).
type tonAmount struct {
	nano uint64
	set  bool
}

func (a *tonAmount) String() string {
	if !a.set {
		return ""
	}
	return settle.FormatTON(a.nano)
}

func (a *tonAmount) Set(s string) (err error) {
	a.nano, err = tonnet.ParseTON(s)
	a.set = err == nil
	return err
}

// formatNano renders a contract amount in TON.
func formatNano(n *big.Int) string {
	if n.IsUint64() {
		return settle.FormatTON(n.Uint64())
	}
	return tlb.FromNanoTON(n).String()
}

// tonOptions are the flags that select the TON network.
type tonOptions struct {
	config  *string
	network *string
}

func addTONFlags(fs *flag.FlagSet) *tonOptions {
	return &tonOptions{
		config:  fs.String("ton-config", os.Getenv("COCOON_TON_CONFIG"), "TON global config file, a liteserver list such as ton.org/global-config.json ($COCOON_TON_CONFIG)"),
		network: fs.String("ton-network", "mainnet", "mainnet or testnet: the wallet's network id and how addresses are shown"),
	}
}

// check validates the flags; needChain says the command reads or writes the chain.
func (o *tonOptions) check(needChain bool) error {
	if *o.network != "mainnet" && *o.network != "testnet" {
		return cli.UsageError(fmt.Sprintf("--ton-network %q: must be mainnet or testnet", *o.network))
	}
	if needChain && *o.config == "" {
		return cli.UsageError("no TON network access: pass --ton-config FILE (a global config such as ton.org/global-config.json) or set COCOON_TON_CONFIG")
	}
	return nil
}

func (o *tonOptions) testnet() bool { return *o.network == "testnet" }

func (o *tonOptions) walletConfig() wallet.ConfigV5R1Final {
	if o.testnet() {
		return wallet.ConfigV5R1Final{NetworkGlobalID: wallet.TestnetGlobalID}
	}
	return wallet.ConfigV5R1Final{NetworkGlobalID: wallet.MainnetGlobalID}
}

// dial connects to the network.
func (o *tonOptions) dial(ctx context.Context) (ton.APIClientWrapped, error) {
	return dialTON(ctx, *o.config)
}

// show renders an address as wallets show it on this network.
func (o *tonOptions) show(a *address.Address, bounceable bool) string {
	return a.Copy().Bounce(bounceable).Testnet(o.testnet()).String()
}

// readSeedFile reads a wallet's 24 seed words and derives its ed25519 key, the client
// key. The words never appear in an error.
func readSeedFile(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--seed-file: %w", err)
	}
	key, err := wallet.SeedToPrivateKeyWithOptions(strings.Fields(string(b)))
	if err != nil {
		return nil, fmt.Errorf("--seed-file %s: not the seed words of a TON wallet", path)
	}
	return key, nil
}

// readKeyFile reads a hex ed25519 seed (32 bytes), as --client-key-file holds.
func readKeyFile(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--client-key-file: %w", err)
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("--client-key-file %s: want 64 hex digits, an ed25519 seed", path)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// parseAddress parses a TON address in raw or user-friendly form; flag names the flag.
func parseAddress(flag, s string) (*address.Address, error) {
	raw, err := settle.ParseAccount(s)
	if err != nil {
		return nil, cli.UsageError(fmt.Sprintf("--%s: %v", flag, err))
	}
	return address.MustParseRawAddr(raw), nil
}

// transfer is one message the client's wallet sends to an escrow.
type transfer struct {
	to    *address.Address
	value uint64
	body  *cell.Cell
	init  *tlb.StateInit // the first deposit's, else nil
}

// message is the wallet message of t: bounceable, so a refused message comes back.
func (t transfer) message() *wallet.Message {
	return &wallet.Message{Mode: wallet.PayGasSeparately + wallet.IgnoreErrors, InternalMessage: &tlb.InternalMessage{
		IHRDisabled: true, Bounce: true, DstAddr: t.to, Amount: tlb.FromNanoTONU(t.value), Body: t.body, StateInit: t.init}}
}

// print writes t for an external wallet: the destination, the amount, the body and
// state init as base64 BOCs, and a ton://transfer link that carries them.
func (t transfer) print(w *cliOutput, o *tonOptions) error {
	dst := o.show(t.to, true)
	body := t.body.ToBOC()
	q := url.Values{"amount": {fmt.Sprint(t.value)}, "bin": {base64.RawURLEncoding.EncodeToString(body)}}
	w.line("send to", dst)
	w.line("amount", fmt.Sprintf("%s TON (%d nanoTON)", settle.FormatTON(t.value), t.value))
	w.line("body", base64.StdEncoding.EncodeToString(body))
	if t.init != nil {
		c, err := tlb.ToCell(t.init)
		if err != nil {
			return fmt.Errorf("serialize the escrow's state init: %w", err)
		}
		w.line("state init", base64.StdEncoding.EncodeToString(c.ToBOC()))
		q.Set("init", base64.RawURLEncoding.EncodeToString(c.ToBOC()))
	}
	w.line("link", "ton://transfer/"+dst+"?"+q.Encode())
	return w.flush()
}

// clientWallet is the client's V5R1 wallet, connected to the chain.
type clientWallet struct {
	*wallet.Wallet
	api ton.APIClientWrapped
}

// openWallet derives the wallet of key and connects it.
func openWallet(api ton.APIClientWrapped, key ed25519.PrivateKey, o *tonOptions) (*clientWallet, error) {
	w, err := wallet.FromPrivateKey(api, key, o.walletConfig())
	if err != nil {
		return nil, fmt.Errorf("the client wallet: %w", err)
	}
	return &clientWallet{Wallet: w, api: api}, nil
}

// send sends t and waits for the wallet's transaction. Before sending it checks that
// the wallet holds t's value and some TON for fees, so a short wallet is an error here
// rather than a message the chain drops.
func (w *clientWallet) send(ctx context.Context, t transfer) error {
	block, err := w.api.CurrentMasterchainInfo(ctx)
	if err != nil {
		return fmt.Errorf("read the chain: %w", err)
	}
	balance, err := w.GetBalance(ctx, block)
	if err != nil {
		return fmt.Errorf("read the balance of wallet %s: %w", w.WalletAddress(), err)
	}
	const feeMargin = 20_000_000 // the wallet's own fees, about 0.005 TON, with room
	if need := new(big.Int).SetUint64(t.value + feeMargin); balance.Nano().Cmp(need) < 0 {
		return fmt.Errorf("wallet %s holds %s TON; this transfer needs %s TON and about 0.02 TON of fees",
			w.WalletAddress(), balance.String(), settle.FormatTON(t.value))
	}
	if _, _, err := w.SendWaitTransaction(ctx, t.message()); err != nil {
		return fmt.Errorf("send from wallet %s: %w", w.WalletAddress(), err)
	}
	return nil
}

// waitEscrow polls the escrow at addr until done accepts what GetState returns, or
// escrowWait passes.
func waitEscrow(ctx context.Context, api ton.APIClientWrapped, addr *address.Address, what string, done func(*escrow.State, error) bool) (*escrow.State, error) {
	ctx, cancel := context.WithTimeout(ctx, escrowWait)
	defer cancel()
	for {
		st, err := escrow.GetState(ctx, api, addr)
		if done(st, err) {
			return st, err
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = errors.New("its state did not change")
			}
			return nil, fmt.Errorf("the escrow %s has not %s after %v (%v): look up the wallet's last transaction in an explorer; a refused message bounces back to the wallet",
				addr, what, escrowWait, err)
		case <-time.After(escrowPoll):
		}
	}
}

// readEscrow reads the escrow at addr and checks that wallet is its client, the only
// sender it accepts deposits and withdrawals from.
func readEscrow(ctx context.Context, api ton.APIClientWrapped, addr *address.Address, client *address.Address) (*escrow.State, error) {
	st, err := escrow.GetState(ctx, api, addr)
	switch {
	case errors.Is(err, escrow.ErrNotDeployed):
		return nil, fmt.Errorf("there is no escrow at %s: never deployed, or already withdrawn", addr)
	case err != nil:
		return nil, err
	case client != nil && !st.ClientAddr.Equals(client):
		return nil, fmt.Errorf("escrow %s belongs to client wallet %s, not to this seed's wallet %s: the escrow would refuse it", addr, st.ClientAddr, client)
	}
	return st, nil
}
