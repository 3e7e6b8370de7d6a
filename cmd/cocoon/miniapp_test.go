package main

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton/wallet"
	"github.com/xssnick/tonutils-go/tvm/cell"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/escrow"
	"github.com/cocoonhost/cocoon/settle/tonemu"
	"github.com/cocoonhost/cocoon/web"
	"github.com/cocoonhost/cocoon/web/page"
	"github.com/cocoonhost/cocoon/web/proxy/proxytest"
)

// miniAppTestDir holds the Mini App's browser driver and its pinned playwright-core.
var miniAppTestDir = filepath.Join("..", "..", "web", "miniapp", "e2e")

// miniAppBotToken is the bot the test's Telegram signs init data for.
const miniAppBotToken = "7000000001:cocoon-test-bot-token"

// recordingRelay is a reverse proxy between the browser and the host that records
// every request and answer it forwards (proxytest.NewRelay): what a relay, a load
// balancer or a developer's backend in between gets to see.
type recordingRelay struct {
	url string
	*proxytest.Recorder
}

// telegramDataCheckString is the fields as key=value, sorted by key, joined by "\n":
// what Telegram signs, both ways (written out from Telegram's documentation rather than
// through the code under test).
func telegramDataCheckString(fields url.Values) string {
	var pairs []string
	for k := range fields {
		pairs = append(pairs, k+"="+fields.Get(k))
	}
	slices.Sort(pairs)
	return strings.Join(pairs, "\n")
}

// telegramInitData signs fields for the bot as Telegram does with the bot token: hash is
// the hex HMAC-SHA256 of the data-check string under HMAC-SHA256(key "WebAppData", bot
// token).
func telegramInitData(botToken string, fields url.Values) string {
	secret := hmac.New(sha256.New, []byte("WebAppData"))
	secret.Write([]byte(botToken))
	mac := hmac.New(sha256.New, secret.Sum(nil))
	mac.Write([]byte(telegramDataCheckString(fields)))
	signed := maps.Clone(fields)
	signed.Set("hash", hex.EncodeToString(mac.Sum(nil)))
	return signed.Encode()
}

// telegramThirdPartyInitData signs fields for the bot as Telegram does for third
// parties, with key in Telegram's place: signature is the unpadded base64url Ed25519
// signature of "<bot id>:WebAppData\n" and the data-check string.
func telegramThirdPartyInitData(key ed25519.PrivateKey, botID int64, fields url.Values) string {
	msg := strconv.FormatInt(botID, 10) + ":WebAppData\n" + telegramDataCheckString(fields)
	signed := maps.Clone(fields)
	signed.Set("signature", base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(msg))))
	return signed.Encode()
}

// tonConnectTransaction is TON Connect's sendTransaction request as a wallet gets it.
type tonConnectTransaction struct {
	ValidUntil int64  `json:"valid_until"`
	Network    string `json:"network,omitempty"`
	From       string `json:"from,omitempty"`
	Messages   []struct {
		Address   string `json:"address"`
		Amount    string `json:"amount"`
		StateInit string `json:"stateInit,omitempty"`
		Payload   string `json:"payload,omitempty"`
	} `json:"messages"`
}

// testWallet is the wallet side of TON Connect: it signs and sends exactly the
// messages a sendTransaction request asks for, from w on the chain, and answers the
// external message's BOC in base64, as a wallet does.
type testWallet struct {
	t     *testing.T
	chain *tonemu.Chain
	w     *wallet.Wallet
	mu    sync.Mutex
	sent  []tonConnectTransaction
}

