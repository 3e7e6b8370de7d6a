package web

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/ton/wallet"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	"github.com/cocoonhost/cocoon/settle/escrow"
	"github.com/cocoonhost/cocoon/settle/ledger"
	"github.com/cocoonhost/cocoon/settle/tonemu"
)

const billedKey = "sk-test-billed"

// escrowTTL is 0 in tests, which change escrows between requests: the host reads the
// escrow on every request. The benchmark caches it, as a real host does.
var escrowTTL time.Duration

// billingFixture is a fixture whose host bills to an escrow deployed on an emulated chain.
type billingFixture struct {
	*fixture
	chain      *tonemu.Chain
	service    *billing.Service
	ledger     *ledger.Ledger
	client     *wallet.Wallet
	hostWallet *address.Address
	escrow     *address.Address
	account    string // raw
	clientKey  ed25519.PrivateKey
	hostKey    ed25519.PrivateKey // the settlement key
}

func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

// testPrices make a 16-token answer cost about 0.01 TON, and its admission (a full
// 512-token context and 16 tokens) reserve about 0.12 TON. The load coefficient is
// fixed, so that the tests can compute exact amounts.
var (
	testPrices = settle.PriceTable{PromptPerMillion: 200_000_000_000, CompletionPerMillion: 600_000_000_000, ComputePerMillion: 100_000_000}
	fixedLoad  = settle.LoadCurve{MinMilli: 1000, MaxMilli: 1000, Smoothing: time.Minute}
)

// testModel is the embedded backend's model, the one the billing host prices.
const testModel = "stories260K"

// newBilling deploys an escrow of depositNano (before the contract's 0.01 TON reserve)
// from a client wallet to the host's wallet and settlement key, and serves a host that
// bills to it. The API key billedKey is mapped to the escrow.
func newBilling(t testing.TB, depositNano uint64, configure ...func(*Config, *recorder)) *billingFixture {
	t.Helper()
	chain, err := tonemu.New()
	if err != nil {
		t.Fatal(err)
	}
	b := &billingFixture{chain: chain, clientKey: testKey(0xC1), hostKey: testKey(0x5E)}
	if b.client, err = chain.NewWallet(testKey(1), 1000e9); err != nil {
		t.Fatal(err)
	}
	hostWallet, err := chain.NewWallet(testKey(2), 10e9)
	if err != nil {
		t.Fatal(err)
	}
	b.hostWallet = hostWallet.WalletAddress()
	b.escrow = b.deploy(t, b.client, b.hostWallet, b.hostKey, depositNano)
	b.account = b.escrow.StringRaw()

	if b.ledger, err = ledger.Open(t.TempDir()+"/ledger.db", make([]byte, ledger.MinMACKey)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.ledger.Close() })
	// The host prices the embedded model only: a request for another model is refused,
	// and one that names none is priced as the model the backend runs for it.
	pricer, err := billing.NewPricer(settle.Prices{Models: []settle.ModelPrice{{Model: testModel, Prices: testPrices}}}, fixedLoad)
	if err != nil {
		t.Fatal(err)
	}
	b.service, err = billing.NewService(billing.Config{Store: b.ledger, Pricer: pricer, Escrows: billing.NewChainEscrows(chain, escrowTTL),
		Key: b.hostKey, HostAddr: hostWallet.WalletAddress().StringRaw(), ComputeReserve: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	b.fixture = newFixture(t, append([]func(*Config, *recorder){func(c *Config, _ *recorder) {
		c.Billing = b.service
		c.APIKeys = append(c.APIKeys, APIKey{Name: "billed", Key: billedKey, Account: b.escrow.String()})
	}}, configure...)...)
	return b
}

// deploy opens an escrow from client with the billing's client key.
func (b *billingFixture) deploy(t testing.TB, client *wallet.Wallet, hostAddr *address.Address, hostKey ed25519.PrivateKey, depositNano uint64) *address.Address {
	t.Helper()
	p := escrow.Params{ClientAddr: client.WalletAddress(), HostAddr: hostAddr, ClientKey: b.clientKey.Public().(ed25519.PublicKey),
		HostKey: hostKey.Public().(ed25519.PublicKey), Timeout: 3600, ChannelID: uint64(len(hostKey))}
	si, err := p.StateInit()
	if err != nil {
		t.Fatal(err)
	}
	addr, err := p.Address(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tonemu.Send(context.Background(), client, addr, depositNano, escrow.DepositBody(1), si); err != nil {
		t.Fatal(err)
	}
	if _, err := escrow.GetState(context.Background(), b.chain, addr); err != nil {
		t.Fatalf("the escrow was not deployed: %v", err)
	}
	return addr
}

// signed sends a chat request signed with key for the billing's escrow.
func (b *billingFixture) signed(t testing.TB, key ed25519.PrivateKey, path string, body string, edit func(*settle.SignedRequest, http.Header)) response {
	t.Helper()
	sr := settle.SignedRequest{Account: b.account, Timestamp: time.Now().Unix(), Nonce: settle.NewNonce(), Method: "POST", Path: path, Body: []byte(body)}
	req, err := http.NewRequest("POST", b.http.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&sr, req.Header)
	}
	sr.Sign(req.Header, key)
	return b.roundTrip(t, req)
}

func (b *billingFixture) roundTrip(t testing.TB, req *http.Request) response {
	t.Helper()
	res, err := b.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, res.Header, body}
}

