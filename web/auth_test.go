package web

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/settle"
)

// initDataVector was signed outside Go (Python's hmac, per Telegram's documentation)
// for bot token botToken, auth_date 1700000000.
const initDataVector = "query_id=AAHdF6IQAAAAAN0XohDhrOrc" +
	"&user=%7B%22id%22%3A279058397%2C%22first_name%22%3A%22Vladislav%22%2C%22username%22%3A%22vdkfrost%22%2C%22language_code%22%3A%22ru%22%7D" +
	"&auth_date=1700000000&signature=sig%2B%2F%3D" +
	"&hash=6aa88feeb2660e940751eb0d1d687324aa456731f38ac21a608fc8553781d1ee"

func TestValidateInitData(t *testing.T) {
	signedAt := time.Unix(1700000000, 0)
	edit := func(from, to string) string {
		s := strings.Replace(initDataVector, from, to, 1)
		if s == initDataVector {
			t.Fatalf("%q not in the vector", from)
		}
		return s
	}
	for _, tc := range []struct {
		name, data, token string
		now               time.Time
		want              string // error text; empty for success
	}{
		{"valid", initDataVector, botToken, signedAt.Add(time.Hour), ""},
		{"fields in another order", edit("query_id=AAHdF6IQAAAAAN0XohDhrOrc&", "") + "&query_id=AAHdF6IQAAAAAN0XohDhrOrc", botToken, signedAt, ""},
		{"clock skew", initDataVector, botToken, signedAt.Add(-30 * time.Second), ""},
		{"other bot", initDataVector, "654321:XYZ", signedAt, "the hash does not match"},
		{"user changed", edit("279058397", "279058398"), botToken, signedAt, "the hash does not match"},
		{"auth_date changed", edit("1700000000", "1800000000"), botToken, signedAt, "the hash does not match"},
		{"hash changed", edit("hash=6a", "hash=7a"), botToken, signedAt, "the hash does not match"},
		{"hash not hex", edit("hash=6a", "hash=zz"), botToken, signedAt, "the hash does not match"},
		{"field dropped", edit("&signature=sig%2B%2F%3D", ""), botToken, signedAt, "the hash does not match"},
		{"no hash", initDataVector[:strings.Index(initDataVector, "&hash=")], botToken, signedAt, "no hash field"},
		{"field twice", initDataVector + "&auth_date=1700000000", botToken, signedAt, `field "auth_date" appears 2 times`},
		{"too old", initDataVector, botToken, signedAt.Add(25 * time.Hour), "auth_date is 25h0m0s old, over the limit of 24h0m0s"},
		{"from the future", initDataVector, botToken, signedAt.Add(-2 * time.Minute), "auth_date is in the future"},
		{"not a query", "%zz", botToken, signedAt, "not a query string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, err := initDataChecker{botToken: tc.token, maxAge: 24 * time.Hour}.check(tc.data, tc.now)
			switch {
			case tc.want == "" && (err != nil || user != "279058397"):
				t.Errorf("got %q, %v; want user 279058397", user, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %q, %v; want error %q", user, err, tc.want)
			}
		})
	}
}

// thirdPartyBotID and thirdPartySeed make the vectors of Telegram's Ed25519 signature
// of init data: the test plays Telegram with a key of its own.
const thirdPartyBotID = 7544535829

var thirdPartyKey = ed25519.NewKeyFromSeed([]byte("cocoon-test: Telegram's key.....")[:ed25519.SeedSize])

// thirdPartyInitData signs fields as Telegram's documentation specifies for third
// parties, written out here rather than through the code under test: the message is
// "<bot id>:WebAppData\n" and the fields but hash and signature, as key=value sorted
// by key, joined by "\n"; the signature is unpadded base64url.
func thirdPartyInitData(botID int64, fields url.Values) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	msg := strconv.FormatInt(botID, 10) + ":WebAppData"
	for _, k := range keys {
		msg += "\n" + k + "=" + fields.Get(k)
	}
	signed := url.Values{}
	for k, v := range fields {
		signed[k] = v
	}
	signed.Set("signature", base64.RawURLEncoding.EncodeToString(ed25519.Sign(thirdPartyKey, []byte(msg))))
	signed.Set("hash", strings.Repeat("0", 64)) // Telegram sends both; the bot token's hash is not checked here
	return signed.Encode()
}

