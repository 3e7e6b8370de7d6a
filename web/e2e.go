package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cocoonhost/cocoon/web/e2e"
)

// End-to-end encryption of the chat routes (web/E2E.md). Replay window and cache:
// a request sealed more than e2eWindow from the host's clock is refused, and its id is
// remembered long enough to refuse it again within it; e2eReplayIDs bounds the ids
// remembered per generation (two generations, about 40 bytes each: 20 MiB at most).
// Only authenticated requests are remembered, so filling the cache takes credentials:
// an API key (the operator's), an escrow (each request is charged), or Telegram init
// data, which any Telegram account gets for a Mini App; so each Telegram user records
// at most e2eTelegramIDs per generation (10 minutes: about 1.7 requests a second
// sustained), and filling the cache takes 256 Telegram accounts.
//
// The session table (web/E2E.md §8) holds e2eSessions sessions, at most
// e2eSessionsPerPrincipal of each principal (by the same principal ID as the replay
// quota), so that pushing every client out of it takes 4,096 credentials.
var (
	e2eReplayIDs            = 256 << 10
	e2eTelegramIDs          = 1 << 10
	e2eSessions             = e2e.SessionCapacity
	e2eSessionsPerPrincipal = e2e.SessionsPerPrincipal
)

const (
	e2eWindow = 5 * time.Minute
	// e2eOverhead is what the envelope adds to a body: its header, the ML-KEM-768+X25519
	// encapsulated key (1,120 bytes), the AEAD tag and the plaintext's JSON head.
	e2eOverhead = 32 << 10
)

// e2eHost opens the sealed requests of the chat routes and seals their answers.
type e2eHost struct {
	keys     *e2e.HostKeys
	replay   *e2e.ReplayGuard
	sessions *e2e.SessionTable // in memory only: a restart forgets every session
}

// openSealed is the first middleware of the chat routes. A request whose body is
// e2e.ContentType is opened here: its ciphertext read (at most MaxRequestBytes plus the
// envelope's overhead, before any other work) and opened with the host's attested key
// for this method and path; the chain below then gets the plaintext request with its
// sealed credentials in place of any the outer request carried, and everything it
// writes goes through a sealedWriter (refuseReplays checks its id once its credential
// is accepted). A session envelope is opened under its session (web/E2E.md §8). A
// request that does not open, or names a session the host does not hold, gets a
// plaintext 400 naming what is wrong; nothing of it runs. Other requests pass as they are, unless Config.RequireE2E
// refuses them.
//
// Cost: one HPKE decapsulation (X25519: ~50 µs; ML-KEM-768+X25519: ~100 µs), or for a
// session envelope a table lookup and an HKDF-SHA256 schedule (a few µs), and an
// AES-256-GCM pass over the body, then one per record of the answer.
func (s *Server) openSealed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mediaType != e2e.ContentType {
			if s.cfg.RequireE2E {
				s.refuseUnread(w, r, errorf(http.StatusBadRequest, typeInvalidRequest, "encryption_required",
					"this host takes chat requests sealed to its attested key only (Content-Type: %s; see web/E2E.md)", e2e.ContentType))
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		if s.e2e == nil {
			s.refuseUnread(w, r, errorf(http.StatusBadRequest, typeInvalidRequest, "e2e_unavailable",
				"this host does not attest, so it has no key to seal requests to: send the request in plaintext over RA-TLS"))
			return
		}
		sealed, err := readBodyWithin(w, r, s.cfg.MaxRequestBytes+e2eOverhead, 0)
		if err != nil {
			s.refuseUnread(w, r, err)
			return
		}
		opened, err := s.e2e.keys.Open(s.e2e.sessions, r.Method, r.URL.RequestURI(), sealed, time.Now())
		if err != nil {
			s.writeError(w, r, e2eError(err))
			return
		}
		sw := &sealedWriter{w: w, opened: opened, header: http.Header{}}
		inner := r.WithContext(context.WithValue(r.Context(), sealedKey{}, sw))
		inner.Header = r.Header.Clone()
		for _, name := range e2e.SealedHeaders {
			inner.Header.Del(name) // a relay's own credentials never stand for the client's
		}
		for name, v := range opened.Header {
			inner.Header[name] = v
		}
		inner.Body, inner.ContentLength = io.NopCloser(bytes.NewReader(opened.Body)), int64(len(opened.Body))
		next.ServeHTTP(sw, inner)
		sw.finish()
	})
}

