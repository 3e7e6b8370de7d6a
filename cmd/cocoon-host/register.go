package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/url"

	"github.com/xssnick/tonutils-go/address"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/cmd/internal/cli"
	"github.com/cocoonhost/cocoon/cmd/internal/lifecycle"
	"github.com/cocoonhost/cocoon/cmd/internal/tonnet"
	"github.com/cocoonhost/cocoon/settle/registry"
)

// registryConfig is the market part of serve's configuration: the registry the host
// registers itself on (settle/REGISTRY.md). It needs billing, whose wallet pays the stake
// and whose settlement key signs the registration.
type registryConfig struct {
	// Registry is the registry contract's address; empty: the host registers nowhere.
	Registry string `json:"registry"`
	// RegistryEndpoint is the base URL clients reach this host at, as registered.
	RegistryEndpoint string `json:"registry_endpoint"`
	// RegistryStake is the stake in TON the host keeps on the registry; default (empty)
	// the registry's minimum.
	RegistryStake string `json:"registry_stake"`
	// RegistryRequired makes a failed first registration stop the host; by default the
	// host serves anyway and keeps retrying.
	RegistryRequired bool `json:"registry_required"`
}

// check validates the registry settings; billing says whether billing is configured.
func (c *registryConfig) check(billing bool) error {
	if c.Registry == "" {
		if c.RegistryEndpoint != "" || c.RegistryStake != "" || c.RegistryRequired {
			return cli.UsageError("registry_endpoint, registry_stake and registry_required need --registry, the registry's address")
		}
		return nil
	}
	if !billing {
		return cli.UsageError("--registry needs billing (wallet_seed_file): the wallet pays the stake and the settlement key signs the registration")
	}
	if _, err := address.ParseAddr(c.Registry); err != nil {
		if _, err := address.ParseRawAddr(c.Registry); err != nil {
			return cli.UsageError(fmt.Sprintf("--registry %q: not a TON address", c.Registry))
		}
	}
	u, err := url.Parse(c.RegistryEndpoint)
	if c.RegistryEndpoint == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return cli.UsageError(fmt.Sprintf("--registry-endpoint %q: want the URL clients reach this host at, such as https://host.example:8443", c.RegistryEndpoint))
	}
	if len(c.RegistryEndpoint) > registry.MaxEndpointBytes {
		return cli.UsageError(fmt.Sprintf("--registry-endpoint is %d bytes; the registry holds %d at most", len(c.RegistryEndpoint), registry.MaxEndpointBytes))
	}
	if c.RegistryStake != "" {
		if _, err := tonnet.ParseTON(c.RegistryStake); err != nil {
			return cli.UsageError(fmt.Sprintf("registry_stake %q: want an amount of TON, such as 10", c.RegistryStake))
		}
	}
	return nil
}

// registryAddr parses the checked address, user-friendly or raw.
func (c *registryConfig) registryAddr() *address.Address {
	if a, err := address.ParseAddr(c.Registry); err == nil {
		return a
	}
	return address.MustParseRawAddr(c.Registry)
}

// startRegistrar registers the host on cfg's registry with what it publishes now (its
// endpoint, the hash of its price list and of its boot quote), at once and then whenever
// the record on the chain differs (a changed price list, a restart's new evidence, a
// record gone). Failures are logged and retried with backoff; with registry_required,
// a first registration that fails stops the host with its error instead. The
// registrar is owner's part, stopped with it.
func startRegistrar(ctx context.Context, cfg *serveConfig, bill *settlement, host *attest.Host, owner *lifecycle.Owner, stdout io.Writer, log *slog.Logger) error {
	var stake *big.Int
	if cfg.RegistryStake != "" {
		nano, _ := tonnet.ParseTON(cfg.RegistryStake) // checked
		stake = new(big.Int).SetUint64(nano)
	}
	addr := cfg.registryAddr()
	r, err := registry.NewRegistrar(registry.RegistrarConfig{API: bill.api, Wallet: bill.wallet, Key: bill.key,
		Registry: addr, Stake: stake, Logger: log.With("component", "registrar")})
	if err != nil {
		return err
	}
	evidence := registry.EvidenceHash(host.BootEvidence().Quote)
	current := func() registry.Registration {
		return registry.Registration{Endpoint: cfg.RegistryEndpoint,
			PriceHash: registry.PriceListHash(bill.service.PriceList()), EvidenceHash: evidence}
	}
	fmt.Fprintf(stdout, "Registry: %s, as %s\n", addr.String(), cfg.RegistryEndpoint)
	if cfg.RegistryRequired {
		if _, err := r.Sync(ctx, current()); err != nil {
			return fmt.Errorf("registry_required: %w", err)
		}
	}
	owner.Go("registrar", func(ctx context.Context) error { return r.Run(ctx, current) })
	return nil
}
