package web

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// requestIDs names each request "<process prefix>-<counter>": unique across restarts
// (the prefix is random) without a random read per request.
type requestIDs struct {
	prefix string
	next   atomic.Uint64
}

func newRequestIDs() *requestIDs {
	b := make([]byte, 4)
	rand.Read(b) // never fails (crypto/rand)
	return &requestIDs{prefix: hex.EncodeToString(b)}
}

func (ids *requestIDs) new() string {
	return ids.prefix + "-" + strconv.FormatUint(ids.next.Add(1), 10)
}

// maxLoggedPipelineID bounds the pipeline id an access log line repeats: the route
// parameter is whatever the client sent, and a log line must stay a line.
const maxLoggedPipelineID = 80

// accessLog logs one line per request at level info, once its answer is written:
// method, route pattern, status, latency, bytes of the body written, the pipeline id
// of /p/{id}/... and /v1/pipelines/{id}... routes, and the request's id, which the
// answer carries in X-Request-Id so that a client can quote it to the operator. It never
// logs the path's query, a header, or a byte of either body: no prompt text, no
// credential. Cost: one wrapped writer and, when info is enabled, one log record.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := s.requestIDs.new()
		w.Header().Set("X-Request-Id", id)
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		if !s.log.Enabled(r.Context(), slog.LevelInfo) {
			return
		}
		route := routeOf(r)
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("route", route),
			slog.Int("status", status),
			slog.Duration("latency", time.Since(start)),
			slog.Int("bytes", ww.BytesWritten()),
			slog.String("request_id", id),
		}
		if strings.Contains(route, "{id}") {
			pipeline := chi.URLParam(r, "id")
			if len(pipeline) > maxLoggedPipelineID {
				pipeline = pipeline[:maxLoggedPipelineID] + "…"
			}
			attrs = append(attrs, slog.String("pipeline", pipeline))
		}
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	})
}

// routeOf is the chi route pattern r matched, or "unmatched": a label with a bounded
// set of values, unlike the path.
func routeOf(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		if route := rc.RoutePattern(); route != "" {
			return route
		}
	}
	return "unmatched"
}
