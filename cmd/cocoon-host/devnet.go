package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/ton/wallet"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/cmd/internal/lifecycle"
	"github.com/cocoonhost/cocoon/cmd/internal/tonnet"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/registry"
	"github.com/cocoonhost/cocoon/settle/tonemu"
)

func init() {
	register("devnet", "run a local TON network for development: the escrow and a market registry on the TVM emulator, over the liteserver protocol", devnet)
}

// The files devnet keeps in its data directory. The chain itself lives in memory: each
// start is a fresh chain that funds the same wallets again.
const (
	devnetTONConfig  = "ton-config.json"     // the global config listing the liteserver
	devnetServerKey  = "liteserver.key"      // the liteserver's ed25519 seed (hex), so the config stays valid
	devnetHostSeed   = "host.seed"           // the host's wallet seed
	devnetClientSeed = "client.seed"         // the client's wallet seed
	devnetOwnerSeed  = "registry-owner.seed" // the registry owner's wallet seed
	devnetHostConfig = "host-config.json"
	// devnetRegistryAddr holds the registry's address (the chain is new at each start,
	// the address the same: it follows from the owner and the allowlist).
	devnetRegistryAddr = "registry.address"
)

// The devnet registry's settings: a small stake, and delays of an hour, which the admin
// API's advance shows in seconds.
const (
	devnetMinStake     = 1e9 // nanoTON
	devnetChangeDelay  = 3600
	devnetUnstakeDelay = 3600
)

// devnetAheadLimit is how far ahead of the machine's clock the chain's may be moved:
// wallets (tonutils-go) sign their messages valid until the machine's time plus three
// minutes, and a chain whose clock is past that refuses every wallet message as expired.
const devnetAheadLimit = time.Minute

// devnetPrices are the host config's prices, nanoTON per million: 20 tokens of
// completion cost 0.04 TON on an idle host (load ×0.5), more than the gas of the charge
// that settles them, so that the host wallet's balance shows its earnings.
var devnetPrices = pricesConfig{priceTableConfig: priceTableConfig{PromptPerMillion: 100e9, CompletionPerMillion: 4000e9, ComputePerMillion: 1e6}}

// devnetSettleInterval is the devnet host's settlement round: on a chain whose blocks
// come at once, a withdrawal request is charged within seconds rather than a minute.
const devnetSettleInterval = "2s"

const devnetUsage = `devnet --data DIR [--listen ADDR] [--admin ADDR] [--clock-behind DURATION] [--fund TON]

Runs a local TON network for development: the real escrow contract (and any contract
sent to it) executed by the TVM emulator, served over the real liteserver protocol on
loopback, with Merkle proofs the clients check as on testnet. It deploys a market
registry (settle/REGISTRY.md) owned by a devnet wallet, whose allowlist admits this
build of cocoon-host with the default model, with a 1 TON minimum stake and delays of an
hour. It writes into DIR:

  ton-config.json      the global config that lists its liteserver (ton_config, --ton-config)
  host.seed            a funded wallet for the host (wallet_seed_file)
  client.seed          a funded wallet for the client (cocoon --seed-file)
  registry-owner.seed  the registry owner's funded wallet
  registry.address     the registry's address (serve --registry)
  host-config.json     a cocoon-host serve --config with billing on this network

The chain lives in memory: every start is a new chain that funds the same wallets again.
Its clock runs with the machine's but starts --clock-behind it, so that it can be moved
forward to show an escrow's withdrawal timeout; it can never pass the machine's clock by
more than a minute, since wallets sign messages valid for three minutes of the machine's
time. The admin API on --admin (loopback only):

  POST /v1/advance?by=25h          move the chain's clock forward
  POST /v1/fund?address=A&ton=N    credit N TON to an address
  GET  /v1/time                    the chain's clock, unix seconds

What differs from testnet: one block per message cascade, produced at once, and an
empty one every 5 seconds so that get-methods see time pass (no consensus, no validators,
no shards); blocks hold only what proofs need; nothing is persisted.`

// devnetConfig is devnet's flags.
type devnetConfig struct {
	data, listen, admin string
	behind              time.Duration
	fund                string
}

