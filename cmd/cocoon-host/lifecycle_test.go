package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/ton"

	"github.com/cocoonhost/cocoon/settle"
)

// slowUpstream is an OpenAI-compatible inference server whose one model writes a word
// every 50 ms until its request is cancelled: a generation longer than any drain.
func slowUpstream(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"object":"list","data":[{"id":"slow","object":"model","owned_by":"test"}]}`)
	})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			io.WriteString(w, "data: {\"model\":\"slow\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"once \"},\"finish_reason\":null}]}\n\n")
			if rc.Flush() != nil {
				return
			}
		}
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s.URL + "/v1"
}

// openStream sends a signed streaming request and returns its answer once the first
// chunk has arrived.
func (c *billedClient) openStream(t *testing.T) (*http.Response, *bufio.Scanner) {
	t.Helper()
	body := []byte(`{"messages":[{"role":"user","content":"Once upon a time"}],"stream":true}`)
	resp, err := c.do(context.Background(), "POST", "/v1/chat/completions", "", body)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	events := bufio.NewScanner(resp.Body)
	if resp.StatusCode != http.StatusOK || !events.Scan() || !strings.HasPrefix(events.Text(), "data: {") {
		t.Fatalf("stream: %s, first line %q", resp.Status, events.Text())
	}
	return resp, events
}

// exitWithin waits for the host process to exit within d and returns its exit code.
func (h *hostProcess) exitWithin(t *testing.T, d time.Duration) int {
	t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- h.cmd.Wait() }()
	select {
	case <-exited:
		return h.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("the host still runs %s after the signal; logs:\n%s", d, h.logs.String())
		return 0
	}
}

// TestServeShutdownCutsStreams stops a billing host (its own process) with SIGTERM while
// a stream runs that would outlast the drain (--shutdown-timeout 1s): the stream ends
// with its receipt event and the error event "shutting_down" (503), the host exits 0,
// and after a restart the receipt is in the ledger, charging what the client received.
// Under the race detector (go test -race), the host process runs with it too, and a
// race, such as the ledger used after it closed, fails the exit status.
func TestServeShutdownCutsStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the host twice")
	}
	bh := newBillingHost(t, "--backend", "openai", "--backend-url", slowUpstream(t), "--shutdown-timeout", "1s")
	h := startHostProcess(t, bh.args...)
	bh.client.base = h.base
	_, events := bh.client.openStream(t)

	signalled := time.Now()
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var receipt *settle.Receipt
	var cut struct {
		Error struct{ Message, Type, Code string }
	}
	words := 1 // the first chunk
	for events.Scan() {
		data, ok := strings.CutPrefix(events.Text(), "data: ")
		switch {
		case !ok:
		case strings.Contains(data, `"cocoon_receipt"`):
			var ev struct {
				Receipt *settle.Receipt `json:"cocoon_receipt"`
			}
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				t.Fatal(err)
			}
			receipt = ev.Receipt
		case strings.HasPrefix(data, `{"error"`):
			if err := json.Unmarshal([]byte(data), &cut); err != nil {
				t.Fatal(err)
			}
		case data == "[DONE]":
			t.Fatal("a stream cut at shutdown ended with [DONE]")
		default:
			words++
		}
	}
	if cut.Error.Code != "shutting_down" || !strings.Contains(cut.Error.Message, "shutting down") {
		t.Errorf("the stream ended with %+v, want the error event shutting_down", cut)
	}
	if d := time.Since(signalled); d < 900*time.Millisecond || d > 10*time.Second {
		t.Errorf("the stream was cut %s after the signal, with a drain of 1 s", d)
	}
	if receipt == nil || receipt.Status != settle.StatusCancelled || receipt.Usage.CompletionTokens == 0 ||
		receipt.Usage.CompletionTokens > uint64(words) || receipt.Verify(bh.key) != nil {
		t.Fatalf("the receipt of the cut stream (%d words received): %+v", words, receipt)
	}
	if code := h.exitWithin(t, 15*time.Second); code != 0 {
		t.Errorf("the host exited %d after a shutdown that cut a stream cleanly; logs:\n%s", code, h.logs.String())
	}
	if logs := h.logs.String(); !strings.Contains(logs, "cutting the requests still running") || !strings.Contains(logs, "msg=stopped") {
		t.Errorf("the logs do not tell the cut and the stop:\n%s", logs)
	}

	h = startHostProcess(t, bh.args...)
	bh.client.base = h.base
	all := bh.client.receipts(t)
	if len(all) != 1 || all[0].MarshalHeader() != receipt.MarshalHeader() {
		t.Errorf("the ledger after a restart: %+v, want the receipt the client got", all)
	}
}

// TestServeSecondSignal: a second SIGTERM exits the host at once, with status 1 and a
// line saying so, while a stream would hold the drain for 30 seconds.
func TestServeSecondSignal(t *testing.T) {
	bh := newBillingHost(t, "--backend", "openai", "--backend-url", slowUpstream(t))
	h := startHostProcess(t, bh.args...)
	bh.client.base = h.base
	bh.client.openStream(t)
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(h.logs.String(), "shutting down") {
		time.Sleep(10 * time.Millisecond) // the first signal has been taken
	}
	signalled := time.Now()
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := h.exitWithin(t, 5*time.Second); code != 1 {
		t.Errorf("exit status %d after a second signal, want 1", code)
	}
	t.Logf("exited %s after the second signal", time.Since(signalled))
	if logs := h.logs.String(); !strings.Contains(logs, "second terminated: exiting now") {
		t.Errorf("no line tells the forced exit:\n%s", logs)
	}
}

// holdingChain is the emulated chain whose masterchain queries, once hold is set, wait
// for their context and then take 300 ms more: a settlement round still running when
// the host is told to stop. It records when the last query ended and when the host
// closed its TON connections.
type holdingChain struct {
	ton.APIClientWrapped
	hold    bool
	entered chan struct{} // a held query started

	mu              sync.Mutex
	lastEnd, closed time.Time
}

func (c *holdingChain) CurrentMasterchainInfo(ctx context.Context) (*ton.BlockIDExt, error) {
	if !c.hold {
		return c.APIClientWrapped.CurrentMasterchainInfo(ctx)
	}
	select {
	case c.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	time.Sleep(300 * time.Millisecond)
	c.mu.Lock()
	c.lastEnd = time.Now()
	c.mu.Unlock()
	return nil, ctx.Err()
}

func (c *holdingChain) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = time.Now()
}

// TestServeStopsPartsInOrder stops a billing host while its settler is in a round: the
// host returns only after the round has ended, and closes its TON connections after
// it, so neither the ledger nor the chain is used after it is closed.
func TestServeStopsPartsInOrder(t *testing.T) {
	model, err := filepath.Abs(testModelDir())
	if err != nil {
		t.Fatal(err)
	}
	bh := newBillingHost(t, "--model-dir", model)
	t.Chdir(filepath.Join("..", "..")) // startServe reads up to the example pipeline's line
	saved := dialTON
	t.Cleanup(func() { dialTON = saved })
	var chain *holdingChain
	dialTON = func(ctx context.Context, cfg *serveConfig) (ton.APIClientWrapped, func(), error) {
		emulated, err := emulatedChain(ctx, cfg)
		chain = &holdingChain{APIClientWrapped: emulated, entered: make(chan struct{}, 1)}
		return chain, chain.stop, err
	}

	// A first run leaves a receipt unsettled (the settler waits for 1 TON or 6 hours).
	r := startServe(t, bh.args...)
	bh.client.base = r.base
	if _, _, err := bh.client.chat(context.Background(), "", false); err != nil {
		t.Fatal(err)
	}
	r.stop(t)

	// The second run's settler reads that account's escrow as soon as it starts.
	dialTON = func(ctx context.Context, cfg *serveConfig) (ton.APIClientWrapped, func(), error) {
		emulated, err := emulatedChain(ctx, cfg)
		chain = &holdingChain{APIClientWrapped: emulated, hold: true, entered: make(chan struct{}, 1)}
		return chain, chain.stop, err
	}
	r = startServe(t, bh.args...)
	select {
	case <-chain.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the settler did not read the chain")
	}
	r.stop(t)
	chain.mu.Lock()
	defer chain.mu.Unlock()
	switch {
	case chain.lastEnd.IsZero() || chain.lastEnd.After(r.returned):
		t.Errorf("serve returned at %s, before the settler's round had ended (%s)", r.returned.Format(time.StampMicro), chain.lastEnd.Format(time.StampMicro))
	case chain.closed.IsZero():
		t.Error("the TON connections were never closed")
	case chain.closed.Before(chain.lastEnd):
		t.Error("the TON connections were closed under the settler's round")
	}
}
