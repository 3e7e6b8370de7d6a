package web

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxClockSkew is how far in the future an auth_date may be: the client's and host's
// clocks differ a little.
const maxClockSkew = time.Minute

// Telegram's Ed25519 public keys that sign Mini App init data for third parties
// (https://core.telegram.org/bots/webapps#validating-data-for-third-party-use): one for
// the production environment, one for the test environment.
var (
	TelegramProductionKey = ed25519.PublicKey(mustDecodeHex("e7bf03a2fa4602af4580703d88dda5bb59f32ed8b02a56c187fe7d34caed242d"))
	TelegramTestKey       = ed25519.PublicKey(mustDecodeHex("40055058a4ee38156a06562e52eece92a771bcd8346a8c4615cb7376eddf72ec"))
)

func mustDecodeHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// initDataChecker checks Telegram Mini App init data (the query string
// Telegram.WebApp.initData) by either of the two ways Telegram specifies
// (https://core.telegram.org/bots/webapps#validating-data-received-via-the-mini-app):
//
//   - with the bot token (botToken set): hash must be the hex HMAC-SHA256 of the
//     data-check-string (every field but hash, as key=value sorted by key and joined by
//     "\n") under the key HMAC-SHA256(key "WebAppData", bot token);
//   - without it (botID set): signature must be Telegram's Ed25519 signature, by key,
//     in unpadded base64url, of "<botID>:WebAppData\n" followed by the data-check-string
//     of every field but hash and signature.
//
// Either suffices: each proves Telegram issued the data to a user of this bot. A host
// in a TD needs no bot token the second way, so a leaked host cannot act as the bot.
type initDataChecker struct {
	botToken string
	botID    int64
	key      ed25519.PublicKey
	maxAge   time.Duration
}

func (c initDataChecker) configured() bool { return c.botToken != "" || c.botID != 0 }

// check returns the Telegram user id of the "user" field of initData, signed by one of
// the configured ways and with an auth_date at most maxAge old at now. Its errors are
// safe to show the client.
func (c initDataChecker) check(initData string, now time.Time) (userID string, err error) {
	values, err := url.ParseQuery(initData)
	if err != nil {
		return "", errors.New("not a query string")
	}
	for k, vs := range values {
		if len(vs) != 1 {
			return "", fmt.Errorf("field %q appears %d times", k, len(vs))
		}
	}
	if err := c.checkSigned(values); err != nil {
		return "", err
	}
	// Signed, so the fields below are Telegram's.
	unix, err := strconv.ParseInt(values.Get("auth_date"), 10, 64)
	if err != nil {
		return "", errors.New("no valid auth_date field")
	}
	switch age := now.Sub(time.Unix(unix, 0)); {
	case age > c.maxAge:
		return "", fmt.Errorf("auth_date is %v old, over the limit of %v: open the Mini App again", age.Round(time.Second), c.maxAge)
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

// checkSigned accepts values when a configured way verifies them; otherwise it says
// why each configured way failed.
func (c initDataChecker) checkSigned(values url.Values) error {
	var failed []string
	if c.botToken != "" {
		hash, err := hex.DecodeString(values.Get("hash"))
		switch {
		case values.Get("hash") == "":
			failed = append(failed, "no hash field")
		case err != nil || !hmac.Equal(hash, initDataHash(dataCheckString(values, "hash"), c.botToken)):
			failed = append(failed, "the hash does not match: the data was not signed for this bot")
		default:
			return nil
		}
	}
	if c.botID != 0 {
		sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(values.Get("signature"), "="))
		switch {
		case values.Get("signature") == "":
			failed = append(failed, "no signature field")
		case err != nil || !ed25519.Verify(c.key, []byte(thirdPartyMessage(c.botID, values)), sig):
			failed = append(failed, fmt.Sprintf("the signature does not verify: the data was not signed by Telegram for bot %d", c.botID))
		default:
			return nil
		}
	}
	return errors.New(strings.Join(failed, "; "))
}

// dataCheckString is every field of values but those excluded, as key=value sorted by
// key and joined by "\n".
func dataCheckString(values url.Values, exclude ...string) string {
	pairs := make([]string, 0, len(values))
	for k, vs := range values {
		if !slices.Contains(exclude, k) {
			pairs = append(pairs, k+"="+vs[0])
		}
	}
	slices.Sort(pairs)
	return strings.Join(pairs, "\n")
}

// thirdPartyMessage is what Telegram's Ed25519 signature of init data covers.
func thirdPartyMessage(botID int64, values url.Values) string {
	return strconv.FormatInt(botID, 10) + ":WebAppData\n" + dataCheckString(values, "hash", "signature")
}

// initDataHash is HMAC-SHA256(HMAC-SHA256("WebAppData", botToken), dataCheckString).
func initDataHash(dataCheckString, botToken string) []byte {
	secret := hmac.New(sha256.New, []byte("WebAppData"))
	secret.Write([]byte(botToken))
	mac := hmac.New(sha256.New, secret.Sum(nil))
	mac.Write([]byte(dataCheckString))
	return mac.Sum(nil)
}
