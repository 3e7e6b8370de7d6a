package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/web"
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
	charged := receipts(t, cheap, dear)
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
	charged := func() int { return receipts(t, first, other) }
	answer := postChatWithKey(t, url, chatBody, "order-1")
	if answer.status != http.StatusOK || answer.header.Get(HostHeader) != first.URL || charged() != 1 {
		t.Fatalf("first attempt: %d from %q, %d charged: %s", answer.status, answer.header.Get(HostHeader), charged(), answer.body)
	}
	makeDearer(p, first)
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

// receipts counts the receipts the hosts committed to their escrows of the proxy's
// API key: the requests they charged.
func receipts(t *testing.T, hosts ...*proxytest.BillingHost) (total int) {
	t.Helper()
	for _, h := range hosts {
		st, err := h.Billing.Account(context.Background(), h.Escrow)
		if err != nil {
			t.Fatal(err)
		}
		total += int(st.LastSeq)
	}
	return total
}

// makeDearer makes the proxy see h's prices as far above any other host's, as a
// price change after load would, so that routing no longer picks it.
func makeDearer(p *Proxy, h *proxytest.BillingHost) {
	for _, u := range p.snapshot() {
		if u.info.URL == h.URL {
			u.mu.Lock()
			u.prices = &settle.PriceList{Prices: settle.SamePrices(settle.PriceTable{PromptPerMillion: 5_000_000_000, CompletionPerMillion: 5_000_000_000}), LoadMilli: 1000}
			u.mu.Unlock()
		}
	}
}

// postChatWithKey posts a chat request with an Idempotency-Key to the proxy at url.
func postChatWithKey(t *testing.T, url, body, key string) answered {
	t.Helper()
	return postChatAs(t, url, "", body, key)
}

// postChatAs posts a chat request with an Idempotency-Key to the proxy at url, with
// the app's credential auth ("" for none).
func postChatAs(t *testing.T, url, auth, body, key string) answered {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(settle.IdempotencyKeyHeader, key)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answered{resp.StatusCode, resp.Header, string(b)}
}

// boundKeys makes the proxy's key memories hold n keys each, so that a test fills
// them with a few hundred requests rather than 65,536.
func boundKeys(p *Proxy, n int) {
	for _, kr := range []*keyRoutes{&p.keys.admitted, &p.keys.unproven} {
		kr.mu.Lock()
		kr.max = n
		kr.mu.Unlock()
	}
}