func devnet(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(devnetUsage, stderr)
	var cfg devnetConfig
	fs.StringVar(&cfg.data, "data", "", "directory for the config, the liteserver key and the wallet seeds")
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:46732", "liteserver address, IPv4 host:port")
	fs.StringVar(&cfg.admin, "admin", "127.0.0.1:46733", "admin API address (loopback)")
	fs.DurationVar(&cfg.behind, "clock-behind", 48*time.Hour, "how far behind the machine's clock the chain's starts: how far it can be advanced")
	fs.StringVar(&cfg.fund, "fund", "1000", "TON credited to each of the host and client wallets")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if cfg.data == "" {
		return cli.UsageError("where? pass --data DIR, the directory for the config and the wallet seeds")
	}
	if cfg.behind < 0 {
		return cli.UsageError("--clock-behind must not be negative")
	}
	fund, err := tonnet.ParseTON(cfg.fund)
	if err != nil || fund == 0 {
		return cli.UsageError(fmt.Sprintf("--fund %q: want an amount of TON, such as 1000", cfg.fund))
	}
	if err := checkLoopback("--admin", cfg.admin); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runDevnet(ctx, cfg, fund, stdout, slog.New(slog.NewTextHandler(stderr, nil)))
}

// checkLoopback refuses an address that is not a loopback IP: the admin API has no
// authentication.
func checkLoopback(flag, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return cli.UsageError(fmt.Sprintf("%s %q: want host:port", flag, addr))
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return cli.UsageError(fmt.Sprintf("%s %q: the admin API has no authentication, so it listens on a loopback address only", flag, addr))
	}
	return nil
}

// runDevnet runs the network until ctx is done. It prints where everything is to
// stdout, never a seed.
func runDevnet(ctx context.Context, cfg devnetConfig, fund uint64, stdout io.Writer, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.data, 0o700); err != nil {
		return err
	}
	serverKey, err := loadOrCreateKey(filepath.Join(cfg.data, devnetServerKey))
	if err != nil {
		return fmt.Errorf("liteserver key: %w", err)
	}
	chain, err := tonemu.New()
	if err != nil {
		return err
	}
	chain.SetNow(time.Now().Add(-cfg.behind))
	chain.FollowWallClock()

	wallets := map[string]*address.Address{}
	for _, name := range []string{devnetHostSeed, devnetClientSeed} {
		addr, err := devnetWallet(filepath.Join(cfg.data, name))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := chain.Fund(addr, new(big.Int).SetUint64(fund)); err != nil {
			return err
		}
		wallets[name] = addr
	}
	ownerKey, err := devnetKey(filepath.Join(cfg.data, devnetOwnerSeed))
	if err != nil {
		return fmt.Errorf("%s: %w", devnetOwnerSeed, err)
	}
	allow, err := localAllowlist()
	if err != nil {
		return err
	}
	registryAddr, registryOwner, err := deployRegistry(ctx, chain, ownerKey, fund, func(owner *address.Address) registry.Params {
		return devnetRegistry(owner, allow)
	})
	if err != nil {
		return err
	}
	global, err := tonemu.GlobalConfig(cfg.listen, serverKey.Public().(ed25519.PublicKey))
	if err != nil {
		return cli.UsageError(fmt.Sprintf("--listen %q: %v", cfg.listen, err))
	}
	configPath, err := filepath.Abs(filepath.Join(cfg.data, devnetTONConfig))
	if err != nil {
		return err
	}
	if err := writeJSON(configPath, global); err != nil {
		return err
	}
	if err := writeHostConfig(cfg.data, configPath); err != nil {
		return err
	}
	// Scripts read the registry's address here; it is also in the output.
	if err := os.WriteFile(filepath.Join(cfg.data, devnetRegistryAddr), []byte(registryAddr.String()+"\n"), 0o600); err != nil {
		return err
	}

	owner := lifecycle.New(log)
	defer owner.Stop()
	srv := tonemu.NewServer(chain, serverKey)
	if err := serveUntilDone(owner, "liteserver", cfg.listen, srv.ListenAndServe, srv.Close); err != nil {
		return err
	}
	owner.Go("block producer", func(ctx context.Context) error { return produceBlocks(ctx, chain, devnetBlockInterval) })
	admin := &http.Server{Addr: cfg.admin, Handler: devnetAdmin(chain), ReadHeaderTimeout: 10 * time.Second}
	if err := serveUntilDone(owner, "admin API", cfg.admin, func(string) error { return admin.ListenAndServe() }, admin.Close); err != nil {
		return err
	}

	fmt.Fprintf(stdout, "TON devnet: liteserver %s, chain time %s (%v behind this machine)\n", cfg.listen,
		chain.Now().UTC().Format(time.RFC3339), cfg.behind)
	fmt.Fprintf(stdout, "  ton_config    %s\n", configPath)
	fmt.Fprintf(stdout, "  host wallet   %s (%s TON), seed in %s\n", wallets[devnetHostSeed].String(), settle.FormatTON(fund), filepath.Join(cfg.data, devnetHostSeed))
	fmt.Fprintf(stdout, "  client wallet %s (%s TON), seed in %s\n", wallets[devnetClientSeed].String(), settle.FormatTON(fund), filepath.Join(cfg.data, devnetClientSeed))
	fmt.Fprintf(stdout, "  registry      %s (owner %s, seed in %s)\n", registryAddr.String(), registryOwner.String(), filepath.Join(cfg.data, devnetOwnerSeed))
	fmt.Fprintf(stdout, "  host config   cocoon-host serve --config %s\n", filepath.Join(cfg.data, devnetHostConfig))
	fmt.Fprintf(stdout, "  advance time  curl -X POST 'http://%s/v1/advance?by=2h'\n", cfg.admin)

	select {
	case <-ctx.Done():
	case <-owner.Failed():
	}
	return errors.Join(owner.Err(), owner.Stop())
}

