package web

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
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
	// ID is "key:<name>", "telegram:<user id>" or "account:<escrow>": the identity
	// pipelines are owned by and rate limits are kept per.
	ID string
	// Owner is set for credentials that may upload and delete pipelines.
	Owner bool
	// Account is the escrow (raw address) the principal's requests are billed to.
	Account string
	// Verified is the request of a principal that signed with an escrow's client key,
	// its signature checked (billing.Service.Authenticate); nil for other credentials.
	Verified *billing.VerifiedRequest
}

// telegramPrincipal prefixes the ID of a Mini App user authenticated by init data.
const telegramPrincipal = "telegram:"

type (
	principalKey struct{}
	bodyKey      struct{}
)

func principalOf(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// bodyOf is the body that authenticate read, on routes that take one.
func bodyOf(ctx context.Context) []byte {
	b, _ := ctx.Value(bodyKey{}).([]byte)
	return b
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

// authenticate returns the middleware that lets through requests with a valid
// credential and answers 401 to the rest: an API key ("Authorization: Bearer KEY"),
// Telegram Mini App init data ("Authorization: tma INITDATA"), or, on a billing host, a
// request signed with an escrow's client key (the settle headers). The credential is
// checked completely before the handler runs.
//
// On routes that take a body (maxBody > 0) it reads the body, at most maxBody bytes
// within Config.RequestReadTimeout (413 and 408 otherwise), after the credential's headers
// were checked; the handler gets it from bodyOf. A signed request's signature covers
// the body, so it is verified here, once, against what the handler will read. On the
// other routes a signed request is verified against an empty body and the body is not
// read.
func (s *Server) authenticate(maxBody int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, body, err := s.principal(w, r, maxBody, time.Now())
			if err != nil {
				e := s.toAPIError(r, err)
				if e.Status == http.StatusUnauthorized {
					w.Header().Set("WWW-Authenticate", `Bearer realm="cocoon"`)
				}
				s.refuseUnread(w, r, e) // the body may be partly read: close
				return
			}
			ctx := context.WithValue(r.Context(), principalKey{}, p)
			if maxBody > 0 {
				ctx = context.WithValue(ctx, bodyKey{}, body)
			}
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

func unauthorized(format string, args ...any) *apiError {
	return errorf(http.StatusUnauthorized, typeAuthentication, "invalid_credentials", format, args...)
}

// principal checks r's credential and reads its body (see authenticate).
func (s *Server) principal(w http.ResponseWriter, r *http.Request, maxBody int64, now time.Time) (principal, []byte, error) {
	var p principal
	header := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(header, " ")
	switch {
	case header == "" && r.Header.Get(settle.ClientSignatureHeader) != "":
		return s.signedPrincipal(w, r, maxBody)
	case header == "":
		return p, nil, unauthorized(`no credentials: send "Authorization: Bearer <API key>" or "Authorization: tma <Telegram init data>"`)
	case strings.EqualFold(scheme, "Bearer"):
		name, account, ok := s.keys.lookup(cred)
		if !ok {
			return p, nil, unauthorized("the API key is not valid")
		}
		p = principal{ID: "key:" + name, Owner: true, Account: account}
	case strings.EqualFold(scheme, "tma"):
		if !s.initData.configured() {
			return p, nil, unauthorized("this host does not accept Telegram init data")
		}
		user, err := s.initData.check(cred, now)
		if err != nil {
			return p, nil, unauthorized("Telegram init data: %v", err)
		}
		p = principal{ID: telegramPrincipal + user}
	default:
		return p, nil, unauthorized("unknown authorization scheme %q: use Bearer or tma", scheme)
	}
	body, err := s.readAuthenticatedBody(w, r, maxBody)
	return p, body, err
}

// signedPrincipal checks a request signed with an escrow's client key: its headers
// first (a malformed one costs no read), then its body, then the signature over both.
func (s *Server) signedPrincipal(w http.ResponseWriter, r *http.Request, maxBody int64) (principal, []byte, error) {
	if s.cfg.Billing == nil {
		return principal{}, nil, unauthorized("this host does not bill escrow accounts: use an API key")
	}
	signed, sig, err := billing.ParseSignedRequest(r, nil)
	if err != nil {
		return principal{}, nil, err
	}
	if signed.Body, err = s.readAuthenticatedBody(w, r, maxBody); err != nil {
		return principal{}, nil, err
	}
	verified, err := s.cfg.Billing.Authenticate(r.Context(), signed, sig)
	if err != nil {
		return principal{}, nil, err
	}
	return principal{ID: "account:" + signed.Account, Account: signed.Account, Verified: verified}, signed.Body, nil
}

// readAuthenticatedBody reads the body of a route that takes one (maxBody > 0).
func (s *Server) readAuthenticatedBody(w http.ResponseWriter, r *http.Request, maxBody int64) ([]byte, error) {
	if maxBody <= 0 {
		return nil, nil
	}
	return readBodyWithin(w, r, maxBody, s.cfg.RequestReadTimeout)
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
