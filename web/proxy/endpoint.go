package proxy

import (
	"fmt"
	"net/netip"
	"syscall"
)

// privateEndpointError refuses a connection to a registered host at an address that is
// not public (refusePrivate).
type privateEndpointError struct {
	addr netip.Addr
	kind string
}

func (e *privateEndpointError) Error() string {
	return fmt.Sprintf("its endpoint resolves to %s, a %s address: a registered endpoint must be public (cocoon proxy --allow-private-endpoints reaches it, for local networks)", e.addr, e.kind)
}

// refusePrivate is the dial control (net.Dialer.Control) of the connections to a host a
// registry lists: whoever registers chooses the endpoint, and stake alone is what that
// takes, so without it a registration could make every proxy reading the registry
// reach a service on its own machine or network (a cloud's metadata service at
// 169.254.169.254, an admin port on 127.0.0.1) with requests it does not expect. It
// runs on the address actually dialed, after the name was resolved, for every
// connection: a DNS answer that changes after an earlier check is checked again. It
// fails with a *privateEndpointError when nonPublic names the address.
func refusePrivate(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("the address dialed, %q, cannot be checked as public: %w", address, err)
	}
	if kind := nonPublic(ap.Addr()); kind != "" {
		return &privateEndpointError{addr: ap.Addr(), kind: kind}
	}
	return nil
}

// nonPublic names the kind of a that a registered endpoint must not be reached at
// (loopback, private, link-local, unspecified, multicast, and the other ranges no
// public host is at), or "" for a public address. An IPv4 address inside IPv6 (mapped,
// NAT64's 64:ff9b::/96, 6to4's 2002::/16) is judged as the IPv4 address it reaches.
func nonPublic(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return "invalid"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.IsPrivate():
		return "private"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsMulticast():
		return "multicast"
	}
	for _, r := range nonPublicRanges {
		if r.prefix.Contains(a) {
			return r.kind
		}
	}
	b := a.As16()
	switch {
	case nat64.Contains(a):
		return nonPublic(netip.AddrFrom4([4]byte(b[12:16])))
	case sixToFour.Contains(a):
		return nonPublic(netip.AddrFrom4([4]byte(b[2:6])))
	}
	return ""
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// nonPublicRanges are the ranges no public host is at beyond those netip names
// (RFC 6890's special-purpose registries).
var nonPublicRanges = []struct {
	prefix netip.Prefix
	kind   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified (this network)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (carrier-grade NAT)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "reserved (IETF protocol assignments)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "reserved (benchmarking)"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved (and broadcast)"},
	{netip.MustParsePrefix("::/96"), "reserved (IPv4-compatible)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "private (local-use NAT64)"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
}
