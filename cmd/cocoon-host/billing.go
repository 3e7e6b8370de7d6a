package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/ton/wallet"

	"github.com/cocoonhost/cocoon/attest/seal"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/cmd/internal/lifecycle"
	"github.com/cocoonhost/cocoon/cmd/internal/tonnet"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/ledger"
)

// billingConfig is the settlement part of serve's configuration. Billing is on when
// wallet_seed_file is set; ton_config and prices are then required.
type billingConfig struct {
	// WalletSeedFile holds the 24 words of the host's wallet (V5R1): it pays the gas of
	// the charges and receives the payouts. Never logged, never served.
	WalletSeedFile string `json:"wallet_seed_file"`
	// TONConfig is the TON global config (a liteserver list) for mainnet or testnet,
	// as published at ton.org/global-config.json.
	TONConfig string `json:"ton_config"`
	// TONNetwork is mainnet or testnet: it selects the wallet's network id.
	TONNetwork string        `json:"ton_network"`
	Prices     *pricesConfig `json:"prices"`
	// SettleThreshold commits an account's charge once this much (nanoTON) is
	// unsettled; SettleMaxDelay once it has waited this long. Defaults 1 TON, 6h.
	SettleThreshold uint64 `json:"settle_threshold"`
	SettleMaxDelay  string `json:"settle_max_delay"`
	// SettleInterval is how often the settler looks at the ledger and the escrows, so
	// also how soon it charges an escrow whose client asked for a withdrawal. Default
	// 1m: each round reads every unsettled escrow from a liteserver.
	SettleInterval string `json:"settle_interval"`
	// APIKeyAccount is the escrow the operator's API key is billed to; without it,
	// the key cannot chat while billing is on.
	APIKeyAccount string `json:"api_key_account"`
}

// priceTableConfig is one price table, nanoTON per million tokens (prompt,
// completion) or microseconds of module compute.
type priceTableConfig struct {
	PromptPerMillion     uint64 `json:"prompt_per_million"`
	CompletionPerMillion uint64 `json:"completion_per_million"`
	ComputePerMillion    uint64 `json:"compute_per_million"`
}

func (t priceTableConfig) table() settle.PriceTable {
	return settle.PriceTable{PromptPerMillion: t.PromptPerMillion, CompletionPerMillion: t.CompletionPerMillion, ComputePerMillion: t.ComputePerMillion}
}

// pricesConfig is the operator's prices and load curve. Its own table (the three
// figures beside models) is the price of every model that models does not name; with
// all three 0 (or absent), a model models does not name is refused (400
// model_not_priced). models gives a model (as requests and manifests name it) a table
// of its own.
type pricesConfig struct {
	priceTableConfig
	Models map[string]priceTableConfig `json:"models"`
	// LoadMinMilli and LoadMaxMilli bound the load coefficient, in thousandths;
	// defaults 500 and 2000.
	LoadMinMilli uint64 `json:"load_min_milli"`
	LoadMaxMilli uint64 `json:"load_max_milli"`
}

// prices are the configured tables: a default when any of the top-level figures is
// set, and one per model named (NewPricer sorts and validates them).
func (c *pricesConfig) prices() settle.Prices {
	var p settle.Prices
	if c.priceTableConfig != (priceTableConfig{}) {
		t := c.table()
		p.Default = &t
	}
	for model, t := range c.Models {
		p.Models = append(p.Models, settle.ModelPrice{Model: model, Prices: t.table()})
	}
	return p
}

// ledgerFile is the ledger in the data directory.
const ledgerFile = "ledger.db"

// escrowTTL is how long an escrow's state is cached between chain reads.
const escrowTTL = 10 * time.Second

// idempotencyWindow is how long the ledger remembers request hashes and idempotency
// keys: a retry within it gets the first answer. Replays of older signed requests are
// refused by their timestamp (settle.RequestWindow) instead.
const idempotencyWindow = 24 * time.Hour

// pruneEvery is how often the ledger forgets what idempotencyWindow no longer covers.
const pruneEvery = time.Hour

// dialTON connects to the TON network of cfg; stop closes the connections. Tests
// replace it with an emulated chain.
var dialTON = func(ctx context.Context, cfg *serveConfig) (api ton.APIClientWrapped, stop func(), err error) {
	api, stop, err = tonnet.Dial(ctx, cfg.TONConfig)
	if err != nil {
		return nil, nil, fmt.Errorf("ton_config: %w", err)
	}
	return api, stop, nil
}

// settlement is what serve runs for settlement.
type settlement struct {
	service *billing.Service
	settler *billing.Settler
	ledger  *ledger.Ledger
	key     ed25519.PrivateKey
	// api and wallet are the chain connection and the host's wallet, which the
	// registrar (register.go) shares.
	api    ton.APIClientWrapped
	wallet *wallet.Wallet
}