func TestValidateInitDataWithoutTheBotToken(t *testing.T) {
	signedAt := time.Unix(1700000000, 0)
	fields := url.Values{
		"query_id":  {"AAHdF6IQAAAAAN0XohDhrOrc"},
		"user":      {`{"id":279058397,"first_name":"Vladislav","username":"vdkfrost"}`},
		"auth_date": {"1700000000"},
	}
	vector := thirdPartyInitData(thirdPartyBotID, fields)
	edit := func(from, to string) string {
		s := strings.Replace(vector, from, to, 1)
		if s == vector {
			t.Fatalf("%q not in the vector", from)
		}
		return s
	}
	sig := url.Values{}
	if v, err := url.ParseQuery(vector); err == nil {
		sig.Set("signature", v.Get("signature"))
	}
	pub := thirdPartyKey.Public().(ed25519.PublicKey)
	checker := initDataChecker{botID: thirdPartyBotID, key: pub, maxAge: 24 * time.Hour}
	for _, tc := range []struct {
		name, data string
		checker    initDataChecker
		now        time.Time
		want       string // error text; empty for success
	}{
		{"valid", vector, checker, signedAt.Add(time.Hour), ""},
		{"padded base64url", edit(sig.Encode(), sig.Encode()+"%3D%3D"), checker, signedAt, ""},
		{"user changed", edit("279058397", "279058398"), checker, signedAt, "the signature does not verify: the data was not signed by Telegram for bot 7544535829"},
		{"auth_date changed", edit("1700000000", "1800000000"), checker, signedAt, "the signature does not verify"},
		{"field dropped", edit("query_id=AAHdF6IQAAAAAN0XohDhrOrc&", ""), checker, signedAt, "the signature does not verify"},
		{"field added", vector + "&start_param=x", checker, signedAt, "the signature does not verify"},
		{"other bot", vector, initDataChecker{botID: thirdPartyBotID + 1, key: pub, maxAge: 24 * time.Hour}, signedAt, "not signed by Telegram for bot 7544535830"},
		{"Telegram's production key", vector, initDataChecker{botID: thirdPartyBotID, key: TelegramProductionKey, maxAge: 24 * time.Hour}, signedAt, "the signature does not verify"},
		{"Telegram's test key", vector, initDataChecker{botID: thirdPartyBotID, key: TelegramTestKey, maxAge: 24 * time.Hour}, signedAt, "the signature does not verify"},
		{"no signature", thirdPartyInitDataWithout(t, vector, "signature"), checker, signedAt, "no signature field"},
		{"signature not base64url", edit(sig.Encode(), "signature=%21%21"), checker, signedAt, "the signature does not verify"},
		{"too old", vector, checker, signedAt.Add(25 * time.Hour), "auth_date is 25h0m0s old, over the limit of 24h0m0s"},
		{"a shorter lifetime", vector, initDataChecker{botID: thirdPartyBotID, key: pub, maxAge: time.Hour}, signedAt.Add(2 * time.Hour), "auth_date is 2h0m0s old, over the limit of 1h0m0s"},
		// With both ways configured, either suffices; a failure names both.
		{"bot token's hash wrong, signature right", vector, initDataChecker{botToken: botToken, botID: thirdPartyBotID, key: pub, maxAge: 24 * time.Hour}, signedAt, ""},
		{"both wrong", edit("279058397", "1"), initDataChecker{botToken: botToken, botID: thirdPartyBotID, key: pub, maxAge: 24 * time.Hour}, signedAt,
			"the hash does not match: the data was not signed for this bot; the signature does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, err := tc.checker.check(tc.data, tc.now)
			switch {
			case tc.want == "" && (err != nil || user != "279058397"):
				t.Errorf("got %q, %v; want user 279058397", user, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %q, %v; want error %q", user, err, tc.want)
			}
		})
	}
}

func thirdPartyInitDataWithout(t *testing.T, data, field string) string {
	v, err := url.ParseQuery(data)
	if err != nil {
		t.Fatal(err)
	}
	v.Del(field)
	return v.Encode()
}

