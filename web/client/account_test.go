package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/ledger"
	"github.com/cocoonhost/cocoon/web"
	"github.com/cocoonhost/cocoon/web/client/clienttest"
)

var (
	settlementKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, 32))
	account       = "0:" + strings.Repeat("ab", 32)
)

// receiptChain builds n receipts of one account, signed by key, as a host's ledger
// would.
func receiptChain(n int, key ed25519.PrivateKey) []settle.Receipt {
	var out []settle.Receipt
	var cum uint64
	for i := 1; i <= n; i++ {
		r := settle.Receipt{Account: account, Seq: uint64(i), RequestHash: settle.RequestHash([]byte{byte(i)}), Model: "m",
			Usage:  settle.Usage{PromptTokens: uint64(10 * i), CompletionTokens: uint64(20 * i)},
			Prices: settle.PriceTable{PromptPerMillion: 100_000, CompletionPerMillion: 400_000}, LoadMilli: 1000,
			MaxCost: math.MaxUint32, Status: settle.StatusCompleted, Time: 1_700_000_000 + int64(i)}
		r.Cost = r.Prices.Cost(r.Usage, r.LoadMilli, r.MaxCost)
		cum += r.Cost
		r.Cumulative = cum
		r.Sign(key)
		out = append(out, r)
	}
	return out
}

// TestCheckReceipts: each way a host can overcharge through its receipts (a receipt
// signed by another key, a cost above what its usage comes to, a total that skips, a
// gap, a chain that stops short of the host's ledger) fails its check.
func TestCheckReceipts(t *testing.T) {
	_, otherKey, _ := ed25519.GenerateKey(nil)
	pub := settlementKey.Public().(ed25519.PublicKey)
	for _, tt := range []struct {
		name   string
		list   func() []settle.Receipt
		key    ed25519.PublicKey
		view   *settle.AccountView
		failed string // the check that fails, "" for none
	}{
		{"a good chain", func() []settle.Receipt { return receiptChain(3, settlementKey) }, pub, nil, ""},
		{"complete", func() []settle.Receipt { return receiptChain(3, settlementKey) }, pub,
			&settle.AccountView{LastSeq: 3, Cumulative: receiptChain(3, settlementKey)[2].Cumulative}, ""},
		{"another key", func() []settle.Receipt { return receiptChain(3, otherKey) }, pub, nil, "signatures"},
		{"cost above usage, re-signed", func() []settle.Receipt {
			l := receiptChain(3, settlementKey)
			l[1].Cost++
			l[1].Cumulative++
			l[2].Cumulative++
			l[1].Sign(settlementKey)
			l[2].Sign(settlementKey)
			return l
		}, pub, nil, "signatures"},
		{"a gap", func() []settle.Receipt { l := receiptChain(3, settlementKey); return append(l[:1], l[2]) }, pub, nil, "chain"},
		{"stops short of the ledger", func() []settle.Receipt { return receiptChain(2, settlementKey) }, pub,
			&settle.AccountView{LastSeq: 3, Cumulative: receiptChain(3, settlementKey)[2].Cumulative}, "complete"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checks, total := CheckReceipts(tt.list(), tt.key, "given", tt.view)
			failed := ""
			for _, c := range checks {
				if !c.OK && failed == "" {
					failed = c.Name
				}
			}
			if failed != tt.failed {
				t.Fatalf("failed check %q, want %q: %v", failed, tt.failed, checks)
			}
			if tt.failed == "" && total == 0 {
				t.Errorf("total 0 for a good chain")
			}
		})
	}
	checks, _ := CheckReceipts(receiptChain(1, otherKey), nil, "", nil)
	if !checks[0].Skipped {
		t.Errorf("without a key the settlement key check is not marked skipped: %v", checks[0])
	}
}

