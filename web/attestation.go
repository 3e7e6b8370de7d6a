package web

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/cocoonhost/cocoon/attest"
)

// bootAttestation answers GET /v1/attestation with the boot evidence. It needs no
// credential: evidence holds only public values, and a client checks it before it
// trusts the host with one.
func (s *Server) bootAttestation(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Attestation == nil {
		s.writeError(w, r, noAttestation())
		return
	}
	writeJSON(w, http.StatusOK, s.cfg.Attestation.BootEvidence())
}

// pipelineAttestation answers GET /v1/pipelines/{id}/attestation?nonce=<hex> with
// pipeline evidence: a fresh quote binding the client's nonce, the pipeline's manifest
// and the host key. A bad nonce is a 400 and an unknown pipeline a 404, both before a
// quote is spent; over the quote rate the answer is a 429 with Retry-After.
func (s *Server) pipelineAttestation(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Attestation == nil {
		s.writeError(w, r, noAttestation())
		return
	}
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
	if wait, ok := s.quotes.take(time.Now()); !ok {
		ae := errorf(http.StatusTooManyRequests, typeRateLimit, "quote_rate_limited",
			"quotes are rate-limited to %d per second on this host: retry shortly, or verify once and check response signatures", s.cfg.MaxQuotesPerSecond)
		ae.RetryAfter = int(math.Ceil(wait.Seconds()))
		s.writeError(w, r, ae)
		return
	}
	ev, err := s.cfg.Attestation.PipelineEvidence(r.Context(), nonce, e.Manifest.Canonical())
	if err != nil {
		s.writeError(w, r, err) // the quote failed: an internal error, logged
		return
	}
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

// tokenBucket limits an event to rate per second with bursts of up to rate. It is safe
// for concurrent use.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate int) *tokenBucket {
	return &tokenBucket{rate: float64(rate), tokens: float64(rate)}
}

// take spends a token at now if one is left; otherwise it says how long until one is.
func (b *tokenBucket) take(now time.Time) (wait time.Duration, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second)), false
}

// responseSigner accumulates what a chat response's signature covers.
type responseSigner struct {
	host       *attest.Host
	request    [32]byte
	pipelineID string
}

// sign returns the signature value of a response with content hash content and usage
// u, or "" when the host has no attestation.
func (rs *responseSigner) sign(content [32]byte, prompt, completion int) string {
	if rs.host == nil {
		return ""
	}
	return rs.host.SignResponse(attest.SignedResponse{RequestSHA256: rs.request, ContentSHA256: content,
		PipelineID: rs.pipelineID, PromptTokens: uint64(max(prompt, 0)), CompletionTokens: uint64(max(completion, 0))})
}

// responseContent returns the sha256 of choices[0].message.content of a chat.completion,
// of "" when it has none (absent, null or not a string: a post module may reshape it).
func responseContent(response []byte) ([32]byte, error) {
	var v struct {
		Choices []struct {
			Message struct {
				Content json.RawMessage `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(response, &v); err != nil {
		return [32]byte{}, fmt.Errorf("sign response: %w", err)
	}
	var text string
	if len(v.Choices) > 0 {
		json.Unmarshal(v.Choices[0].Message.Content, &text) // not a string: ""
	}
	return sha256.Sum256([]byte(text)), nil
}