// TestMadeUpCredentialsCannotPushOutChargedKeys performs the flood of an attacker who
// has no credential: through a proxy that passes each app's Authorization on, it sends
// requests under made-up API keys, each with an Idempotency-Key of its own. The host
// refuses every one (401, charging nothing); but a proxy that remembered where each
// key went filled its key memory with them and forgot an honest app's keys, whose
// retries then went wherever routing pointed (here, the other host, now the cheaper)
// and were charged a second time. Over RA-TLS the 401 is the host's own answer and the
// flood's keys are not remembered at all; over http a sealed request's 401 is
// plaintext and unsigned (a relay could forge one for a request that ran), so its key
// is still remembered, but apart: such keys push out only keys whose answer never
// verified.
func TestMadeUpCredentialsCannotPushOutChargedKeys(t *testing.T) {
	const bound = 8
	for _, c := range []struct {
		name    string
		newHost func(*proxytest.Market, uint64) *proxytest.BillingHost
		kept    int // of the flood's keys, in the memory of unknown outcomes
	}{
		{"http", func(m *proxytest.Market, price uint64) *proxytest.BillingHost {
			return m.NewHost(price, proxytest.MarketModel)
		}, bound},
		{"RA-TLS", func(m *proxytest.Market, price uint64) *proxytest.BillingHost {
			return m.NewRATLSHost(price, proxytest.MarketModel)
		}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := proxytest.NewMarket(t)
			first, other := c.newHost(m, 100_000_000), c.newHost(m, 900_000_000)
			// Without a key of the proxy's, each app's own Authorization goes on: the
			// credentials a host may refuse.
			url, p, log := startProxy(t, []*proxytest.Host{first.Host, other.Host}, WithAPIKey(""))
			boundKeys(p, bound)
			honest := "Bearer " + proxytest.APIKey

			orders := map[string]answered{}
			for _, key := range []string{"order-1", "order-2"} {
				a := postChatAs(t, url, honest, chatBody, key)
				if a.status != http.StatusOK || a.header.Get(HostHeader) != first.URL {
					t.Fatalf("%s: %d from %q: %s\nlog:\n%s", key, a.status, a.header.Get(HostHeader), a.body, log)
				}
				orders[key] = a
			}
			for i := range 4 * bound {
				a := postChatAs(t, url, fmt.Sprint("Bearer made-up-", i), chatBody, fmt.Sprint("flood-", i))
				if a.status == http.StatusOK {
					t.Fatalf("a made-up credential was served: %s", a.body)
				}
			}
			if n := receipts(t, first, other); n != 2 {
				t.Fatalf("%d requests charged, want the honest app's 2", n)
			}

			makeDearer(p, first)
			for key, want := range orders {
				got := postChatAs(t, url, honest, chatBody, key)
				if n := receipts(t, first, other); n != 2 {
					t.Fatalf("after a flood of made-up credentials the retry of %s was charged again (%d receipts; answered by %q)", key, n, got.header.Get(HostHeader))
				}
				if got.status != http.StatusOK || got.header.Get(HostHeader) != first.URL || got.body != want.body {
					t.Fatalf("the retry of %s: %d from %q, want the first answer again from %s: %s", key, got.status, got.header.Get(HostHeader), first.URL, got.body)
				}
			}
			if n := len(p.keys.unproven.hosts); n != c.kept {
				t.Fatalf("the flood's keys: %d remembered apart, want %d", n, c.kept)
			}
		})
	}
}

// TestVerifiedRefusalsLeaveNoKeys: a request each billing host refuses before
// admission, in an answer signed for it (here 402 max_price_exceeded: a cap above the
// completion's price, under what admission reserves), was charged nowhere, and its key
// is not remembered: an app's flood of such requests fills no key memory. Each request
// went to both hosts (the refusal lets the proxy try the other one).
func TestVerifiedRefusalsLeaveNoKeys(t *testing.T) {
	m := proxytest.NewMarket(t)
	first := m.NewHost(100_000_000, proxytest.MarketModel)
	other := m.NewHost(900_000_000, proxytest.MarketModel)
	url, p, log := startProxy(t, []*proxytest.Host{first.Host, other.Host}, WithAPIKey(""))
	capped := `{"messages":[{"role":"user","content":"hi"}],"max_tokens":1,"max_price":"1000"}`
	for i := range 16 {
		a := postChatAs(t, url, "Bearer "+proxytest.APIKey, capped, fmt.Sprint("refused-", i))
		if a.status != http.StatusPaymentRequired || !strings.Contains(a.body, settle.CodeMaxPrice) {
			t.Fatalf("request %d: %d %s\nlog:\n%s", i, a.status, a.body, log)
		}
	}
	if n := first.Asked("/chat/completions") + other.Asked("/chat/completions"); n != 32 {
		t.Fatalf("the hosts saw %d chat requests, want 32", n)
	}
	p.keys.mu.Lock()
	inflight := len(p.keys.inflight)
	p.keys.mu.Unlock()
	switch {
	case receipts(t, first, other) != 0:
		t.Fatal("a refused request was charged")
	case len(p.keys.admitted.hosts) != 0 || len(p.keys.unproven.hosts) != 0 || inflight != 0:
		t.Fatalf("keys of requests every host refused are remembered: %d admitted, %d unproven, %d in flight",
			len(p.keys.admitted.hosts), len(p.keys.unproven.hosts), inflight)
	}
}

