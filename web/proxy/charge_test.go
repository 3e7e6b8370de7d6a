package proxy

import (
	"context"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cocoonhost/cocoon/web/proxy/proxytest"
)

// TestHiddenPriceListCannotMakeTheProxyChargeTwice performs a relay's attack on the
// app's escrows: between the proxy and two billing hosts, it answers the cheaper
// host's GET /v1/pricing with a plaintext 404, as a host that does not bill answers,
// so that the proxy would take it for free (cheapest of all, and safe to fail over
// from); then it cuts the connection once the host has answered, and charged, a chat
// request. A proxy that believed the 404 sends the request to the other host, which
// charges it again. The host's boot evidence measures its settlement key, which only a
// billing host measures: its price list is missing, not absent, and the host is
// refused until it serves one.
func TestHiddenPriceListCannotMakeTheProxyChargeTwice(t *testing.T) {
	m := proxytest.NewMarket(t)
	cheap := m.NewHost(100_000_000, proxytest.MarketModel)
	dear := m.NewHost(900_000_000, proxytest.MarketModel)
	cheap.Hide("/v1/pricing")
	var cut atomic.Bool
	cheap.Rewrite(func(*proxytest.Answer) {
		if !cut.Swap(true) {
			cheap.Kill() // after the host committed the receipt: the answer never arrives
		}
	})

	log := &syncBuffer{}
	p, err := New(WithHosts(cheap.URL, dear.URL), WithPipeline(cheap.ID), WithAPIKey(proxytest.APIKey),
		WithSimRoots([]*x509.Certificate{cheap.RootCert(t), dear.RootCert(t)}...), WithLog(log))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background(), io.Discard); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ts := httptest.NewServer(p)
	defer ts.Close()

	got := postChat(t, ts.URL, chatBody)
	charged := 0
	for _, h := range []*proxytest.BillingHost{cheap, dear} {
		st, err := h.Billing.Account(context.Background(), h.Escrow)
		if err != nil {
			t.Fatal(err)
		}
		charged += int(st.LastSeq)
	}
	switch {
	case charged > 1:
		t.Fatalf("one app request was charged %d times (the app got %d from %q)\nlog:\n%s", charged, got.status, got.header.Get(HostHeader), log)
	case got.status != http.StatusOK || got.header.Get(HostHeader) != dear.URL:
		t.Fatalf("the app got %d from %q, want the answer of the host whose prices are known: %s\nlog:\n%s", got.status, got.header.Get(HostHeader), got.body, log)
	}
	if want := "measures a settlement key"; !strings.Contains(log.String(), want) {
		t.Errorf("the log does not say why the host is refused (%q):\n%s", want, log)
	}
}