// receipt decodes and verifies a non-streaming answer's receipt header.
func (b *billingFixture) receipt(t testing.TB, res response) *settle.Receipt {
	t.Helper()
	var r settle.Receipt
	if err := json.Unmarshal([]byte(res.header.Get(settle.ReceiptHeader)), &r); err != nil {
		t.Fatalf("answer %d without a receipt header: %v", res.status, err)
	}
	if err := r.Verify(b.hostKey.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	return &r
}

const chatBody = `{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":16,"temperature":0}`

func TestBilledChat(t *testing.T) {
	b := newBilling(t, 1e9)
	path := "/v1/chat/completions"

	// A signed request: the receipt is in the header and bills the answer's usage.
	var sr settle.SignedRequest
	res := b.signed(t, b.clientKey, path, chatBody, func(r *settle.SignedRequest, _ http.Header) { sr = *r })
	if res.status != http.StatusOK {
		t.Fatalf("%d %s", res.status, res.body)
	}
	var c completion
	res.json(t, &c)
	r1 := b.receipt(t, res)
	if r1.Seq != 1 || r1.Account != b.account || r1.Status != settle.StatusCompleted || r1.Model != "stories260K" || r1.Pipeline != "" ||
		r1.Usage.PromptTokens != uint64(c.Usage.PromptTokens) || r1.Usage.CompletionTokens != uint64(c.Usage.CompletionTokens) ||
		r1.Cost == 0 || r1.Cumulative != r1.Cost || r1.Cost > r1.MaxCost {
		t.Fatalf("receipt %+v for usage %+v", r1, c.Usage)
	}
	if r1.RequestHash != settle.RequestHash(sr.SigningString()) {
		t.Errorf("request hash %s is not the hash of what the client signed", r1.RequestHash)
	}

	// A stream through the API key mapped to the same account: the receipt is the
	// event after the last chunk, before [DONE], and continues the chain.
	stream := strings.Replace(chatBody, `"max_tokens"`, `"stream":true,"stream_options":{"include_usage":true},"max_tokens"`, 1)
	res = b.do("POST", path, billedKey, stream)
	s := parseSSE(t, res.body)
	if !s.done || s.receipt == nil {
		t.Fatalf("stream without a receipt or [DONE]: %s", res.body)
	}
	r2 := s.receipt
	last := s.chunks[len(s.chunks)-1]
	if r2.Seq != 2 || r2.Cumulative != r1.Cumulative+r2.Cost || r2.Usage.CompletionTokens != uint64(last.Usage.CompletionTokens) {
		t.Fatalf("stream receipt %+v, usage %+v", r2, last.Usage)
	}
	if total, err := settle.VerifyChain([]settle.Receipt{*r1, *r2}, b.hostKey.Public().(ed25519.PublicKey)); err != nil || total != r2.Cumulative {
		t.Fatalf("chain: %d, %v", total, err)
	}

	// The client reads its account and receipts back, signed.
	get := func(path string, v any) {
		t.Helper()
		sr := settle.SignedRequest{Account: b.account, Timestamp: time.Now().Unix(), Nonce: settle.NewNonce(), Method: "GET", Path: path}
		req, _ := http.NewRequest("GET", b.http.URL+path, nil)
		sr.Sign(req.Header, b.clientKey)
		res := b.roundTrip(t, req)
		if res.status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, res.status, res.body)
		}
		res.json(t, v)
	}
	var acct settle.AccountView
	get("/v1/accounts/"+b.account, &acct)
	if acct.Cumulative != r2.Cumulative || acct.LastSeq != 2 || acct.Held != 0 || acct.Deposited != 1e9-escrow.DepositReserve ||
		acct.Unspent != acct.Deposited-r2.Cumulative {
		t.Fatalf("account %+v", acct)
	}
	var list struct{ Receipts []settle.Receipt }
	get("/v1/accounts/"+b.account+"/receipts", &list)
	if len(list.Receipts) != 2 || list.Receipts[1].Signature == nil || !bytes.Equal(list.Receipts[1].Signature, r2.Signature) {
		t.Fatalf("receipts %+v", list.Receipts)
	}
	// Another client may not read them.
	if res := b.do("GET", "/v1/accounts/"+b.account+"/receipts", ownerKey, nil); res.status != http.StatusForbidden {
		t.Errorf("the owner key reads the client's receipts: %d %s", res.status, res.body)
	}
}