func (tw *testWallet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req tonConnectTransaction
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		http.Error(w, "not a sendTransaction request: "+err.Error(), http.StatusBadRequest)
		return
	}
	tw.mu.Lock()
	tw.sent = append(tw.sent, req)
	tw.mu.Unlock()
	boc, err := tw.send(r.Context(), req)
	if err != nil {
		tw.t.Errorf("the test wallet could not send %+v: %v", req, err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Write([]byte(boc))
}

func (tw *testWallet) send(ctx context.Context, req tonConnectTransaction) (string, error) {
	if time.Unix(req.ValidUntil, 0).Before(time.Now()) {
		return "", fmt.Errorf("valid_until %d has passed", req.ValidUntil)
	}
	if req.From != "" && req.From != tw.w.WalletAddress().StringRaw() {
		return "", fmt.Errorf("from %s is not this wallet", req.From)
	}
	var msgs []*wallet.Message
	for _, m := range req.Messages {
		dst, err := address.ParseAddr(m.Address)
		if err != nil {
			if dst, err = address.ParseRawAddr(m.Address); err != nil {
				return "", fmt.Errorf("address %q: %v", m.Address, err)
			}
		}
		amount, ok := new(big.Int).SetString(m.Amount, 10)
		if !ok || amount.Sign() <= 0 {
			return "", fmt.Errorf("amount %q", m.Amount)
		}
		body := cell.BeginCell().EndCell()
		if m.Payload != "" {
			if body, err = bocCell(m.Payload); err != nil {
				return "", fmt.Errorf("payload: %v", err)
			}
		}
		msg := wallet.SimpleMessageAutoBounce(dst, tlb.FromNanoTON(amount), body)
		if m.StateInit != "" {
			c, err := bocCell(m.StateInit)
			if err != nil {
				return "", fmt.Errorf("stateInit: %v", err)
			}
			var si tlb.StateInit
			if err := tlb.LoadFromCell(&si, c.MustBeginParse()); err != nil {
				return "", fmt.Errorf("stateInit: %v", err)
			}
			msg.InternalMessage.StateInit = &si
		}
		msgs = append(msgs, msg)
	}
	ext, err := tw.w.BuildExternalMessageForMany(ctx, msgs)
	if err != nil {
		return "", err
	}
	if err := tw.chain.SendExternalMessage(ctx, ext); err != nil {
		return "", err
	}
	c, err := tlb.ToCell(ext)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(c.ToBOC()), nil
}

func bocCell(b64 string) (*cell.Cell, error) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, err
	}
	return cell.FromBOC(b)
}

// miniAppScenario is what web/miniapp/e2e/miniapp.mjs reads.
type miniAppScenario struct {
	URL      string `json:"url"`
	Origin   string `json:"origin"`
	Telegram struct {
		InitData string `json:"init_data"`
	} `json:"telegram"`
	Wallet struct {
		Address   string `json:"address"`
		PublicKey string `json:"public_key"`
		StateInit string `json:"state_init"`
		Signer    string `json:"signer"`
	} `json:"wallet"`
	WalletsFile string `json:"wallets_file"`
	Deposit     string `json:"deposit"`
	Prompt      string `json:"prompt"`
}

// miniAppShown is what the app showed at one step.
type miniAppShown struct {
	State        string `json:"state"`
	User         string `json:"user"`
	VerifyStatus string `json:"verifyStatus"`
	Lines        []struct {
		Line, Verdict, Name, Value string
	} `json:"lines"`
	Checks []struct {
		Verdict, Name, Value string
	} `json:"checks"`
	Price         string `json:"price"`
	WalletStatus  string `json:"walletStatus"`
	EscrowState   string `json:"escrowState"`
	EscrowStatus  string `json:"escrowStatus"`
	TelegramReady bool   `json:"telegramReady"`
	Answer        *struct {
		State     string `json:"state"`
		Deltas    int    `json:"deltas"`
		Signature string `json:"signature"`
		Receipt   string `json:"receipt"`
		Text      string `json:"text"`
		Proof     string `json:"proof"`
		Warning   string `json:"warning"` // shown when the answer's charge is not verified
	} `json:"answer"`
	Question string `json:"question"`
}

func (s *miniAppShown) lines(kind string) []string {
	var out []string
	for _, l := range s.Lines {
		if l.Line == kind {
			out = append(out, l.Verdict+" "+l.Value)
		}
	}
	return out
}

type miniAppRun struct {
	Errors []string `json:"errors"`
	// Requests are the URLs of every request the page made; Outside those that left
	// its origin (refused); CSPViolations what its content security policy blocked.
	Requests        []string         `json:"requests"`
	Outside         []string         `json:"outside"`
	CSPViolations   []string         `json:"cspViolations"`
	FailedResponses []string         `json:"failedResponses"`
	WalletRequests  []map[string]any `json:"walletRequests"`
	Verified        *miniAppShown    `json:"verified"`
	Funded          *miniAppShown    `json:"funded"`
	Answered        *miniAppShown    `json:"answered"`
	Last            *miniAppShown    `json:"last"`
	Failure         string           `json:"failure"`
}

