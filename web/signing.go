package web

import (
	"context"
	"crypto/sha256"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/cocoonhost/cocoon/attest"
)

// answerSigner signs every answer of the chat routes with the attested host key
// (attest.SignedResponse): the digest of the bytes the client reads, whole for an
// answer read whole, and running over a stream's events up to its signature event.
// writeEnding writes every such answer, and signs it when the request's context
// carries a signer: signAnswers puts it there on the chat routes of an attesting
// host. Cost: one ed25519 signature per answer (about 25 µs) and a sha256 of its bytes.
type answerSigner struct{ host *attest.Host }

type signerKey struct{}

// signAnswers is the first middleware of the chat routes on an attesting host: every
// answer written below it is signed, errors included, those of the middlewares after
// it too (at capacity, a refused credential).
func (s *Server) signAnswers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), signerKey{}, s.signer)))
	})
}

// signerOf is the signer of the answers to r, nil when they are not signed.
func signerOf(r *http.Request) *answerSigner {
	a, _ := r.Context().Value(signerKey{}).(*answerSigner)
	return a
}

// sign returns the signature value of an answer to r of kind, status and retryAfter
// (its Retry-After, "" for none) whose digest is digest. It binds the body that
// authenticate read, or no request when the answer comes before the body was read,
// and the pipeline id of the path.
func (a *answerSigner) sign(r *http.Request, kind string, status int, retryAfter string, digest [32]byte) string {
	sr := attest.SignedResponse{Kind: kind, PipelineID: chi.URLParam(r, "id"), Status: status, RetryAfter: retryAfter, BodySHA256: digest}
	if body, read := r.Context().Value(bodyKey{}).([]byte); read {
		request := sha256.Sum256(body)
		sr.RequestSHA256 = &request
	}
	return a.host.SignResponse(sr)
}
