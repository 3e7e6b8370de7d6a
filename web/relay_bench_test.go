package web

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/host/backend/openai"
)

// Shape of the relay benchmark: the acceptance load.
const (
	relayTokens  = 256 // content chunks per answer
	relayClients = 32  // concurrent streams
)

// fastUpstream is an OpenAI-compatible server that answers every chat completion at
// once with relayTokens one-token chat.completion.chunk events, flushed one by one as
// vLLM and llama.cpp flush tokens, a finish chunk, a usage chunk and [DONE]. Its events
// are encoded once, so it costs only the HTTP writes: the fastest upstream there is.
func fastUpstream(tb testing.TB) *httptest.Server {
	words := []string{" Once", " upon", " a", " time", ",", " there", " was", " a", " little", " été", " 😀", ` "quoted"`, " <b>"}
	var events [][]byte
	for i := range relayTokens {
		content, _ := json.Marshal(words[i%len(words)])
		events = append(events, fmt.Appendf(nil, `data: {"id":"chatcmpl-upstream","object":"chat.completion.chunk","created":1730000000,"model":"stories260K","choices":[{"index":0,"delta":{"content":%s},"logprobs":null,"finish_reason":null}]}`+"\n\n", content))
	}
	tail := []byte(`data: {"id":"chatcmpl-upstream","object":"chat.completion.chunk","created":1730000000,"model":"stories260K","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}` + "\n\n" +
		fmt.Sprintf(`data: {"id":"chatcmpl-upstream","object":"chat.completion.chunk","created":1730000000,"model":"stories260K","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":%d,"total_tokens":%d}}`, relayTokens, relayTokens+5) + "\n\n" +
		"data: [DONE]\n\n")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentTypeJSON)
		io.WriteString(w, `{"object":"list","data":[{"id":"stories260K","object":"model","owned_by":"bench","max_model_len":4096}]}`)
	})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", contentTypeSSE)
		rc := http.NewResponseController(w)
		for _, ev := range events {
			if _, err := w.Write(ev); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
		w.Write(tail)
	})
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	return srv
}

// relayRound runs relayClients streams at once against url and returns how long the
// round took and how many content chunks the clients read. Every client reads its
// stream as a client does, line by line, and counts the events that carry content.
func relayRound(tb testing.TB, client *http.Client, url, key string, body []byte) (time.Duration, int) {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		chunks int
		failed error
	)
	start := time.Now()
	for range relayClients {
		wg.Go(func() {
			n, err := readRelayStream(client, url, key, body)
			mu.Lock()
			defer mu.Unlock()
			chunks += n
			if err != nil && failed == nil {
				failed = err
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failed != nil {
		tb.Fatal(failed)
	}
	return elapsed, chunks
}

var contentMember = []byte(`"content":`)

// readRelayStream reads one streamed answer and counts its content chunks; it fails
// unless the stream ends with [DONE].
func readRelayStream(client *http.Client, url, key string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	setAuth(req, key)
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		return 0, fmt.Errorf("%s: %d %s", url, res.StatusCode, b)
	}
	r := bufio.NewReader(res.Body)
	n := 0
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return n, fmt.Errorf("%s: stream ended without [DONE] after %d chunks: %v", url, n, err)
		}
		switch {
		case bytes.Equal(line, []byte("data: [DONE]\n")):
			return n, nil
		case bytes.HasPrefix(line, []byte("data: {")) && bytes.Contains(line, contentMember):
			n++
		}
	}
}

// BenchmarkStreamRelay is the README's relay figure: relayClients concurrent streaming
// clients, each reading a relayTokens-token answer, (a) straight from a fast
// OpenAI-compatible upstream on loopback and (b) through the host (the real server with
// response signing, the openai backend pointed at that upstream), alternating a round
// of each in every iteration so both see the same machine. It reports the content
// chunks per second the clients read on either path and their ratio, relay/direct: the
// issue's acceptance is at least 0.8 on the bare endpoint. "pipeline" goes through a
// pre module (the SPEC example) and the C output guard as a stream module.
func BenchmarkStreamRelay(b *testing.B) {
	up := fastUpstream(b)
	be, err := openai.New(up.URL + "/v1")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.Close() })
	signer, _ := bootSim(b)
	f := newFixture(b, func(c *Config, _ *recorder) {
		c.Backend, c.Attestation, c.MaxGenerations = be, signer, 2*relayClients
	})
	pre, err := os.ReadFile(filepath.Join("..", "host", "testdata", "spec_example.wasm"))
	if err != nil {
		b.Fatalf("%v: run `make plugins` first", err)
	}
	guard := plugin(b, "output-guard/c/output-guard.wasm")
	id := f.push(`{"abi_version":1,"model":"stories260K","pre":[{"module":"`+hashOf(pre)+`"}],
		"post":[{"module":"`+hashOf(guard)+`","config":{"words":["darn"],"replacement":"***"}}]}`, pre, guard)

	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 2 * relayClients
	client := &http.Client{Transport: t}
	b.Cleanup(t.CloseIdleConnections)
	body := []byte(`{"model":"stories260K","messages":[{"role":"user","content":"Tell me a story."}],"stream":true}`)

	for _, path := range []struct{ name, url string }{
		{"bare", f.http.URL + "/v1/chat/completions"},
		{"pipeline", f.http.URL + "/p/" + id + "/v1/chat/completions"},
	} {
		b.Run(path.name, func(b *testing.B) {
			var directTime, relayTime time.Duration
			var directChunks, relayChunks int
			for b.Loop() {
				d, n := relayRound(b, client, up.URL+"/v1/chat/completions", "", body)
				directTime, directChunks = directTime+d, directChunks+n
				d, n = relayRound(b, client, path.url, ownerKey, body)
				relayTime, relayChunks = relayTime+d, relayChunks+n
			}
			if want := b.N * relayClients * relayTokens; directChunks != want || path.name == "bare" && relayChunks != want {
				b.Fatalf("read %d chunks direct and %d relayed, want %d", directChunks, relayChunks, want)
			}
			direct := float64(directChunks) / directTime.Seconds()
			relayed := float64(relayChunks) / relayTime.Seconds()
			b.ReportMetric(direct, "direct-chunks/s")
			b.ReportMetric(relayed, "relay-chunks/s")
			b.ReportMetric(relayed/direct, "relay/direct")
		})
	}
}