func TestBilledRejections(t *testing.T) {
	b := newBilling(t, 200_000_000) // 0.19 TON after the reserve
	path := "/v1/chat/completions"
	other := testKey(0x99)
	replayed := b.signed(t, b.clientKey, path, chatBody, nil)
	if replayed.status != http.StatusOK {
		t.Fatalf("%d %s", replayed.status, replayed.body)
	}

	tests := []struct {
		name   string
		send   func() response
		status int
		code   string
		msg    string
	}{
		{"signed with another key", func() response { return b.signed(t, other, path, chatBody, nil) },
			401, settle.CodeBadSignature, "does not verify with escrow"},
		{"replayed", func() response {
			sr := settle.SignedRequest{Account: b.account, Timestamp: time.Now().Unix(), Nonce: settle.NewNonce(), Method: "POST", Path: path, Body: []byte(chatBody)}
			var res response
			for range 2 {
				req, _ := http.NewRequest("POST", b.http.URL+path, strings.NewReader(chatBody))
				sr.Sign(req.Header, b.clientKey)
				res = b.roundTrip(t, req)
			}
			return res
		}, 401, settle.CodeReplay, "already received"},
		{"signed an hour ago", func() response {
			return b.signed(t, b.clientKey, path, chatBody, func(sr *settle.SignedRequest, _ http.Header) { sr.Timestamp -= 3600 })
		}, 401, settle.CodeExpired, "more than 5m0s"},
		{"body changed after signing", func() response {
			sr := settle.SignedRequest{Account: b.account, Timestamp: time.Now().Unix(), Nonce: settle.NewNonce(), Method: "POST", Path: path, Body: []byte(chatBody)}
			req, _ := http.NewRequest("POST", b.http.URL+path, strings.NewReader(strings.Replace(chatBody, "16", "17", 1)))
			sr.Sign(req.Header, b.clientKey)
			return b.roundTrip(t, req)
		}, 401, settle.CodeBadSignature, "does not verify"},
		{"an idempotency key added after signing", func() response {
			sr := settle.SignedRequest{Account: b.account, Timestamp: time.Now().Unix(), Nonce: settle.NewNonce(), Method: "POST", Path: path, Body: []byte(chatBody)}
			req, _ := http.NewRequest("POST", b.http.URL+path, strings.NewReader(chatBody))
			sr.Sign(req.Header, b.clientKey)
			req.Header.Set(settle.IdempotencyKeyHeader, "not-signed")
			return b.roundTrip(t, req)
		}, 401, settle.CodeBadSignature, "does not verify"},
		{"malformed nonce", func() response {
			return b.signed(t, b.clientKey, path, chatBody, func(sr *settle.SignedRequest, _ http.Header) { sr.Nonce = "short" })
		}, 401, settle.CodeBadSignature, "Cocoon-Nonce"},
		{"more than the balance", func() response {
			return b.signed(t, b.clientKey, path, strings.Replace(chatBody, `"max_tokens":16`, `"max_tokens":400`, 1), nil)
		}, 402, settle.CodeInsufficient, "deposit at least"},
		{"an API key with no account", func() response { return b.do("POST", path, ownerKey, chatBody) },
			402, settle.CodeUnknownAccount, "bills requests to a TON escrow"},
		{"an escrow that does not exist", func() response {
			return b.signed(t, b.clientKey, path, chatBody, func(sr *settle.SignedRequest, h http.Header) {
				sr.Account = "0:" + strings.Repeat("00", 32)
			})
		}, 402, settle.CodeUnknownAccount, "no escrow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := tt.send()
			e := res.apiErr(t)
			if res.status != tt.status || e.Code != tt.code || !strings.Contains(e.Message, tt.msg) {
				t.Fatalf("%d %+v, want %d %s containing %q", res.status, e, tt.status, tt.code, tt.msg)
			}
			if res.header.Get(settle.ReceiptHeader) != "" {
				t.Error("a refused request has a receipt")
			}
		})
	}

	// The 402 says exactly what is missing: the maximum cost at the admitted price
	// less what the escrow has unspent.
	res := b.signed(t, b.clientKey, path, strings.Replace(chatBody, `"max_tokens":16`, `"max_tokens":400`, 1), nil)
	acct, err := b.service.Account(context.Background(), b.account)
	if err != nil {
		t.Fatal(err)
	}
	q, err := b.service.Pricer().Quote(testModel)
	if err != nil {
		t.Fatal(err)
	}
	maxCost := q.Prices.Cost(settle.Usage{PromptTokens: 512, CompletionTokens: 400, ComputeUnits: 100_000}, q.LoadMilli, 1<<63)
	missing := maxCost - (acct.Deposited - acct.Cumulative)
	if msg := res.apiErr(t).Message; !strings.Contains(msg, "deposit at least "+settle.FormatTON(missing)+" TON more") {
		t.Errorf("402 message %q does not name the missing %s TON", msg, settle.FormatTON(missing))
	}
	// Nothing refused was charged: two receipts, for the first request and the
	// original of the replayed one.
	if acct.LastSeq != 2 || acct.Held != 0 {
		t.Errorf("after the refusals the account is %+v", acct)
	}
}

