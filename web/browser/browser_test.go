package browser_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host/backend/embedded"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/ledger"
	"github.com/cocoonhost/cocoon/settle/tonemu"
	"github.com/cocoonhost/cocoon/web"
	"github.com/cocoonhost/cocoon/web/browser"
	"github.com/cocoonhost/cocoon/web/e2e"
	"github.com/cocoonhost/cocoon/web/proxy/proxytest"
)

// prompt is what the relays between the library and the host must never see.
const prompt = "Once upon a time a secret about the browser library"

// modelDir is the shared test model, stories260K.
func modelDir() string {
	if dir := os.Getenv("COCOON_MODEL_DIR"); dir != "" {
		return dir
	}
	return filepath.Join("..", "..", "..", "shared", "models", "stories260K")
}

// TestLibraryAgainstHost runs web/browser/test/host.mjs with Node on the built
// dist/cocoon.js against a host on the simulator with the real model, behind a relay
// that alters sealed requests or answers on demand (tamperRelay): connect verifies and
// pins, a wrong simulator root fails, chats whole and streamed in both suites verify,
// a changed byte either way is a clean error, sessions are used from the second chat
// on (version-2 envelopes at the relay), a relay's Cocoon-E2E-Session header outside
// the seal changes nothing, an unknown session falls back once to version 1, no
// credential but a sealed chat's goes to the host reached as a remote http host
// (0.0.0.0) and no spelling of another host passes for loopback, and the host's own
// relay never sees the prompt.
func TestLibraryAgainstHost(t *testing.T) {
	engine, err := embedded.New(modelDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Close() })
	h := proxytest.NewHost(t, engine)
	h.Answer429(8, "0") // for test/host.mjs's rate-limit test: a connect that gives up, one that waits
	relay := tamperRelay(t, h.URL)
	runNode(t, map[string]string{
		"COCOON_RELAY": relay.URL, "COCOON_FORGER": streamForger(t), "COCOON_ROOT": h.Root, "WRONG_ROOT": wrongRoot(t),
		"COCOON_PIPELINE": h.ID, "COCOON_API_KEY": proxytest.APIKey, "VERIFIER_SHA256": verifierSHA256(t),
	}, relay, func() { h.Start(t) })
	if bytes.Contains(h.Captured(), []byte(prompt)) {
		t.Fatal("the relay in front of the host saw the prompt")
	}
	if v := relay.versions(); !bytes.Contains(v, []byte{2}) || !bytes.Contains(v, []byte{1}) {
		t.Fatalf("the relay saw envelopes of versions %v: want both 1 (establishing) and 2 (sessions)", v)
	}
}

// streamForger serves, until the test ends, a host that signs and seals what no real
// host sends, for test/host.mjs to pin (GET /keys: { host_key, e2e_keys }, base64):
// each sealed streamed chat at /{order}/v1/chat/completions is answered, sealed to its
// request's key and signed whole with the host key (so that the envelope opens and the
// signature verifies), with a stream of a chunk and, by order, "in-order" nothing more,
// "one-receipt" a receipt event, "two-receipts" two, "text-after-receipt" a receipt
// event then another chunk. The receipts are not real ones: the host measures no
// settlement key.
func streamForger(t *testing.T) string {
	t.Helper()
	hostKey := ed25519Seed(0x55)
	keys, err := e2e.GenerateHostKeys()
	if err != nil {
		t.Fatal(err)
	}
	const chunk = `{"choices":[{"delta":{"content":"forged"}}]}`
	receipt := func(seq int) string { return fmt.Sprintf(`{"choices":[],"cocoon_receipt":{"seq":%d}}`, seq) }
	orders := map[string][]string{
		"in-order":           {chunk},
		"one-receipt":        {chunk, receipt(1)},
		"two-receipts":       {chunk, receipt(1), receipt(2)},
		"text-after-receipt": {chunk, receipt(1), chunk},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"host_key": hostKey.Public(), "e2e_keys": keys.Public()})
	})
	mux.HandleFunc("POST /{order}/v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		events, ok := orders[r.PathValue("order")]
		envelope, _ := io.ReadAll(r.Body)
		opened, err := keys.OpenRequest(http.MethodPost, "/v1/chat/completions", envelope)
		if !ok || err != nil {
			http.Error(w, fmt.Sprintf("order %q: %v", r.PathValue("order"), err), http.StatusBadRequest)
			return
		}
		var stream bytes.Buffer
		for _, e := range events {
			stream.WriteString("data: " + e + "\n\n")
		}
		request := sha256.Sum256(opened.Body)
		signed := attest.SignedResponse{Kind: attest.ResponseStream, RequestSHA256: &request, Status: http.StatusOK, BodySHA256: sha256.Sum256(stream.Bytes())}
		stream.Write(attest.SignatureEvent("ed25519=" + base64.StdEncoding.EncodeToString(signed.Sign(hostKey))))
		stream.WriteString("data: [DONE]\n\n")
		w.Header().Set("Content-Type", "text/event-stream")
		head := e2e.ResponseHead(http.Header{"Content-Type": {"text/event-stream"}})
		w.Write(opened.StreamRecord(0, false, append(head, stream.Bytes()...)))
		w.Write(opened.StreamRecord(1, true, nil))
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts.URL
}

