package web

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/host/backend/openai"
	"github.com/cocoonhost/cocoon/settle"
)

// upstreamChunk is a chat.completion.chunk event of an OpenAI-compatible server.
func upstreamChunk(content string) string {
	return fmt.Sprintf(`data: {"object":"chat.completion.chunk","model":"stories260K","choices":[{"index":0,"delta":{"content":%q},"finish_reason":null}]}`+"\n\n", content)
}

const upstreamEnd = `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n"

// relayBackend is the openai adapter in front of an upstream that answers chat
// completions with answer and lists stories260K: a configuration for newFixture.
func relayBackend(t *testing.T, answer http.HandlerFunc) func(*Config, *recorder) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"object":"list","data":[{"id":"stories260K","object":"model","max_model_len":512}]}`)
	})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", contentTypeSSE)
		answer(w, r)
	})
	up := httptest.NewServer(mux)
	t.Cleanup(up.Close)
	be, err := openai.New(up.URL + "/v1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return func(c *Config, r *recorder) { r.Backend = be }
}

// TestRelayFlushesWhenUpstreamWaits performs the failure coalescing invites: a host
// that holds tokens back for a batch leaves a client waiting for text the server sent
// long ago. The upstream sends a token, then two in one write, each time waiting until
// the client has read them: the first token must reach the client at once, and so
// must every token read before a stall.
func TestRelayFlushesWhenUpstreamWaits(t *testing.T) {
	read := make(chan string)
	f := newFixture(t, relayBackend(t, func(w http.ResponseWriter, r *http.Request) {
		for _, batch := range [][]string{{"Once"}, {" upon", " a time"}} {
			for _, token := range batch {
				io.WriteString(w, upstreamChunk(token))
			}
			http.NewResponseController(w).Flush()
			for _, token := range batch {
				select {
				case got := <-read: // the client has the token: the next may come
					if got != token {
						t.Errorf("the client read %q, the upstream sent %q", got, token)
					}
				case <-time.After(5 * time.Second):
					t.Errorf("the client did not get %q within 5 s of the upstream sending it", token)
					return
				case <-r.Context().Done():
					return
				}
			}
		}
		io.WriteString(w, upstreamEnd)
	}))
	var text strings.Builder
	streamTokens(t, f.http.URL+"/v1/chat/completions", func(token string) bool {
		text.WriteString(token)
		select {
		case read <- token:
		case <-time.After(10 * time.Second):
			t.Fatalf("the upstream no longer waits for the client, which has read %q", text.String())
		}
		return true
	})
	if text.String() != "Once upon a time" {
		t.Fatalf("the client read %q", text.String())
	}
}

// TestRelayedStreamIsSigned checks that coalescing keeps response signing exact: a
// long answer relayed in batches verifies with the host key, every byte of it, and
// holds every token once, in order.
func TestRelayedStreamIsSigned(t *testing.T) {
	const tokens = 2000
	signer := simAttestation(t)
	f := newFixture(t, relayBackend(t, func(w http.ResponseWriter, r *http.Request) {
		for i := range tokens {
			io.WriteString(w, upstreamChunk(fmt.Sprintf(" %d<&>", i)))
			if i%7 == 0 {
				http.NewResponseController(w).Flush()
			}
		}
		io.WriteString(w, upstreamEnd)
	}), func(c *Config, _ *recorder) { c.Attestation = signer })
	body := `{"model":"stories260K","messages":[{"role":"user","content":"Count"}],"stream":true}`
	res := f.do("POST", "/v1/chat/completions", ownerKey, body)
	if res.status != http.StatusOK {
		t.Fatalf("%d %s", res.status, res.body)
	}
	mustVerify(t, signer.PublicKey(), body, "", res, true)
	var want strings.Builder
	for i := range tokens {
		fmt.Fprintf(&want, " %d<&>", i)
	}
	if s := parseSSE(t, res.body); s.text() != want.String() || len(s.chunks) != tokens+1 || !s.done {
		t.Fatalf("%d chunks, done %v, text %.80q...; want %d chunks and the upstream's text", len(s.chunks), s.done, s.text(), tokens+1)
	}
}

