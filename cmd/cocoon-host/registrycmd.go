package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/xssnick/tonutils-go/ton/wallet"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/registry"
)

func init() {
	register("registry", "this host on the market registry: status, deregister, withdraw the stake", registryCommand)
}

const registryUsage = "registry status|deregister|withdraw [serve's flags: --config FILE --data DIR --registry ADDR --registry-endpoint URL ...]"

// registryCommand reads the registry the serve flags name, or deregisters the host they
// describe (its settlement key, sealed in the data directory, signs), or returns its
// stake to its wallet once the unstake delay is over. Stop serve before deregistering:
// a running host registers itself again.
func registryCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "status" && args[0] != "deregister" && args[0] != "withdraw") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintf(stdout, "Usage: cocoon-host %s\n", registryUsage)
			return nil
		}
		return cli.UsageError("usage: cocoon-host " + registryUsage)
	}
	action := args[0]
	cfg, err := parseServeFlags(args[1:], stderr)
	if err != nil {
		return err
	}
	if cfg.Registry == "" {
		return cli.UsageError("which registry? pass --registry ADDRESS (and the billing settings serve uses)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	api, closeTON, err := dialTON(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeTON()
	sealer, err := openSealer(cfg, resolveAttestMode(cfg))
	if err != nil {
		return err
	}
	key, _, err := settlementKey(cfg.Data, sealer)
	if err != nil {
		return err
	}
	addr := cfg.registryAddr()
	if action == "status" {
		st, err := registry.GetState(ctx, api, addr)
		if err != nil {
			return err
		}
		printRegistry(stdout, st, key.Public().(ed25519.PublicKey))
		return nil
	}
	words, err := readSecret(cfg.WalletSeedFile)
	if err != nil {
		return fmt.Errorf("wallet_seed_file: %w", err)
	}
	network := int32(wallet.MainnetGlobalID)
	if cfg.TONNetwork == "testnet" {
		network = wallet.TestnetGlobalID
	}
	w, err := wallet.FromSeedWithOptions(api, strings.Fields(words), wallet.ConfigV5R1Final{NetworkGlobalID: network})
	if err != nil {
		return errors.New("wallet_seed_file: not a valid TON wallet seed") // the seed stays out of errors
	}
	r, err := registry.NewRegistrar(registry.RegistrarConfig{API: api, Wallet: w, Key: key, Registry: addr})
	if err != nil {
		return err
	}
	if action == "deregister" {
		if err := r.Deregister(ctx); err != nil {
			return err
		}
		st, err := registry.GetState(ctx, api, addr)
		if err != nil {
			return err
		}
		h := st.Host(key.Public().(ed25519.PublicKey))
		fmt.Fprintf(stdout, "Deregistered; the stake (%s TON) can be withdrawn from %s on: cocoon-host registry withdraw with the same flags\n",
			settle.FormatTON(h.Stake.Uint64()), h.LeavingAt.Add(time.Duration(st.UnstakeDelay)*time.Second).UTC().Format(time.RFC3339))
		return nil
	}
	if err := r.WithdrawStake(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Stake returned to %s\n", w.WalletAddress().String())
	return nil
}

// printRegistry shows a registry's settings, allowlist, pending change and hosts,
// marking the one whose settlement key is self.
func printRegistry(w io.Writer, st *registry.State, self ed25519.PublicKey) {
	fmt.Fprintf(w, "Registry owned by %s: minimum stake %s TON, allowlist changes after %v, stakes return %v after deregistration\n",
		st.Owner.String(), settle.FormatTON(st.MinStake.Uint64()), time.Duration(st.ChangeDelay)*time.Second, time.Duration(st.UnstakeDelay)*time.Second)
	printAllowlist(w, "Allowlist in effect", st.Current)
	if st.Pending != nil {
		printAllowlist(w, "Allowlist from "+st.Pending.ApplyAt.UTC().Format(time.RFC3339), st.Pending.Allowlist)
	}
	fmt.Fprintf(w, "Hosts (%d):\n", len(st.Hosts))
	states := map[registry.HostState]string{registry.HostActive: "active", registry.HostLeaving: "leaving", registry.HostWithdrawn: "withdrawn"}
	for _, h := range st.Hosts {
		mark := ""
		if h.Key.Equal(self) {
			mark = " (this host)"
		}
		fmt.Fprintf(w, "  %x %s %s stake %s TON, seqno %d%s\n", []byte(h.Key), states[h.State], h.Endpoint, settle.FormatTON(h.Stake.Uint64()), h.Seqno, mark)
	}
}

func printAllowlist(w io.Writer, title string, a registry.Allowlist) {
	fmt.Fprintf(w, "%s (%d entries):\n", title, len(a.Entries))
	for _, e := range a.Entries {
		value := fmt.Sprintf("%x", e.Value)
		if e.Kind == registry.KindModel {
			value = fmt.Sprintf("%q", e.Value)
		}
		fmt.Fprintf(w, "  %-14s %s\n", e.Kind, value)
	}
}
