package proxy

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/web/proxy/proxytest"
)

// TestNonPublic: the address kinds a registered endpoint must not be reached at, IPv4
// inside IPv6 judged as what it reaches, and public addresses let through.
func TestNonPublic(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"::1", "loopback"},
		{"10.1.2.3", "private"},
		{"172.16.0.1", "private"},
		{"192.168.1.1", "private"},
		{"fd00::1", "private"},
		{"169.254.169.254", "link-local"},
		{"fe80::1", "link-local"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"0.1.2.3", "unspecified (this network)"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"ff02::1", "multicast"},
		{"100.64.0.1", "shared (carrier-grade NAT)"},
		{"255.255.255.255", "reserved (and broadcast)"},
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:169.254.169.254", "link-local"},
		{"64:ff9b::a9fe:a9fe", "link-local"}, // NAT64 of 169.254.169.254
		{"2002:7f00:1::", "loopback"},        // 6to4 of 127.0.0.1
		{"::7f00:1", "reserved (IPv4-compatible)"},
		{"fec0::1", "site-local"},
		{"8.8.8.8", ""},
		{"2001:4860:4860::8888", ""},
		{"64:ff9b::808:808", ""}, // NAT64 of 8.8.8.8
	} {
		if got := nonPublic(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("nonPublic(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

// TestRefusePrivate: the dial control refuses by the address dialed (zone and all) and
// passes a public one.
func TestRefusePrivate(t *testing.T) {
	for _, tt := range []struct{ address, want string }{
		{"127.0.0.1:8080", "resolves to 127.0.0.1, a loopback address"},
		{"169.254.169.254:80", "resolves to 169.254.169.254, a link-local address"},
		{"[fe80::1%eth0]:443", "a link-local address"},
		{"not an address", "cannot be checked as public"},
		{"93.184.216.34:443", ""},
	} {
		err := refusePrivate("tcp", tt.address, nil)
		if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("refusePrivate(%q) = %v, want %q", tt.address, err, tt.want)
		}
	}
}

// TestRegistryRefusesPrivateEndpoints performs the attack of a registration whose
// endpoint is the proxy's own machine or network: hosts registered as
// http://127.0.0.1:PORT, as http://localhost:PORT (a name, resolved to loopback only
// when the proxy connects, as a DNS answer that changes after a check would be) and as
// http://169.254.169.254/ (a cloud's metadata service). Without WithPrivateEndpoints
// each is refused with its reason logged, and no connection reaches the first two; with
// it, the two on this machine are verified and serve. (The metadata address is not
// dialed with the filter off: on this machine something answers there. Its admission
// with the option is TestPrivateEndpointsOption's.)
func TestRegistryRefusesPrivateEndpoints(t *testing.T) {
	m := proxytest.NewMarket(t)
	byIP := m.NewHost(100_000_000, proxytest.MarketModel)
	byName := m.NewHost(200_000_000, proxytest.MarketModel)
	metadata := m.NewHost(50_000_000, proxytest.MarketModel)
	m.Register(byIP, byIP.Registration())
	named := byName.Registration()
	named.Endpoint = strings.Replace(byName.URL, "127.0.0.1", "localhost", 1)
	m.Register(byName, named)
	meta := metadata.Registration()
	meta.Endpoint = "http://169.254.169.254/"
	m.Register(metadata, meta)
	roots := []*x509.Certificate{byIP.RootCert(t), byName.RootCert(t), metadata.RootCert(t)}

	log := &syncBuffer{}
	p, err := New(WithSource(NewRegistry(m.Chain, m.Addr)), WithPipeline(byIP.ID), WithAPIKey(proxytest.APIKey),
		WithSimRoots(roots...), WithLog(log), fastHealth)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background(), io.Discard); err == nil {
		p.Close()
		t.Fatalf("the proxy started on hosts at private addresses; log:\n%s", log)
	}
	for _, want := range []string{
		"host " + byIP.URL + ": new -> refused: refusing to proxy to " + byIP.URL + ", which does not verify: its endpoint resolves to 127.0.0.1, a loopback address",
		"host " + named.Endpoint + ": new -> refused: refusing to proxy to " + named.Endpoint + ", which does not verify: its endpoint resolves to ",
		"host http://169.254.169.254/: new -> refused: refusing to proxy to http://169.254.169.254/, which does not verify: its endpoint resolves to 169.254.169.254, a link-local address",
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	if !strings.Contains(log.String(), "--allow-private-endpoints") {
		t.Errorf("the log does not say how to allow private endpoints:\n%s", log)
	}
	for _, h := range []*proxytest.BillingHost{byIP, byName} {
		if n := h.Asked(""); n != 0 {
			t.Errorf("the host at %s was reached %d times through a refused endpoint", h.URL, n)
		}
	}

	// With the option, the registry's hosts on this machine are used. The metadata
	// host stays out of this phase's listing, so that nothing dials it.
	p, err = New(WithSource(withoutURL{NewRegistry(m.Chain, m.Addr), meta.Endpoint}), WithPipeline(byIP.ID), WithAPIKey(proxytest.APIKey),
		WithSimRoots(roots...), WithLog(log), fastHealth, WithPrivateEndpoints())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background(), io.Discard); err != nil {
		t.Fatalf("with private endpoints allowed: %v", err)
	}
	defer p.Close()
	for _, s := range p.Hosts() {
		if s.State != "ready" {
			t.Errorf("with private endpoints allowed, %s is %q", s.URL, s.State)
		}
	}
	if got := postChatHandler(t, p, chatBody); got != byIP.URL {
		t.Errorf("answered by %s, want the cheapest, %s", got, byIP.URL)
	}
}

// TestPrivateEndpointsOption: the filter applies to registered hosts only, and
// WithPrivateEndpoints lifts it for them, the metadata address included.
func TestPrivateEndpointsOption(t *testing.T) {
	for _, tt := range []struct {
		name    string
		opts    []Option
		host    Host
		refuses bool
	}{
		{"registered", nil, Host{URL: "http://169.254.169.254/", Record: &Record{}}, true},
		{"registered, allowed", []Option{WithPrivateEndpoints()}, Host{URL: "http://169.254.169.254/", Record: &Record{}}, false},
		{"listed by the caller", nil, Host{URL: "http://169.254.169.254/"}, false},
	} {
		p, err := New(append([]Option{WithHosts("http://a"), WithPipeline(strings.Repeat("ab", 32))}, tt.opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		u := &upstream{p: p, info: tt.host}
		control := u.dialControl()
		var private *privateEndpointError
		if refused := control != nil && errors.As(control("tcp", "169.254.169.254:80", nil), &private); refused != tt.refuses {
			t.Errorf("%s: the metadata address refused: %v, want %v", tt.name, refused, tt.refuses)
		}
	}
}

// withoutURL is a Source's hosts but one.
type withoutURL struct {
	Source
	url string
}

func (w withoutURL) Hosts(ctx context.Context) ([]Host, error) {
	hosts, err := w.Source.Hosts(ctx)
	out := hosts[:0]
	for _, h := range hosts {
		if h.URL != w.url {
			out = append(out, h)
		}
	}
	return out, err
}
