package web

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/web/browser"
	"github.com/cocoonhost/cocoon/web/page"
)

// anonymousReviewer is the principal of a request for pipeline evidence that carries no
// credential. All such requests share this one identity, so together they get one
// credential's share of the quote rate (half of Config.MaxQuotesPerSecond, see
// quoteLimiter): reviewers who are not clients can verify a pipeline, and however many
// anonymous requests come, at least half the host's quotes are left to its clients.
// Credential ids all have a "kind:" prefix, so none can be this one.
const anonymousReviewer = "anonymous"

// mountPage serves the reviewer's page (package page) at GET / and its assets under
// page.AssetsPath, and the browser client library and its verifier under browser.Dir.
// The page fetches the evidence routes of the same origin, so it needs no CORS.
func (s *Server) mountPage(r chi.Router) {
	h := page.Handler(page.Config{ServedBy: page.ServedByHost})
	r.Method(http.MethodGet, "/", h)
	r.Method(http.MethodHead, "/", h)
	r.Method(http.MethodGet, page.AssetsPath+"*", h)
	r.Method(http.MethodHead, page.AssetsPath+"*", h)
	sdk := browser.Handler(h, page.AssetsPath)
	r.Method(http.MethodGet, browser.Dir+"*", sdk)
	r.Method(http.MethodHead, browser.Dir+"*", sdk)
}

// credentialOrReviewer lets a request without any credential through as the
// anonymousReviewer, and checks every other request's credential completely, as
// authenticate does (a wrong credential is a 401, never taken for no credential).
func (s *Server) credentialOrReviewer(next http.Handler) http.Handler {
	authenticated := s.authenticate(0)(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" || r.Header.Get(settle.ClientSignatureHeader) != "" {
			authenticated.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, principal{ID: anonymousReviewer})))
	})
}