// browserDriver returns node's path, after checking that what a browser test in dir
// needs is there: the verifier built, node, playwright-core installed in dir, Debian's
// chromium. It fails the test when a tool is missing: CI installs them all (.ci/run),
// and a browser test that skipped would prove nothing.
func browserDriver(t *testing.T, dir string) string {
	t.Helper()
	setup := "make test installs it (make page; npm ci --prefix " + filepath.ToSlash(strings.TrimPrefix(dir, "../../")) + "; apt-get install chromium nodejs)"
	if !page.Built() {
		t.Fatalf("%v: %s", page.ErrNotBuilt, setup)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed: %s", setup)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core", "package.json")); err != nil {
		t.Fatalf("playwright-core is not installed: %s", setup)
	}
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		t.Fatalf("Debian's chromium is not installed: %s", setup)
	}
	return node
}

// runMiniApp runs the app's browser driver on s.
func runMiniApp(t *testing.T, s miniAppScenario) miniAppRun {
	t.Helper()
	node := browserDriver(t, miniAppTestDir)
	b, _ := json.Marshal(s)
	file := writeTemp(t, string(b))
	// Verifying, funding (a transaction and the host's polling) and one streamed
	// answer: a minute alone, several on a loaded 2-core machine.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "miniapp.mjs", file)
	cmd.Dir = miniAppTestDir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node miniapp.mjs: %v\nstderr: %s", err, stderr.Bytes())
	}
	var run miniAppRun
	if err := json.Unmarshal(stdout.Bytes(), &run); err != nil {
		t.Fatalf("miniapp.mjs printed %q: %v\nstderr: %s", stdout.Bytes(), err, stderr.Bytes())
	}
	return run
}

// miniAppPrompt is what the user asks: a name the model cannot make up, to find it
// anywhere in a capture.
const miniAppPrompt = "Once upon a time a lighthouse keeper named Quillon"

// miniAppUser returns the fields of the test's init data: the Telegram user, signed now.
func miniAppUser() url.Values {
	return url.Values{
		"query_id":  {"AAHdF6IQAAAAAN0XohDhrOrc"},
		"user":      {`{"id":424242,"first_name":"Ada","username":"ada_test"}`},
		"auth_date": {strconv.FormatInt(time.Now().Unix(), 10)},
	}
}

// miniAppHost starts a host for a Mini App test, as newConfiguredBillingHost does, on a
// new local TON network whose clock follows the machine's (as cocoon-host devnet runs
// it: wallets date their messages by the wall clock), with configure applied after the
// quote rate a browser's fresh nonces need. It skips the test under -short.
func miniAppHost(t *testing.T, configure func(*web.Config), measured ...[]attest.Event) (*billingHost, *tonemu.Chain) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a browser against a host on a local TON network")
	}
	chain, err := tonemu.New()
	if err != nil {
		t.Fatal(err)
	}
	chain.FollowWallClock()
	h := newConfiguredBillingHost(t, chain, func(c *web.Config) {
		c.MaxQuotesPerSecond = 50
		configure(c)
	}, measured...)
	return h, chain
}

// miniAppOptions are what a session of miniAppSession varies.
type miniAppOptions struct {
	// wallet funds the escrow when the host bills.
	wallet *testWallet
	// tamper, when not nil, makes the relay an active one (see proxytest.NewRelay).
	tamper func(path string, body []byte) []byte
	// query is added to the app's URL (policy, strict).
	query url.Values
}