// sealedKey is the context key of an opened request's *sealedWriter.
type sealedKey struct{}

// sealedOf returns the writer that seals r's answer, or nil for a plaintext request.
func sealedOf(r *http.Request) *sealedWriter {
	sw, _ := r.Context().Value(sealedKey{}).(*sealedWriter)
	return sw
}

// refuseReplays follows authenticate on the chat routes: a sealed request's id is
// checked against replays and recorded only once its sealed credential was accepted,
// so that no one without a credential can fill the replay cache. Only the request
// that records its id gets a sealed answer (sealedWriter.recorded): an answer's key
// and nonce follow from the envelope alone, so a second sealed answer to a copy of it
// would go under the same keystream as the first. A version 1 request that asked for a
// session gets it then, held by the request's principal (p.ID, as the replay quota
// counts it: a principal holds at most e2eSessionsPerPrincipal), and the answer's
// sealed head says so (e2e.SessionHeader): a request refused here establishes none.
// Plaintext requests pass.
func (s *Server) refuseReplays(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := sealedOf(r)
		if sw == nil {
			next.ServeHTTP(w, r)
			return
		}
		opened := sw.opened
		p := principalOf(r.Context())
		quota := 0
		if strings.HasPrefix(p.ID, telegramPrincipal) {
			quota = e2eTelegramIDs
		}
		now := time.Now()
		if err := s.e2e.replay.Check(p.ID, quota, opened.ID, opened.Time, now); err != nil {
			e := e2eError(err)
			if e.Status != http.StatusConflict && e.Status != http.StatusBadRequest {
				e.RetryAfter = int(s.e2e.replay.Rotation(now).Seconds())
			}
			s.writeError(w, r, e)
			return
		}
		sw.recorded = true
		if ttl, ok := s.e2e.sessions.Grant(opened, p.ID, now); ok {
			w.Header().Set(e2e.SessionHeader, strconv.Itoa(int(ttl.Seconds())))
		}
		next.ServeHTTP(w, r)
	})
}

// e2eError words an error of opening a sealed request, or of its replay check, for
// the client.
func e2eError(err error) *apiError {
	switch {
	case errors.Is(err, e2e.ErrReplayed):
		return errorf(http.StatusConflict, typeInvalidRequest, "replayed_request", "%v", err)
	case errors.Is(err, e2e.ErrReplayCacheFull):
		return errorf(http.StatusServiceUnavailable, typeServer, "replay_cache_full", "%v", err)
	case errors.Is(err, e2e.ErrReplayQuota):
		return errorf(http.StatusTooManyRequests, typeRateLimit, "too_many_sealed_requests", "%v", err)
	case errors.Is(err, e2e.ErrStale):
		return errorf(http.StatusBadRequest, typeInvalidRequest, "stale_request", "%v", err)
	case errors.Is(err, e2e.ErrSessionUnknown):
		return errorf(http.StatusBadRequest, typeInvalidRequest, "e2e_session_unknown", "%v", err)
	}
	return errorf(http.StatusBadRequest, typeInvalidRequest, "e2e_invalid", "%v", err)
}

// sealedWriter seals what the chat chain writes for an opened request whose id it
// recorded (refuseReplays): a whole answer once, when the handler returns; a text/event-stream answer one record per flush (the
// bytes written since the last one), so that the handler's own flushes pace the
// stream as they do in plaintext, and a final record when the handler returns. The
// status, Retry-After and Connection stay visible; every other header the handler set
// is sealed in the answer's head. It exposes Unwrap, so that http.ResponseController
// reaches the connection's deadlines underneath.
//
// An answer written before the request's id was recorded (a credential refused, the
// replay check's refusals: a copy of an envelope that already ran, a stale one, a
// full cache or quota) is a refusal sent in plaintext, unsigned, with its status, code
// and Retry-After only (plainRefusal): the answer's key and nonce follow from the
// envelope alone, so sealing it would put a second plaintext under the keystream of
// the answer of the copy that runs, before or after it, which a relay that guesses the
// refusal's text reads off (TestSealedAnswerKeystreamUsedOnce).
type sealedWriter struct {
	w        http.ResponseWriter
	opened   *e2e.Opened
	header   http.Header
	recorded bool // the request's id was recorded: its answer is sealed
	status   int  // 0 until WriteHeader
	stream   bool
	plain    []byte // written and not yet sealed
	out      []byte // a stream's record framed as its event, reused from one flush to the next
	seq      uint64
	err      error // of the last write to the connection
}

