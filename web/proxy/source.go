package proxy

import (
	"bytes"
	"context"
	"crypto/ed25519"
)

// A Source lists the hosts the proxy may route to. The proxy asks it at Start and then
// every health interval: a host it stops listing is taken out of routing (requests
// under way finish), a host it starts listing is verified before it is used. A static
// list (StaticHosts) never changes; a registry of hosts on the chain appears and drops
// hosts as they register and leave.
type Source interface {
	// Hosts returns the hosts to route to now. An error keeps the hosts the proxy
	// has; it is logged.
	Hosts(ctx context.Context) ([]Host, error)
}

// Host is one host a Source lists.
type Host struct {
	// URL is the host's base URL, http:// or https://.
	URL string
	// SettlementKey, when set, is the settlement key the source says the host holds
	// (a registry's record of it): the host's boot evidence must measure exactly this
	// key, or the host is refused.
	SettlementKey ed25519.PublicKey
	// PriceListHash, when set, is the source's hash (registry.PriceListHash) of the
	// host's signed price list: the price list the host serves, verified against its
	// attested settlement key, must hash to it, or the host is refused (a host that
	// changes its prices is refused until the source names the new hash).
	PriceListHash []byte
	// Record, when set, is what a registry says of the host: its boot evidence must be
	// the one registered and its measurements must pass the registry's allowlist, or
	// the host is refused (see Registry).
	Record *Record
}

// sameListing reports whether h and o list the same host with the same claims: a host
// whose listing changed (another key, price list, boot or allowlist) is verified anew.
func (h Host) sameListing(o Host) bool {
	return h.URL == o.URL && h.SettlementKey.Equal(o.SettlementKey) &&
		bytes.Equal(h.PriceListHash, o.PriceListHash) && h.Record.equal(o.Record)
}

// StaticHosts is a Source of a fixed list of host URLs.
type StaticHosts []string

// Hosts returns the list.
func (s StaticHosts) Hosts(context.Context) ([]Host, error) {
	hosts := make([]Host, len(s))
	for i, u := range s {
		hosts[i] = Host{URL: u}
	}
	return hosts, nil
}