// miniAppSession opens the Mini App of the host at hostURL through a recording relay,
// with the example pipeline pushed to it and the given Telegram init data, lets the
// harness go through it, and checks what the browser logged. It returns what the app
// showed, the relay and the pipeline id.
func miniAppSession(t *testing.T, hostURL, simRoot, initData string, o miniAppOptions) (miniAppRun, *recordingRelay, string) {
	t.Helper()
	pipeline := pipelineOf(t, "push", append(exampleModules(t, exampleGuard), "--host", hostURL, "--api-key", "operator-key")...)
	relayURL, recorder := proxytest.NewRelay(t, hostURL, o.tamper)
	relay := &recordingRelay{relayURL, recorder}
	rootPEM, err := os.ReadFile(simRoot)
	if err != nil {
		t.Fatal(err)
	}
	query := url.Values{"pipeline": {pipeline}, "trust_sim_root": {string(rootPEM)}}
	for k, v := range o.query {
		query[k] = v
	}
	var s miniAppScenario
	s.URL = relay.url + "/app/?" + query.Encode()
	s.Origin = relay.url
	s.Telegram.InitData = initData
	if tw := o.wallet; tw != nil {
		pub := tw.w.PrivateKey().Public().(ed25519.PublicKey)
		stateInit, err := wallet.GetStateInit(pub, wallet.ConfigV5R1Final{NetworkGlobalID: wallet.MainnetGlobalID}, tw.w.GetSubwalletID())
		if err != nil {
			t.Fatal(err)
		}
		stateInitCell, err := tlb.ToCell(stateInit)
		if err != nil {
			t.Fatal(err)
		}
		signer := httptest.NewServer(tw)
		t.Cleanup(signer.Close)
		s.Wallet.Address = tw.w.WalletAddress().StringRaw()
		s.Wallet.PublicKey = hex.EncodeToString(pub)
		s.Wallet.StateInit = base64.StdEncoding.EncodeToString(stateInitCell.ToBOC())
		s.Wallet.Signer = signer.URL
	}
	if s.WalletsFile, err = filepath.Abs(filepath.Join(miniAppTestDir, "wallets.json")); err != nil {
		t.Fatal(err)
	}
	s.Deposit = "1"
	s.Prompt = miniAppPrompt
	run := runMiniApp(t, s)
	if run.Failure != "" {
		var last miniAppShown
		if run.Last != nil {
			last = *run.Last
			last.Checks = nil
		}
		t.Fatalf("the app did not get through: %s\nlast shown: %+v\nerrors: %q", run.Failure, last, run.Errors)
	}
	// TON Connect's UI (2.4.4), opened by Telegram (the launch parameters), preloads the icon
	// of Telegram's own wallet, which a wallets list without it leaves undefined: one
	// request for "undefined" beside the page, answered 404. Nothing else may fail.
	tonConnectQuirk := "404 GET " + relay.url + "/app/undefined"
	quirks := 0
	for _, r := range run.FailedResponses {
		if r == tonConnectQuirk {
			quirks++
			continue
		}
		t.Errorf("the host refused the app: %s", r)
	}
	for _, e := range run.Errors {
		if quirks > 0 && e == "console: Failed to load resource: the server responded with a status of 404 (Not Found)" {
			quirks--
			continue
		}
		// When the user picks the injected wallet, the UI aborts the connection it had
		// started for its QR code and leaves the rejection unhandled.
		if e == "page error: [TON_CONNECT_SDK_ERROR] z\nAborted after attempts 1" {
			t.Logf("TON Connect's UI: %s", e)
			continue
		}
		t.Errorf("in the browser: %s", e)
	}
	checkOwnOrigin(t, run, relay.url)
	return run, relay, pipeline
}

// checkOwnOrigin fails t for every request of run that left origin, and for every
// request the page's content security policy blocked (a request the policy stops is one
// the page tried to make: with a laxer policy it would have left). The Mini App's
// promise is that opening it, verifying and chatting tell no one but the host the
// user's address; a wallet's HTTP bridge, which the test's injected wallet does not
// use, is the one exception (README.md, "The sample Mini App").
func checkOwnOrigin(t *testing.T, run miniAppRun, origin string) {
	t.Helper()
	if len(run.Requests) == 0 {
		t.Error("the harness recorded no request of the page")
	}
	for _, u := range run.Requests {
		if !strings.HasPrefix(u, origin+"/") {
			t.Errorf("the page made a request outside its origin %s: %s", origin, u)
		}
	}
	if len(run.Outside) > 0 {
		t.Errorf("the app reached outside its origin: %q", run.Outside)
	}
	for _, v := range run.CSPViolations {
		t.Errorf("the content security policy blocked a request of the page: %s", v)
	}
}

// fundedUserWallet is the Mini App user's wallet on the local network, funded with 3 TON.
func fundedUserWallet(t *testing.T, chain *tonemu.Chain) *testWallet {
	t.Helper()
	w, err := wallet.FromPrivateKey(chain, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)),
		wallet.ConfigV5R1Final{NetworkGlobalID: wallet.MainnetGlobalID})
	if err != nil {
		t.Fatal(err)
	}
	if err := chain.Fund(w.WalletAddress(), big.NewInt(3e9)); err != nil {
		t.Fatal(err)
	}
	return &testWallet{t: t, chain: chain, w: w}
}