// TestMiniAppWithoutTheBotToken: a host configured with the bot id only (no token)
// accepts a Mini App's init data signed by Telegram's key, and refuses it forged.
func TestMiniAppWithoutTheBotToken(t *testing.T) {
	f := newFixture(t, func(c *Config, _ *recorder) {
		c.APIKeys, c.TelegramBotToken = nil, ""
		c.TelegramBotID, c.TelegramKey = thirdPartyBotID, thirdPartyKey.Public().(ed25519.PublicKey)
	})
	data := thirdPartyInitData(thirdPartyBotID, url.Values{
		"user": {`{"id":42,"first_name":"Ann"}`}, "auth_date": {strconv.FormatInt(time.Now().Unix(), 10)}})
	const chat = `{"messages":[{"role":"user","content":"x"}],"max_tokens":2}`
	if res := f.do("POST", "/v1/chat/completions", "tma "+data, chat); res.status != http.StatusOK {
		t.Errorf("signed init data: %d %s", res.status, res.body)
	}
	forged := strings.Replace(data, "42", "43", 1)
	if res := f.do("POST", "/v1/chat/completions", "tma "+forged, chat); res.status != http.StatusUnauthorized ||
		!strings.Contains(res.apiErr(t).Message, "the signature does not verify") {
		t.Errorf("forged init data: %d %s", res.status, res.body)
	}
}

// telegramAuth returns an Authorization value with init data signed now for botToken.
func telegramAuth(t testing.TB) string { return telegramAuthAs(t, 42) }

// telegramAuthAs is telegramAuth for the Telegram user with id user.
func telegramAuthAs(t testing.TB, user int) string {
	v := url.Values{"user": {fmt.Sprintf(`{"id":%d,"first_name":"Ann"}`, user)}, "auth_date": {strconv.FormatInt(time.Now().Unix(), 10)}}
	dcs := "auth_date=" + v.Get("auth_date") + "\nuser=" + v.Get("user")
	v.Set("hash", hex.EncodeToString(initDataHash(dcs, botToken)))
	return "tma " + v.Encode()
}

