package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"strings"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/ton/wallet"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/cmd/internal/tonnet"
	"github.com/cocoonhost/cocoon/settle"
	webclient "github.com/cocoonhost/cocoon/web/client"
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

// networkID is the wallet's network id, by which a wallet's address differs between
// networks.
func (o *tonOptions) networkID() int32 {
	if o.testnet() {
		return wallet.TestnetGlobalID
	}
	return wallet.MainnetGlobalID
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
// key. The words never appear in an error; a file other users may read is refused.
func readSeedFile(path string) (ed25519.PrivateKey, error) {
	b, err := cli.ReadPrivateFile(path)
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
	b, err := cli.ReadPrivateFile(path)
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

// printTransfer writes t for an external wallet: the destination, the amount, the body
// and state init as base64 BOCs, and a ton://transfer link that carries them.
func printTransfer(w *cliOutput, t webclient.Transfer, o *tonOptions) error {
	dst := o.show(t.To, true)
	body := t.Body.ToBOC()
	q := url.Values{"amount": {fmt.Sprint(t.Value)}, "bin": {base64.RawURLEncoding.EncodeToString(body)}}
	w.line("send to", dst)
	w.line("amount", fmt.Sprintf("%s TON (%d nanoTON)", settle.FormatTON(t.Value), t.Value))
	w.line("body", base64.StdEncoding.EncodeToString(body))
	if t.Init != nil {
		c, err := tlb.ToCell(t.Init)
		if err != nil {
			return fmt.Errorf("serialize the escrow's state init: %w", err)
		}
		w.line("state init", base64.StdEncoding.EncodeToString(c.ToBOC()))
		q.Set("init", base64.RawURLEncoding.EncodeToString(c.ToBOC()))
	}
	w.line("link", "ton://transfer/"+dst+"?"+q.Encode())
	return w.flush()
}
