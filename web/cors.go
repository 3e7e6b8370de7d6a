package web

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/settle"
)

// Cross-origin requests (CORS). A page served from another origin than the host's,
// such as a Telegram Mini App on its developer's domain using web/browser, reads the
// host's answers only if the host names its origin. The host names the origins of
// Config.AllowedOrigins and no other, and never allows credentials in the browser's
// sense (cookies, TLS client certificates): none of its credentials is ambient, every
// one is a header or sealed in the body that the page itself sends, so an allowed
// origin gains nothing a page could not already send, only the right to read the
// answer. What a page of an origin not listed sends still reaches the host as
// before; the browser only keeps the answer from it.
var (
	// corsRequestHeaders are the request headers the API reads that a browser does
	// not send cross-origin without a preflight: credentials, the escrow's signature,
	// the idempotency key and the body's type (a sealed request's is
	// application/vnd.cocoon.e2e).
	corsRequestHeaders = strings.Join([]string{"Authorization", "Content-Type", settle.IdempotencyKeyHeader,
		settle.AccountHeader, settle.TimestampHeader, settle.NonceHeader, settle.ClientSignatureHeader}, ", ")
	// corsResponseHeaders are the answer headers a client checks, which a browser
	// hides from a page of another origin unless they are exposed: the response
	// signature, the receipt, a replayed answer's mark, when to retry, the request id.
	corsResponseHeaders = strings.Join([]string{attest.ResponseSignatureHeader, settle.ReceiptHeader,
		IdempotentReplayHeader, "Retry-After", "X-Request-Id"}, ", ")
)

// corsMaxAge is how long a browser may reuse a preflight's answer, in seconds.
const corsMaxAge = "600"

// checkOrigins refuses an entry of Config.AllowedOrigins that is neither "*" nor an
// origin as browsers send it (RFC 6454: scheme "http" or "https", a host, an optional
// port, nothing else, not even a trailing slash), which would never match one.
func checkOrigins(origins []string) error {
	for _, o := range origins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || strings.HasSuffix(o, "?") || strings.HasSuffix(o, "#") ||
			o != strings.ToLower(u.Scheme)+"://"+strings.ToLower(u.Host) {
			return fmt.Errorf("allowed origin %q: want \"*\" or an origin such as https://app.example.com (scheme, host and port only, lower case)", o)
		}
	}
	return nil
}

// allowOrigins is the first middleware of every route when Config.AllowedOrigins is
// set. A request whose Origin is allowed gets its answer marked readable by that
// origin (Access-Control-Allow-Origin, with Vary: Origin, and the headers a client
// checks exposed); a preflight from it (OPTIONS with Access-Control-Request-Method)
// is answered 204 here, for every path, with the methods and request headers the API
// takes. Any other request passes untouched. Cost: a header lookup per request.
func (s *Server) allowOrigins(next http.Handler) http.Handler {
	anyOrigin := slices.Contains(s.cfg.AllowedOrigins, "*")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || !anyOrigin && !slices.Contains(s.cfg.AllowedOrigins, origin) {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Allow-Origin", origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, DELETE")
			h.Set("Access-Control-Allow-Headers", corsRequestHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", corsResponseHeaders)
		next.ServeHTTP(w, r)
	})
}