func TestSignedRequestWithoutBilling(t *testing.T) {
	f := newFixture(t)
	req, _ := http.NewRequest("POST", f.http.URL+"/v1/chat/completions", strings.NewReader(chatBody))
	settle.SignedRequest{Account: "0:" + strings.Repeat("ab", 32), Timestamp: time.Now().Unix(), Nonce: settle.NewNonce(),
		Method: "POST", Path: "/v1/chat/completions", Body: []byte(chatBody)}.Sign(req.Header, testKey(1))
	res, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("a signed request to a host that does not bill: %d", res.StatusCode)
	}
	if r := f.do("GET", "/v1/pricing", "", nil); r.status != http.StatusNotFound {
		t.Errorf("pricing without billing: %d", r.status)
	}
}

func TestPricing(t *testing.T) {
	b := newBilling(t, 1e9)
	res := b.do("GET", "/v1/pricing", "", nil) // public: clients read it before they pay
	var l settle.PriceList
	res.json(t, &l)
	if err := l.Verify(b.hostKey.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	if m, ok := l.For(testModel); !ok || m != testPrices || l.Default != nil || len(l.Models) != 1 || l.LoadMilli < l.Curve.MinMilli || l.LoadMilli > l.Curve.MaxMilli || l.Wallet == "" {
		t.Fatalf("price list %+v", l)
	}
}

func TestBilledIdempotency(t *testing.T) {
	b := newBilling(t, 1e9)
	path := "/v1/chat/completions"
	withKey := func(key string) func(*settle.SignedRequest, http.Header) {
		return func(sr *settle.SignedRequest, _ http.Header) { sr.IdempotencyKey = key }
	}
	for _, body := range []string{chatBody, strings.Replace(chatBody, `"max_tokens"`, `"stream":true,"max_tokens"`, 1)} {
		key := "retry-" + strconv.Itoa(len(body))
		first := b.signed(t, b.clientKey, path, body, withKey(key))
		// The retry is signed again (a new nonce), as a client would.
		again := b.signed(t, b.clientKey, path, body, withKey(key))
		if first.status != http.StatusOK || again.status != http.StatusOK || again.header.Get(IdempotentReplayHeader) != "true" {
			t.Fatalf("%d, %d %s", first.status, again.status, again.body)
		}
		if !bytes.Equal(first.body, again.body) || first.header.Get(settle.ReceiptHeader) != again.header.Get(settle.ReceiptHeader) {
			t.Fatalf("the retry answers differently:\n%s\n%s", first.body, again.body)
		}
		other := b.signed(t, b.clientKey, path, strings.Replace(body, "Once", "Twice", 1), withKey(key))
		if e := other.apiErr(t); other.status != http.StatusUnprocessableEntity || e.Code != settle.CodeIdempotencyMismatch {
			t.Fatalf("the key reused for another body: %d %+v", other.status, e)
		}
	}
	acct, err := b.service.Account(context.Background(), b.account)
	if err != nil || acct.LastSeq != 2 {
		t.Fatalf("two idempotent requests sent twice each made %d receipts (%v)", acct.LastSeq, err)
	}
}

// TestBilledFailure: a request that fails is charged only for what the client got,
// and its receipt says so.
func TestBilledFailure(t *testing.T) {
	b := newBilling(t, 1e9, func(_ *Config, r *recorder) {
		r.hook = func(ctx context.Context, n int, d string, emit func(string) error) error {
			if n == 5 {
				return errors.New("the GPU fell over")
			}
			return emit(d)
		}
	})
	path := "/v1/chat/completions"
	// Not streamed: the client gets an error and no text, so no completion tokens.
	res := b.signed(t, b.clientKey, path, chatBody, nil)
	if res.status < 500 {
		t.Fatalf("%d %s", res.status, res.body)
	}
	r := b.receipt(t, res)
	if r.Status != settle.StatusFailed || r.Usage.CompletionTokens != 0 {
		t.Fatalf("receipt of a failed request: %+v", r)
	}
	// Streamed: four chunks reached the client before the failure and are billed.
	res = b.signed(t, b.clientKey, path, strings.Replace(chatBody, `"max_tokens"`, `"stream":true,"max_tokens"`, 1), nil)
	s := parseSSE(t, res.body)
	if s.err == nil || s.receipt == nil || s.done {
		t.Fatalf("a failed stream: %s", res.body)
	}
	if u := s.receipt.Usage; s.receipt.Status != settle.StatusFailed || s.receipt.Seq != 2 || u.CompletionTokens == 0 || u.CompletionTokens >= 16 {
		t.Fatalf("receipt of a failed stream: %+v", s.receipt)
	}
}

// TestBilledEscrowChecks: the host serves only escrows that pay it, and stops when the
// client asks for its money back.
func TestBilledEscrowChecks(t *testing.T) {
	b := newBilling(t, 1e9)
	path := "/v1/chat/completions"
	send := func(escrowAddr *address.Address) response {
		return b.signed(t, b.clientKey, path, chatBody, func(sr *settle.SignedRequest, _ http.Header) { sr.Account = escrowAddr.StringRaw() })
	}
	// An escrow whose charges another settlement key signs, and one that pays another
	// wallet.
	for name, addr := range map[string]*address.Address{
		"another settlement key": b.deploy(t, b.client, b.hostWallet, testKey(0x77), 1e9),
		"another host wallet":    b.deploy(t, b.client, b.client.WalletAddress(), b.hostKey, 1e9),
	} {
		res := send(addr)
		if e := res.apiErr(t); res.status != http.StatusPaymentRequired || e.Code != settle.CodeUnknownAccount || !strings.Contains(e.Message, "another host") {
			t.Errorf("%s: %d %+v", name, res.status, e)
		}
	}
	if res := send(b.escrow); res.status != http.StatusOK {
		t.Fatalf("%d %s", res.status, res.body)
	}
	if err := tonemu.Send(context.Background(), b.client, b.escrow, 50_000_000, escrow.RequestWithdrawalBody(2), nil); err != nil {
		t.Fatal(err)
	}
	res := send(b.escrow)
	if e := res.apiErr(t); res.status != http.StatusPaymentRequired || e.Code != settle.CodeClosing {
		t.Errorf("a closing escrow: %d %+v", res.status, e)
	}
}

// holdUntilGone is a recorder hook that holds the generation at its delta n until the
// request's context is done (the client went away), and fails it then.
func holdUntilGone(n int) func(ctx context.Context, i int, d string, emit func(string) error) error {
	return func(ctx context.Context, i int, d string, emit func(string) error) error {
		if i == n {
			<-ctx.Done()
			return ctx.Err()
		}
		return emit(d)
	}
}

// TestBilledCancel: a client that goes away mid-stream is charged for what it got, and
// the receipt is recorded as cancelled.
func TestBilledCancel(t *testing.T) {
	b := newBilling(t, 1e9, func(_ *Config, r *recorder) { r.hook = holdUntilGone(4) })
	ctx, cancel := context.WithCancel(context.Background())
	body := strings.Replace(chatBody, `"max_tokens"`, `"stream":true,"max_tokens"`, 1)
	req, _ := http.NewRequestWithContext(ctx, "POST", b.http.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+billedKey)
	res, err := b.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := res.Body.Read(buf); err != nil { // the first chunk arrived
		t.Fatal(err)
	}
	cancel()
	res.Body.Close()
	var receipts []settle.Receipt
	for deadline := time.Now().Add(5 * time.Second); len(receipts) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if receipts, err = b.service.Receipts(context.Background(), b.account, 1, 10); err != nil {
			t.Fatal(err)
		}
	}
	if len(receipts) != 1 {
		t.Fatal("no receipt for the cancelled request")
	}
	if r := receipts[0]; r.Status != settle.StatusCancelled || r.Usage.CompletionTokens == 0 || r.Usage.CompletionTokens > 4 {
		t.Fatalf("receipt of a cancelled stream: %+v", r)
	}
}

