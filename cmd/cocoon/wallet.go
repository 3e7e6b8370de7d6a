package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"

	"github.com/xssnick/tonutils-go/address"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/cmd/internal/tonnet"
)

const walletUsage = `wallet new --out FILE [--ton-network mainnet|testnet]
       cocoon wallet balance --seed-file FILE|--address ADDR --ton-config FILE

  new      creates a TON wallet: writes the 24 words of a new seed to FILE (readable by
           its owner only; an existing file is never replaced) and prints the address of
           its V5R1 wallet. The seed is never printed. Fund the address, then pass the
           file as --seed-file to cocoon channel; on a cocoon-host devnet, fund it with
           the devnet's admin API.
  balance  prints the balance of the seed file's V5R1 wallet, or of any address, as
           the chain's last block holds it.`

// walletCmd dispatches the wallet subcommands.
func walletCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	return dispatch(walletUsage, []subcommand{{"new", walletNew}, {"balance", walletBalance}}, args, stdout, stderr)
}

func walletNew(args []string, stdout, stderr io.Writer) error {
	flags := cli.NewFlagSet("cocoon", walletUsage, stderr)
	out := flags.String("out", "", "file to write the seed words to")
	network := flags.String("ton-network", "mainnet", "mainnet or testnet: the wallet's network id and how its address is shown")
	if err := cli.ParseFlags(flags, args); err != nil {
		return err
	}
	if *out == "" {
		return cli.UsageError("where? pass --out FILE, the file for the seed words")
	}
	opts := &tonOptions{network: network}
	if err := opts.check(false); err != nil {
		return err
	}
	key, err := tonnet.CreateSeedFile(*out)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("--out %s exists already: a seed file is never replaced", *out)
	}
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	addr, err := tonnet.WalletAddress(key, opts.networkID())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", opts.show(addr, false))
	return err
}

// walletBalance prints a wallet's balance: "ADDRESS BALANCE TON (NANO nanoTON)".
func walletBalance(args []string, stdout, stderr io.Writer) error {
	flags := cli.NewFlagSet("cocoon", walletUsage, stderr)
	seedFile := flags.String("seed-file", "", "file with the wallet's 24 seed words")
	addrFlag := flags.String("address", "", "an address, raw or user-friendly, in place of --seed-file")
	opts := addTONFlags(flags)
	if err := cli.ParseFlags(flags, args); err != nil {
		return err
	}
	if (*seedFile == "") == (*addrFlag == "") {
		return cli.UsageError("whose balance? pass --seed-file FILE or --address ADDR")
	}
	if err := opts.check(true); err != nil {
		return err
	}
	var addr *address.Address
	var err error
	if *addrFlag != "" {
		addr, err = parseAddress("address", *addrFlag)
	} else {
		key, kerr := readSeedFile(*seedFile)
		if kerr != nil {
			return kerr
		}
		addr, err = tonnet.WalletAddress(key, opts.networkID())
	}
	if err != nil {
		return err
	}
	ctx := context.Background()
	api, err := opts.dial(ctx)
	if err != nil {
		return err
	}
	block, err := api.CurrentMasterchainInfo(ctx)
	if err != nil {
		return fmt.Errorf("read the chain: %w", err)
	}
	account, err := api.GetAccount(ctx, block, addr)
	if err != nil {
		return fmt.Errorf("read account %s: %w", addr, err)
	}
	balance := new(big.Int) // an account the chain has never seen holds nothing
	if account.State != nil {
		balance = account.State.Balance.Nano()
	}
	_, err = fmt.Fprintf(stdout, "%s %s TON (%s nanoTON)\n", opts.show(addr, false), formatNano(balance), balance)
	return err
}