// verifierSHA256 is the hex sha256 of the verifier `make page` built, which the host
// embeds.
func verifierSHA256(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join("..", "page", "dist", "verifier.wasm"))
	if err != nil {
		t.Fatalf("%v: run `make page` first", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// wrongRoot makes another simulator and returns a file in its directory.
func wrongRoot(t *testing.T) string {
	dir := t.TempDir()
	if _, err := attest.NewSim(dir); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, attest.SimRootFile)
}

// TestLibraryBilling funds an escrow with the deposit the library builds (the wallet's
// side is the emulated chain's), then chats billed to it: the receipts verify against
// the attested settlement key and the price list, and the account reads back. Then the
// price list the library kept is one of other prices, signed by the settlement key (the
// host's before a price change, served by the relay): a receipt it refuses verifies
// against the list fetched once more; a list fetched again that another key signed
// stays refused, after one fetch, the answer given with the refusal (CocoonError's
// answer).
func TestLibraryBilling(t *testing.T) {
	m := proxytest.NewMarket(t)
	h := m.NewHost(1_000_000, proxytest.MarketModel)
	client, err := m.Chain.NewWallet(ed25519Seed(0x77), 100e9)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "deposit.json")
	raised := raisedHost(t, m, h)
	r := tamperRelay(t, h.URL)
	r.lists = otherPriceLists(t, h.URL, h.Key)
	if r.raised, err = url.Parse(raised); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"COCOON_RELAY": r.URL, "COCOON_ROOT": h.Root, "COCOON_PIPELINE": h.ID,
		"COCOON_API_KEY": proxytest.APIKey, "COCOON_WALLET": client.WalletAddress().String(), "COCOON_OUT": out}
	vars["COCOON_STEP"] = "deposit"
	runNode(t, vars, nil, nil)

	var d struct {
		Address   string `json:"address"`
		Amount    uint64 `json:"amount,string"`
		StateInit []byte `json:"stateInit"` // base64 BOCs, as TON Connect takes them
		Payload   []byte `json:"payload"`
	}
	b, err := os.ReadFile(out)
	if err != nil || json.Unmarshal(b, &d) != nil {
		t.Fatalf("the deposit: %s %v", b, err)
	}
	addr, err := address.ParseAddr(d.Address)
	if err != nil {
		t.Fatal(err)
	}
	initCell, err := cell.FromBOC(d.StateInit)
	if err != nil {
		t.Fatal(err)
	}
	body, err := cell.FromBOC(d.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var si tlb.StateInit
	if err := tlb.LoadFromCell(&si, initCell.MustBeginParse()); err != nil {
		t.Fatal(err)
	}
	if err := tonemu.Send(context.Background(), client, addr, d.Amount, body, &si); err != nil {
		t.Fatal(err)
	}
	vars["COCOON_STEP"] = "billed"
	runNode(t, vars, nil, nil)
}