// TestMaxTokensZeroRefused performs the attack of a request that asks for max_tokens
// (or max_completion_tokens) 0: a backend reads 0 as "no limit", and admission once
// reserved no completion for it, so the receipt of a long answer was capped at a
// quarter of its price. The host now answers 0 as OpenAI's API does, 400 before
// admission: nothing runs and nothing is charged.
func TestMaxTokensZeroRefused(t *testing.T) {
	b := newBilling(t, 1e9)
	for _, member := range []string{"max_tokens", "max_completion_tokens"} {
		t.Run(member, func(t *testing.T) {
			before := b.backend.last()
			res := b.signed(t, b.clientKey, "/v1/chat/completions", `{"messages":[{"role":"user","content":""}],"temperature":0,"`+member+`":0}`, nil)
			if e := res.apiErr(t); res.status != http.StatusBadRequest || !strings.Contains(e.Message, member+": must be an integer from 1") {
				t.Fatalf("%d %s; want 400 naming %s", res.status, res.body, member)
			}
			if b.backend.last() != before {
				t.Errorf("the backend ran for a refused request")
			}
		})
	}
}

// TestAdmittedBoundToldWithoutWindow: a backend that reports no context window is told
// the completion bound admission priced (the default window), since nothing else
// bounds what it generates.
func TestAdmittedBoundToldWithoutWindow(t *testing.T) {
	b := newBilling(t, 10e9, func(_ *Config, r *recorder) { r.noWindow = true })
	res := b.signed(t, b.clientKey, "/v1/chat/completions", `{"messages":[{"role":"user","content":"Once"}],"temperature":0}`, nil)
	if res.status != http.StatusOK {
		t.Fatalf("%d %s", res.status, res.body)
	}
	if told := b.backend.last().MaxTokens; told != defaultContextTokens {
		t.Errorf("the backend was told max_tokens %d, want the default window admission priced, %d", told, defaultContextTokens)
	}
}