// TestStalledRelayIsCut performs the stalled-client attack on a coalescing stream:
// the client stops reading while a fast upstream keeps sending. The write deadline
// must still cut the stream, the upstream request must be cancelled, and the receipt
// must charge no more tokens than the host took from the backend before the cut, and
// only those of batches flushed whole.
func TestStalledRelayIsCut(t *testing.T) {
	upstreamStopped := make(chan struct{})
	var emitted atomic.Int64 // backend deltas the pipeline took
	upstream := relayBackend(t, func(w http.ResponseWriter, r *http.Request) {
		defer close(upstreamStopped)
		token := upstreamChunk(strings.Repeat("x", 1000))
		for range 1_000_000 {
			if _, err := io.WriteString(w, token); err != nil {
				return
			}
		}
		t.Error("the upstream sent a million tokens to a client that reads nothing")
	})
	b := newBilling(t, 1e9, upstream, func(c *Config, r *recorder) {
		c.MaxGenerations = 1
		c.WriteTimeout = 300 * time.Millisecond
		r.hook = func(ctx context.Context, n int, d string, emit func(string) error) error {
			err := emit(d)
			if err == nil {
				emitted.Add(1)
			}
			return err
		}
	})
	stalledClient(t, serveSmallBuffers(t, b.server.Handler()), `{"messages":[{"role":"user","content":""}],"temperature":0,"stream":true}`)
	select {
	case <-upstreamStopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream still sends 10 s after the client stopped reading")
	}
	var end generationEnd
	select {
	case end = <-b.backend.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the generation did not end")
	}
	if !errors.Is(end.err, errClientGone) || end.result.FinishReason != "cancelled" {
		t.Fatalf("the generation ended with %+v, %v; want it cut for its client", end.result, end.err)
	}
	var receipts []settle.Receipt
	for start := time.Now(); len(receipts) == 0; time.Sleep(10 * time.Millisecond) {
		var err error
		if receipts, err = b.service.Receipts(context.Background(), b.account, 1, 10); err != nil || time.Since(start) > 10*time.Second {
			t.Fatalf("no receipt: %v", err)
		}
	}
	// A batch whose flush the deadline cut is not charged: with these tiny socket
	// buffers that may be every token.
	if r := receipts[0]; r.Status != settle.StatusCancelled || r.Usage.CompletionTokens > uint64(emitted.Load()) {
		t.Fatalf("receipt of the cut stream: %+v; want cancelled, charging at most the %d tokens taken", r, emitted.Load())
	}
}

// flushCounter counts the flushes of a response.
type flushCounter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (f flushCounter) FlushError() error {
	f.n.Add(1)
	return flushError(f.ResponseWriter)
}

func (f flushCounter) Unwrap() http.ResponseWriter { return f.ResponseWriter }