// TestReceiptsFile: a chain written and appended to reads back the same; a line that
// is not a receipt names its line.
func TestReceiptsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "receipts.jsonl")
	l := receiptChain(3, settlementKey)
	if err := WriteReceipts(path, l[:2]); err != nil {
		t.Fatal(err)
	}
	if err := AppendReceipt(path, &l[2]); err != nil {
		t.Fatal(err)
	}
	back, err := ReadReceipts(path)
	if err != nil || len(back) != 3 || back[2].Cumulative != l[2].Cumulative {
		t.Fatalf("read back %d receipts, %v", len(back), err)
	}
	if _, err := settle.VerifyChain(back, settlementKey.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	WriteReceipts(bad, l[:1])
	AppendReceipt(bad, &l[1])
	appendLine(t, bad, "{not json")
	if _, err := ReadReceipts(bad); err == nil || !strings.Contains(err.Error(), "bad.jsonl:3: not a receipt") {
		t.Errorf("err %v, want one naming line 3", err)
	}
}

// fixedEscrow is an escrow source with one funded escrow per account asked: the
// client key clientKey's, paying the host at hostAddr, for the settlement key.
type fixedEscrow struct{ clientKey, settlementKey ed25519.PublicKey }

const hostAddr = "0:" + "0101010101010101010101010101010101010101010101010101010101010101"

func (e fixedEscrow) Escrow(context.Context, string) (billing.EscrowState, error) {
	return billing.EscrowState{ClientKey: e.clientKey, HostKey: e.settlementKey, HostAddr: hostAddr, Deposited: 1e12, Timeout: 7200}, nil
}

// billedHost is the real web server billing an escrow on a simulated TDX, behind a
// relay that may replace the receipt of a whole answer (Cocoon-Receipt, which the
// answer's signature does not cover) with forge's, as a host lying about its bill or
// anything between could.
type billedHost struct {
	url   string
	root  *x509.Certificate
	forge atomic.Pointer[func(*settle.Receipt)]
	chats atomic.Int32 // chat requests the relay saw
	// prices, when set, is the price list the relay answers GET /v1/pricing with.
	prices atomic.Pointer[settle.PriceList]
	// alterBody, when set, rewrites the body of each chat request the relay passes on.
	alterBody atomic.Pointer[func([]byte) []byte]
	// inflateWindows, when set, makes the relay answer the model lists (GET /v1/models,
	// /p/{id}/v1/models: unsigned) with every context_length 10⁹.
	inflateWindows atomic.Bool
	// raiseAfterList, when set, makes the relay raise the host's prices (raise) right
	// after it served GET /v1/pricing: between a client's look at the list and its
	// request.
	raiseAfterList atomic.Bool
	// handler is the host behind the relay; raise replaces it.
	handler atomic.Pointer[http.Handler]
	// raise restarts the host at raisedPrices, on the same ledger, keys and evidence:
	// an operator's new config and a restart.
	raise func()

	mu      sync.Mutex
	headers bytes.Buffer // every request's headers, as the relay saw them
}

// Headers returns the headers of every request the relay saw so far.
func (h *billedHost) Headers() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.headers.String()
}

