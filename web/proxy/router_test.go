package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/host/backend/embedded"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/web"
	"github.com/cocoonhost/cocoon/web/proxy/proxytest"
)

// modelHost boots a host on the real embedded engine and the stories260K model.
func modelHost(t testing.TB) *proxytest.Host {
	t.Helper()
	dir := os.Getenv("COCOON_MODEL_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "models", "stories260K")
	}
	b, err := embedded.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return proxytest.NewHost(t, b)
}

// modelChat is a short non-streaming request of the model.
const modelChat = `{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":16,"temperature":0}`

// TestRouterSurvivesAKilledHost is the acceptance test of issue 14 item 4: three
// verified hosts on the real model behind the router, under concurrent non-streaming
// load; every host serves a share; one is killed mid-run (its listener and every
// connection cut, as a killed process's); no client request fails. It reports the load
// spread and the time from the kill to the router taking the host out of routing.
func TestRouterSurvivesAKilledHost(t *testing.T) {
	hosts := []*proxytest.Host{modelHost(t), modelHost(t), modelHost(t)}
	url, p, log := startProxy(t, hosts)
	const workers, requests, killAt = 6, 150, 50
	var (
		done, failed atomic.Int64
		killedAt     atomic.Int64 // Unix ns
		firstFail    sync.Once
		failure      string
		kill         sync.Once
		wg           sync.WaitGroup
	)
	client := &http.Client{Timeout: 30 * time.Second}
	for range workers {
		wg.Go(func() {
			for done.Load() < requests {
				resp, err := client.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(modelChat))
				var b []byte
				if err == nil {
					b, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"object":"chat.completion"`) {
					failed.Add(1)
					firstFail.Do(func() { failure = fmt.Sprintf("%v %v %s", err, resp, b) })
				}
				if done.Add(1) == killAt {
					kill.Do(func() { killedAt.Store(time.Now().UnixNano()); hosts[1].Kill() })
				}
			}
		})
	}
	// The time to reroute: from the kill until the host is out of routing.
	var reroute time.Duration
	deadline := time.Now().Add(30 * time.Second)
	for reroute == 0 && time.Now().Before(deadline) {
		if at := killedAt.Load(); at != 0 && p.Hosts()[1].State != "ready" {
			reroute = time.Since(time.Unix(0, at))
		}
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	status := p.Hosts()
	t.Logf("%d requests, %d workers, host 2 of 3 killed after %d: %d failed; out of routing %v after the kill; served %d / %d / %d",
		done.Load(), workers, killAt, failed.Load(), reroute, status[0].Served, status[1].Served, status[2].Served)
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d client requests failed; the first: %s\nlog:\n%s", n, failure, log)
	}
	if reroute == 0 || reroute > 10*time.Second {
		t.Errorf("the killed host left routing %v after the kill; want within 10 s", reroute)
	}
	for i, s := range status {
		if s.Served == 0 {
			t.Errorf("host %d served no request: %+v", i+1, status)
		}
	}
	if s := status[1].State; s != "down" {
		t.Errorf("the killed host is %q", s)
	}
	if !strings.Contains(log.String(), "host "+hosts[1].URL+": ready -> down") {
		t.Errorf("the state change is not logged:\n%s", log)
	}
}

// TestFailoverNeverChargesTwice performs the attack on a client's money that failover
// invites: a host dies while it holds a request it received. A host that does not bill
// charged nothing, so the request goes to the other host and the app gets its answer;
// a billing host may have charged it, so it is not sent elsewhere (the app gets a 502
// host_error saying so) and the other host never sees it.
func TestFailoverNeverChargesTwice(t *testing.T) {
	for _, bills := range []bool{false, true} {
		t.Run(fmt.Sprintf("bills=%v", bills), func(t *testing.T) {
			held := &proxytest.Canned{Deltas: []string{"Hello", ", ", "world"}, Held: make(chan struct{}), Reached: make(chan struct{}, 1)}
			defer close(held.Held)
			a, b := proxytest.NewHost(t, held), proxytest.NewHost(t, nil)
			url, p, log := startProxy(t, []*proxytest.Host{a, b})
			if bills {
				// Both bill, a at the lower price: it gets the request. (The hosts run
				// without a chain; the price lists stand for what a billing host
				// publishes, and the health loop does not run within this test.)
				for i, u := range p.snapshot() {
					u.mu.Lock()
					u.prices = &settle.PriceList{Prices: settle.SamePrices(settle.PriceTable{PromptPerMillion: uint64(1+i) * 1_000_000_000}), LoadMilli: 1000}
					u.mu.Unlock()
				}
			} else {
				p.snapshot()[1].observe(time.Hour) // a is less loaded: it gets the request
			}
			done := make(chan answered, 1)
			go func() { done <- postChat(t, url, `{"messages":[{"role":"user","content":"hold"}]}`) }()
			<-held.Reached
			a.Kill()
			got := <-done
			switch {
			case !bills && (got.status != http.StatusOK || got.header.Get(HostHeader) != b.URL || !strings.Contains(got.body, "Hello, world")):
				t.Fatalf("a host that does not bill died holding the request: the app got %d from %q: %s\nlog:\n%s", got.status, got.header.Get(HostHeader), got.body, log)
			case bills && (got.status != http.StatusBadGateway || !strings.Contains(got.body, `"code":"host_error"`) || !strings.Contains(got.body, "which it may have charged")):
				t.Fatalf("a billing host died holding the request: the app got %d: %s", got.status, got.body)
			case bills && b.Asked("/chat/completions") != 0:
				t.Fatal("the request a billing host may have charged was sent to another host")
			}
		})
	}
}

// TestStreamBreaksOffMidway: a host that dies after part of a stream reached the app
// (live release) ends the app's stream with an error event host_error, never
// [DONE]; in verified release nothing had reached the app, and the stream is served
// whole by another host that does not bill.
func TestStreamBreaksOffMidway(t *testing.T) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			held := &proxytest.Canned{Deltas: []string{"Hello", ", ", "world"}, Held: make(chan struct{}), Reached: make(chan struct{}, 1)}
			defer close(held.Held)
			a, b := proxytest.NewHost(t, held), proxytest.NewHost(t, nil)
			url, p, _ := startProxy(t, []*proxytest.Host{a, b}, WithRelease(mode))
			p.snapshot()[1].observe(time.Hour) // a gets the request
			done := make(chan answered, 1)
			go func() { done <- postChat(t, url, holdBody) }()
			<-held.Reached
			if mode == ReleaseLive {
				time.Sleep(200 * time.Millisecond) // the first chunks reach the app
			}
			a.Kill()
			got := <-done
			events := strings.SplitAfter(got.body, "\n\n")
			last := events[len(events)-2]
			switch mode {
			case ReleaseLive:
				if got.status != 200 || !strings.Contains(got.body, `"content":"Hello"`) || strings.Contains(got.body, "[DONE]") || !strings.Contains(last, `"code":"host_error"`) {
					t.Fatalf("live: %d\n%s", got.status, got.body)
				}
			case ReleaseVerified:
				if got.status != 200 || got.header.Get(HostHeader) != b.URL || verifyAsApp(hostKey(p, b.URL), holdBody, b.ID, got) != nil {
					t.Fatalf("verified: %d from %q\n%s", got.status, got.header.Get(HostHeader), got.body)
				}
			}
		})
	}
}

// TestHostsVerifiedIndependently: each host is verified on its own, under the
// simulator root it boots under. A host under a root not trusted is refused and not
// used while the others serve; a host without the pipeline is reported and not used.
func TestHostsVerifiedIndependently(t *testing.T) {
	a, untrusted, lacking := proxytest.NewHost(t, nil), proxytest.NewHost(t, nil), proxytest.NewHost(t, nil)
	req, _ := http.NewRequest(http.MethodDelete, lacking.URL+"/v1/pipelines/"+lacking.ID, nil)
	req.Header.Set("Authorization", "Bearer "+proxytest.APIKey)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("delete the pipeline: %v %v", resp, err)
	}
	log := &syncBuffer{}
	p, err := New(WithHosts(a.URL, untrusted.URL, lacking.URL), WithPipeline(a.ID), WithAPIKey(proxytest.APIKey),
		WithSimRoots(a.RootCert(t), lacking.RootCert(t)), WithLog(log))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background(), io.Discard); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var states []string
	for _, h := range p.Hosts() {
		states = append(states, h.State)
	}
	if got := strings.Join(states, ", "); got != "ready, refused, lacks the pipeline" {
		t.Fatalf("states %s; log:\n%s", got, log)
	}
	for _, want := range []string{
		"host " + untrusted.URL + ": new -> refused: refusing to proxy to " + untrusted.URL + ", which does not verify: boot evidence: quote signature chain",
		"host " + lacking.URL + ": new -> lacks the pipeline: the host at " + lacking.URL + " does not have pipeline " + a.ID,
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	for range 10 {
		rec := &recorder{header: http.Header{}}
		r, _ := http.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(chatBody))
		p.ServeHTTP(rec, r)
		if rec.status != 200 || rec.header.Get(HostHeader) != a.URL {
			t.Fatalf("%d from %q", rec.status, rec.header.Get(HostHeader))
		}
	}
	if n := untrusted.Asked("/chat/completions") + lacking.Asked("/chat/completions"); n != 0 {
		t.Errorf("%d requests went to hosts out of routing", n)
	}
}

// recorder is a ResponseWriter that keeps the status and headers.
type recorder struct {
	header http.Header
	status int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) WriteHeader(status int)      { r.status = status }

// listSource is a Source whose list the test changes.
type listSource struct {
	mu    sync.Mutex
	hosts []Host
}

func (s *listSource) Hosts(context.Context) ([]Host, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Host(nil), s.hosts...), nil
}

func (s *listSource) set(urls ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hosts = nil
	for _, u := range urls {
		s.hosts = append(s.hosts, Host{URL: u})
	}
}

// TestSourceChanges: a host the source starts listing is verified, then used; a host it
// stops listing leaves routing.
func TestSourceChanges(t *testing.T) {
	a, b := proxytest.NewHost(t, nil), proxytest.NewHost(t, nil)
	src := &listSource{}
	src.set(a.URL)
	log := &syncBuffer{}
	p, err := New(WithSource(src), WithPipeline(a.ID), WithAPIKey(proxytest.APIKey), WithSimRoots(a.RootCert(t), b.RootCert(t)), WithLog(log), fastHealth)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background(), io.Discard); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	wait := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var got []string
			for _, h := range p.Hosts() {
				got = append(got, h.URL+" "+h.State)
			}
			if strings.Join(got, ", ") == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("hosts %v, want %s; log:\n%s", got, want, log)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	src.set(a.URL, b.URL)
	wait(a.URL + " ready, " + b.URL + " ready")
	src.set(b.URL)
	wait(b.URL + " ready")
	if !strings.Contains(log.String(), "host "+a.URL+": ready -> gone") {
		t.Errorf("log:\n%s", log)
	}
	chats := a.Asked("/chat/completions")
	for range 5 {
		if got := postChatHandler(t, p, chatBody); got != b.URL {
			t.Fatalf("answered by %q", got)
		}
	}
	if a.Asked("/chat/completions") != chats {
		t.Error("a host the source dropped still gets requests")
	}
}

func postChatHandler(t *testing.T, p *Proxy, body string) string {
	rec := &recorder{header: http.Header{}}
	r, _ := http.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
	p.ServeHTTP(rec, r)
	if rec.status != 200 {
		t.Fatalf("status %d", rec.status)
	}
	return rec.header.Get(HostHeader)
}

// TestPick: routing goes to the cheapest host for the request at its price of the
// pipeline's model, skips a host whose price for the completion alone is over the
// request's max_price, sends a request
// with an idempotency key to the same host every time, and spreads requests over
// equally cheap hosts.
func TestPick(t *testing.T) {
	p, err := New(WithHosts("http://a"), WithPipeline(strings.Repeat("ab", 32)))
	if err != nil {
		t.Fatal(err)
	}
	priced := func(name string, completionPerMillion uint64) *upstream {
		u := &upstream{p: p, info: Host{URL: name}, state: stateReady, cur: &verified{}}
		if completionPerMillion > 0 {
			u.prices = &settle.PriceList{Prices: settle.SamePrices(settle.PriceTable{CompletionPerMillion: completionPerMillion}), LoadMilli: 1000}
		}
		return u
	}
	askOf := func(body, key string) ask {
		r, _ := http.NewRequest(http.MethodPost, "/", nil)
		if key != "" {
			r.Header.Set(settle.IdempotencyKeyHeader, key)
		}
		return newAsk(r, []byte(body))
	}
	cheap, dear, down := priced("cheap", 1_000_000), priced("dear", 5_000_000), priced("down", 1)
	down.state = stateDown
	flat := []*upstream{dear, down, cheap}
	// Prices per model: the host whose price for the pipeline's model is lowest wins,
	// whatever its other models or its default cost, and a cap is checked against
	// that model's price.
	perModel := func(name string, model, other uint64) *upstream {
		u := priced(name, other)
		u.cur = &verified{model: "m"}
		u.prices.Models = []settle.ModelPrice{{Model: "m", Prices: settle.PriceTable{CompletionPerMillion: model}}}
		return u
	}
	cheapModel, cheapDefault := perModel("cheap for m", 2_000_000, 9_000_000), perModel("cheap by default", 3_000_000, 1_000_000)
	byModel := []*upstream{cheapDefault, cheapModel}
	body := `{"messages":[],"max_tokens":100,"max_price":"%d"}`
	for _, tt := range []struct {
		name  string
		hosts []*upstream
		ask   ask
		tried map[*upstream]bool
		want  *upstream
	}{
		{"cheapest", flat, askOf(`{"max_tokens":100}`, ""), nil, cheap},
		{"next cheapest once tried", flat, askOf(`{"max_tokens":100}`, ""), map[*upstream]bool{cheap: true}, dear},
		{"none left", flat, askOf(`{}`, ""), map[*upstream]bool{cheap: true, dear: true}, nil},
		// 100 tokens cost 100 nanoTON at cheap, 500 at dear.
		{"a cap both meet", flat, askOf(fmt.Sprintf(body, 500), ""), map[*upstream]bool{cheap: true}, dear},
		{"a cap only cheap meets", flat, askOf(fmt.Sprintf(body, 499), ""), map[*upstream]bool{cheap: true}, nil},
		{"the model's price, not the default", byModel, askOf(`{"max_tokens":100}`, ""), nil, cheapModel},
		// 100 tokens of m cost 300 nanoTON at the host whose default is cheap.
		{"a cap against the model's price", byModel, askOf(fmt.Sprintf(body, 299), ""), map[*upstream]bool{cheapModel: true}, nil},
		{"a cap the model's price meets", byModel, askOf(fmt.Sprintf(body, 300), ""), map[*upstream]bool{cheapModel: true}, cheapDefault},
	} {
		p.hosts = tt.hosts
		if got := p.pick(tt.ask, tt.tried); got != tt.want {
			t.Errorf("%s: picked %v, want %v", tt.name, got, tt.want)
		}
	}

	free := []*upstream{priced("f1", 0), priced("f2", 0), priced("f3", 0)}
	p.hosts = append([]*upstream{dear}, free...)
	counts := map[*upstream]int{}
	for range 300 {
		counts[p.pick(askOf(`{}`, ""), nil)]++
	}
	for _, u := range free {
		if counts[u] < 30 {
			t.Errorf("equally cheap hosts: %s got %d of 300", u.info.URL, counts[u])
		}
	}
	if counts[dear] != 0 {
		t.Errorf("a dearer host got %d while free ones were ready", counts[dear])
	}
	free[0].inflight.Store(50)
	free[0].observe(time.Second)
	clear(counts)
	for range 300 {
		counts[p.pick(askOf(`{}`, ""), nil)]++
	}
	if counts[free[0]] > 30 {
		t.Errorf("a loaded host got %d of 300", counts[free[0]])
	}
	first := p.pick(askOf(`{}`, "retry-me"), nil)
	for range 20 {
		if p.pick(askOf(`{}`, "retry-me"), nil) != first {
			t.Fatal("a request with the same idempotency key went to another host")
		}
	}
}

// TestFailoverOnRefusalBeforeAdmission: a host at capacity refuses with a signed 429
// over_capacity before admission. From a host that does not bill, the request goes to
// the other host. A billing host signs that refusal without the request (it has not
// read the body), so over http a relay could replay a genuine one in place of an
// answer the host charged: the attack is performed, and the router gives the app the
// refusal rather than send the request, and charge it, a second time elsewhere.
func TestFailoverOnRefusalBeforeAdmission(t *testing.T) {
	for _, bills := range []bool{false, true} {
		t.Run(fmt.Sprintf("bills=%v", bills), func(t *testing.T) {
			held := &proxytest.Canned{Deltas: []string{"Hello", ", ", "world"}, Held: make(chan struct{}), Reached: make(chan struct{}, 1)}
			release := sync.OnceFunc(func() { close(held.Held) })
			defer release()
			full := proxytest.NewHost(t, held)
			full.Config = func(c *web.Config) { c.MaxGenerations, c.MaxWaiting = 1, -1 }
			full.Start(t)
			other := proxytest.NewHost(t, nil)
			url, p, _ := startProxy(t, []*proxytest.Host{full, other})
			if bills {
				for i, u := range p.snapshot() { // both bill, full at the lower price
					u.mu.Lock()
					u.prices = &settle.PriceList{Prices: settle.SamePrices(settle.PriceTable{PromptPerMillion: uint64(1+i) * 1_000_000_000}), LoadMilli: 1000}
					u.mu.Unlock()
				}
			} else {
				p.snapshot()[1].observe(time.Hour) // full is picked first
			}
			go func() {
				if resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(`{"messages":[{"role":"user","content":"hold"}]}`)); err == nil {
					resp.Body.Close()
				}
			}()
			<-held.Reached // full's one slot is taken
			if !bills {
				got := postChat(t, url, chatBody)
				if got.status != http.StatusOK || got.header.Get(HostHeader) != other.URL {
					t.Fatalf("%d from %q: %s", got.status, got.header.Get(HostHeader), got.body)
				}
				return
			}
			// A relay captures the host's genuine refusal, then, once the host serves
			// again, answers every request the host served and charged with it.
			req, _ := http.NewRequest(http.MethodPost, full.URL+"/p/"+full.ID+"/v1/chat/completions", strings.NewReader(chatBody))
			req.Header.Set("Authorization", "Bearer "+proxytest.APIKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			refusal, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("the host at capacity answered %s", resp.Status)
			}
			release()
			full.Rewrite(func(a *proxytest.Answer) {
				a.Status, a.Header, a.Body = resp.StatusCode, resp.Header.Clone(), string(refusal)
			})
			served := full.Asked("/chat/completions")
			got := postChat(t, url, chatBody)
			if got.status != http.StatusTooManyRequests || !strings.Contains(got.body, `"code":"over_capacity"`) || got.header.Get(HostHeader) != full.URL {
				t.Fatalf("the replayed refusal: the app got %d from %q: %s", got.status, got.header.Get(HostHeader), got.body)
			}
			if full.Asked("/chat/completions") != served+1 || other.Asked("/chat/completions") != 0 {
				t.Fatal("a request the billing host received was sent to another host on a refusal a relay could replay")
			}
		})
	}
}
