package main

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/ton/wallet"
	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/cmd/internal/tonnet"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/registry"
)

func init() {
	register("registry", "this host on the market registry: status, deregister, withdraw the stake", registryCommand)
}

const registryUsage = `registry status|deregister|withdraw [serve's flags: --config FILE --data DIR --registry ADDR --registry-endpoint URL ...]
       cocoon-host registry propose|cancel|apply --registry ADDR --ton-config FILE --owner-seed-file FILE [--allow KIND=VALUE ...]`

// registryCommand reads the registry the serve flags name, or deregisters the host they
// describe (its settlement key, sealed in the data directory, signs), or returns its
// stake to its wallet once the unstake delay is over. Stop serve before deregistering:
// a running host registers itself again. propose, cancel and apply are the owner's
// (ownerCommand).
func registryCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "propose" || args[0] == "cancel" || args[0] == "apply") {
		return ownerCommand(args[0], args[1:], stdout, stderr)
	}
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

// allowFlag collects repeated --allow KIND=VALUE entries.
type allowFlag []registry.Entry

func (a *allowFlag) String() string { return fmt.Sprintf("%d entries", len(*a)) }

func (a *allowFlag) Set(s string) error {
	e, err := parseAllowEntry(s)
	if err != nil {
		return err
	}
	*a = append(*a, e)
	return nil
}

// parseAllowEntry reads KIND=VALUE: the value in hex for the hashes and registers, a
// decimal number for abi-version, the event's text for model.
func parseAllowEntry(s string) (registry.Entry, error) {
	name, value, ok := strings.Cut(s, "=")
	kind, known := registry.KindByName(name)
	if !ok || !known {
		return registry.Entry{}, fmt.Errorf("%q: want KIND=VALUE with KIND one of host-binary, abi-version, sandbox-policy, model, mrtd, rtmr0, rtmr1, rtmr2", s)
	}
	var raw []byte
	switch kind {
	case registry.KindModel:
		raw = []byte(value)
	case registry.KindABIVersion:
		v, err := strconv.ParseUint(value, 10, 32)
		if err != nil {
			return registry.Entry{}, fmt.Errorf("%q: abi-version is a decimal number", s)
		}
		raw = binary.BigEndian.AppendUint32(nil, uint32(v))
	default:
		b, err := hex.DecodeString(value)
		if err != nil {
			return registry.Entry{}, fmt.Errorf("%q: %s is hex", s, name)
		}
		raw = b
	}
	e := registry.Entry{Kind: kind, Value: raw}
	if _, err := (registry.Allowlist{Entries: []registry.Entry{e}}).Cell(); err != nil {
		return registry.Entry{}, fmt.Errorf("%q: %w", s, err)
	}
	return e, nil
}

// ownerCommand sends the registry owner's operations from the owner's wallet: propose
// (the --allow entries become the allowlist after the registry's delay, replacing any
// proposal waiting), cancel (drop the waiting proposal) and apply (record a due one;
// anyone may, the owner's wallet is just the one at hand). It prints the allowlist in
// effect and the change waiting afterwards.
func ownerCommand(action string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("registry "+action+" --registry ADDR --ton-config FILE --owner-seed-file FILE [--ton-network mainnet|testnet] [--allow KIND=VALUE ...]", stderr)
	var rc registryConfig
	var bc billingConfig
	var seedFile string
	var allow allowFlag
	fs.StringVar(&rc.Registry, "registry", "", "the registry's address")
	fs.StringVar(&bc.TONConfig, "ton-config", "", "TON global config file (liteservers)")
	fs.StringVar(&bc.TONNetwork, "ton-network", "mainnet", "mainnet or testnet: the owner wallet's network")
	fs.StringVar(&seedFile, "owner-seed-file", "", "file holding the 24-word seed of the owner's wallet (V5R1)")
	fs.Var(&allow, "allow", "propose: an entry of the new allowlist, KIND=VALUE (host-binary=HEX, abi-version=N, sandbox-policy=HEX, model=TEXT, mrtd=HEX, rtmr0..2=HEX); repeat for each, the list replaces the current one")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case rc.Registry == "" || bc.TONConfig == "" || seedFile == "":
		return cli.UsageError("registry " + action + " needs --registry, --ton-config and --owner-seed-file")
	case action == "propose" && len(allow) == 0:
		return cli.UsageError("registry propose needs the new allowlist's entries: --allow KIND=VALUE, repeated")
	case action != "propose" && len(allow) > 0:
		return cli.UsageError("--allow goes with propose")
	}
	if _, err := address.ParseAddr(rc.Registry); err != nil {
		return cli.UsageError(fmt.Sprintf("--registry %q: not a TON address", rc.Registry))
	}
	words, err := readSecret(seedFile)
	if err != nil {
		return fmt.Errorf("--owner-seed-file: %w", err)
	}
	key, err := tonnet.SeedKey(strings.Fields(words))
	if err != nil {
		return errors.New("--owner-seed-file: not a valid TON wallet seed") // the seed stays out of errors
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	api, closeTON, err := dialTON(ctx, &serveConfig{billingConfig: bc})
	if err != nil {
		return err
	}
	defer closeTON()
	network := int32(wallet.MainnetGlobalID)
	if bc.TONNetwork == "testnet" {
		network = wallet.TestnetGlobalID
	}
	w, err := wallet.FromPrivateKey(api, key, wallet.ConfigV5R1Final{NetworkGlobalID: network})
	if err != nil {
		return err
	}
	addr := rc.registryAddr()
	st, err := registry.GetState(ctx, api, addr)
	if err != nil {
		return err
	}
	if action != "apply" && st.Owner.StringRaw() != w.WalletAddress().StringRaw() {
		return fmt.Errorf("the registry's owner is %s, not the wallet of --owner-seed-file (%s)", st.Owner.String(), w.WalletAddress().String())
	}
	// A fresh query id: the registry's transaction is found by the body's hash.
	queryID := uint64(time.Now().UnixNano())
	var body *cell.Cell
	switch action {
	case "propose":
		if body, err = registry.ProposeAllowlistBody(registry.Allowlist{Entries: allow}, queryID); err != nil {
			return err
		}
	case "cancel":
		body = registry.CancelAllowlistBody(queryID)
	default:
		body = registry.ApplyAllowlistBody(queryID)
	}
	if err := registry.Send(ctx, api, w, addr, registry.OpValue, body, 2*time.Minute); err != nil {
		return err
	}
	if st, err = registry.GetState(ctx, api, addr); err != nil {
		return err
	}
	printAllowlist(stdout, "Allowlist in effect", st.Current)
	if st.Pending != nil {
		printAllowlist(stdout, "Allowlist from "+st.Pending.ApplyAt.UTC().Format(time.RFC3339), st.Pending.Allowlist)
	}
	return nil
}