// newBilledHost starts a billed host whose boot measures measured (the settlement
// key's events, or none), billing the client key's escrows with settlementKey at
// receiptPrices for model "m", at loads from 1000‰ to 1500‰; testKey's requests are
// free, billedKey's are billed to account.
func newBilledHost(t *testing.T, clientKey ed25519.PublicKey, measured ...attest.Event) *billedHost {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := ledger.Open(filepath.Join(dir, "ledger.db"), make([]byte, ledger.MinMACKey))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	sim, err := attest.NewSim(filepath.Join(dir, "attest"))
	if err != nil {
		t.Fatal(err)
	}
	ah, err := attest.Boot(ctx, sim, "embedded", "m", measured...)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(prices settle.PriceTable) *http.Handler {
		pricer, err := billing.NewPricer(settle.SamePrices(prices), settle.LoadCurve{MinMilli: 1000, MaxMilli: 1500, Smoothing: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		service, err := billing.NewService(billing.Config{Store: store, Pricer: pricer, HostAddr: hostAddr, Key: settlementKey,
			Escrows: fixedEscrow{clientKey: clientKey, settlementKey: settlementKey.Public().(ed25519.PublicKey)}})
		if err != nil {
			t.Fatal(err)
		}
		handler := clienttest.Handler(t, web.Config{Backend: echoBackend{}, Attestation: ah, Billing: service,
			APIKeys: []web.APIKey{{Name: "t", Key: testKey}, {Name: "billed", Key: billedKey, Account: account}}})
		return &handler
	}
	h := &billedHost{root: sim.Root()}
	h.handler.Store(serve(receiptPrices))
	h.raise = func() { h.handler.Store(serve(raisedPrices)) }
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		fmt.Fprintf(&h.headers, "%s %s\n", r.Method, r.URL)
		r.Header.Write(&h.headers)
		h.mu.Unlock()
		handler := *h.handler.Load()
		forge := h.forge.Load()
		if l := h.prices.Load(); l != nil && r.URL.Path == "/v1/pricing" {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(l)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/v1/models") && h.inflateWindows.Load() {
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, r)
			var list struct {
				Data []map[string]any `json:"data"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
				t.Errorf("the host's model list: %v", err)
			}
			for _, m := range list.Data {
				m["context_length"] = 1_000_000_000
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(list)
			return
		}
		if !strings.HasSuffix(r.URL.Path, "/chat/completions") {
			handler.ServeHTTP(w, r)
			if r.URL.Path == "/v1/pricing" && h.raiseAfterList.CompareAndSwap(true, false) {
				h.raise()
			}
			return
		}
		h.chats.Add(1)
		if alter := h.alterBody.Load(); alter != nil {
			body, _ := io.ReadAll(r.Body)
			body = (*alter)(body)
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, r)
		if v := rec.Header().Get(settle.ReceiptHeader); v != "" && forge != nil {
			var receipt settle.Receipt
			if err := json.Unmarshal([]byte(v), &receipt); err != nil {
				t.Errorf("the host's receipt: %v", err)
			}
			(*forge)(&receipt)
			rec.Header().Set(settle.ReceiptHeader, receipt.MarshalHeader())
			if receipt.HostKey == nil { // forged to nothing: dropped
				rec.Header().Del(settle.ReceiptHeader)
			}
		}
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(ts.Close)
	h.url = ts.URL
	return h
}

// TestChatMaxPriceIgnoresTheModelList performs the attack of a relay between the
// client and the host (here in front of an attested host the client checks) that
// reports every model's context_length as 10⁹ in the unsigned model lists: a client
// reading its window there sent a max_price a billion tokens wide, and a host that
// raised its prices meanwhile was admitted and charged. The client's default max_price
// is admission's worst case at the window the signed price list gives the model, for
// the bare model and a pipeline alike, and a raise is refused (402, nothing charged).
func TestChatMaxPriceIgnoresTheModelList(t *testing.T) {
	client := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	req := ChatRequest{Messages: []ChatMessage{{Role: "user", Content: "hello world"}}, MaxTokens: 4}
	for _, tc := range []struct {
		name, pipeline string
		raise          bool
	}{
		{name: "the bare model"},
		{name: "the bare model, prices raised after the list", raise: true},
		{name: "a pipeline", pipeline: "p"}, // a raise restarts the host without its pipelines
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newBilledHost(t, client.Public().(ed25519.PublicKey),
				attest.SettlementKeyEvent(settlementKey.Public().(ed25519.PublicKey)), attest.SettlementKeyOriginEvent(attest.SettlementKeyGenerated))
			h.inflateWindows.Store(true)
			c, err := New(h.url, WithTrust(attest.Policy{}, attest.EvidenceOptions{SimRoot: h.root}))
			if err != nil {
				t.Fatal(err)
			}
			c = c.WithPlaintext() // so that the relay reads the max_price sent
			pipeline := ""
			if tc.pipeline != "" {
				p, err := New(h.url, WithAPIKey(testKey))
				if err != nil {
					t.Fatal(err)
				}
				pushed, err := p.Push(context.Background(), &host.Manifest{ABIVersion: abi.Version, Model: "m", Pre: []host.ManifestModule{}, Post: []host.ManifestModule{}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				pipeline = pushed.ID
			}
			var sent atomic.Value // the max_price member of the chat request, as sent
			sent.Store("")
			record := func(body []byte) []byte {
				var m map[string]json.RawMessage
				if json.Unmarshal(body, &m) == nil {
					sent.Store(string(m[settle.MaxPriceMember]))
				}
				return body
			}
			h.alterBody.Store(&record)
			list, err := c.PriceList(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			window := list.Windows.For("m")
			want, _ := list.MaxPrice("m", settle.AdmissionUsage(window, 4, settle.ComputeBound))
			if window != settle.DefaultContextWindow { // echoBackend reports no window
				t.Fatalf("the signed window of m is %d, want %d", window, settle.DefaultContextWindow)
			}
			if tc.raise {
				// GET /v1/pricing above served the list before the raise: raise at the
				// client's next look at it, the one Chat makes.
				h.raiseAfterList.Store(true)
			}
			s := NewSigner(account, client)
			_, err = c.Chat(context.Background(), pipeline, req, s, func(string) error { return nil })
			var e *Error
			switch {
			case tc.raise && (!errors.As(err, &e) || e.Code != CodeRefused || e.HostCode != settle.CodeMaxPrice):
				t.Fatalf("a host that raised its prices: err %v; want the host's refusal %s", err, settle.CodeMaxPrice)
			case !tc.raise && err != nil:
				t.Fatal(err)
			case sent.Load() != `"`+strconv.FormatUint(want, 10)+`"`:
				t.Fatalf("the request's max_price %s, want admission's worst case at the signed window, %d", sent.Load(), want)
			}
			view, err := c.Account(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			if charged := view.Cumulative > 0; charged == tc.raise || view.Held != 0 {
				t.Fatalf("account %+v: want charged %v, nothing held", view, !tc.raise)
			}
		})
	}
}

// billedKey is an API key the billed host maps to account.
const billedKey = "client-test-billed-key"

// raisedPrices are receiptPrices after the operator raised them: twice the prompt
// price, three times the completion price.
var raisedPrices = settle.PriceTable{PromptPerMillion: 2 * receiptPrices.PromptPerMillion, CompletionPerMillion: 3 * receiptPrices.CompletionPerMillion}

var receiptPrices = settle.PriceTable{PromptPerMillion: 1e6, CompletionPerMillion: 2e6}

// TestChatChecksReceipts: `cocoon chat`'s path (Client.Chat) accepts the receipt of a
// billed answer only when the attested settlement key signed it for this pipeline,
// this escrow and this very request, at the prices of the host's signed price list
// within its load curve. Each forgery is signed by the settlement key (a host lying
// about its bill) unless it is about the key, with the cost its usage gives, so that
// only those checks can catch it: before, Chat's caller checked the receipt against
// the key the receipt names and its own prices, and took each of them.
func TestChatChecksReceipts(t *testing.T) {
	client := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	_, otherKey, _ := ed25519.GenerateKey(nil)
	h := newBilledHost(t, client.Public().(ed25519.PublicKey),
		attest.SettlementKeyEvent(settlementKey.Public().(ed25519.PublicKey)), attest.SettlementKeyOriginEvent(attest.SettlementKeyGenerated))
	s := NewSigner(account, client)
	c, err := New(h.url, WithAPIKey(testKey), WithTrust(attest.Policy{}, attest.EvidenceOptions{SimRoot: h.root}))
	if err != nil {
		t.Fatal(err)
	}
	resign := func(key ed25519.PrivateKey, change func(*settle.Receipt)) func(*settle.Receipt) {
		return func(r *settle.Receipt) {
			change(r)
			r.Cost = r.Prices.Cost(r.Usage, r.LoadMilli, r.MaxCost)
			r.Cumulative = r.Cost // the first of the account: what it would be
			r.Sign(key)
		}
	}
	for _, tt := range []struct {
		name      string
		stream    bool
		plaintext bool
		signer    *Signer
		forge     func(*settle.Receipt) // on the whole answer's receipt; nil: none
		err       string                // "" when the receipt verifies
	}{
		{"good, sealed stream", true, false, s, nil, ""},
		{"good, sealed whole answer", false, false, s, nil, ""},
		{"good, plaintext whole answer", false, true, s, nil, ""},
		{"signed by a key not attested", false, true, s, resign(otherKey, func(*settle.Receipt) {}), "signed by another key"},
		{"for another pipeline", false, true, s, resign(settlementKey, func(r *settle.Receipt) { r.Pipeline = strings.Repeat("ab", 32) }), "the receipt is for pipeline"},
		{"for another account", false, true, s, resign(settlementKey, func(r *settle.Receipt) { r.Account = "0:" + strings.Repeat("cd", 32) }), "not for escrow"},
		{"for another request", false, true, s, resign(settlementKey, func(r *settle.Receipt) { r.RequestHash = settle.RequestHash([]byte("another")) }), "not this one"},
		{"at prices off the list", false, true, s, resign(settlementKey, func(r *settle.Receipt) { r.Prices.CompletionPerMillion *= 3 }), "not the price list's"},
		{"at a load above the curve", false, true, s, resign(settlementKey, func(r *settle.Receipt) { r.LoadMilli = 1501 }), "not the price list's"},
		{"at a load below the curve", false, true, s, resign(settlementKey, func(r *settle.Receipt) { r.LoadMilli = 999 }), "not the price list's"},
		{"costing more than its usage", false, true, s, func(r *settle.Receipt) { r.Cost++; r.Cumulative++; r.Sign(settlementKey) }, "its usage at its prices"},
		{"dropped", false, true, s, func(r *settle.Receipt) { *r = settle.Receipt{} }, "the host sent no receipt"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.forge != nil {
				h.forge.Store(&tt.forge)
				defer h.forge.Store(nil)
			}
			cc := c
			if tt.plaintext {
				cc = c.WithPlaintext()
			}
			req := ChatRequest{Messages: []ChatMessage{{Role: "user", Content: "hello world"}}, Stream: tt.stream, MaxTokens: 4}
			answer, err := cc.Chat(context.Background(), "", req, tt.signer, func(string) error { return nil })
			if tt.err == "" {
				if err != nil || answer.Receipt == nil || answer.Receipt.Account != account {
					t.Fatalf("answer %+v, err %v; want a checked receipt", answer, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err %v, want one containing %q", err, tt.err)
			}
		})
	}
}

// TestChatRefusesUnattestedReceipts: a billed host whose verified evidence measures no
// settlement key has no receipt Chat accepts (before, any key's was taken), and a
// request signed for an escrow is not sent to a host Chat has not verified, whose
// receipt it could not check.
func TestChatRefusesUnattestedReceipts(t *testing.T) {
	client := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	h := newBilledHost(t, client.Public().(ed25519.PublicKey))
	s := NewSigner(account, client)
	req := ChatRequest{Messages: []ChatMessage{{Role: "user", Content: "hello"}}, MaxTokens: 4}
	verified, err := New(h.url, WithTrust(attest.Policy{}, attest.EvidenceOptions{SimRoot: h.root}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verified.Chat(context.Background(), "", req, s, func(string) error { return nil }); err == nil || !strings.Contains(err.Error(), "measures no settlement key") {
		t.Errorf("a receipt of a host that measures no settlement key: %v", err)
	}
	unverified, err := New(h.url)
	if err != nil {
		t.Fatal(err)
	}
	before := h.chats.Load()
	var e *Error
	if _, err := unverified.Chat(context.Background(), "", req, s, func(string) error { return nil }); !errors.As(err, &e) || e.Code != CodeInvalid || !strings.Contains(e.Message, "is not verified") {
		t.Errorf("a signed request to an unverified host: %v", err)
	}
	if n := h.chats.Load() - before; n != 0 {
		t.Errorf("the signed request was sent to the unverified host (%d requests)", n)
	}
}

// TestAPIKeyStaysSealed: a client with an API key that seals its chats to an http host
// (cocoon chat --api-key --host http://... with a trust) sends that key over no
// plaintext request: not with the evidence it verifies first, not with the price list
// it fetches to check a receipt. Before, both GETs carried it in plaintext, so a
// relay read the key the sealed chat hid and could spend it.
func TestAPIKeyStaysSealed(t *testing.T) {
	client := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	h := newBilledHost(t, client.Public().(ed25519.PublicKey),
		attest.SettlementKeyEvent(settlementKey.Public().(ed25519.PublicKey)), attest.SettlementKeyOriginEvent(attest.SettlementKeyGenerated))
	c, err := New(h.url, WithAPIKey(testKey), WithTrust(attest.Policy{}, attest.EvidenceOptions{SimRoot: h.root}))
	if err != nil {
		t.Fatal(err)
	}
	req := ChatRequest{Messages: []ChatMessage{{Role: "user", Content: "hello world"}}, MaxTokens: 4}
	// Signed for an escrow, as this host bills: the receipt's check fetches the prices.
	if _, err := c.Chat(context.Background(), "", req, NewSigner(account, client), func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	seen := h.Headers()
	for _, route := range []string{"GET /v1/attestation", "GET /v1/pricing", "POST /v1/chat/completions"} {
		if !strings.Contains(seen, route) {
			t.Fatalf("the relay saw no %s; it saw:\n%s", route, seen)
		}
	}
	if strings.Contains(seen, testKey) || strings.Contains(seen, "Authorization") {
		t.Fatalf("the API key crossed the relay outside an envelope:\n%s", seen)
	}
}

// TestChatReceiptAfterAPriceChange: Chat agrees to the price list it fetches before
// the request, and a receipt that list refuses is checked once more against the list
// fetched after the answer. A host that shows other prices signed by its settlement key
// (a price change, or a relay serving another list the key signed, the one it can)
// both times has Chat refuse a receipt that bills this very request, and say what it
// knows: signed by the attested key for this request, at prices the list does not
// show, not that the receipt "does not verify" as if it were forged. A list of another
// key is refused before anything is signed or sent.
func TestChatReceiptAfterAPriceChange(t *testing.T) {
	client := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	h := newBilledHost(t, client.Public().(ed25519.PublicKey),
		attest.SettlementKeyEvent(settlementKey.Public().(ed25519.PublicKey)), attest.SettlementKeyOriginEvent(attest.SettlementKeyGenerated))
	c, err := New(h.url, WithTrust(attest.Policy{}, attest.EvidenceOptions{SimRoot: h.root}))
	if err != nil {
		t.Fatal(err)
	}
	current, err := c.PriceList(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := ed25519.GenerateKey(nil)
	changed := func(key ed25519.PrivateKey) *settle.PriceList {
		l := *current
		doubled := receiptPrices
		doubled.CompletionPerMillion *= 2
		l.Prices = settle.SamePrices(doubled)
		l.Sign(key)
		return &l
	}
	req := ChatRequest{Messages: []ChatMessage{{Role: "user", Content: "hello world"}}, MaxTokens: 4}
	for _, tc := range []struct {
		name string
		list *settle.PriceList
		want string // in the error; "" for none
		sent bool   // whether the chat request is sent
	}{
		{"the list of the admission", current, "", true},
		{"prices changed since", changed(settlementKey), "changed its prices since it admitted the request", true},
		{"a list of another key", changed(otherKey), "not signed by its attested settlement key", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.prices.Store(tc.list)
			before := h.chats.Load()
			_, err := c.Chat(context.Background(), "", req, NewSigner(account, client), func(string) error { return nil })
			var e *Error
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && (!errors.As(err, &e) || e.Code != CodeNotVerified || !strings.Contains(e.Message, tc.want)):
				t.Fatalf("err %v, want CodeNotVerified saying %q", err, tc.want)
			case (h.chats.Load() > before) != tc.sent:
				t.Fatalf("chat requests sent: %d, want them sent: %v", h.chats.Load()-before, tc.sent)
			}
		})
	}
}

// TestChatMaxPrice performs the billing red team's attack on a real billing host: its
// operator raises prices (a new config and a restart) after the client looked at the
// price list and before its request. Chat pins the prices it agreed to in the
// request's max_price, the worst case at the list it verified (its model's window,
// max_tokens, the curve's top), so the raised host refuses the request (402
// max_price_exceeded) and charges nothing; before, Chat sent no cap and checked the
// receipt against the list fetched after the answer, which showed the raised prices,
// and took the bill. A cap of the caller's own overrides: one too low is refused at
// today's prices, one high enough admits the request at raised prices and its receipt
// stands (the refetched list explains it, within the cap). A relay cannot strip the
// cap: it is in the body the escrow signature covers. A host that ignored the cap and
// billed raised prices, showing the raised list afterwards, is caught by the receipt
// check: the receipt reserved more than the cap.
func TestChatMaxPrice(t *testing.T) {
	client := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	req := ChatRequest{Messages: []ChatMessage{{Role: "user", Content: "hello world"}}, MaxTokens: 4}
	raisedList := func(t *testing.T, h *billedHost) *settle.PriceList {
		c, err := New(h.url)
		if err != nil {
			t.Fatal(err)
		}
		l, err := c.PriceList(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		l.Prices = settle.SamePrices(raisedPrices)
		l.Sign(settlementKey)
		return l
	}
	for _, tc := range []struct {
		name      string
		maxPrice  uint64
		plaintext bool
		setup     func(t *testing.T, h *billedHost)
		hostCode  string // the host's refusal; "" for none
		err       string // in a receipt's refusal; "" for none
		charged   bool
	}{
		{name: "raised between the list and the request", setup: func(t *testing.T, h *billedHost) { h.raiseAfterList.Store(true) },
			hostCode: settle.CodeMaxPrice},
		{name: "raised before the list", setup: func(t *testing.T, h *billedHost) { h.raise() }, charged: true},
		{name: "the caller's cap, too low", maxPrice: 1, hostCode: settle.CodeMaxPrice},
		{name: "the caller's cap, over the raise", maxPrice: 1e12, setup: func(t *testing.T, h *billedHost) { h.raiseAfterList.Store(true) }, charged: true},
		{name: "stripped by a relay", plaintext: true, setup: func(t *testing.T, h *billedHost) {
			strip := func(body []byte) []byte {
				var m map[string]json.RawMessage
				if json.Unmarshal(body, &m) != nil || m[settle.MaxPriceMember] == nil {
					return body
				}
				delete(m, settle.MaxPriceMember)
				b, _ := json.Marshal(m)
				return b
			}
			h.alterBody.Store(&strip)
			h.raiseAfterList.Store(true)
		}, hostCode: "invalid_signature"},
		{name: "a host ignoring it", setup: func(t *testing.T, h *billedHost) {
			raised := raisedList(t, h)
			forge := func(r *settle.Receipt) {
				// The bill of a host that admitted the request at raised prices whatever
				// its cap, then showed the raised list.
				r.Prices, r.LoadMilli = raisedPrices, 1500
				r.MaxCost = settle.Quote{Prices: r.Prices, LoadMilli: r.LoadMilli}.WorstCase(settle.AdmissionUsage(settle.DefaultContextWindow, 4, 0))
				r.Cost = r.Prices.Cost(r.Usage, r.LoadMilli, r.MaxCost)
				r.Cumulative = r.Cost
				r.Sign(settlementKey)
				h.prices.Store(raised)
			}
			h.forge.Store(&forge)
		}, plaintext: true, err: "the host ignored the cap", charged: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newBilledHost(t, client.Public().(ed25519.PublicKey),
				attest.SettlementKeyEvent(settlementKey.Public().(ed25519.PublicKey)), attest.SettlementKeyOriginEvent(attest.SettlementKeyGenerated))
			c, err := New(h.url, WithTrust(attest.Policy{}, attest.EvidenceOptions{SimRoot: h.root}))
			if err != nil {
				t.Fatal(err)
			}
			if tc.plaintext {
				c = c.WithPlaintext()
			}
			if tc.setup != nil {
				tc.setup(t, h)
			}
			s := NewSigner(account, client)
			r := req
			r.MaxPrice = tc.maxPrice
			answer, err := c.Chat(context.Background(), "", r, s, func(string) error { return nil })
			var e *Error
			switch {
			case h.chats.Load() != 1:
				t.Fatalf("%d chat requests sent, want 1", h.chats.Load())
			case tc.hostCode != "" && (!errors.As(err, &e) || e.Code != CodeRefused || e.HostCode != tc.hostCode):
				t.Fatalf("answer %+v, err %v; want the host's refusal %s", answer, err, tc.hostCode)
			case tc.err != "" && (!errors.As(err, &e) || e.Code != CodeNotVerified || !strings.Contains(e.Message, tc.err)):
				t.Fatalf("answer %+v, err %v; want CodeNotVerified saying %q", answer, err, tc.err)
			case tc.hostCode == "" && tc.err == "" && err != nil:
				t.Fatal(err)
			}
			view, err := c.WithPlaintext().Account(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			if charged := view.Cumulative > 0; charged != tc.charged || view.Held != 0 {
				t.Fatalf("account %+v: want charged %v, nothing held", view, tc.charged)
			}
		})
	}
}