// TestMiniApp is a Telegram user's session with the sample Mini App in a real browser
// (Debian's headless Chromium), loaded through a relay that records every byte both
// ways, against a real billing host (simulated TDX, the example pipeline, Telegram init
// data checked with the bot token) on a local TON network: the app verifies the host and
// shows what it verified, connects a TON Connect wallet (the test's stand-in, which signs
// and sends exactly what it is asked on the local network), deploys and funds the escrow,
// and chats, streamed, sealed and paid, with the answer's signature and receipt verified.
// The relay's capture must hold neither the prompt nor the answer nor the init data, nor
// any credential on the chat route; a plaintext request through the same relay shows
// that it would.
func TestMiniApp(t *testing.T) {
	h, chain := miniAppHost(t, func(c *web.Config) { c.TelegramBotToken = miniAppBotToken })
	tw := fundedUserWallet(t, chain)
	initData := telegramInitData(miniAppBotToken, miniAppUser())

	run, relay, pipeline := miniAppSession(t, h.url, h.simRoot, initData, miniAppOptions{wallet: tw})
	checkMiniAppVerified(t, run.Verified, pipeline)
	account := checkMiniAppFunded(t, chain, h, tw, run.Funded)
	answer := checkMiniAppAnswered(t, run.Answered, "verified")
	checkRelayCapture(t, relay, answer, initData, account)
}

// TestMiniAppUnverifiedCharge: when an answer verified but its bill did not (every
// price list the relay passes is one of other prices, signed by the settlement key: the
// host's before a price change, so the escrow still funds), the app shows the answer,
// marked done with its signature verified, and a plain warning that its charge could
// not be verified and what that means, not "Not answered" (before: the verified answer
// was dropped as if it had never come).
func TestMiniAppUnverifiedCharge(t *testing.T) {
	h, chain := miniAppHost(t, func(c *web.Config) { c.TelegramBotToken = miniAppBotToken })
	var changed atomic.Int32
	otherPrices := func(path string, body []byte) []byte {
		var l settle.PriceList
		if path != "/v1/pricing" || json.Unmarshal(body, &l) != nil {
			return body
		}
		for i := range l.Models {
			l.Models[i].Prices.CompletionPerMillion = 2*l.Models[i].Prices.CompletionPerMillion + 1
		}
		if l.Default != nil {
			l.Default.CompletionPerMillion = 2*l.Default.CompletionPerMillion + 1
		}
		l.Sign(h.key)
		b, err := json.Marshal(&l)
		if err != nil {
			t.Error(err)
			return body
		}
		changed.Add(1)
		return b
	}
	run, _, _ := miniAppSession(t, h.url, h.simRoot, telegramInitData(miniAppBotToken, miniAppUser()), miniAppOptions{wallet: fundedUserWallet(t, chain), tamper: otherPrices})
	if changed.Load() < 2 {
		t.Fatalf("the relay changed %d price lists: want the one kept and the one fetched again for the receipt", changed.Load())
	}
	a := run.Answered.Answer
	checkMiniAppAnswered(t, run.Answered, "unverified")
	if !strings.Contains(a.Proof, "receipt not verified") || !strings.Contains(a.Warning, "The charge for this answer could not be verified") ||
		!strings.Contains(a.Warning, "receipt_invalid") || !strings.Contains(a.Warning, "only its bill is in doubt") {
		t.Errorf("the answer's proof %q and warning %q: want the charge said not verified, and why", a.Proof, a.Warning)
	}
}

