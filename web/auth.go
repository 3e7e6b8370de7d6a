package web

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/cocoonhost/cocoon/settle"
)

// APIKey is a credential for services and pipeline authors, sent as
// "Authorization: Bearer <Key>". Every API key is an owner credential: it may upload
// pipelines and delete its own.
type APIKey struct {
	// Name identifies the key in pipeline owners ("key:<Name>") and logs; never the key.
	Name string
	Key  string
	// Account, when set, is the TON escrow (an address in any form) that requests with
	// this key are billed to; see Config.Billing.
	Account string
}

// principal is who made a request.
type principal struct {
	// ID is "key:<name>" or "telegram:<user id>": the identity pipelines are owned by.
	ID string
	// Owner is set for credentials that may upload and delete pipelines.
	Owner bool
	// Account is the escrow (raw address) the principal's requests are billed to.
	Account string
	// Signed is set when the request is signed with the escrow's client key: the
	// signature covers the body, so it is checked by the handler (see settle.Admit).
	Signed bool
}

type principalKey struct{}

func principalOf(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// keyring checks API keys in constant time: each candidate is compared, by its sha256
// so lengths do not leak either, with every configured key.
type keyring []struct {
	name, account string
	sum           [sha256.Size]byte
}

// newKeyring takes keys whose accounts New checked.
func newKeyring(keys []APIKey) keyring {
	k := make(keyring, len(keys))
	for i, key := range keys {
		k[i].name, k[i].sum = key.Name, sha256.Sum256([]byte(key.Key))
		if key.Account != "" {
			k[i].account, _ = settle.ParseAccount(key.Account)
		}
	}
	return k
}

func (k keyring) lookup(key string) (name, account string, ok bool) {
	sum := sha256.Sum256([]byte(key))
	for _, c := range k {
		if subtle.ConstantTimeCompare(sum[:], c.sum[:]) == 1 {
			name, account, ok = c.name, c.account, true
		}
	}
	return name, account, ok
}

// authenticate lets through requests with a valid API key ("Authorization: Bearer
// KEY") or valid Telegram Mini App init data ("Authorization: tma INITDATA"), and
// answers 401 to the rest.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.principal(r, time.Now())
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cocoon"`)
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

func unauthorized(format string, args ...any) *apiError {
	return errorf(http.StatusUnauthorized, typeAuthentication, "invalid_credentials", format, args...)
}

func (s *Server) principal(r *http.Request, now time.Time) (principal, error) {
	header := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(header, " ")
	switch {
	case header == "" && r.Header.Get(settle.ClientSignatureHeader) != "":
		if s.cfg.Billing == nil {
			return principal{}, unauthorized("this host does not bill escrow accounts: use an API key")
		}
		account, err := settle.ParseAccount(r.Header.Get(settle.AccountHeader))
		if err != nil {
			return principal{}, unauthorized("%s: %v", settle.AccountHeader, err)
		}
		return principal{ID: "account:" + account, Account: account, Signed: true}, nil
	case header == "":
		return principal{}, unauthorized(`no credentials: send "Authorization: Bearer <API key>" or "Authorization: tma <Telegram init data>"`)
	case strings.EqualFold(scheme, "Bearer"):
		name, account, ok := s.keys.lookup(cred)
		if !ok {
			return principal{}, unauthorized("the API key is not valid")
		}
		return principal{ID: "key:" + name, Owner: true, Account: account}, nil
	case strings.EqualFold(scheme, "tma"):
		if s.cfg.TelegramBotToken == "" {
			return principal{}, unauthorized("this host does not accept Telegram init data")
		}
		user, err := validateInitData(cred, s.cfg.TelegramBotToken, s.cfg.TelegramMaxAge, now)
		if err != nil {
			return principal{}, unauthorized("Telegram init data: %v", err)
		}
		return principal{ID: "telegram:" + user}, nil
	}
	return principal{}, unauthorized("unknown authorization scheme %q: use Bearer or tma", scheme)
}

// requireOwner answers 403 to principals that may not manage pipelines.
func (s *Server) requireOwner(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !principalOf(r.Context()).Owner {
			s.writeError(w, r, errorf(http.StatusForbidden, typePermission, "not_an_owner_credential",
				"uploading and deleting pipelines needs an API key; Telegram Mini App users may only read pipelines and chat"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
