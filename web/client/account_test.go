package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/attest"
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
// receiptPrices for model "m", at loads from 1000‰ to 1500‰.
func newBilledHost(t *testing.T, clientKey ed25519.PublicKey, measured ...attest.Event) *billedHost {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := ledger.Open(filepath.Join(dir, "ledger.db"), make([]byte, ledger.MinMACKey))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	pricer, err := billing.NewPricer(settle.SamePrices(receiptPrices), settle.LoadCurve{MinMilli: 1000, MaxMilli: 1500, Smoothing: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	service, err := billing.NewService(billing.Config{Store: store, Pricer: pricer, HostAddr: hostAddr, Key: settlementKey,
		Escrows: fixedEscrow{clientKey: clientKey, settlementKey: settlementKey.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	sim, err := attest.NewSim(filepath.Join(dir, "attest"))
	if err != nil {
		t.Fatal(err)
	}
	ah, err := attest.Boot(ctx, sim, "embedded", "m", measured...)
	if err != nil {
		t.Fatal(err)
	}
	h := &billedHost{}
	h.root = sim.Root()
	handler := clienttest.Handler(t, web.Config{Backend: echoBackend{}, Attestation: ah, Billing: service, APIKeys: []web.APIKey{{Name: "t", Key: testKey}}})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		fmt.Fprintf(&h.headers, "%s %s\n", r.Method, r.URL)
		r.Header.Write(&h.headers)
		h.mu.Unlock()
		forge := h.forge.Load()
		if l := h.prices.Load(); l != nil && r.URL.Path == "/v1/pricing" {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(l)
			return
		}
		if !strings.HasSuffix(r.URL.Path, "/chat/completions") {
			handler.ServeHTTP(w, r)
			return
		}
		h.chats.Add(1)
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

// TestChatReceiptAfterAPriceChange: the price list Chat checks a receipt against is
// fetched after the answer, so a host that changed its prices in between (or a relay
// that serves another list the settlement key signed, the one it can) has Chat refuse
// a receipt that bills this very request. Chat refuses it, and says what it knows:
// signed by the attested key for this request, at prices the list does not show, not
// that the receipt "does not verify" as if it were forged (before). A list of another
// key is refused as not the host's.
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
	}{
		{"the list of the admission", current, ""},
		{"prices changed since", changed(settlementKey), "changed its prices since it admitted the request"},
		{"a list of another key", changed(otherKey), "does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.prices.Store(tc.list)
			_, err := c.Chat(context.Background(), "", req, NewSigner(account, client), func(string) error { return nil })
			var e *Error
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && (!errors.As(err, &e) || e.Code != CodeNotVerified || !strings.Contains(e.Message, tc.want)):
				t.Fatalf("err %v, want CodeNotVerified saying %q", err, tc.want)
			case tc.name == "a list of another key" && strings.Contains(e.Message, "changed its prices"):
				t.Fatalf("a list of another key taken for a price change: %v", err)
			}
		})
	}
}