// TestPanicReleasesHold: a backend that panics between admission and the receipt gets
// the client a 500, and the request's hold and slot go with it: nothing is charged and
// the escrow's balance is whole again at once, not at the next restart.
func TestPanicReleasesHold(t *testing.T) {
	b := newBilling(t, 1e9, func(c *Config, r *recorder) {
		c.MaxGenerations = 1
		r.hook = func(ctx context.Context, n int, d string, emit func(string) error) error {
			if n == 3 {
				panic("the backend fell over")
			}
			return emit(d)
		}
	})
	res := b.signed(t, b.clientKey, "/v1/chat/completions", chatBody, nil)
	if e := res.apiErr(t); res.status != http.StatusInternalServerError || e.Code != "internal_error" {
		t.Fatalf("a panicking backend: %d %+v", res.status, e)
	}
	acct, err := b.service.Account(context.Background(), b.account)
	if err != nil || acct.Held != 0 || acct.LastSeq != 0 {
		t.Fatalf("after the panic: %+v, %v; want nothing held or charged", acct, err)
	}
	b.backend.hook = nil
	if res := b.signed(t, b.clientKey, "/v1/chat/completions", chatBody, nil); res.status != http.StatusOK {
		t.Fatalf("the next request: %d %s", res.status, res.body)
	}
}

