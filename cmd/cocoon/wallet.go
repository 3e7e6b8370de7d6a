package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/cmd/internal/tonnet"
)

const walletUsage = `wallet new --out FILE [--ton-network mainnet|testnet]

Creates a TON wallet: writes the 24 words of a new seed to FILE (readable by its owner
only; an existing file is never replaced) and prints the address of its V5R1 wallet. The
seed is never printed. Fund the address, then pass the file as --seed-file to cocoon
channel; on a cocoon-host devnet, fund it with the devnet's admin API.`

// walletCmd dispatches the wallet subcommands.
func walletCmd(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "new" {
		return walletNew(args[1:], stdout, stderr)
	}
	fs := cli.NewFlagSet("cocoon", walletUsage, stderr)
	if _, err := cli.Parse(fs, args); err != nil {
		return err
	}
	if len(args) == 0 {
		return cli.UsageError("which subcommand? new")
	}
	return cli.UsageError(fmt.Sprintf("unknown subcommand %q: want new", args[0]))
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
	addr, err := tonnet.WalletAddress(key, opts.walletConfig().NetworkGlobalID)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", opts.show(addr, false))
	return err
}
