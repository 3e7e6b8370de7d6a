package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// maxClockSkew is how far in the future an auth_date may be: the client's and host's
// clocks differ a little.
const maxClockSkew = time.Minute

// validateInitData checks Telegram Mini App init data (the query string
// Telegram.WebApp.initData) as Telegram specifies
// (https://core.telegram.org/bots/webapps#validating-data-received-via-the-mini-app):
// the data-check-string is every field but hash, as key=value sorted by key and joined
// by "\n"; the secret key is HMAC-SHA256(key "WebAppData", bot token); hash must be the
// hex HMAC-SHA256 of the data-check-string under the secret key. auth_date must be at
// most maxAge old. It returns the Telegram user id of the "user" field.
func validateInitData(initData, botToken string, maxAge time.Duration, now time.Time) (userID string, err error) {
	values, err := url.ParseQuery(initData)
	if err != nil {
		return "", errors.New("not a query string")
	}
	hash := values.Get("hash")
	if hash == "" {
		return "", errors.New("no hash field")
	}
	pairs := make([]string, 0, len(values))
	for k, vs := range values {
		if len(vs) != 1 {
			return "", fmt.Errorf("field %q appears %d times", k, len(vs))
		}
		if k != "hash" {
			pairs = append(pairs, k+"="+vs[0])
		}
	}
	sort.Strings(pairs)
	got, err := hex.DecodeString(hash)
	if err != nil || !hmac.Equal(got, initDataHash(strings.Join(pairs, "\n"), botToken)) {
		return "", errors.New("the hash does not match: the data was not signed for this bot")
	}
	// Signed, so the fields below are Telegram's.
	unix, err := strconv.ParseInt(values.Get("auth_date"), 10, 64)
	if err != nil {
		return "", errors.New("no valid auth_date field")
	}
	switch age := now.Sub(time.Unix(unix, 0)); {
	case age > maxAge:
		return "", fmt.Errorf("auth_date is %v old, over the limit of %v: open the Mini App again", age.Round(time.Second), maxAge)
	case age < -maxClockSkew:
		return "", errors.New("auth_date is in the future")
	}
	var user struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal([]byte(values.Get("user")), &user); err != nil || user.ID == 0 {
		return "", errors.New("no valid user field")
	}
	return strconv.FormatInt(user.ID, 10), nil
}

// initDataHash is HMAC-SHA256(HMAC-SHA256("WebAppData", botToken), dataCheckString).
func initDataHash(dataCheckString, botToken string) []byte {
	secret := hmac.New(sha256.New, []byte("WebAppData"))
	secret.Write([]byte(botToken))
	mac := hmac.New(sha256.New, secret.Sum(nil))
	mac.Write([]byte(dataCheckString))
	return mac.Sum(nil)
}