// TestIdempotentRetryAfterCutStream: a stream whose client went away is charged what
// was written, and a retry with the same Idempotency-Key runs the request again to the
// end (it used to replay the cut stream forever); once it completed, retries replay it.
// The cut attempt sent again as it was signed is refused: it is never run twice.
func TestIdempotentRetryAfterCutStream(t *testing.T) {
	b := newBilling(t, 1e9, func(_ *Config, r *recorder) { r.hook = holdUntilGone(4) })
	const path = "/v1/chat/completions"
	body := strings.Replace(chatBody, `"max_tokens"`, `"stream":true,"max_tokens"`, 1)
	sign := func() *http.Request {
		sr := settle.SignedRequest{Account: b.account, Timestamp: time.Now().Unix(), Nonce: settle.NewNonce(), Method: "POST", Path: path,
			IdempotencyKey: "story-1", Body: []byte(body)}
		req, _ := http.NewRequest("POST", b.http.URL+path, strings.NewReader(body))
		sr.Sign(req.Header, b.clientKey)
		return req
	}
	// again is req as it was signed, to send once more.
	again := func(ctx context.Context, req *http.Request) *http.Request {
		c := req.Clone(ctx)
		c.Body, _ = req.GetBody()
		return c
	}
	ctx, cancel := context.WithCancel(context.Background())
	first := sign()
	res, err := b.http.Client().Do(again(ctx, first))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := res.Body.Read(make([]byte, 1)); err != nil { // the first chunk arrived
		t.Fatal(err)
	}
	cancel()
	res.Body.Close()
	var receipts []settle.Receipt
	for deadline := time.Now().Add(5 * time.Second); len(receipts) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		receipts, _ = b.service.Receipts(context.Background(), b.account, 1, 10)
	}
	if len(receipts) != 1 || receipts[0].Status != settle.StatusCancelled || receipts[0].Usage.CompletionTokens == 0 || receipts[0].Usage.CompletionTokens > 3 {
		t.Fatalf("receipts of the cut stream: %+v", receipts)
	}

	// The cut attempt as it was signed, sent again (by whoever captured it): a replay,
	// not run again.
	replayed := b.roundTrip(t, again(context.Background(), first))
	if e := replayed.apiErr(t); replayed.status != http.StatusUnauthorized || e.Code != settle.CodeReplay {
		t.Fatalf("the cut attempt replayed: %d %+v", replayed.status, e)
	}

	b.backend.hook = nil
	retry := b.roundTrip(t, sign())
	s := parseSSE(t, retry.body)
	if retry.status != http.StatusOK || retry.header.Get(IdempotentReplayHeader) != "" || !s.done || s.receipt == nil ||
		s.receipt.Seq != 2 || s.receipt.Status != settle.StatusCompleted || s.receipt.RequestHash != receipts[0].RequestHash {
		t.Fatalf("the retry after a cut stream: %d %s %s", retry.status, retry.header, retry.body)
	}
	// Completed: every retry, the cut attempt's signature too, gets the completed
	// answer again, charged nothing.
	for _, req := range []*http.Request{sign(), again(context.Background(), first)} {
		res := b.roundTrip(t, req)
		if res.header.Get(IdempotentReplayHeader) != "true" || !bytes.Equal(res.body, retry.body) {
			t.Fatalf("a retry after completion: %s %s", res.header, res.body)
		}
	}
	if acct, err := b.service.Account(context.Background(), b.account); err != nil || acct.LastSeq != 2 || acct.Held != 0 {
		t.Fatalf("account %+v, %v; want the cut and the completed attempt", acct, err)
	}
}

