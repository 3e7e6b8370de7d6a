package proxy

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/registry"
	"github.com/cocoonhost/cocoon/web/proxy/proxytest"
)

// TestRegistryDiscovery is the acceptance test of issue 14's router over the registry:
// billing hosts registered on a registry (the emulated chain), the proxy with the
// registry as its source. The cheapest host is one whose measurements are not on the
// allowlist (it measures another model), the next cheapest registered a boot quote
// other than the one it serves (a record of another boot), and one changed its prices
// without registering them: each is refused, with its reason logged, and never gets a
// request; requests go to the cheapest verified host; a host that registers later,
// cheaper still, is discovered and takes the requests, and so does the one that
// published unregistered prices once it registers them.
func TestRegistryDiscovery(t *testing.T) {
	m := proxytest.NewMarket(t)
	unlisted := m.NewHost(100_000_000, "sha256:"+strings.Repeat("0e", 32))
	staleBoot := m.NewHost(200_000_000, proxytest.MarketModel)
	cheap := m.NewHost(500_000_000, proxytest.MarketModel)
	dear := m.NewHost(900_000_000, proxytest.MarketModel)
	unregisteredPrices := m.NewHost(300_000_000, proxytest.MarketModel)
	late := m.NewHost(400_000_000, proxytest.MarketModel)

	// The unlisted host is reached through a spy that counts the requests carrying a
	// credential: a host the checks refuse must never see the API key.
	spy := &credentialSpy{}
	spy.Server = httptest.NewServer(spy.forward(t, unlisted.URL))
	t.Cleanup(spy.Close)
	reg := unlisted.Registration()
	reg.Endpoint = spy.URL
	m.Register(unlisted, reg)
	stale := staleBoot.Registration()
	stale.EvidenceHash = registry.EvidenceHash(cheap.Boot.Quote) // another host's boot
	m.Register(staleBoot, stale)
	m.Register(cheap, cheap.Registration())
	m.Register(dear, dear.Registration())
	changed := unregisteredPrices.Registration()
	changed.PriceHash[0] ^= 1 // it registered other prices than it publishes
	m.Register(unregisteredPrices, changed)

	log := &syncBuffer{}
	roots := []*x509.Certificate{}
	for _, h := range []*proxytest.BillingHost{unlisted, staleBoot, cheap, dear, unregisteredPrices, late} {
		roots = append(roots, h.RootCert(t))
	}
	p, err := New(WithSource(NewRegistry(m.Chain, m.Addr)), WithPipeline(cheap.ID), WithAPIKey(proxytest.APIKey),
		WithSimRoots(roots...), WithLog(log), fastHealth, WithPrivateEndpoints()) // the hosts are on 127.0.0.1
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background(), io.Discard); err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	states := func() map[string]string {
		out := map[string]string{}
		for _, s := range p.Hosts() {
			out[s.URL] = s.State
		}
		return out
	}
	for _, u := range []string{spy.URL, staleBoot.URL, unregisteredPrices.URL} {
		if s := states()[u]; s != "refused" {
			t.Errorf("host %s is %q, want refused; log:\n%s", u, s, log)
		}
	}
	for _, want := range []string{
		"host " + spy.URL + ": new -> refused: refusing to proxy to " + spy.URL + ", which does not verify: registry: measurement not on the allowlist: model",
		"host " + staleBoot.URL + ": new -> refused: refusing to proxy to " + staleBoot.URL + ", which does not verify: registry: its boot quote hashes to",
		"host " + unregisteredPrices.URL + ": new -> refused: the host at " + unregisteredPrices.URL + " does not verify: its price list hashes to",
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
	route := func(want *proxytest.BillingHost) {
		t.Helper()
		for range 5 {
			if got := postChatHandler(t, p, chatBody); got != want.URL {
				t.Fatalf("answered by %s, want %s; hosts %v", got, want.URL, states())
			}
		}
	}
	route(cheap)

	// A host registers later, cheaper than every verified one: it is discovered,
	// verified and routed to.
	m.Register(late, late.Registration())
	deadline := time.Now().Add(20 * time.Second)
	for states()[late.URL] != "ready" {
		if time.Now().After(deadline) {
			t.Fatalf("the late host is %q; log:\n%s", states()[late.URL], log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	route(late)

	// The host that published unregistered prices registers them: its listing changed,
	// so it is verified anew, and, the cheapest now, routed to.
	m.Register(unregisteredPrices, unregisteredPrices.Registration())
	deadline = time.Now().Add(20 * time.Second)
	for states()[unregisteredPrices.URL] != "ready" {
		if time.Now().After(deadline) {
			t.Fatalf("the host that registered its prices is %q; log:\n%s", states()[unregisteredPrices.URL], log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	route(unregisteredPrices)
	for _, h := range []*proxytest.BillingHost{unlisted, staleBoot} {
		if n := h.Asked("/chat/completions"); n != 0 {
			t.Errorf("the refused host %s got %d requests", h.URL, n)
		}
	}
	if seen, withKey := spy.counts(); seen == 0 || withKey != 0 {
		t.Errorf("the host not on the allowlist got %d requests, %d of them with the API key", seen, withKey)
	}
}

// TestSameListing: a host listed again with anything changed (key, price-list hash,
// boot, allowlist) is a new listing, verified anew; the same claims are the same host.
func TestSameListing(t *testing.T) {
	allow := registry.Allowlist{Entries: []registry.Entry{{Kind: registry.KindModel, Value: []byte("m")}}}
	base := Host{URL: "http://a", SettlementKey: ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey), PriceListHash: []byte{1},
		Record: &Record{EvidenceHash: [32]byte{2}, Allowlist: allow}}
	for _, tc := range []struct {
		name string
		edit func(*Host)
		same bool
	}{
		{"unchanged", func(*Host) {}, true},
		{"another URL", func(h *Host) { h.URL = "http://b" }, false},
		{"another key", func(h *Host) { h.SettlementKey = make(ed25519.PublicKey, 32) }, false},
		{"new prices", func(h *Host) { h.PriceListHash = []byte{3} }, false},
		{"another boot", func(h *Host) { h.Record = &Record{EvidenceHash: [32]byte{4}, Allowlist: allow} }, false},
		{"allowlist changed", func(h *Host) {
			h.Record = &Record{EvidenceHash: [32]byte{2}, Allowlist: registry.Allowlist{Entries: []registry.Entry{{Kind: registry.KindModel, Value: []byte("n")}}}}
		}, false},
		{"no longer a registry's", func(h *Host) { h.Record = nil }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := base
			tc.edit(&h)
			if got := h.sameListing(base); got != tc.same {
				t.Errorf("sameListing %v, want %v", got, tc.same)
			}
		})
	}
}

// credentialSpy forwards requests to a host and counts those that carry a credential.
type credentialSpy struct {
	*httptest.Server
	seen, withKey atomic.Int64
}

func (s *credentialSpy) forward(t *testing.T, to string) http.Handler {
	target, err := url.Parse(to)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.seen.Add(1)
		if r.Header.Get("Authorization") != "" {
			s.withKey.Add(1)
		}
		proxy.ServeHTTP(w, r)
	})
}

func (s *credentialSpy) counts() (seen, withKey int64) { return s.seen.Load(), s.withKey.Load() }

// TestRoutesByModelPrice: billing hosts that price models apart, behind a proxy of a
// pipeline of model MarketModel. The host with the lowest default price charges the
// most for the pipeline's model, and one host prices other models only: requests go
// to the host cheapest for the pipeline's model, and the host without a price for it
// is refused, with its reason logged, and never asked.
func TestRoutesByModelPrice(t *testing.T) {
	m := proxytest.NewMarket(t)
	table := func(perMillion uint64) settle.PriceTable {
		return settle.PriceTable{PromptPerMillion: perMillion, CompletionPerMillion: perMillion}
	}
	cheapDefault := table(100_000_000)
	dearForModel := m.NewHostPrices(settle.Prices{Models: []settle.ModelPrice{{Model: proxytest.MarketModel, Prices: table(900_000_000)}},
		Default: &cheapDefault}, proxytest.MarketModel)
	cheapForModel := m.NewHostPrices(settle.Prices{Models: []settle.ModelPrice{{Model: proxytest.MarketModel, Prices: table(500_000_000)},
		{Model: "z-other", Prices: table(2_000_000_000)}}}, proxytest.MarketModel)
	otherModels := m.NewHostPrices(settle.Prices{Models: []settle.ModelPrice{{Model: "z-other", Prices: table(1)}}}, proxytest.MarketModel)

	log := &syncBuffer{}
	hosts := []*proxytest.BillingHost{dearForModel, otherModels, cheapForModel}
	var urls []string
	var roots []*x509.Certificate
	for _, h := range hosts {
		urls, roots = append(urls, h.URL), append(roots, h.RootCert(t))
	}
	p, err := New(WithHosts(urls...), WithPipeline(cheapForModel.ID), WithAPIKey(proxytest.APIKey), WithSimRoots(roots...), WithLog(log), fastHealth)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background(), io.Discard); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	want := "host " + otherModels.URL + ": new -> refused: the host at " + otherModels.URL + ` does not verify: its price list has no price for the pipeline's model "m"`
	if !strings.Contains(log.String(), want) {
		t.Errorf("the log lacks %q:\n%s", want, log)
	}
	for range 5 {
		if got := postChatHandler(t, p, chatBody); got != cheapForModel.URL {
			t.Fatalf("answered by %s, want the host cheapest for the model, %s", got, cheapForModel.URL)
		}
	}
	if n := otherModels.Asked("/chat/completions"); n != 0 {
		t.Errorf("the host without a price for the model got %d requests", n)
	}
}