// streamTokens posts a streamed chat request to url and passes the text of every
// content chunk to token as it is read, until token returns false or the stream ends.
func streamTokens(t *testing.T, url string, token func(string) bool) {
	t.Helper()
	req, _ := http.NewRequest("POST", url,
		strings.NewReader(`{"model":"stories260K","messages":[{"role":"user","content":"Hi"}],"stream":true}`))
	setAuth(req, ownerKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	lines := bufio.NewScanner(res.Body)
	for lines.Scan() {
		if s := parseSSE(t, []byte(lines.Text()+"\n")); len(s.chunks) == 1 && s.text() != "" && !token(s.text()) {
			return
		}
	}
}

// TestRelayFirstTokenAtOnce performs the failure coalescing invites at the start of a
// stream: the first token must reach the client at once (within 10 s) while the
// upstream waits, and a client that leaves then must end the host's wait for the next
// read (within 10 s), which cancels the generation and its upstream request.
func TestRelayFirstTokenAtOnce(t *testing.T) {
	read := make(chan struct{})
	f := newFixture(t, relayBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, upstreamChunk("Once"))
		http.NewResponseController(w).Flush()
		select {
		case <-read:
		case <-time.After(10 * time.Second):
			t.Error("the client did not get the first token within 10 s of the upstream sending it")
		}
		// Send nothing more: were the rest sent now, a host whose wait ended with the
		// client could still read it whole and end the generation as stopped. The
		// host cancels this request once its wait ends.
		select {
		case <-r.Context().Done():
		case <-time.After(15 * time.Second):
		}
	}))
	streamTokens(t, f.http.URL+"/v1/chat/completions", func(text string) bool {
		if text != "Once" {
			t.Errorf("the first token read is %q", text)
		}
		close(read)
		return false // the client leaves
	})
	select {
	case end := <-f.backend.ended:
		if end.result.FinishReason != "cancelled" {
			t.Fatalf("the generation ended with %+v, %v; want it cancelled", end.result, end.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the generation still runs 10 s after its client left")
	}
}

// TestRelayEndsAtOnce performs the wait a relay must not add at the end of a stream:
// the upstream sends its answer and [DONE] in one write and then keeps its body open,
// as servers that end the chunked body in a write of its own may for a moment. The
// host must end its stream (its signature event and [DONE]) at once, not wait for the
// end of the body.
func TestRelayEndsAtOnce(t *testing.T) {
	f := newFixture(t, relayBackend(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, upstreamChunk("Once")+upstreamEnd)
		http.NewResponseController(w).Flush()
		select { // the host gives up on the end of the body after drainWait
		case <-r.Context().Done():
		case <-time.After(15 * time.Second):
		}
	}))
	req, _ := http.NewRequest("POST", f.http.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"stories260K","messages":[{"role":"user","content":"Hi"}],"stream":true}`))
	setAuth(req, ownerKey)
	client := &http.Client{Timeout: 10 * time.Second}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("the stream did not end within 10 s of the upstream's [DONE]: %v", err)
	}
	if !bytes.HasSuffix(body, doneEvent) || !strings.Contains(string(body), `"Once"`) {
		t.Fatalf("the stream: %s", body)
	}
}

// TestRelayCoalescesARead checks what the idle hook is for: the upstream sends 200
// tokens in one write and then waits until the client has them all. The host reads
// them in one read or a few and must relay them in as many writes and flushes, not
// one per token (200), and must relay them before it reads again, since the upstream
// sends nothing more until the client has them.
func TestRelayCoalescesARead(t *testing.T) {
	const tokens = 200
	var flushes atomic.Int64
	all := make(chan struct{})
	f := newFixture(t, relayBackend(t, func(w http.ResponseWriter, r *http.Request) {
		var burst strings.Builder
		for i := range tokens {
			burst.WriteString(upstreamChunk(fmt.Sprintf(" %d", i)))
		}
		io.WriteString(w, burst.String())
		http.NewResponseController(w).Flush()
		select {
		case <-all:
		case <-time.After(10 * time.Second):
			t.Error("the client did not get the burst within 10 s of the upstream sending it")
		}
		io.WriteString(w, upstreamEnd)
	}))
	counted := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.server.Handler().ServeHTTP(flushCounter{w, &flushes}, r)
	}))
	t.Cleanup(counted.Close)
	n := 0
	streamTokens(t, counted.URL+"/v1/chat/completions", func(text string) bool {
		if text != fmt.Sprintf(" %d", n) {
			t.Fatalf("token %d is %q", n, text)
		}
		if n++; n == tokens {
			close(all)
		}
		return true
	})
	if n != tokens {
		t.Fatalf("the client read %d tokens, want %d", n, tokens)
	}
	// The burst is 21 KB: one read of the host's 64 KiB buffer, or a few if the
	// kernel hands it over in parts; the ending is one flush more.
	if got := flushes.Load(); got > 10 {
		t.Errorf("the host flushed %d times for a burst of %d tokens; want a flush per read", got, tokens)
	}
}