// TestMiniAppTelegramUser is the same session with a host that does not bill and holds
// no bot token: the app chats as the Telegram user, its init data (signed with Ed25519
// as Telegram signs for third parties, the test in Telegram's place) sealed inside each
// request, so the host answers only because the sealed credential verified, and the
// relay never sees it.
func TestMiniAppTelegramUser(t *testing.T) {
	const botID = 7000000002
	telegram := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	noEvents := []attest.Event{} // no settlement key measured: a host that does not bill
	h, _ := miniAppHost(t, func(c *web.Config) {
		c.Billing = nil
		c.TelegramBotID, c.TelegramKey = botID, telegram.Public().(ed25519.PublicKey)
	}, noEvents)
	initData := telegramThirdPartyInitData(telegram, botID, miniAppUser())

	run, relay, pipeline := miniAppSession(t, h.url, h.simRoot, initData, miniAppOptions{})
	checkMiniAppVerified(t, run.Verified, pipeline)
	if run.Funded != nil {
		t.Errorf("the app funded an escrow on a host that does not bill: %+v", run.Funded)
	}
	answer := checkMiniAppAnswered(t, run.Answered, "none")
	checkRelayCapture(t, relay, answer, initData, "")
}

// TestMiniAppRefusesHost: the app refuses a host whose evidence fails, says so, shows
// the failed line and sends no chat at all. The attack is a relay that swaps the
// end-to-end key in the host's boot evidence for one of its own, which would read every
// request sealed to it; and the bot's own demand, strict=1 with no policy, refuses a host
// whose every measurement is left open.
func TestMiniAppRefusesHost(t *testing.T) {
	h, _ := miniAppHost(t, func(c *web.Config) { c.TelegramBotToken = miniAppBotToken })
	// The relay's own X25519 key in place of the host's.
	relayKey, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var swapped atomic.Int32
	x25519 := regexp.MustCompile(`"x25519":"[A-Za-z0-9+/=]+"`)
	swap := func(path string, body []byte) []byte {
		if path != "/v1/attestation" {
			return body
		}
		swapped.Add(1)
		return x25519.ReplaceAll(body, []byte(`"x25519":"`+base64.StdEncoding.EncodeToString(relayKey.PublicKey().Bytes())+`"`))
	}
	initData := telegramInitData(miniAppBotToken, miniAppUser())
	for _, tc := range []struct {
		name    string
		options miniAppOptions
		line    string // the line shown failed
		check   string // the check shown failed
	}{
		{"e2e key swapped", miniAppOptions{tamper: swap}, "e2e-keys", "boot: e2e keys"},
		{"strict without a policy", miniAppOptions{query: url.Values{"strict": {"1"}}}, "", "boot: strict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run, relay, _ := miniAppSession(t, h.url, h.simRoot, initData, tc.options)
			v := run.Verified
			if v == nil || v.State != "broken" || !strings.HasPrefix(v.VerifyStatus, "Do not use this host: verification_failed") {
				t.Fatalf("the app shows %+v, want the host refused", v)
			}
			if got := v.lines(tc.line); tc.line != "" && (len(got) != 1 || !strings.HasPrefix(got[0], "fail ")) {
				t.Errorf("the %s line shows %q, want it failed", tc.line, got)
			}
			if i := slices.IndexFunc(v.Checks, func(c struct{ Verdict, Name, Value string }) bool { return c.Name == tc.check }); i < 0 || v.Checks[i].Verdict != "fail" {
				t.Errorf("the app does not show the check %q failed: %+v", tc.check, v.Checks)
			}
			for _, e := range relay.Exchanges() {
				if chatRoute.MatchString(e.Path) {
					t.Errorf("the app sent a chat request to a host it refused: %s", e.Path)
				}
			}
		})
	}
	if swapped.Load() == 0 {
		t.Error("the relay swapped no key: the test proves nothing")
	}
}

