package proxy

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cocoonhost/cocoon/settle"
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

	url, _, log := startBillingProxy(t, cheap, dear)

	got := postChat(t, url, chatBody)
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

// TestIdempotentRetryGoesToTheHostThatCharged performs the retry an app makes when it
// lost an answer: the same request under the same Idempotency-Key. Between the two
// attempts the other host became the cheaper one (prices follow load), or the first
// host left routing. Only the first host's ledger knows the key: the retry goes to it
// (and gets the first answer again, charged once) or, while it is out of routing, to
// no host at all; sent anywhere else, it is charged a second time.
func TestIdempotentRetryGoesToTheHostThatCharged(t *testing.T) {
	m := proxytest.NewMarket(t)
	first := m.NewHost(100_000_000, proxytest.MarketModel)
	other := m.NewHost(900_000_000, proxytest.MarketModel)
	url, p, _ := startBillingProxy(t, first, other)
	charged := func() (total int) {
		for _, h := range []*proxytest.BillingHost{first, other} {
			st, err := h.Billing.Account(context.Background(), h.Escrow)
			if err != nil {
				t.Fatal(err)
			}
			total += int(st.LastSeq)
		}
		return total
	}
	makeDearer := func(h *proxytest.BillingHost) {
		for _, u := range p.snapshot() {
			if u.info.URL == h.URL {
				u.mu.Lock()
				u.prices = &settle.PriceList{Prices: settle.SamePrices(settle.PriceTable{PromptPerMillion: 5_000_000_000, CompletionPerMillion: 5_000_000_000}), LoadMilli: 1000}
				u.mu.Unlock()
			}
		}
	}

	answer := postChatWithKey(t, url, chatBody, "order-1")
	if answer.status != http.StatusOK || answer.header.Get(HostHeader) != first.URL || charged() != 1 {
		t.Fatalf("first attempt: %d from %q, %d charged: %s", answer.status, answer.header.Get(HostHeader), charged(), answer.body)
	}
	makeDearer(first)
	got := postChatWithKey(t, url, chatBody, "order-1")
	if n := charged(); n != 1 {
		t.Fatalf("the retry under the same key was charged again (%d receipts; answered by %q)", n, got.header.Get(HostHeader))
	}
	if got.status != http.StatusOK || got.header.Get(HostHeader) != first.URL || got.body != answer.body {
		t.Fatalf("the retry: %d from %q, want the first answer again from %s: %s", got.status, got.header.Get(HostHeader), first.URL, got.body)
	}

	// A key that went to a host (now the other one, the cheaper), which then leaves
	// routing: no other host gets its retry.
	got = postChatWithKey(t, url, chatBody, "order-2")
	if got.status != http.StatusOK || got.header.Get(HostHeader) != other.URL || charged() != 2 {
		t.Fatalf("order-2: %d from %q, %d charged", got.status, got.header.Get(HostHeader), charged())
	}
	other.Kill()
	got = postChatWithKey(t, url, chatBody, "order-2")
	switch {
	case charged() != 2:
		t.Fatalf("the retry of a key whose host left routing went to another host (%d receipts)", charged())
	case got.status != http.StatusBadGateway || !strings.Contains(got.body, `"code":"host_error"`):
		t.Fatalf("the retry of a key whose host left routing: %d %s", got.status, got.body)
	}
	// Now that the proxy took it out of routing, the retry names why it goes nowhere.
	got = postChatWithKey(t, url, chatBody, "order-2")
	if charged() != 2 || got.status != http.StatusBadGateway || !strings.Contains(got.body, "sends its retries to that host only, and it is out of routing now") {
		t.Fatalf("the retry of a key whose host is out of routing: %d receipts, %d %s", charged(), got.status, got.body)
	}
	// A new key is served by a host in routing.
	if got = postChatWithKey(t, url, chatBody, "order-3"); got.status != http.StatusOK || got.header.Get(HostHeader) != first.URL {
		t.Fatalf("a new key: %d from %q: %s", got.status, got.header.Get(HostHeader), got.body)
	}
}

// startBillingProxy starts a proxy in front of billing hosts with the proxy's API key
// and serves it until the test ends.
func startBillingProxy(t *testing.T, hosts ...*proxytest.BillingHost) (string, *Proxy, *syncBuffer) {
	t.Helper()
	plain := make([]*proxytest.Host, len(hosts))
	for i, h := range hosts {
		plain[i] = h.Host
	}
	return startProxy(t, plain)
}

// postChatWithKey posts a chat request with an Idempotency-Key to the proxy at url.
func postChatWithKey(t *testing.T, url, body, key string) answered {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(settle.IdempotencyKeyHeader, key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answered{resp.StatusCode, resp.Header, string(b)}
}
