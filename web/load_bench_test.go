package web

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// The load of BenchmarkLoad: as many clients as the issue that measured Go guests
// under load used, each sending one streaming request after another.
const (
	loadClients  = 32
	loadDuration = 20 * time.Second
)

// BenchmarkLoad is the README's load figure: loadClients clients, each sending
// streaming chat completions (16 tokens from the embedded model) one after another for
// loadDuration, through the example pipeline (prompt-template as pre, output-guard as
// post) built in Go, then in C, in the same run. For each it reports requests per
// second, the median and 99th percentile latency, and how many requests ended in a
// module timeout (a 504, or a timeout error event in the stream) or failed otherwise.
// Any failure fails the benchmark. It takes twice loadDuration: run it alone, with
//
//	go test -run '^$' -bench BenchmarkLoad -benchtime 1x ./web/
func BenchmarkLoad(b *testing.B) {
	f := newFixture(b, func(c *Config, _ *recorder) { c.MaxGenerations = loadClients })
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: loadClients}}
	body := []byte(`{"model":"stories260K","messages":[{"role":"user","content":"a cat and a dog who find a darn big box"}],"max_tokens":16,"stream":true}`)
	for _, lang := range []string{"go", "c"} {
		tmpl := plugin(b, "prompt-template/"+lang+"/prompt-template.wasm")
		guard := plugin(b, "output-guard/"+lang+"/output-guard.wasm")
		id := f.push(`{"abi_version":1,"model":"stories260K",
			"pre":[{"module":"`+hashOf(tmpl)+`","config":{"system":"You are a storyteller for children.","user_template":"Write a short story about: {{content}}"}}],
			"post":[{"module":"`+hashOf(guard)+`","config":{"words":["darn","heck","drat"]}}]}`, tmpl, guard)
		url := f.http.URL + "/p/" + id + "/v1/chat/completions"
		b.Run(lang, func(b *testing.B) {
			for b.Loop() {
				r := runLoad(client, url, body)
				b.Logf("%s: %d requests, %.1f req/s, p50 %v, p99 %v, %d module timeouts, %d other failures", lang, len(r.latencies),
					float64(len(r.latencies))/loadDuration.Seconds(), percentile(r.latencies, 50), percentile(r.latencies, 99), r.timeouts, r.failures)
				b.ReportMetric(float64(len(r.latencies))/loadDuration.Seconds(), "req/s")
				b.ReportMetric(float64(percentile(r.latencies, 50).Milliseconds()), "p50-ms")
				b.ReportMetric(float64(percentile(r.latencies, 99).Milliseconds()), "p99-ms")
				b.ReportMetric(float64(r.timeouts), "504s")
				if r.timeouts > 0 || r.failures > 0 {
					b.Errorf("%d module timeouts and %d other failures in %d requests; the first: %s",
						r.timeouts, r.failures, len(r.latencies), r.first)
				}
			}
		})
	}
}

// loadResult is what the clients of one runLoad saw.
type loadResult struct {
	latencies          []time.Duration
	timeouts, failures int
	first              string // the first failure
}

// runLoad runs loadClients clients against url for loadDuration and returns what they
// saw. A request counts when it ends, whatever its outcome.
func runLoad(client *http.Client, url string, body []byte) loadResult {
	ctx, cancel := context.WithTimeout(context.Background(), loadDuration)
	defer cancel()
	var (
		mu  sync.Mutex
		res loadResult
		wg  sync.WaitGroup
	)
	for range loadClients {
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				status, answer, err := postOnce(client, url, body)
				if ctx.Err() != nil {
					return // cut by the end of the run: not counted
				}
				mu.Lock()
				res.latencies = append(res.latencies, time.Since(start))
				failed := ""
				switch {
				case err != nil:
					failed = err.Error()
					res.failures++
				case status == http.StatusGatewayTimeout || bytes.Contains(answer, []byte(`"code":"timeout"`)):
					failed = string(answer)
					res.timeouts++
				case status != http.StatusOK || bytes.Contains(answer, []byte(`data: {"error"`)) ||
					!bytes.HasSuffix(answer, []byte("data: [DONE]\n\n")):
					failed = string(answer)
					res.failures++
				}
				if failed != "" && res.first == "" {
					res.first = failed
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return res
}

func postOnce(client *http.Client, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	setAuth(req, ownerKey)
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(res.Body)
	return res.StatusCode, answer, err
}

// percentile returns the p-th percentile of ds, which it sorts.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*p/100)]
}