func (s *sealedWriter) Header() http.Header { return s.header }

func (s *sealedWriter) Unwrap() http.ResponseWriter { return s.w }

func (s *sealedWriter) WriteHeader(status int) {
	if s.status != 0 || status < 200 {
		return
	}
	s.status = status
	outer := s.w.Header()
	for _, name := range []string{"Retry-After", "Connection"} {
		if v := s.header.Get(name); v != "" {
			outer.Set(name, v)
		}
	}
	if !s.recorded {
		return // finish refuses in plaintext
	}
	mediaType, _, _ := mime.ParseMediaType(s.header.Get("Content-Type"))
	if s.stream = status == http.StatusOK && mediaType == "text/event-stream"; s.stream {
		outer.Set("Content-Type", "text/event-stream")
		outer.Set("Cache-Control", "no-cache")
		s.plain = e2e.ResponseHead(s.header)
		s.w.WriteHeader(status)
	}
}

func (s *sealedWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	if s.err != nil {
		return 0, s.err
	}
	s.plain = append(s.plain, b...)
	return len(b), nil
}

// FlushError seals a stream's bytes written since the last flush as one record and
// flushes it to the client; a whole answer is sealed only when the handler returns.
func (s *sealedWriter) FlushError() error {
	if !s.stream || s.err != nil {
		return s.err
	}
	if len(s.plain) > 0 {
		s.writeRecord(false)
	}
	if s.err == nil {
		s.err = flushError(s.w)
	}
	return s.err
}

func (s *sealedWriter) Flush() { s.FlushError() }

// writeRecord seals s.plain as the stream's next record and writes it. Both buffers
// are reused for the next record: plain is sealed in place.
func (s *sealedWriter) writeRecord(final bool) {
	s.out = s.opened.AppendStreamRecord(s.out[:0], s.seq, final, s.plain)
	_, s.err = s.w.Write(s.out)
	s.seq++
	s.plain = s.plain[:0]
}

// finish seals what is left once the handler returned: a stream's final record, or
// the whole answer.
func (s *sealedWriter) finish() {
	if s.status == 0 {
		s.WriteHeader(http.StatusOK)
	}
	if s.stream {
		if s.err == nil {
			s.writeRecord(true)
		}
		return
	}
	if !s.recorded {
		s.plainRefusal()
		return
	}
	body := s.opened.SealBody(s.status, s.header, s.plain)
	outer := s.w.Header()
	outer.Set("Content-Type", e2e.ContentType)
	outer.Set("Content-Length", strconv.Itoa(len(body)))
	s.w.WriteHeader(s.status)
	s.w.Write(body) // a failed write means the client is gone; nothing to tell it
}

// plainRefusal answers a request refused before its id was recorded, in plaintext:
// its status and the error code the chain wrote, with a fixed message, and no
// signature (it would let a relay confirm a guess of the sealed body, which the
// signature covers). The detail stays unsent: a refused credential's message may name
// an account.
func (s *sealedWriter) plainRefusal() {
	var written errorBody
	json.Unmarshal(s.plain, &written) // the chain's own error: a code, or none
	e := errorf(s.status, written.Error.Type, written.Error.Code,
		"the host refused this sealed request (HTTP %d, %s) before recording its id; such a refusal is sent in plaintext with no detail (web/E2E.md §4)",
		s.status, written.Error.Code)
	outer := s.w.Header()
	outer.Set("Content-Type", contentTypeJSON)
	s.w.WriteHeader(s.status)
	s.w.Write(encodeJSON(e.body()))
}