func TestAuthentication(t *testing.T) {
	f := newFixture(t)
	const chat = `{"messages":[{"role":"user","content":"x"}],"max_tokens":2}`
	for _, tc := range []struct {
		name, auth string
		status     int
		want       string
	}{
		{"no credentials", "", 401, "no credentials"},
		{"wrong key", "sk-wrong", 401, "the API key is not valid"},
		{"prefix of a key", ownerKey[:len(ownerKey)-1], 401, "the API key is not valid"},
		{"key with a suffix", ownerKey + "x", 401, "the API key is not valid"},
		{"basic", "Basic dXNlcjpwYXNz", 401, `unknown authorization scheme "Basic"`},
		{"forged init data", strings.Replace(telegramAuth(t), "42", "43", 1), 401, "Telegram init data: the hash does not match"},
		{"old init data", "tma " + initDataVector, 401, "over the limit of 24h0m0s"},
		{"API key", ownerKey, 200, ""},
		{"lower-case scheme", "bearer " + otherKey, 200, ""},
		{"Mini App", telegramAuth(t), 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.do("POST", "/v1/chat/completions", tc.auth, chat)
			if res.status != tc.status {
				t.Fatalf("%d %s, want %d", res.status, res.body, tc.status)
			}
			if tc.status == 401 {
				if e := res.apiErr(t); e.Type != "authentication_error" || !strings.Contains(e.Message, tc.want) {
					t.Errorf("error %+v, want %q", e, tc.want)
				}
				if res.header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			}
		})
	}
	// A Mini App user may read pipelines but not upload them.
	if res := f.do("GET", "/v1/pipelines", telegramAuth(t), nil); res.status != 200 {
		t.Errorf("Mini App listing pipelines: %d %s", res.status, res.body)
	}
	if res := f.do("POST", "/v1/pipelines", telegramAuth(t), upload(emptyPipeline)); res.status != http.StatusForbidden {
		t.Errorf("Mini App uploading: %d %s", res.status, res.body)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	engine, sandbox := shared(t)
	f := newFixture(t)
	base := f.server.cfg
	for name, cfg := range map[string]Config{
		"no backend":     {Sandbox: sandbox, Store: base.Store, Registry: base.Registry, APIKeys: base.APIKeys},
		"no credentials": {Backend: engine, Sandbox: sandbox, Store: base.Store, Registry: base.Registry},
		"nameless key":   {Backend: engine, Sandbox: sandbox, Store: base.Store, Registry: base.Registry, APIKeys: []APIKey{{Key: "k"}}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// forgeSigned sets the headers of a request signed for account, with a signature that
// is well-formed but made with no key at all.
func forgeSigned(h http.Header, account string) {
	h.Set(settle.AccountHeader, account)
	h.Set(settle.TimestampHeader, strconv.FormatInt(time.Now().Unix(), 10))
	h.Set(settle.NonceHeader, settle.NewNonce())
	h.Set(settle.ClientSignatureHeader, base64.StdEncoding.EncodeToString(make([]byte, ed25519.SignatureSize)))
}

// TestForgedSignatureIsNoCredential performs the attack of a client that sends a
// signature header it did not sign, on a billing host: every route refuses it with a
// 401 before its handler runs (it used to read models and pipelines, spend quotes and
// take a generation slot first), and a request signed with the escrow's key passes.
func TestForgedSignatureIsNoCredential(t *testing.T) {
	b := newBilling(t, 1e9, func(c *Config, _ *recorder) {
		c.Attestation = simAttestation(t)
		c.MaxGenerations = 1
	})
	id := b.push(emptyPipeline)
	// New read the backend's list for the signed price list: forget it, so that a
	// forged request reaching admission (or the model lists) would read it again.
	b.server.models.mu.Lock()
	b.server.models.windows = nil
	b.server.models.mu.Unlock()
	nonce := "?nonce=" + strings.Repeat("ab", 16)
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v1/models", ""},
		{"GET", "/v1/pipelines", ""},
		{"GET", "/v1/pipelines/" + id, ""},
		{"GET", "/v1/pipelines/" + id + "/attestation" + nonce, ""},
		{"GET", "/p/" + id + "/v1/models", ""},
		{"GET", "/v1/accounts/" + b.account, ""},
		{"POST", "/v1/chat/completions", chatBody},
		{"POST", "/p/" + id + "/v1/chat/completions", chatBody},
	} {
		req, _ := http.NewRequest(tc.method, b.http.URL+tc.path, strings.NewReader(tc.body))
		forgeSigned(req.Header, b.account)
		res := b.roundTrip(t, req)
		if e := res.apiErr(t); res.status != http.StatusUnauthorized || e.Code != settle.CodeBadSignature || res.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s with a forged signature: %d %s", tc.method, tc.path, res.status, res.body)
		}
	}
	if len(b.backend.requests) != 0 {
		t.Error("the backend ran for a forged request")
	}
	if b.server.models.windows != nil {
		t.Error("a forged request reached admission")
	}
	// Forged requests spent none of the quotes: the client's own signed request
	// gets one.
	sr := settle.SignedRequest{Account: b.account, Timestamp: time.Now().Unix(), Nonce: settle.NewNonce(), Method: "GET",
		Path: "/v1/pipelines/" + id + "/attestation"}
	req, _ := http.NewRequest("GET", b.http.URL+sr.Path+nonce, nil)
	sr.Sign(req.Header, b.clientKey)
	if res := b.roundTrip(t, req); res.status != http.StatusOK {
		t.Errorf("a signed request for evidence: %d %s", res.status, res.body)
	}
	for _, path := range []string{"/v1/models", "/v1/accounts/" + b.account} {
		sr := settle.SignedRequest{Account: b.account, Timestamp: time.Now().Unix(), Nonce: settle.NewNonce(), Method: "GET", Path: path}
		req, _ := http.NewRequest("GET", b.http.URL+path, nil)
		sr.Sign(req.Header, b.clientKey)
		if res := b.roundTrip(t, req); res.status != http.StatusOK {
			t.Errorf("GET %s signed: %d %s", path, res.status, res.body)
		}
	}
}

// TestModelWindowsBounded: requests naming made-up models grow no cache and cost no
// backend call each; the windows known are those of the models the backend serves.
func TestModelWindowsBounded(t *testing.T) {
	b := newBilling(t, 10e9) // an unknown model's window is taken to be 8192 tokens
	for i := range 50 {
		body := fmt.Sprintf(`{"model":"made-up-%d","messages":[{"role":"user","content":"x"}],"max_tokens":2}`, i)
		if res := b.do("POST", "/v1/chat/completions", billedKey, body); res.status != http.StatusBadRequest {
			t.Fatalf("unknown model: %d %s", res.status, res.body)
		}
	}
	if got := b.server.models.windows; len(got) != 2 || got["stories260K"] != 512 || got[""] != 512 {
		t.Errorf("windows known after 50 made-up models: %v", got)
	}
	if n := b.backend.modelLists.Load(); n != 1 {
		t.Errorf("%d model lists read for 50 requests, want 1", n)
	}
}
