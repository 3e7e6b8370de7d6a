package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/ton"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/escrow"
	webclient "github.com/cocoonhost/cocoon/web/client"
)

const channelUsage = `channel open|deposit|status|withdraw [flags]

Manages a payment channel with a host: a TON escrow contract (settle/ESCROW.md) that holds
the client's deposit, which the host charges with amounts its attested settlement key signs.

  open      verify the host, deploy an escrow with a first deposit
  deposit   add to an escrow
  status    show an escrow's state on-chain, and the host's view of the account
  withdraw  request a withdrawal, or withdraw once the host's window is over

Run 'cocoon channel SUBCOMMAND --help' for its flags.`

// channel dispatches the channel subcommands.
func channel(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	return dispatch(channelUsage, []subcommand{{"open", channelOpen}, {"deposit", channelDeposit},
		{"status", channelStatus}, {"withdraw", channelWithdraw}}, args, stdout, stderr)
}

// subcommand is one subcommand of a command that has several, such as channel.
type subcommand struct {
	name string
	run  func(args []string, stdout, stderr io.Writer) error
}

// dispatch runs the subcommand args[0] names with the rest of args; without one, or
// with an unknown one, it prints usage for --help or fails naming the subcommands.
func dispatch(usage string, subcommands []subcommand, args []string, stdout, stderr io.Writer) error {
	names := make([]string, len(subcommands))
	for i, sub := range subcommands {
		if len(args) > 0 && args[0] == sub.name {
			return sub.run(args[1:], stdout, stderr)
		}
		names[i] = sub.name
	}
	fs := cli.NewFlagSet("cocoon", usage, stderr)
	if _, err := cli.Parse(fs, args); err != nil {
		return err
	}
	list := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	if len(args) == 0 {
		return cli.UsageError("which subcommand? " + list)
	}
	return cli.UsageError(fmt.Sprintf("unknown subcommand %q: want %s", args[0], list))
}

