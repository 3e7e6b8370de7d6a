package proxy

import (
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
	// PriceListHash is the source's hash of the host's signed price list. The proxy
	// does not check it: it routes by the price list it fetches from the host itself
	// and verifies against the attested settlement key.
	PriceListHash []byte
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