// checkMiniAppVerified checks the lines the app shows before the user trusts the host.
func checkMiniAppVerified(t *testing.T, v *miniAppShown, pipeline string) {
	t.Helper()
	if v == nil || v.State != "verified" {
		t.Fatalf("the app did not verify the host: %+v", v)
	}
	if !v.TelegramReady || !strings.Contains(v.User, "Ada (@ada_test)") {
		t.Errorf("the app shows the user %q (Telegram ready: %t)", v.User, v.TelegramReady)
	}
	want := map[string]string{
		"quote":    "ok sim quote (simulated",
		"host-key": "ok ",
		"fresh":    "ok yes",
		"e2e-keys": "ok the host key signed the HPKE keys",
		"backend":  "ok embedded",
		"pipeline": "ok " + pipeline,
	}
	for line, prefix := range want {
		if got := v.lines(line); len(got) != 1 || !strings.HasPrefix(got[0], prefix) {
			t.Errorf("the %s line shows %q, want it to start with %q", line, got, prefix)
		}
	}
	if got := v.lines("host-key"); len(got) != 1 || !regexp.MustCompile(`^ok [0-9a-f]{64}$`).MatchString(got[0]) {
		t.Errorf("the host key line shows %q, want the key in hex", got)
	}
	if got := v.lines("e2e-keys"); len(got) != 1 || !strings.HasSuffix(got[0], "; this app seals to mlkem768x25519") {
		t.Errorf("the e2e keys line shows %q, want the suite the app seals to", got)
	}
	modules := v.lines("module")
	var hashes []string
	for _, path := range []string{"pii-redactor/go/pii-redactor.wasm", "output-guard/c/output-guard.wasm"} {
		b, err := os.ReadFile(examplePlugin(t, path))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		hashes = append(hashes, hex.EncodeToString(sum[:]))
	}
	if len(modules) != 2 || !strings.Contains(modules[0], hashes[0]) || !strings.Contains(modules[1], hashes[1]) || !strings.Contains(modules[1], "heck") {
		t.Errorf("the app shows the modules %q, want the redactor %s, then the guard %s with its config", modules, hashes[0], hashes[1])
	}
	for _, c := range v.Checks {
		if c.Verdict != "ok" {
			t.Errorf("the app shows the check %s failed: %s", c.Name, c.Value)
		}
	}
}

// checkMiniAppFunded checks that the wallet was asked for exactly one deposit to the
// escrow, with its state init, and that it deployed and funded the escrow on chain for
// this user, this host and the app's client key; it returns the escrow's address.
func checkMiniAppFunded(t *testing.T, chain *tonemu.Chain, h *billingHost, tw *testWallet, v *miniAppShown) string {
	t.Helper()
	if v == nil || v.EscrowState != "funded" {
		t.Fatalf("the app did not fund the escrow: %+v", v)
	}
	tw.mu.Lock()
	sent := slices.Clone(tw.sent)
	tw.mu.Unlock()
	if len(sent) != 1 || len(sent[0].Messages) != 1 || sent[0].Messages[0].StateInit == "" || sent[0].Messages[0].Payload == "" {
		t.Fatalf("the wallet was asked %+v, want one message with the escrow's state init and the deposit", sent)
	}
	m := sent[0].Messages[0]
	addr, err := address.ParseAddr(m.Address)
	if err != nil {
		if addr, err = address.ParseRawAddr(m.Address); err != nil {
			t.Fatal(err)
		}
	}
	st, err := escrow.GetState(context.Background(), chain, addr)
	if err != nil {
		t.Fatalf("escrow %s on chain: %v", addr, err)
	}
	// The user asked to deposit 1 TON: the message carries it and the contract's reserve.
	if m.Amount != "1010000000" || st.Deposited.Cmp(big.NewInt(1e9)) != 0 {
		t.Errorf("escrow deposited %v from a message of %s nanoTON, want 1 TON from 1.01", st.Deposited, m.Amount)
	}
	if !st.ClientAddr.Equals(tw.w.WalletAddress()) || !st.HostAddr.Equals(h.wallet.WalletAddress()) ||
		!bytes.Equal(st.HostKey, h.key.Public().(ed25519.PublicKey)) {
		t.Errorf("escrow %+v: not this user's wallet and this host", st)
	}
	if !strings.Contains(v.EscrowStatus, "Escrow funded") {
		t.Errorf("the app says %q", v.EscrowStatus)
	}
	// e2ePrices: 100 TON per million prompt tokens, 4,000 per million completion tokens.
	if want := "stories260K costs 100.000 TON per million prompt tokens, 4000.000 TON per million completion tokens"; !strings.Contains(v.Price, want) {
		t.Errorf("the app shows the price %q, want %q", v.Price, want)
	}
	return addr.StringRaw()
}

// checkMiniAppAnswered checks a streamed answer to miniAppPrompt with its signature
// verified and the receipt the app shows as receipt ("verified", or "none" on a host
// that does not bill), and returns its text.
func checkMiniAppAnswered(t *testing.T, v *miniAppShown, receipt string) string {
	t.Helper()
	if v == nil || v.Answer == nil || v.Answer.State != "done" {
		t.Fatalf("the app shows no answer: %+v", v)
	}
	a := v.Answer
	if v.Question != miniAppPrompt || strings.TrimSpace(a.Text) == "" || a.Deltas < 2 {
		t.Errorf("asked %q, the app shows %q in %d deltas: want a streamed answer", v.Question, a.Text, a.Deltas)
	}
	if a.Signature != "verified" || a.Receipt != receipt || receipt == "verified" && !strings.Contains(a.Proof, "receipt verified") {
		t.Errorf("the answer's signature %q, receipt %q (want %q): %s", a.Signature, a.Receipt, receipt, a.Proof)
	}
	return a.Text
}

