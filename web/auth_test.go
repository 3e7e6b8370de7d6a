package web

import (
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
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
			user, err := validateInitData(tc.data, tc.token, 24*time.Hour, tc.now)
			switch {
			case tc.want == "" && (err != nil || user != "279058397"):
				t.Errorf("got %q, %v; want user 279058397", user, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %q, %v; want error %q", user, err, tc.want)
			}
		})
	}
}

// telegramAuth returns an Authorization value with init data signed now for botToken.
func telegramAuth(t testing.TB) string {
	v := url.Values{"user": {`{"id":42,"first_name":"Ann"}`}, "auth_date": {strconv.FormatInt(time.Now().Unix(), 10)}}
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
