package proxy

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"syscall"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/registry"
	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/ton"
)

// Registry is a Source of the hosts registered on a registry contract (settle/REGISTRY.md):
// every active record, with the settlement key, price-list hash and boot-evidence hash
// it names and the allowlist in effect, so that the proxy routes only to hosts that
// pass the registry's "Client checks". Each Hosts call reads the registry's whole
// state (registry.Hosts: six liteserver queries), once per health interval. It fails
// when the chain does not answer or the account is not a registry whose address its
// settings give (registry.ErrNotDeployed, ErrWrongCode, ErrWrongAddress); the proxy
// then keeps the hosts it has.
type Registry struct {
	api  ton.APIClientWrapped
	addr *address.Address
}

// NewRegistry returns the Source of the registry at addr, read through api.
func NewRegistry(api ton.APIClientWrapped, addr *address.Address) *Registry {
	return &Registry{api: api, addr: addr}
}

// Hosts lists the registry's active hosts, in the registry's order (by settlement key).
func (r *Registry) Hosts(ctx context.Context) ([]Host, error) {
	records, allow, err := registry.Hosts(ctx, r.api, r.addr)
	if err != nil {
		return nil, err
	}
	hosts := make([]Host, len(records))
	for i, h := range records {
		hosts[i] = Host{URL: h.Endpoint, SettlementKey: h.Key, PriceListHash: h.PriceHash[:],
			Record: &Record{EvidenceHash: h.EvidenceHash, Allowlist: allow}}
	}
	return hosts, nil
}

// Record is what a registry says of a host beyond its key and price-list hash: the hash
// of the boot evidence it registered with, and the allowlist its measurements must
// pass.
type Record struct {
	// EvidenceHash is registry.EvidenceHash of the host's boot quote.
	EvidenceHash [32]byte
	// Allowlist is the registry's allowlist in effect when the host was listed.
	Allowlist registry.Allowlist
}

// equal reports whether r and o say the same (both nil included).
func (r *Record) equal(o *Record) bool {
	if r == nil || o == nil {
		return r == o
	}
	return r.EvidenceHash == o.EvidenceHash && slices.EqualFunc(r.Allowlist.Entries, o.Allowlist.Entries,
		func(a, b registry.Entry) bool { return a.Kind == b.Kind && bytes.Equal(a.Value, b.Value) })
}

// check returns the checks of REGISTRY.md "Client checks" 2 and 3 that the host's boot
// evidence fails, already verified as boot and its event log parsed as events: its
// quote must be the one the record registered, and its measurements (the event log's
// host-binary, abi-version, sandbox-policy and model, the quote's MRTD and RTMR0-2)
// must pass the allowlist. A nil record checks nothing. Cost: a sha256 of the quote
// and a parse of it.
func (r *Record) check(boot *attest.Evidence, events []attest.Event) []string {
	if r == nil {
		return nil
	}
	if got := registry.EvidenceHash(boot.Quote); got != r.EvidenceHash {
		// A restarted host has a new quote until its new registration lands.
		return []string{fmt.Sprintf("registry: its boot quote hashes to %x, the registry's record names %x (another boot, or not yet registered again)", got, r.EvidenceHash)}
	}
	q, err := attest.ParseQuote(boot.Quote) // it verified, so it parses
	if err != nil {
		return []string{"registry: its boot quote: " + err.Error()}
	}
	m := registry.Measurements{registry.KindMRTD: q.MRTD[:], registry.KindRTMR0: q.RTMRs[0][:],
		registry.KindRTMR1: q.RTMRs[1][:], registry.KindRTMR2: q.RTMRs[2][:]}
	for _, e := range events {
		if k, ok := registry.KindByName(string(e.Type)); ok && k <= registry.KindModel {
			m[k] = e.Data
		}
	}
	if err := r.Allowlist.Check(m); err != nil {
		return []string{err.Error()} // "registry: measurement not on the allowlist: ..."
	}
	return nil
}

// checkPriceHash checks the host's price list (nil: it publishes none), verified
// against its settlement key, against the hash its source names (REGISTRY.md "Client
// checks" 4): a registered host routes at the prices it registered, not at others it
// publishes later without registering them. A source that names no hash checks nothing.
// A failure wraps errNotVerified.
func (u *upstream) checkPriceHash(l *settle.PriceList) error {
	want := u.info.PriceListHash
	switch {
	case want == nil:
		return nil
	case l == nil:
		return fmt.Errorf("the host at %s %w: the host list names its price list, and it publishes none", u.info.URL, errNotVerified)
	}
	if got := registry.PriceListHash(*l); !bytes.Equal(want, got[:]) {
		return fmt.Errorf("the host at %s %w: its price list hashes to %x, the host list names %x (prices changed and not registered yet)", u.info.URL, errNotVerified, got, want)
	}
	return nil
}

// dialControl vets the connections to the host: refusePrivate for a host a registry
// lists, unless WithPrivateEndpoints; none for a host the caller listed itself.
func (u *upstream) dialControl() func(network, address string, c syscall.RawConn) error {
	if u.info.Record == nil || u.p.cfg.privateEndpoints {
		return nil
	}
	return refusePrivate
}

// evidenceKey is the API key the host's evidence and price requests carry (dial sends it
// over RA-TLS only): none for a registered host, whom anyone with a stake can list and
// whose record and allowlist checks come after the handshake; chat requests seal the key
// to a host that passed them.
func (u *upstream) evidenceKey() string {
	if u.info.Record != nil {
		return ""
	}
	return u.p.cfg.apiKey
}
