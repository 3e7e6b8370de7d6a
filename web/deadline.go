package web

import (
	"net/http"
	"time"
)

// writeDeadlines bounds every write to a client: each Write and Flush of a response,
// and the flush net/http does after the handler returns, must complete within
// Config.WriteTimeout (give or take a second, see deadlineSlack), or it fails and the
// connection is closed. A client that stops
// reading (a streaming client that holds its generation slot by never draining the
// socket) is thereby cut: the handler's next write fails, which cancels the generation
// and frees the slot. There is no deadline while a handler writes nothing: a long
// generation is not a slow client.
//
// Cost: a clock reading per write, and a SetWriteDeadline (a timer reset in the
// runtime's netpoller) at most once a second (BenchmarkStreamWrites).
func (s *Server) writeDeadlines(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: s.cfg.WriteTimeout}
		// A deadline an earlier request on this connection set must not cut writes
		// that do not pass through d, such as net/http's "100 Continue".
		d.rc.SetWriteDeadline(time.Time{})
		next.ServeHTTP(d, r)
		d.set = time.Time{}
		d.extend() // for the flush net/http does after the handler
	})
}

// deadlineWriter sets the connection's write deadline before each write. It exposes
// Unwrap, so that http.ResponseController reaches the connection underneath.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	set     time.Time // when the deadline was last moved
}

// deadlineSlack is how stale a deadline may be before a write moves it: a write then
// has between timeout - deadlineSlack and timeout to complete. Moving it on every
// write of a stream would cost a timer update per token.
const deadlineSlack = time.Second

func (d *deadlineWriter) extend() {
	if now := time.Now(); now.Sub(d.set) >= min(deadlineSlack, d.timeout/2) {
		d.set = now
		d.rc.SetWriteDeadline(now.Add(d.timeout))
	}
}

func (d *deadlineWriter) Write(b []byte) (int, error) {
	d.extend()
	return d.ResponseWriter.Write(b)
}

// FlushError flushes under the deadline and reports whether the data reached the
// connection. http.ResponseController.Flush calls it.
func (d *deadlineWriter) FlushError() error {
	d.extend()
	return flushError(d.ResponseWriter)
}

func (d *deadlineWriter) Flush() { d.FlushError() }

func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// flushError flushes w and returns the error of the flush. It looks through wrappers
// for the first writer that reports one: chi's status recorder implements only
// http.Flusher, whose Flush drops the error, and a failed flush is how a stream learns
// that its client stopped reading.
func flushError(w http.ResponseWriter) error {
	for {
		switch t := w.(type) {
		case interface{ FlushError() error }:
			return t.FlushError()
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return http.NewResponseController(w).Flush()
		}
	}
}