// channelOpen verifies the host, builds the escrow's parameters and deploys it with the
// first deposit, or prints the transfer for another wallet.
func channelOpen(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", `channel open --host URL --seed-file FILE --deposit TON --ton-config FILE [flags]
       cocoon channel open --print --host URL --client-address ADDR --client-key-file FILE --deposit TON [flags]

Verifies the host's attestation (trust flags as for verify) and its signed price list, and
checks that the list is signed by the settlement key the attestation measures. It then
deploys an escrow between the client's wallet and the host's with a first deposit, sent
from the wallet of --seed-file, and prints the escrow's address and state. With --print it
sends nothing: it prints the transfer (address, amount, body and state init, a ton://
link) for a wallet elsewhere, whose address is --client-address; --client-key-file is
then the client key that signs requests.`, stderr)
	host := addTrustedHostFlags(fs, envHost())
	keys := addKeyFlags(fs)
	clientAddr := fs.String("client-address", "", "with --print: the address of the wallet that will send the deposit")
	var deposit tonAmount
	fs.Var(&deposit, "deposit", "TON to deposit (up to 9 decimals); 0.01 TON more is sent, which the escrow keeps for gas and storage")
	timeout := fs.Duration("timeout", 24*time.Hour, "the host's window between a withdrawal request and the withdrawal, whole seconds")
	var channelID *uint64
	fs.Func("channel-id", "a number that tells apart escrows of the same client and host (default: random)", func(v string) error {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return errors.New("want an unsigned 64-bit number")
		}
		channelID = &n
		return nil
	})
	printOnly := fs.Bool("print", false, "print the transfer for another wallet instead of sending it")
	tonOpts := addTONFlags(fs)
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case !deposit.set:
		return cli.UsageError("how much? pass --deposit TON, such as --deposit 1.5")
	case deposit.nano == 0 || deposit.nano > math.MaxUint64-escrow.DepositReserve:
		return cli.UsageError("--deposit must be more than 0 TON")
	case *timeout < time.Second || *timeout%time.Second != 0 || *timeout/time.Second > math.MaxUint32:
		return cli.UsageError(fmt.Sprintf("--timeout %v: want whole seconds, from 1s to %ds", *timeout, uint32(math.MaxUint32)))
	case *printOnly && (*clientAddr == "") == (*keys.seedFile == ""):
		return cli.UsageError("--print needs the wallet: --client-address ADDR with --client-key-file FILE, or --seed-file FILE")
	case *printOnly && *clientAddr != "" && *keys.keyFile == "":
		return cli.UsageError("--client-address needs --client-key-file: the client key that signs requests and is written into the escrow")
	case !*printOnly && *clientAddr != "":
		return cli.UsageError("--client-address is for --print; to send, give the wallet's --seed-file")
	case !*printOnly && *keys.seedFile == "":
		return cli.UsageError("no wallet: pass --seed-file FILE (its 24 words), or --print to send from another wallet")
	}
	if err := tonOpts.check(!*printOnly); err != nil {
		return err
	}
	var p escrow.Params
	if *clientAddr != "" {
		var err error
		if p.ClientAddr, err = parseAddress("client-address", *clientAddr); err != nil {
			return err
		}
	}
	key, err := keys.load()
	if err != nil {
		return err
	}
	c, err := host.connect()
	if err != nil {
		return err
	}
	ctx := context.Background()
	prices, err := c.VerifiedPriceList(ctx)
	if err != nil {
		return printFailedChecks(err, stderr)
	}
	hostWallet, err := address.ParseRawAddr(prices.Wallet)
	if err != nil {
		return fmt.Errorf("the host's price list names wallet %q: %w", prices.Wallet, err)
	}

	if least := time.Duration(prices.MinTimeout) * time.Second; *timeout < least {
		return cli.UsageError(fmt.Sprintf("--timeout %v: the host serves escrows with a timeout of at least %v", *timeout, least))
	}
	p.HostAddr, p.HostKey, p.Timeout = hostWallet, ed25519.PublicKey(prices.HostKey), uint32(*timeout/time.Second)
	p.ClientKey = key.Public().(ed25519.PublicKey)
	if channelID != nil {
		p.ChannelID = *channelID
	} else {
		var b [8]byte
		rand.Read(b[:])
		p.ChannelID = binary.BigEndian.Uint64(b[:])
	}
	var w *webclient.Wallet
	if p.ClientAddr == nil {
		var api ton.APIClientWrapped
		if !*printOnly {
			if api, err = tonOpts.dial(ctx); err != nil {
				return err
			}
		}
		if w, err = webclient.OpenWallet(api, key, tonOpts.networkID()); err != nil {
			return err
		}
		p.ClientAddr = w.WalletAddress()
	}
	addr, err := p.Address(0)
	if err != nil {
		return err
	}
	init, err := p.StateInit()
	if err != nil {
		return err
	}

	out := newOutput(stdout)
	out.line("host", fmt.Sprintf("%s: settlement key %x, measured in its verified attestation", c.BaseURL(), prices.HostKey))
	out.line("prices", priceSummary(prices))
	out.line("deposit", fmt.Sprintf("%s TON, sent with %s TON more that the escrow keeps for gas and storage",
		settle.FormatTON(deposit.nano), settle.FormatTON(escrow.DepositReserve)))
	t := webclient.DepositTransfer(addr, deposit.nano, init)
	if *printOnly {
		out.line("escrow", fmt.Sprintf("%s (%s)", tonOpts.show(addr, true), addr.StringRaw()))
		out.line("client", fmt.Sprintf("%s, client key %x", tonOpts.show(p.ClientAddr, false), p.ClientKey))
		out.line("channel id", strconv.FormatUint(p.ChannelID, 10))
		if err := out.flush(); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "\nSend this transfer from the client wallet; it deploys the escrow:")
		return printTransfer(newOutput(stdout), t, tonOpts)
	}
	if err := out.flush(); err != nil {
		return err
	}

	switch _, err := escrow.GetState(ctx, w.API, addr); {
	case err == nil:
		return fmt.Errorf("escrow %s exists already: add to it with `cocoon channel deposit`, or open another with --channel-id", tonOpts.show(addr, true))
	case !errors.Is(err, escrow.ErrNotDeployed):
		return err
	}
	if err := w.Send(ctx, t); err != nil {
		return err
	}
	st, err := webclient.WaitEscrow(ctx, w.API, addr, "been deployed", func(st *escrow.State, err error) bool {
		return !errors.Is(err, escrow.ErrNotDeployed)
	})
	if err != nil {
		return err
	}
	return printEscrow(ctx, stdout, w.API, addr, st, tonOpts)
}

// channelDeposit adds to an escrow.
func channelDeposit(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", `channel deposit --escrow ADDR --amount TON --seed-file FILE --ton-config FILE
       cocoon channel deposit --print --escrow ADDR --amount TON

Adds --amount to the escrow, sent (with 0.01 TON more that the escrow keeps for gas) from
the client wallet of --seed-file, and prints the escrow's state. Only the escrow's client
wallet may deposit, and not after a withdrawal request. With --print it prints the
transfer for a wallet elsewhere instead.`, stderr)
	escrowFlag := fs.String("escrow", "", "the escrow contract's address")
	seedFile := fs.String("seed-file", "", "file with the 24 seed words of the escrow's client wallet")
	var amount tonAmount
	fs.Var(&amount, "amount", "TON to add (up to 9 decimals)")
	printOnly := fs.Bool("print", false, "print the transfer for another wallet instead of sending it")
	tonOpts := addTONFlags(fs)
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *escrowFlag == "":
		return cli.UsageError("no escrow: pass --escrow ADDR, as channel open printed it")
	case !amount.set:
		return cli.UsageError("how much? pass --amount TON, such as --amount 1.5")
	case amount.nano == 0 || amount.nano > math.MaxUint64-escrow.DepositReserve:
		return cli.UsageError("--amount must be more than 0 TON")
	case *printOnly && *seedFile != "":
		return cli.UsageError("--print sends nothing: it needs no --seed-file")
	case !*printOnly && *seedFile == "":
		return cli.UsageError("no wallet: pass --seed-file FILE (its 24 words), or --print to send from another wallet")
	}
	if err := tonOpts.check(!*printOnly); err != nil {
		return err
	}
	addr, err := parseAddress("escrow", *escrowFlag)
	if err != nil {
		return err
	}
	t := webclient.DepositTransfer(addr, amount.nano, nil)
	if *printOnly {
		return printTransfer(newOutput(stdout), t, tonOpts)
	}
	ctx := context.Background()
	w, err := dialWallet(ctx, *seedFile, tonOpts)
	if err != nil {
		return err
	}
	before, err := webclient.ReadEscrow(ctx, w.API, addr, w.WalletAddress())
	if err != nil {
		return err
	}
	if before.CheckOpen() != nil {
		return fmt.Errorf("escrow %s is closing (a withdrawal was requested): it takes no more deposits", tonOpts.show(addr, true))
	}
	if err := w.Send(ctx, t); err != nil {
		return err
	}
	st, err := webclient.WaitEscrow(ctx, w.API, addr, "taken the deposit", func(st *escrow.State, err error) bool {
		return err != nil || st.Deposited.Cmp(before.Deposited) > 0
	})
	if err != nil {
		return err
	}
	return printEscrow(ctx, stdout, w.API, addr, st, tonOpts)
}

// channelStatus prints an escrow's state, and the host's view of its account.
func channelStatus(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", `channel status --escrow ADDR --ton-config FILE [--host URL --seed-file FILE]

Prints the escrow's state on-chain: deposited, charged, unspent, and whether a withdrawal
was requested and when it can be made. With --host, also the host's view of the account
(what its receipts add up to, what is reserved for requests running, what it has
settled), asked with a request signed by the client key.`, stderr)
	account := addAccountFlags(fs)
	host := addTrustedHostFlags(fs, "")
	tonOpts := addTONFlags(fs)
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	addr, err := account.address()
	if err != nil {
		return err
	}
	if err := tonOpts.check(true); err != nil {
		return err
	}
	var s *webclient.Signer
	if host.given() {
		if s, err = account.signer(); err != nil {
			return err
		}
	} else if account.key.given() {
		return cli.UsageError("the client key signs the request for the host's view: it needs --host")
	}
	ctx := context.Background()
	api, err := tonOpts.dial(ctx)
	if err != nil {
		return err
	}
	st, err := webclient.ReadEscrow(ctx, api, addr, nil)
	if err != nil {
		return err
	}
	if err := printEscrow(ctx, stdout, api, addr, st, tonOpts); err != nil {
		return err
	}
	if s == nil {
		return nil
	}
	c, err := host.connect()
	if err != nil {
		return err
	}
	v, err := c.Account(ctx, s)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	out := newOutput(stdout)
	out.line("host's view", c.BaseURL())
	out.line("receipts", fmt.Sprintf("%d, %s TON in total", v.LastSeq, settle.FormatTON(v.Cumulative)))
	out.line("reserved", settle.FormatTON(v.Held)+" TON, for requests running")
	out.line("settled", settle.FormatTON(v.Settled)+" TON, charged on-chain as the host last recorded")
	out.line("available", settle.FormatTON(v.Unspent)+" TON, for new requests")
	return out.flush()
}

// channelWithdraw requests a withdrawal, or withdraws once the window is over.
func channelWithdraw(args []string, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("cocoon", `channel withdraw --escrow ADDR --seed-file FILE --ton-config FILE

Getting the unspent deposit back takes two runs. The first sends the withdrawal request:
the host then stops serving the escrow and has the escrow's timeout to commit its last
charge. Once the timeout has passed, the second run withdraws: the escrow sends its whole
balance (the unspent deposit and the reserves) to the client wallet and is destroyed.
Run before the timeout has passed, it says when it can withdraw and exits 1.`, stderr)
	escrowFlag := fs.String("escrow", "", "the escrow contract's address")
	seedFile := fs.String("seed-file", "", "file with the 24 seed words of the escrow's client wallet")
	tonOpts := addTONFlags(fs)
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *escrowFlag == "":
		return cli.UsageError("no escrow: pass --escrow ADDR, as channel open printed it")
	case *seedFile == "":
		return cli.UsageError("no wallet: pass --seed-file FILE, the escrow's client wallet (only it may withdraw)")
	}
	if err := tonOpts.check(true); err != nil {
		return err
	}
	addr, err := parseAddress("escrow", *escrowFlag)
	if err != nil {
		return err
	}
	ctx := context.Background()
	w, err := dialWallet(ctx, *seedFile, tonOpts)
	if err != nil {
		return err
	}
	st, err := webclient.ReadEscrow(ctx, w.API, addr, w.WalletAddress())
	if err != nil {
		return err
	}
	if st.CloseRequestedAt == 0 {
		if err := w.Send(ctx, webclient.Transfer{To: addr, Value: webclient.OpValue, Body: escrow.RequestWithdrawalBody(uint64(time.Now().Unix()))}); err != nil {
			return err
		}
		st, err := webclient.WaitEscrow(ctx, w.API, addr, "taken the withdrawal request", func(st *escrow.State, err error) bool {
			return err != nil || st.CloseRequestedAt != 0
		})
		if err != nil {
			return err
		}
		at, _ := st.WithdrawableAt()
		fmt.Fprintf(stdout, "withdrawal requested: the host may charge until %s; run `cocoon channel withdraw` again then\n", at.UTC().Format(time.RFC3339))
		return printEscrow(ctx, stdout, w.API, addr, st, tonOpts)
	}
	now, err := w.API.GetTime(ctx)
	if err != nil {
		return fmt.Errorf("read the chain's time: %w", err)
	}
	if at, _ := st.WithdrawableAt(); time.Unix(int64(now), 0).Before(at) {
		return fmt.Errorf("the withdrawal was requested at %s: the escrow pays out from %s (in %v, by the chain's clock)",
			time.Unix(int64(st.CloseRequestedAt), 0).UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339), at.Sub(time.Unix(int64(now), 0)))
	}
	if err := w.Send(ctx, webclient.Transfer{To: addr, Value: webclient.OpValue, Body: escrow.WithdrawBody(uint64(time.Now().Unix()))}); err != nil {
		return err
	}
	if _, err := webclient.WaitEscrow(ctx, w.API, addr, "paid out", func(_ *escrow.State, err error) bool {
		return errors.Is(err, escrow.ErrNotDeployed)
	}); !errors.Is(err, escrow.ErrNotDeployed) {
		return err
	}
	_, err = fmt.Fprintf(stdout, "withdrawn: escrow %s is closed; its balance, %s TON of unspent deposit and the reserves, went to %s\n",
		tonOpts.show(addr, true), formatNano(st.Unspent()), tonOpts.show(w.WalletAddress(), false))
	return err
}

// dialWallet connects to the chain and opens the client wallet of a seed file.
func dialWallet(ctx context.Context, seedFile string, o *tonOptions) (*webclient.Wallet, error) {
	key, err := readSeedFile(seedFile)
	if err != nil {
		return nil, err
	}
	api, err := o.dial(ctx)
	if err != nil {
		return nil, err
	}
	return webclient.OpenWallet(api, key, o.networkID())
}

// printEscrow prints an escrow's state, with the withdrawal's timing by the chain's
// clock.
func printEscrow(ctx context.Context, w io.Writer, api ton.APIClientWrapped, addr *address.Address, st *escrow.State, o *tonOptions) error {
	out := newOutput(w)
	out.line("escrow", fmt.Sprintf("%s (%s)", o.show(addr, true), addr.StringRaw()))
	out.line("client", fmt.Sprintf("%s, client key %s", o.show(st.ClientAddr, false), hex.EncodeToString(st.ClientKey)))
	out.line("host", fmt.Sprintf("%s, settlement key %s", o.show(st.HostAddr, false), hex.EncodeToString(st.HostKey)))
	out.line("channel id", strconv.FormatUint(st.ChannelID, 10))
	out.line("timeout", (time.Duration(st.Timeout) * time.Second).String())
	out.line("deposited", formatNano(st.Deposited)+" TON")
	out.line("charged", formatNano(st.Charged)+" TON")
	out.line("unspent", formatNano(st.Unspent())+" TON")
	out.line("balance", formatNano(st.Balance)+" TON")
	at, requested := st.WithdrawableAt()
	switch now, err := api.GetTime(ctx); {
	case !requested:
		out.line("withdrawal", "not requested")
	case err != nil:
		return fmt.Errorf("read the chain's time: %w", err)
	case time.Unix(int64(now), 0).Before(at):
		out.line("withdrawal", fmt.Sprintf("requested at %s; withdrawable at %s", time.Unix(int64(st.CloseRequestedAt), 0).UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339)))
	default:
		out.line("withdrawal", fmt.Sprintf("requested at %s; withdrawable now", time.Unix(int64(st.CloseRequestedAt), 0).UTC().Format(time.RFC3339)))
	}
	return out.flush()
}

// priceSummary renders a price list in TON per million units, model by model.
func priceSummary(l *settle.PriceList) string {
	milli := func(m uint64) string { return fmt.Sprintf("%d.%03d", m/1000, m%1000) }
	table := func(t settle.PriceTable) string {
		return fmt.Sprintf("%s TON prompt tokens, %s TON completion tokens, %s TON µs of module compute",
			settle.FormatTON(t.PromptPerMillion), settle.FormatTON(t.CompletionPerMillion), settle.FormatTON(t.ComputePerMillion))
	}
	var models []string
	for _, m := range l.Models {
		models = append(models, "model "+m.Model+": "+table(m.Prices))
	}
	switch {
	case l.Default != nil && len(models) == 0:
		models = append(models, "every model: "+table(*l.Default))
	case l.Default != nil:
		models = append(models, "any other model: "+table(*l.Default))
	}
	return fmt.Sprintf("per million, %s; times a load coefficient of %s now (%s to %s)",
		strings.Join(models, "; "), milli(l.LoadMilli), milli(l.Curve.MinMilli), milli(l.Curve.MaxMilli))
}
