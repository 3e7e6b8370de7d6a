package web

import (
	"encoding/hex"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/cocoonhost/cocoon/attest"
)

// bootAttestation answers GET /v1/attestation with the boot evidence, and
// GET /v1/attestation?nonce=<hex> with fresh boot evidence: a quote taken now that
// binds the client's nonce too, so that a client learns the host runs now (the boot
// quote alone is also what a stopped or copied host serves). It needs no credential:
// evidence holds only public values, and a client checks it before it trusts the host
// with one. Fresh quotes come from their own budget, apart from pipeline evidence's, so
// that this unauthenticated route cannot spend the quotes clients need: half the
// host's quote rate per client address, the whole rate for all of them (see
// bootQuoteLimiter). A bad nonce is a 400; over either rate the answer is a 429 with
// Retry-After.
func (s *Server) bootAttestation(w http.ResponseWriter, r *http.Request) {
	q, ok := r.URL.Query()["nonce"]
	if !ok {
		writeJSON(w, http.StatusOK, s.cfg.Attestation.BootEvidence())
		return
	}
	nonce, err := parseNonce(q[0])
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.bootQuotes.take(clientAddress(r), time.Now()); err != nil {
		s.metrics.quotes.WithLabelValues(quoteBoot, quoteRateLimited).Inc()
		s.writeError(w, r, err)
		return
	}
	ev, err := s.cfg.Attestation.FreshBootEvidence(r.Context(), nonce)
	if err != nil {
		s.metrics.quotes.WithLabelValues(quoteBoot, quoteFailed).Inc()
		s.writeError(w, r, err) // the quote failed: an internal error, logged
		return
	}
	s.metrics.quotes.WithLabelValues(quoteBoot, quoteServed).Inc()
	writeJSON(w, http.StatusOK, ev)
}

// clientAddress is the IP address a request came from, the key of its share of the
// boot quotes. It is the connection's peer: a header such as X-Forwarded-For is the
// client's to choose. Clients behind one proxy share one share.
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// pipelineAttestation answers GET /v1/pipelines/{id}/attestation?nonce=<hex> with
// pipeline evidence: a fresh quote binding the client's nonce, the pipeline's manifest
// and the host key. A bad nonce is a 400 and an unknown pipeline a 404, both before a
// quote is spent; over the caller's share of the quote rate, or the host's, the answer
// is a 429 with Retry-After.
func (s *Server) pipelineAttestation(w http.ResponseWriter, r *http.Request) {
	nonce, err := parseNonce(r.URL.Query().Get("nonce"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	e, err := s.lookup(chi.URLParam(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.quotes.take(principalOf(r.Context()).ID, time.Now()); err != nil {
		s.metrics.quotes.WithLabelValues(quotePipeline, quoteRateLimited).Inc()
		s.writeError(w, r, err)
		return
	}
	ev, err := s.cfg.Attestation.PipelineEvidence(r.Context(), nonce, e.Manifest.Canonical())
	if err != nil {
		s.metrics.quotes.WithLabelValues(quotePipeline, quoteFailed).Inc()
		s.writeError(w, r, err) // the quote failed: an internal error, logged
		return
	}
	s.metrics.quotes.WithLabelValues(quotePipeline, quoteServed).Inc()
	writeJSON(w, http.StatusOK, ev)
}

func noAttestation() *apiError {
	return errorf(http.StatusNotFound, typeNotFound, "attestation_unavailable", "this host is not configured to serve attestation evidence")
}

// parseNonce decodes the nonce query parameter: hex of MinNonceBytes to MaxNonceBytes.
func parseNonce(v string) ([]byte, error) {
	if v == "" {
		return nil, invalidf("nonce: missing: pass ?nonce=<hex of %d to %d random bytes>", attest.MinNonceBytes, attest.MaxNonceBytes)
	}
	b, err := hex.DecodeString(v)
	if err != nil {
		return nil, invalidf("nonce: not hex")
	}
	if len(b) < attest.MinNonceBytes || len(b) > attest.MaxNonceBytes {
		return nil, invalidf("nonce: %d bytes, want %d to %d", len(b), attest.MinNonceBytes, attest.MaxNonceBytes)
	}
	return b, nil
}

// quoteLimiter spends the host's fresh quotes: at most rate per second host-wide,
// with bursts of rate, and at most half of that for any one credential (bursts of half
// the rate, at least one), so that no client can take the quotes every other client
// needs to verify the host. A credential is what `per` names: an authenticated caller
// for pipeline evidence, a client address for fresh boot evidence, each from a
// limiter of its own. It is safe for concurrent use.
//
// It keeps a bucket only for the credentials that got a quote and whose share has not
// refilled since: a full bucket is the same as none. A share refills within
// max(1, 2/rate) seconds, and within that time at most rate + rate·max(1, 2/rate)
// quotes are granted, so at most 2·rate + 1 buckets are kept however many credentials
// ask: the memory is bounded by the quote rate, not by the number of clients.
type quoteLimiter struct {
	per         string  // what a credential is, for the 429's message
	rate        float64 // host-wide per second, and the host's burst
	share       float64 // a credential's per second, and its burst (at least 1)
	mu          sync.Mutex
	host        bucket
	credentials map[string]*bucket
}

// bucket is a token bucket: tokens left at last.
type bucket struct {
	tokens float64
	last   time.Time
}

// newQuoteLimiter returns a limiter of rate quotes per second, half of them per
// credential; per names a credential in its 429s ("credential", "client address").
func newQuoteLimiter(rate int, per string) *quoteLimiter {
	return &quoteLimiter{per: per, rate: float64(rate), share: float64(rate) / 2, host: bucket{tokens: float64(rate)}, credentials: map[string]*bucket{}}
}

// refill adds what rate per second brought since the last time, up to burst, and
// returns how long until a token is there (0 if one is).
func (b *bucket) refill(now time.Time, rate, burst float64) time.Duration {
	if !b.last.IsZero() {
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / rate * float64(time.Second))
}

// take spends a quote for credential at now, or returns the 429 that says how long
// to wait. Cost: a map lookup, and a walk of the few buckets kept (see quoteLimiter).
func (l *quoteLimiter) take(credential string, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	burst := max(1, l.share)
	own := l.credentials[credential]
	if own == nil {
		own = &bucket{tokens: burst}
	}
	if wait := own.refill(now, l.share, burst); wait > 0 {
		return quoteLimited(wait, "%s quotes per second for each %s: verify once, then check response signatures", strconv.FormatFloat(l.share, 'f', -1, 64), l.per)
	}
	if wait := l.host.refill(now, l.rate, l.rate); wait > 0 {
		return quoteLimited(wait, "%s quotes per second on this host: retry shortly", strconv.FormatFloat(l.rate, 'f', -1, 64))
	}
	l.host.tokens--
	own.tokens--
	for c, b := range l.credentials {
		if b.refill(now, l.share, burst); b.tokens >= burst {
			delete(l.credentials, c)
		}
	}
	l.credentials[credential] = own
	return nil
}

func quoteLimited(wait time.Duration, format string, args ...any) *apiError {
	e := errorf(http.StatusTooManyRequests, typeRateLimit, "quote_rate_limited", "quotes are rate-limited to "+format, args...)
	e.RetryAfter = int(math.Ceil(wait.Seconds()))
	return e
}