// devnetBlockInterval is how often the devnet seals an empty block, as validators
// produce blocks while time passes: get-methods run at the newest block's time, and a
// registry's allowlist change or unstake delay would otherwise look pending until the
// next message.
const devnetBlockInterval = 5 * time.Second

// produceBlocks seals an empty block every interval until ctx is done, and returns ctx's
// error.
func produceBlocks(ctx context.Context, chain *tonemu.Chain, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			chain.Tick()
		}
	}
}

// serveUntilDone starts serve(addr) as owner's part name, checking first that addr can
// be listened on, and stops it with stop.
func serveUntilDone(owner *lifecycle.Owner, name, addr string, serve func(string) error, stop func() error) error {
	// liteclient.Server and http.Server.ListenAndServe listen themselves; a failed
	// listen shows here rather than later.
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	l.Close()
	owner.Go(name, func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- serve(addr) }()
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			err := stop()
			<-errc
			return errors.Join(ctx.Err(), err)
		}
	})
	return nil
}

// devnetWallet reads the seed file at path, creating it on the first start, and
// returns its V5R1 wallet's address (mainnet id, as cocoon's --ton-network default).
func devnetWallet(path string) (*address.Address, error) {
	key, err := devnetKey(path)
	if err != nil {
		return nil, err
	}
	return tonnet.WalletAddress(key, wallet.MainnetGlobalID)
}

// devnetKey reads the seed file at path, creating it on the first start, and returns
// its wallet key.
func devnetKey(path string) (ed25519.PrivateKey, error) {
	words, err := readSecret(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return tonnet.CreateSeedFile(path)
	case err == nil:
		return tonnet.SeedKey(strings.Fields(words))
	}
	return nil, err
}

// localAllowlist admits what this machine's host measures with the default model: this
// executable (devnet runs the same binary as serve), this ABI version and sandbox policy,
// and the default model's weights.
func localAllowlist() (registry.Allowlist, error) {
	exe, err := attest.ExecutableSHA256()
	if err != nil {
		return registry.Allowlist{}, fmt.Errorf("measure this executable: %w", err)
	}
	policy := sha256.Sum256(attest.SandboxPolicy())
	return registry.Allowlist{Entries: []registry.Entry{
		{Kind: registry.KindHostBinary, Value: exe[:]},
		{Kind: registry.KindABIVersion, Value: binary.BigEndian.AppendUint32(nil, abi.Version)},
		{Kind: registry.KindSandboxPolicy, Value: policy[:]},
		{Kind: registry.KindModel, Value: []byte("sha256:" + modelFiles[0].sha256)},
	}}, nil
}

// devnetRegistry is a registry with the devnet's settings, allow as its allowlist and
// owner as its owner.
func devnetRegistry(owner *address.Address, allow registry.Allowlist) registry.Params {
	return registry.Params{Owner: owner, MinStake: big.NewInt(devnetMinStake),
		ChangeDelay: devnetChangeDelay, UnstakeDelay: devnetUnstakeDelay, Allowlist: allow}
}

