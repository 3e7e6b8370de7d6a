package web

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/cocoonhost/cocoon/web/miniapp"
)

// mountMiniApp serves the sample Telegram Mini App (package miniapp) under
// miniapp.Path, and redirects the path without its slash there. The app calls the
// routes of the same origin, so it needs no CORS.
func (s *Server) mountMiniApp(r chi.Router) {
	r.Handle(strings.TrimSuffix(miniapp.Path, "/"), http.RedirectHandler(miniapp.Path, http.StatusMovedPermanently))
	r.Handle(miniapp.Path+"*", miniapp.Handler())
}