// check validates the settlement settings.
func (c *billingConfig) check() error {
	if c.WalletSeedFile == "" {
		if c.TONConfig != "" || c.Prices != nil || c.APIKeyAccount != "" {
			return cli.UsageError("ton_config, prices and api_key_account need wallet_seed_file: billing is off without a wallet")
		}
		return nil
	}
	switch {
	case c.TONConfig == "":
		return cli.UsageError("billing needs ton_config, the TON global config file")
	case c.Prices == nil:
		return cli.UsageError("billing needs prices in the --config file")
	case c.TONNetwork != "mainnet" && c.TONNetwork != "testnet":
		return cli.UsageError(fmt.Sprintf("ton_network %q: must be mainnet or testnet", c.TONNetwork))
	}
	for _, d := range []struct{ name, value string }{{"settle_max_delay", c.SettleMaxDelay}, {"settle_interval", c.SettleInterval}} {
		if d.value == "" {
			continue
		}
		if v, err := time.ParseDuration(d.value); err != nil || v <= 0 {
			return cli.UsageError(fmt.Sprintf("%s %q: want a positive duration, such as 1m", d.name, d.value))
		}
	}
	return nil
}

// startBilling opens the chain connection, the host's wallet and the ledger
// (authenticated under a key sealer derives), which it gives parts to close, and returns
// the service and settler (which runServe starts). The wallet's seed stays in this
// function.
func startBilling(ctx context.Context, cfg *serveConfig, key ed25519.PrivateKey, sealer *seal.Sealer, log *slog.Logger, parts *lifecycle.Owner) (*settlement, error) {
	words, err := readSecret(cfg.WalletSeedFile)
	if err != nil {
		return nil, fmt.Errorf("wallet_seed_file: %w", err)
	}
	api, stopTON, err := dialTON(ctx, cfg)
	if err != nil {
		return nil, err
	}
	parts.Add("TON connections", func() error { stopTON(); return nil })
	network := int32(wallet.MainnetGlobalID)
	if cfg.TONNetwork == "testnet" {
		network = wallet.TestnetGlobalID
	}
	w, err := wallet.FromSeedWithOptions(api, strings.Fields(words), wallet.ConfigV5R1Final{NetworkGlobalID: network})
	if err != nil {
		return nil, errors.New("wallet_seed_file: not a valid TON wallet seed") // the seed stays out of errors
	}
	curve := billing.DefaultLoadCurve
	if p := cfg.Prices; p.LoadMinMilli != 0 || p.LoadMaxMilli != 0 {
		curve.MinMilli, curve.MaxMilli = p.LoadMinMilli, p.LoadMaxMilli
	}
	pricer, err := billing.NewPricer(cfg.Prices.prices(), curve)
	if err != nil {
		return nil, err
	}
	l, err := openLedger(sealer, cfg.Data, key.Public().(ed25519.PublicKey), ledger.WithLogger(log))
	if err != nil {
		return nil, err
	}
	parts.Add("ledger", l.Close)
	maxDelay, _ := time.ParseDuration(cfg.SettleMaxDelay) // checked
	interval, _ := time.ParseDuration(cfg.SettleInterval) // checked
	metrics := billing.NewMetrics()
	escrows := billing.NewChainEscrows(api, escrowTTL)
	settler, err := billing.NewSettler(billing.SettlerConfig{Store: l, API: api, Wallet: w, Key: key,
		Threshold: cfg.SettleThreshold, MaxDelay: maxDelay, Interval: interval, Logger: log.With("component", "settler"), Metrics: metrics,
		Escrows: escrows})
	if err != nil {
		return nil, err
	}
	service, err := billing.NewService(billing.Config{Store: sealedAnswers{l, sealer}, Pricer: pricer, Escrows: escrows,
		Key: key, HostAddr: w.WalletAddress().StringRaw(), ComputeReserve: settle.ComputeBound, Metrics: metrics})
	if err != nil {
		return nil, err
	}
	log.Info("billing", "wallet", w.WalletAddress().String(), "settlement_key", hex.EncodeToString(key.Public().(ed25519.PublicKey)), "network", cfg.TONNetwork)
	return &settlement{service: service, settler: settler, ledger: l, key: key, api: api, wallet: w}, nil
}

// prune forgets, every pruneEvery until ctx is done, the request hashes and idempotency
// records older than idempotencyWindow, so that the ledger grows with receipts only. It
// returns ctx's error once its last prune has ended.
func (b *settlement) prune(ctx context.Context, log *slog.Logger) error {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		if err := b.ledger.Prune(ctx, time.Now().Add(-idempotencyWindow)); err != nil && ctx.Err() == nil {
			log.Warn("ledger prune failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// print tells the operator where clients pay.
func (b *settlement) print(stdout io.Writer) {
	l := b.service.PriceList()
	fmt.Fprintf(stdout, "Billing: escrows pay wallet %s; settlement key %x\n", l.Wallet, l.HostKey)
}