// TestSentSurvivesTheTransportsRetry performs a relay's attack on a plaintext request
// over RA-TLS with the app's Idempotency-Key, which Go's transport takes for
// replayable: the relay lets the request reach the host whole on a reused connection
// (the host runs and charges it), closes that connection before the answer, and
// resets the new connection the transport sends the request again on before it is
// written. The proxy read only the last write's outcome: not sent, so another host
// was tried, and charged the request again. A request written whole once stays sent.
func TestSentSurvivesTheTransportsRetry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan bool, 1)
	relayed := make(chan struct{})
	go func() { // the relay, joined below
		defer close(relayed)
		first, err := ln.Accept()
		if err != nil {
			return
		}
		defer first.Close()
		br := bufio.NewReader(first)
		for i := range 2 {
			req, err := http.ReadRequest(br)
			if err != nil {
				received <- false
				return
			}
			_, err = io.Copy(io.Discard, req.Body)
			if i == 0 { // a first request, answered, so that the connection is reused
				fmt.Fprint(first, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				continue
			}
			received <- err == nil
		}
		first.Close() // no answer: the transport sends the request again
		second, err := ln.Accept()
		if err != nil {
			return
		}
		second.(*net.TCPConn).SetLinger(0) // reset, before reading any of it
		second.Close()
	}()
	base := "http://" + ln.Addr().String()
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	res, err := hc.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()

	p := &Proxy{}
	v := &verified{conn: &conn{base: base, http: hc}}
	app := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	// Larger than the loopback's socket buffers, so that the reset ends the write.
	body := bytes.Repeat([]byte("x"), 32<<20)
	_, _, sent, err := p.send(app, v, body, "app-key")
	<-relayed
	if !<-received {
		t.Fatal("the relay did not receive the request whole")
	}
	if err == nil {
		t.Fatal("the reset connection did not fail the request")
	}
	if !sent {
		t.Errorf("a request the host received whole, then sent again on a connection reset before it was written, counts as not sent (%v): another host would charge it again", err)
	}
}

// TestRefusedWhileItsRetryRunsChargesOnce performs a relay's attack on an app that
// sends its request again under the same Idempotency-Key while the first is still out
// (its own timeout ran out): the proxy sends the second to the host the first is in
// flight at, and the relay holds the first back until the second runs there, taking
// the host's one generation slot, so that the host refuses the first before admission
// (429 over_capacity, signed). The proxy then failed the first over to the other host,
// which charged it while the first host charged the second. A refused attempt whose
// key went to a host meanwhile is sent to that host alone.
func TestRefusedWhileItsRetryRunsChargesOnce(t *testing.T) {
	m := proxytest.NewMarket(t)
	first := m.NewRATLSHost(100_000_000, proxytest.MarketModel)
	other := m.NewRATLSHost(900_000_000, proxytest.MarketModel)
	canned := first.Backend.(*proxytest.Canned)
	canned.Held, canned.Reached = make(chan struct{}), make(chan struct{})
	billing := first.Config
	first.Config = func(c *web.Config) {
		billing(c)
		c.MaxGenerations, c.MaxWaiting = 1, -1
	}
	first.Start(t)
	held := make(chan struct{})
	var calls atomic.Int32
	first.Intercept(func(http.ResponseWriter, *http.Request) bool {
		if calls.Add(1) == 1 {
			close(held)
			<-canned.Reached // the second sending holds the host's slot
		}
		return false
	})
	url, _, log := startBillingProxy(t, first, other)

	const body = `{"messages":[{"role":"user","content":"hold"}]}`
	firstAnswer, secondAnswer := make(chan answered, 1), make(chan answered, 1)
	go func() { firstAnswer <- postChatWithKey(t, url, body, "order-1") }()
	<-held
	go func() { secondAnswer <- postChatWithKey(t, url, body, "order-1") }()
	got := <-firstAnswer
	close(canned.Held)
	second := <-secondAnswer
	if n := receipts(t, first, other); n != 1 {
		t.Fatalf("one request sent twice under one key was charged %d times: the first got %d from %q, the second %d from %q\nlog:\n%s",
			n, got.status, got.header.Get(HostHeader), second.status, second.header.Get(HostHeader), log)
	}
	if got.header.Get(HostHeader) != first.URL || second.header.Get(HostHeader) != first.URL {
		t.Errorf("the two sendings were answered by %q (%d %s) and %q, want %s alone\nlog:\n%s",
			got.header.Get(HostHeader), got.status, got.body, second.header.Get(HostHeader), first.URL, log)
	}
}