// chatRoute matches the chat routes, which must carry sealed envelopes only.
var chatRoute = regexp.MustCompile(`^(/p/[0-9a-f]{64})?/v1/chat/completions$`)

// checkRelayCapture checks what the relay saw: nowhere the prompt or the answer; on
// the chat routes only sealed envelopes, no credential and no JSON. Then, through the
// same relay, a plaintext request is seen whole, so the capture would have shown a
// leak.
func checkRelayCapture(t *testing.T, relay *recordingRelay, answer, initData, account string) {
	t.Helper()
	var all bytes.Buffer
	chats := 0
	// The answer's words long enough not to occur by chance in base64 records.
	var words []string
	for _, w := range strings.FieldsFunc(answer, func(r rune) bool { return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') }) {
		if len(w) >= 6 {
			words = append(words, w)
		}
	}
	for _, e := range relay.Exchanges() {
		req, resp := e.Request(), e.Answer()
		all.Write(req)
		all.Write(resp)
		if !chatRoute.MatchString(e.Path) {
			continue
		}
		chats++
		head, body, _ := bytes.Cut(req, []byte("\r\n\r\n"))
		for _, secret := range []string{"Authorization:", "Cocoon-Client-Signature", "Cocoon-Account", "Cocoon-Nonce", "Idempotency-Key", "tma ", account} {
			if secret != "" && bytes.Contains(req, []byte(secret)) {
				t.Errorf("a chat request carries %q in the clear:\n%s", secret, head)
			}
		}
		if !bytes.Contains(head, []byte("Content-Type: application/vnd.cocoon.e2e")) || bytes.Contains(body, []byte(`"messages"`)) {
			t.Errorf("a chat request is not sealed:\n%s", head)
		}
		for _, w := range append(words, `"delta"`, `"content"`, `"choices"`) {
			if bytes.Contains(resp, []byte(w)) {
				t.Errorf("a chat answer carries %q in the clear", w)
			}
		}
		// Every event of a sealed stream is a base64 record.
		if _, events, ok := bytes.Cut(resp, []byte("\r\n\r\n")); ok && bytes.Contains(resp, []byte("text/event-stream")) {
			for _, line := range strings.Split(string(events), "\n") {
				if data, ok := strings.CutPrefix(line, "data: "); ok {
					if _, err := base64.StdEncoding.DecodeString(data); err != nil {
						t.Errorf("a stream event is not a sealed record: %q", line)
					}
				}
			}
		}
	}
	if chats == 0 {
		t.Fatal("the relay saw no chat request: the app went around it")
	}
	for _, secret := range []string{miniAppPrompt, "Quillon", answer, initData, url.QueryEscape(initData)} {
		if bytes.Contains(all.Bytes(), []byte(secret)) {
			t.Errorf("the relay's capture holds %q", secret)
		}
	}
	if !bytes.Contains(all.Bytes(), []byte("/sdk/cocoon.js")) || !bytes.Contains(all.Bytes(), []byte("/v1/attestation")) {
		t.Error("the relay's capture lacks the app's own loads: it recorded nothing")
	}

	// The control: a plaintext chat through the same relay is seen whole.
	const marker = "a plaintext prompt the relay must see"
	req, _ := http.NewRequest(http.MethodPost, relay.url+"/v1/chat/completions",
		strings.NewReader(`{"messages":[{"role":"user","content":"`+marker+`"}],"max_tokens":4}`))
	req.Header.Set("Authorization", "Bearer operator-key")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	seen := false
	for _, e := range relay.Exchanges() {
		seen = seen || bytes.Contains(e.Request(), []byte(marker)) && bytes.Contains(e.Request(), []byte("Bearer operator-key"))
	}
	if !seen {
		t.Error("the relay did not record a plaintext prompt: its capture proves nothing")
	}
}