// TestBilledMaxPrice performs the attacks on a client's price cap: a host whose
// worst-case price is over the request's max_price refuses it with a 402 naming both
// figures, before the backend runs or anything is held or charged; a relay that raises
// (or removes) the cap in a signed request breaks its signature; a cap the worst case
// fits is served and charged no more than it.
func TestBilledMaxPrice(t *testing.T) {
	b := newBilling(t, 200_000_000)
	path := "/v1/chat/completions"
	q, err := b.service.Pricer().Quote(testModel)
	if err != nil {
		t.Fatal(err)
	}
	worst := q.Prices.Cost(settle.Usage{PromptTokens: 512, CompletionTokens: 16, ComputeUnits: 100_000}, q.LoadMilli, 1<<63)
	capped := func(v string) string {
		return strings.Replace(chatBody, `"max_tokens":16`, `"max_tokens":16,"max_price":`+v, 1)
	}
	below := strconv.FormatUint(worst-1, 10)

	for _, tt := range []struct {
		name   string
		send   func() response
		status int
		code   string
		msg    string
	}{
		{"a cap one nanoTON under the worst case", func() response { return b.signed(t, b.clientKey, path, capped(`"`+below+`"`), nil) },
			402, settle.CodeMaxPrice, fmt.Sprintf("may cost up to %d nanoTON", worst)},
		{"the same cap as a JSON integer", func() response { return b.signed(t, b.clientKey, path, capped(below), nil) },
			402, settle.CodeMaxPrice, "over its max_price of " + below + " nanoTON"},
		{"the cap raised by a relay after signing", func() response {
			sr := settle.SignedRequest{Account: b.account, Timestamp: time.Now().Unix(), Nonce: settle.NewNonce(), Method: "POST", Path: path, Body: []byte(capped(below))}
			req, _ := http.NewRequest("POST", b.http.URL+path, strings.NewReader(capped(`"18446744073709551615"`)))
			sr.Sign(req.Header, b.clientKey)
			return b.roundTrip(t, req)
		}, 401, settle.CodeBadSignature, "does not verify"},
		{"a negative cap", func() response { return b.signed(t, b.clientKey, path, capped(`-5`), nil) }, 400, "invalid_request", "max_price must be a whole number"},
		{"a fraction", func() response { return b.signed(t, b.clientKey, path, capped(`1.5`), nil) }, 400, "invalid_request", "max_price must be a whole number"},
		{"an exponent", func() response { return b.signed(t, b.clientKey, path, capped(`1e18`), nil) }, 400, "invalid_request", "max_price must be a whole number"},
		{"over 2^64", func() response { return b.signed(t, b.clientKey, path, capped(`"18446744073709551616"`), nil) }, 400, "invalid_request", "max_price must be a whole number"},
		{"zero", func() response { return b.signed(t, b.clientKey, path, capped(`"0"`), nil) }, 400, "invalid_request", "max_price must be positive"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			generations := len(b.backend.requests)
			res := tt.send()
			e := res.apiErr(t)
			if res.status != tt.status || e.Code != tt.code || !strings.Contains(e.Message, tt.msg) {
				t.Fatalf("%d %+v, want %d %s containing %q", res.status, e, tt.status, tt.code, tt.msg)
			}
			if res.header.Get(settle.ReceiptHeader) != "" || len(b.backend.requests) != generations {
				t.Error("a refused request has a receipt or reached the backend")
			}
		})
	}
	if acct, err := b.service.Account(context.Background(), b.account); err != nil || acct.LastSeq != 0 || acct.Held != 0 {
		t.Fatalf("after the refusals the account is %+v, %v: something was held or charged", acct, err)
	}

	res := b.signed(t, b.clientKey, path, capped(strconv.FormatUint(worst, 10)), nil)
	if res.status != http.StatusOK {
		t.Fatalf("a cap of exactly the worst case: %d %s", res.status, res.body)
	}
	if r := b.receipt(t, res); r.Cost > worst || r.MaxCost != worst {
		t.Errorf("receipt cost %d, max cost %d; want at most the cap %d", r.Cost, r.MaxCost, worst)
	}
}

// TestBilledPricesTheModel: a request is priced at the table of the model it runs. The
// host prices only its embedded model: a request that names another is refused with a
// 400 model_not_priced before the backend runs or anything is held, and one that names
// none is priced, and its receipt named, as the model the backend runs for it.
func TestBilledPricesTheModel(t *testing.T) {
	b := newBilling(t, 1e9)
	path := "/v1/chat/completions"
	res := b.signed(t, b.clientKey, path, strings.Replace(chatBody, `{"messages"`, `{"model":"dear-model","messages"`, 1), nil)
	if e := res.apiErr(t); res.status != http.StatusBadRequest || e.Code != settle.CodeUnpricedModel || !strings.Contains(e.Message, `no price for model "dear-model"`) {
		t.Fatalf("an unpriced model: %d %+v", res.status, e)
	}
	if len(b.backend.requests) != 0 || res.header.Get(settle.ReceiptHeader) != "" {
		t.Fatal("a request for an unpriced model reached the backend or has a receipt")
	}
	if acct, err := b.service.Account(context.Background(), b.account); err != nil || acct.LastSeq != 0 || acct.Held != 0 {
		t.Fatalf("after the refusal the account is %+v, %v", acct, err)
	}
	res = b.signed(t, b.clientKey, path, chatBody, nil)
	if res.status != http.StatusOK {
		t.Fatalf("a request naming no model: %d %s", res.status, res.body)
	}
	if r := b.receipt(t, res); r.Model != testModel || r.Prices != testPrices {
		t.Errorf("the receipt names model %q at %+v, want %q at its table", r.Model, r.Prices, testModel)
	}
}