// deployRegistry deploys the registry of params(owner) owned by the wallet of ownerKey,
// which it funds with fund nanoTON; it returns the registry's and the owner's addresses.
func deployRegistry(ctx context.Context, chain *tonemu.Chain, ownerKey ed25519.PrivateKey, fund uint64, params func(owner *address.Address) registry.Params) (addr, owner *address.Address, err error) {
	w, err := chain.NewWallet(ownerKey, fund)
	if err != nil {
		return nil, nil, err
	}
	p := params(w.WalletAddress())
	si, err := p.StateInit()
	if err != nil {
		return nil, nil, err
	}
	if addr, err = p.Address(0); err != nil {
		return nil, nil, err
	}
	if err := tonemu.Send(ctx, w, addr, 1e9, registry.TopUpBody(0), si); err != nil {
		return nil, nil, fmt.Errorf("deploy the registry: %w", err)
	}
	if tx := chain.LastTransaction(addr); tx == nil || !tx.Success {
		return nil, nil, errors.New("deploy the registry: the contract did not run")
	}
	return addr, w.WalletAddress(), nil
}

// loadOrCreateKey reads the ed25519 seed (hex) at path, creating it on the first start.
func loadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	s, err := readSecret(path)
	if errors.Is(err, fs.ErrNotExist) {
		seed := make([]byte, ed25519.SeedSize)
		rand.Read(seed)
		if err := os.WriteFile(path, []byte(hex.EncodeToString(seed)+"\n"), 0o600); err != nil {
			return nil, err
		}
		return ed25519.NewKeyFromSeed(seed), nil
	}
	if err != nil {
		return nil, err
	}
	seed, err := hex.DecodeString(s)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s: want 64 hex digits", path)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// writeHostConfig writes a serve --config for a billing host on the devnet.
func writeHostConfig(dir, tonConfig string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	prices := devnetPrices
	return writeJSON(filepath.Join(dir, devnetHostConfig), map[string]any{
		"wallet_seed_file": filepath.Join(abs, devnetHostSeed),
		"ton_config":       tonConfig,
		"ton_network":      "mainnet",
		"prices":           &prices,
		// The default threshold (1 TON) and delay (6 h), as a host on testnet has: a few
		// chats stay unsettled until their client asks for a withdrawal, which the
		// settler then charges at its next round.
		"settle_interval": devnetSettleInterval,
	})
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}

// devnetAdmin is the admin API: move the clock, fund an address, read the clock.
func devnetAdmin(chain *tonemu.Chain) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/advance", func(w http.ResponseWriter, r *http.Request) {
		by, err := time.ParseDuration(r.URL.Query().Get("by"))
		if err != nil || by <= 0 {
			http.Error(w, "by: want a positive duration, such as 25h", http.StatusBadRequest)
			return
		}
		if limit := time.Now().Add(devnetAheadLimit); chain.Now().Add(by).After(limit) {
			http.Error(w, fmt.Sprintf("the chain's clock may not pass this machine's by more than %v (wallets sign messages valid for 3 minutes of the machine's time): it can be advanced by %v at most; start the devnet with a larger --clock-behind",
				devnetAheadLimit, limit.Sub(chain.Now()).Truncate(time.Second)), http.StatusConflict)
			return
		}
		chain.Advance(by)
		chain.Tick() // get-methods run at the newest block's time
		fmt.Fprintf(w, "chain time %s\n", chain.Now().UTC().Format(time.RFC3339))
	})
	mux.HandleFunc("POST /v1/fund", func(w http.ResponseWriter, r *http.Request) {
		raw, err := settle.ParseAccount(r.URL.Query().Get("address"))
		if err != nil {
			http.Error(w, "address: "+err.Error(), http.StatusBadRequest)
			return
		}
		nano, err := tonnet.ParseTON(r.URL.Query().Get("ton"))
		if err != nil || nano == 0 {
			http.Error(w, "ton: want an amount of TON, such as 10", http.StatusBadRequest)
			return
		}
		if err := chain.Fund(address.MustParseRawAddr(raw), new(big.Int).SetUint64(nano)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "funded %s with %s TON\n", raw, settle.FormatTON(nano))
	})
	mux.HandleFunc("GET /v1/time", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d\n", chain.Now().Unix())
	})
	return mux
}
