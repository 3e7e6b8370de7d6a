package proxy

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/web/proxy/proxytest"
)

// postBench sends one chat request to the pipeline at base (a host's /p/ID, or a
// router) and fails the benchmark unless it is answered 200.
func postBench(b *testing.B, client *http.Client, base, body string) {
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+proxytest.APIKey)
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatal(resp.Status)
	}
}

// benchTargets runs one sub-benchmark per target: its requests one at a time, or with
// 8 clients at once (parallel; 4 per core on this 2-core machine), reporting req/s.
func benchTargets(b *testing.B, body string, parallel bool, targets [][2]string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: time.Minute}
	for _, t := range targets {
		b.Run(t[0], func(b *testing.B) {
			postBench(b, client, t[1], body) // a connection open
			b.ResetTimer()
			if parallel {
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						postBench(b, client, t[1], body)
					}
				})
			} else {
				for range b.N {
					postBench(b, client, t[1], body)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkRouterLatency is the router's added latency per request: one request at a
// time to a host whose backend answers at once (so that the figure is the router's,
// not the model's), through the router (a second hop on loopback, the answer held
// whole, a sha256 over it and an ed25519 verification) against straight to the host,
// in the same run.
//
// go test -run '^$' -bench RouterLatency -benchtime 2000x -count 5 ./web/proxy/
func BenchmarkRouterLatency(b *testing.B) {
	h := proxytest.NewHost(b, nil)
	router, _, _ := startProxy(b, []*proxytest.Host{h})
	benchTargets(b, chatBody, false, [][2]string{{"direct", h.URL + "/p/" + h.ID}, {"router", router}})
}

// BenchmarkScale is throughput on the real embedded engine and the stories260K model
// (16 tokens an answer), 8 clients at a time: one host straight, one host behind the
// router, and three hosts behind it, in the same run. The hosts share this machine's
// two cores, so the ratio shows what the router costs and how it spreads, not what
// three machines would serve.
//
// go test -run '^$' -bench Scale -benchtime 400x -count 5 ./web/proxy/
func BenchmarkScale(b *testing.B) {
	hosts := []*proxytest.Host{modelHost(b), modelHost(b), modelHost(b)}
	router1, _, _ := startProxy(b, hosts[:1])
	router3, _, _ := startProxy(b, hosts)
	benchTargets(b, modelChat, true, [][2]string{{"direct-1", hosts[0].URL + "/p/" + hosts[0].ID}, {"router-1", router1}, {"router-3", router3}})
}

// BenchmarkPick is routing's cost per request: the price of the request at each of 8
// billing hosts and the load of two of them.
//
// go test -run '^$' -bench Pick ./web/proxy/
func BenchmarkPick(b *testing.B) {
	p, err := New(WithHosts("http://a"), WithPipeline(strings.Repeat("ab", 32)))
	if err != nil {
		b.Fatal(err)
	}
	for i := range 8 {
		p.hosts = append(p.hosts, &upstream{p: p, info: Host{URL: "http://h" + strconv.Itoa(i)}, state: stateReady, cur: &verified{},
			prices: &settle.PriceList{Prices: settle.SamePrices(settle.PriceTable{PromptPerMillion: 1000, CompletionPerMillion: 3000}), LoadMilli: 1000}})
	}
	r, _ := http.NewRequest(http.MethodPost, "/", nil)
	a := newAsk(r, []byte(modelChat))
	b.ReportAllocs()
	for b.Loop() {
		if p.pick(a, nil) == nil {
			b.Fatal("no host")
		}
	}
}