// raisedHost serves the billing host h as its operator would after raising its prices
// (twice each) with a new config and a restart: the same keys and evidence, escrows on
// the same chain, a ledger of its own. It restarts h once to see its configuration.
func raisedHost(t *testing.T, m *proxytest.Market, h *proxytest.BillingHost) string {
	t.Helper()
	var cfg web.Config
	configure := h.Config
	h.Config = func(c *web.Config) { configure(c); cfg = *c }
	h.Start(t)
	store, err := ledger.Open(filepath.Join(t.TempDir(), "ledger.db"), make([]byte, ledger.MinMACKey))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	l := h.Billing.PriceList()
	raisedPrices := *l.Default
	raisedPrices.PromptPerMillion *= 2
	raisedPrices.CompletionPerMillion *= 2
	pricer, err := billing.NewPricer(settle.SamePrices(raisedPrices), l.Curve)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Billing, err = billing.NewService(billing.Config{Store: store, Pricer: pricer, Escrows: billing.NewChainEscrows(m.Chain, 0),
		Key: h.Key, HostAddr: l.Wallet, ComputeReserve: 100_000}); err != nil {
		t.Fatal(err)
	}
	srv, err := web.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

// otherPriceLists returns the price list of the host at hostURL as it is ("original":
// the host's list before its operator raised its prices, raisedHost), and at twice its
// prices, signed by its settlement key key ("stale": the host's list before a price
// change) and by another key ("forged"), as JSON.
func otherPriceLists(t *testing.T, hostURL string, key ed25519.PrivateKey) map[string][]byte {
	t.Helper()
	resp, err := http.Get(hostURL + "/v1/pricing")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l settle.PriceList
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	lists := map[string][]byte{}
	if lists["original"], err = json.Marshal(&l); err != nil {
		t.Fatal(err)
	}
	l.Prices.Default.PromptPerMillion *= 2
	l.Prices.Default.CompletionPerMillion *= 2
	for name, k := range map[string]ed25519.PrivateKey{"stale": key, "forged": ed25519Seed(0x66)} {
		l.Sign(k)
		if lists[name], err = json.Marshal(&l); err != nil {
			t.Fatal(err)
		}
	}
	return lists
}

// inflateWindows rewrites a model list answer to give every model a context_length
// of 10⁹.
func inflateWindows(resp *http.Response) error {
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var list struct {
		Object string           `json:"object"`
		Data   []map[string]any `json:"data"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	for _, m := range list.Data {
		m["context_length"] = 1_000_000_000
	}
	b, _ = json.Marshal(list)
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	resp.Header.Del("Content-Length")
	return nil
}

func ed25519Seed(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

// runNode runs test/host.mjs with the variables vars and fails t with its output
// when it fails. While it runs, each restart the relay r is asked for (restartPath)
// runs restart on the test's goroutine.
func runNode(t *testing.T, vars map[string]string, r *relay, restart func()) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("the library's tests need Node 18 or later on PATH: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", filepath.Join("test", "host.mjs"))
	cmd.Env = append(os.Environ(), "COCOON_PROMPT="+prompt)
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var restarts chan chan struct{}
	if r != nil {
		restarts = r.restarts
	}
	for {
		select {
		case done := <-restarts:
			func() {
				defer close(done) // also when restart fails t: the relay's handler returns
				restart()
			}()
		case err := <-exited:
			if err != nil {
				t.Fatalf("node %v:\n%s", err, out.Bytes())
			}
			t.Logf("node:\n%s", out.Bytes())
			return
		}
	}
}

// relayMode is the context key of a relayed request's mode, for its answer.
type relayMode struct{}

// relay is a tamperRelay: its URL, the version bytes of the sealed chat requests it
// passed, in order, and the host restarts asked of it (each closes its channel once
// the host is back: runNode).
type relay struct {
	URL string
	// lists are price lists the relay can answer GET .../v1/pricing with in the host's
	// place, by name (pricesPath).
	lists map[string][]byte

	restarts chan chan struct{}
	// target is the host the relay passes requests to; raisePath switches it to raised.
	target atomic.Pointer[url.URL]
	raised *url.URL
	mu     sync.Mutex
	seen   []byte
	// listsQueued answer the next price-list requests, one each; pricingAsked counts
	// the price-list requests; redirected the requests the redirect's target got.
	listsQueued  [][]byte
	pricingAsked int
	redirected   int
	// modelsAsked counts the model-list requests (GET .../v1/models).
	modelsAsked int
}

// versions returns the first byte of every sealed chat request the relay saw so far.
func (r *relay) versions() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.seen)
}

// record notes the version byte of a sealed chat request.
func (r *relay) record(envelope []byte) {
	if len(envelope) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, envelope[0])
}

// versionsPath is where the relay serves the versions it saw, for test/host.mjs;
// restartPath restarts the host behind it (new keys, every session forgotten).
//
// pricesPath queues price lists of relay.lists (a POST whose body names them, comma
// separated) to answer the next price-list requests in the host's place, one each;
// askedPath serves "<price-list requests> <requests the redirect's target got>
// <model-list requests>".
const (
	versionsPath = "/relay/versions"
	restartPath  = "/relay/restart"
	pricesPath   = "/relay/prices"
	askedPath    = "/relay/asked"
	// raisePath passes every later request to relay.raised: the host after its
	// operator raised its prices (same keys and evidence, a new config).
	raisePath = "/relay/raise"
)

// tamperRelay serves target under these prefixes, so that the test proves what the
// library does with what a relay can do:
//
//	/clean/    passes everything through
//	/request/  changes the middle byte of every sealed chat request
//	/flipN/    changes byte N of every session (version-2) chat request: 0 is the
//	           first, -1 the last
//	/answer/   changes one byte of every sealed chat answer (a whole answer's
//	           ciphertext, or a stream's second record)
//	/forge/    sets Cocoon-E2E-Session: 3600 on every chat answer, outside the seal
//	/strip/    deletes Cocoon-E2E-Session from every chat answer, outside the seal
//	/inflate/  answers the model lists (GET .../v1/models, unsigned) with every
//	           context_length 10⁹
//	/unknown/  answers every chat request itself with a plaintext 400
//	           e2e_session_unknown, as the host does for a session it does not hold
//	/redirect/ answers every request with a 307 to another server, which counts what
//	           reaches it and answers nothing useful
//
// It records the version byte of every sealed chat request (as sent, before any
// change), served as hex at versionsPath, and restarts the host on a POST to
// restartPath.
func tamperRelay(t *testing.T, target string) *relay {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{restarts: make(chan chan struct{})}
	r.target.Store(u)
	mode := func(r *http.Request) (string, bool) {
		m, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		return m, strings.HasSuffix(r.URL.Path, "/chat/completions")
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			m, chat := mode(pr.In)
			pr.SetURL(r.target.Load())
			pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, "/"+m)
			pr.Out.URL.RawPath = ""
			pr.Out = pr.Out.WithContext(context.WithValue(pr.Out.Context(), relayMode{}, m))
			if !chat {
				return
			}
			body, _ := io.ReadAll(pr.Out.Body)
			r.record(body)
			if m == "request" {
				body[len(body)/2] ^= 1
			} else if n, err := strconv.Atoi(strings.TrimPrefix(m, "flip")); err == nil && len(body) > 0 && body[0] == 2 {
				body[(n+len(body))%len(body)] ^= 1 // -1 is the last byte
			}
			pr.Out.Body, pr.Out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		},
		ModifyResponse: func(resp *http.Response) error {
			m, _ := resp.Request.Context().Value(relayMode{}).(string)
			if m == "inflate" && strings.HasSuffix(resp.Request.URL.Path, "/v1/models") {
				return inflateWindows(resp)
			}
			if !strings.HasSuffix(resp.Request.URL.Path, "/chat/completions") {
				return nil
			}
			switch m {
			case "forge":
				resp.Header.Set("Cocoon-E2E-Session", "3600")
			case "strip":
				resp.Header.Del("Cocoon-E2E-Session")
			case "answer":
				answer, err := io.ReadAll(resp.Body)
				if err != nil {
					return err
				}
				answer = alterAnswer(t, resp.Header.Get("Content-Type"), answer)
				resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(answer)), int64(len(answer))
				resp.Header.Del("Content-Length")
			}
			return nil
		},
	}
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		r.mu.Lock()
		r.redirected++
		r.mu.Unlock()
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(elsewhere.Close)
	mux := http.NewServeMux()
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasSuffix(req.URL.Path, "/v1/models") {
			r.mu.Lock()
			r.modelsAsked++
			r.mu.Unlock()
		}
		if strings.HasSuffix(req.URL.Path, "/v1/pricing") {
			r.mu.Lock()
			r.pricingAsked++
			var list []byte
			if len(r.listsQueued) > 0 {
				list, r.listsQueued = r.listsQueued[0], r.listsQueued[1:]
			}
			r.mu.Unlock()
			if list != nil {
				w.Header().Set("Content-Type", "application/json")
				w.Write(list)
				return
			}
		}
		rp.ServeHTTP(w, req)
	}))
	mux.HandleFunc("/redirect/", func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, elsewhere.URL+strings.TrimPrefix(req.URL.Path, "/redirect"), http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("POST "+pricesPath, func(w http.ResponseWriter, req *http.Request) {
		names, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		for name := range strings.SplitSeq(string(names), ",") {
			list, ok := r.lists[name]
			if !ok {
				http.Error(w, "no price list "+name, http.StatusBadRequest)
				return
			}
			r.listsQueued = append(r.listsQueued, list)
		}
	})
	mux.HandleFunc("POST "+raisePath, func(w http.ResponseWriter, _ *http.Request) {
		if r.raised == nil {
			http.Error(w, "no raised host", http.StatusBadRequest)
			return
		}
		r.target.Store(r.raised)
	})
	mux.HandleFunc("GET "+askedPath, func(w http.ResponseWriter, _ *http.Request) {
		r.mu.Lock()
		defer r.mu.Unlock()
		fmt.Fprintf(w, "%d %d %d", r.pricingAsked, r.redirected, r.modelsAsked)
	})
	mux.HandleFunc("GET "+versionsPath, func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, hex.EncodeToString(r.versions()))
	})
	mux.HandleFunc("POST "+restartPath, func(w http.ResponseWriter, req *http.Request) {
		done := make(chan struct{})
		select {
		case r.restarts <- done:
		case <-req.Context().Done():
			return
		}
		<-done
	})
	mux.HandleFunc("POST /unknown/", func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.record(body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"code":"e2e_session_unknown","message":"forged by the relay"}}`)
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	r.URL = ts.URL
	return r
}

// alterAnswer changes one byte of a sealed answer's ciphertext: the middle byte of a
// whole one, a base64 digit in the middle of a stream's second record (still canonical
// base64, so only the ciphertext differs).
func alterAnswer(t *testing.T, contentType string, b []byte) []byte {
	switch contentType {
	case "application/vnd.cocoon.e2e":
		b[len(b)/2] ^= 1
		return b
	case "text/event-stream":
		events := strings.SplitAfter(string(b), "\n\n")
		if len(events) < 3 {
			break
		}
		ev := []byte(events[1])
		i := len("data: ") + (len(ev)-len("data: ")-2)/2
		if ev[i] == 'A' {
			ev[i] = 'B'
		} else {
			ev[i] = 'A'
		}
		events[1] = string(ev)
		return []byte(strings.Join(events, ""))
	}
	t.Errorf("alterAnswer: nothing to alter in a %q answer of %d bytes", contentType, len(b))
	return b
}

// TestHandler: the host serves the committed bundle at browser.Path, as JavaScript,
// revalidated by its ETag, the verifier's files beside it, and nothing else.
func TestHandler(t *testing.T) {
	verifier := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "asset "+r.URL.Path) })
	h := browser.Handler(verifier, "/assets/")
	for path, want := range map[string]int{browser.Dir + "verifier.wasm": 200, browser.Dir + "wasm_exec.js": 200, browser.Dir + "page.js": 404, browser.Dir: 404} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want || (want == 200 && rec.Body.String() != "asset /assets/"+strings.TrimPrefix(path, browser.Dir)) {
			t.Fatalf("GET %s: %d %q", path, rec.Code, rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, browser.Path, nil))
	if rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), browser.Bundle()) || rec.Header().Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Fatalf("GET: %d %q, %d bytes", rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len())
	}
	req := httptest.NewRequest(http.MethodGet, browser.Path, nil)
	req.Header.Set("If-None-Match", rec.Header().Get("ETag"))
	rec2 := httptest.NewRecorder()
	h.ServeHTTP(rec2, req)
	if rec2.Code != http.StatusNotModified {
		t.Fatalf("revalidation: %d", rec2.Code)
	}
	rec3 := httptest.NewRecorder()
	h.ServeHTTP(rec3, httptest.NewRequest(http.MethodPost, browser.Path, nil))
	if rec3.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", rec3.Code)
	}
}
