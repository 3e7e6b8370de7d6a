package web

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/settle"
)

// checkAnswer verifies res, the answer to body sent to the path of pipeline, with the
// host's key, as a client does: a stream by its signature event, anything else by its
// Cocoon-Signature header over its status, Retry-After and body.
func checkAnswer(hostKey ed25519.PublicKey, body, pipeline string, res response) error {
	v := attest.ResponseVerifier{HostKey: hostKey, Request: []byte(body), PipelineID: pipeline}
	if res.header.Get("Content-Type") != contentTypeSSE {
		return v.VerifyBody(res.status, res.header.Get("Retry-After"), res.body, res.header.Get(attest.ResponseSignatureHeader))
	}
	s := v.ReadStream(bytes.NewReader(res.body), 1<<20)
	for {
		if _, err := s.Next(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// mustVerify checks that res verifies, and that it no longer does once a byte of it
// the client reads is changed: the last byte of its body before the signature, its
// status, its Retry-After; nor, when it is bound to the request, for another request
// or pipeline.
func mustVerify(t *testing.T, hostKey ed25519.PublicKey, body, pipeline string, res response, bound bool) {
	t.Helper()
	if err := checkAnswer(hostKey, body, pipeline, res); err != nil {
		t.Fatalf("%v\n%d %s\n%s", err, res.status, res.header, res.body)
	}
	tampered := func(what string, res response) {
		t.Helper()
		if err := checkAnswer(hostKey, body, pipeline, res); !errors.Is(err, attest.ErrResponseSignature) {
			t.Errorf("%s: %v, want ErrResponseSignature", what, err)
		}
	}
	if bound {
		if err := checkAnswer(hostKey, body+" ", pipeline, res); !errors.Is(err, attest.ErrSignatureMismatch) {
			t.Errorf("another request: %v, want ErrSignatureMismatch", err)
		}
		if err := checkAnswer(hostKey, body, pipeline+"0", res); !errors.Is(err, attest.ErrSignatureMismatch) {
			t.Errorf("another pipeline: %v, want ErrSignatureMismatch", err)
		}
	}
	altered := res
	altered.body = bytes.Clone(res.body)
	at := len(altered.body) - 2 // the closing brace of a JSON body
	if i := bytes.LastIndex(altered.body, []byte(`data: {"object":"chat.completion.chunk","choices":[],"cocoon_signature"`)); i > 0 {
		at = i - 4 // the closing brace of the event before the signature
	}
	altered.body[at] = ' '
	tampered("a byte changed", altered)
	if res.header.Get("Content-Type") != contentTypeSSE {
		tampered("another status", response{res.status ^ 1, res.header, res.body})
		h := res.header.Clone()
		h.Set("Retry-After", "3600")
		tampered("another Retry-After", response{res.status, h, res.body})
	}
}

// TestEveryAnswerIsSigned performs probe 6 of issue 11 on the host side: every answer
// of the chat routes is signed over every byte the client reads, not only the
// assistant's text: a completion (finish_reason, model, usage, choices), a stream (every
// event in order), and the errors, those of the middlewares before the body is read
// included, which are signed without the request and verify only as errors.
func TestEveryAnswerIsSigned(t *testing.T) {
	f, _ := attested(t, func(c *Config, r *recorder) {
		r.hook = func(ctx context.Context, n int, d string, emit func(string) error) error {
			if n == 3 && strings.Contains(r.last().Messages[0].Content, "fail midway") {
				return backend.Errorf(backend.CodeUpstream, "the GPU server went away")
			}
			if n == 2 && strings.Contains(r.last().Messages[0].Content, "panic") {
				panic("the backend fell over")
			}
			return emit(d)
		}
	})
	hostKey := f.server.cfg.Attestation.PublicKey()
	id := pushExample(t, f)
	const ask = `{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":24,"temperature":0`
	unknown := strings.Repeat("ab", 32)
	tests := []struct {
		name, pipeline, key, body string
		status                    int
		stream, bound             bool
	}{
		{"completion", "", ownerKey, ask + `}`, 200, false, true},
		{"completion through a pipeline", id, ownerKey, ask + `}`, 200, false, true},
		{"stream", "", ownerKey, ask + `,"stream":true}`, 200, true, true},
		{"stream through a pipeline, with usage", id, ownerKey, ask + `,"stream":true,"stream_options":{"include_usage":true}}`, 200, true, true},
		{"bad request", id, ownerKey, `{"messages":"hi"}`, 400, false, true},
		{"unknown pipeline", unknown, ownerKey, ask + `}`, 404, false, true},
		{"refused credential, before the body is read", id, "sk-wrong", ask + `}`, 401, false, false},
		{"stream failing midway: its error event", "", ownerKey, `{"messages":[{"role":"user","content":"fail midway"}],"max_tokens":24,"stream":true}`, 200, true, true},
		{"panic", "", ownerKey, `{"messages":[{"role":"user","content":"panic"}],"max_tokens":24}`, 500, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/v1/chat/completions"
			if tt.pipeline != "" {
				path = "/p/" + tt.pipeline + path
			}
			res := f.do("POST", path, tt.key, tt.body)
			if res.status != tt.status || (res.header.Get("Content-Type") == contentTypeSSE) != tt.stream {
				t.Fatalf("%d %s: %s", res.status, res.header.Get("Content-Type"), res.body)
			}
			if tt.stream {
				s := parseSSE(t, res.body)
				if s.signature == "" || s.done == (s.err != nil) {
					t.Fatalf("a stream without its signature event, or with [DONE] after an error: %s", res.body)
				}
			}
			mustVerify(t, hostKey, tt.body, tt.pipeline, res, tt.bound)
		})
	}

	t.Run("an error answered before the body is read verifies as an error only", func(t *testing.T) {
		res := f.do("POST", "/v1/chat/completions", "sk-wrong", ask+`}`)
		if err := checkAnswer(hostKey, "another request", "", res); err != nil {
			t.Fatalf("a 401 is signed without the request, so it verifies for any: %v", err)
		}
		res.status = http.StatusOK
		if err := checkAnswer(hostKey, "another request", "", res); !errors.Is(err, attest.ErrSignatureMismatch) {
			t.Fatalf("an unbound answer passed as a 200: %v", err)
		}
	})
}

// TestRefusalAtCapacityIsSigned: the 429 of a host at capacity, answered before the
// body is read, is signed with its Retry-After.
func TestRefusalAtCapacityIsSigned(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	f, _ := attested(t, atCapacity(started, release))
	first := f.running(started)
	const body = `{"messages":[{"role":"user","content":"x"}],"max_tokens":5}`
	res := f.do("POST", "/v1/chat/completions", ownerKey, body)
	close(release)
	if res.status != http.StatusTooManyRequests || res.header.Get("Retry-After") == "" {
		t.Fatalf("%d %s %s", res.status, res.header, res.body)
	}
	mustVerify(t, f.server.cfg.Attestation.PublicKey(), body, "", res, false)
	if res := <-first; res.status != 200 {
		t.Errorf("the running request: %d %s", res.status, res.body)
	}
}

// TestBilledAnswersAreSigned: a billing host's receipt falls under the signature (the
// receipt event of a stream comes before the signature event), and a replayed answer
// is signed as it is sent again.
func TestBilledAnswersAreSigned(t *testing.T) {
	b := newBilling(t, 1e9, func(c *Config, _ *recorder) { c.Attestation = simAttestation(t) })
	hostKey := b.server.cfg.Attestation.PublicKey()
	path := "/v1/chat/completions"
	stream := strings.Replace(chatBody, `"max_tokens"`, `"stream":true,"max_tokens"`, 1)
	for i, body := range []string{chatBody, stream} {
		key := "signed-replay-" + strconv.Itoa(i)
		withKey := func(sr *settle.SignedRequest, _ http.Header) { sr.IdempotencyKey = key }
		first := b.signed(t, b.clientKey, path, body, withKey)
		again := b.signed(t, b.clientKey, path, body, withKey)
		if again.header.Get(IdempotentReplayHeader) != "true" {
			t.Fatalf("not a replay: %d %s", again.status, again.body)
		}
		for _, res := range []response{first, again} {
			if body == stream {
				s := parseSSE(t, res.body)
				if s.receipt == nil || s.signature == "" {
					t.Fatalf("a billed stream without a receipt or a signature: %s", res.body)
				}
				// The receipt event is under the signature: changing it is refused.
				i := bytes.Index(res.body, []byte(`"cocoon_receipt"`))
				altered := response{res.status, res.header, bytes.Clone(res.body)}
				altered.body[i+1] = 'C'
				if err := checkAnswer(hostKey, body, "", altered); !errors.Is(err, attest.ErrSignatureMismatch) {
					t.Errorf("an altered receipt event: %v", err)
				}
			}
			mustVerify(t, hostKey, body, "", res, true)
		}
	}
}
