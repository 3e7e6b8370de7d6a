package web

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/settle"
)

// clientOptions are what the host reads of the client's own body. The pre stage may
// reshape the request, but the host keeps the client's stream settings, and admission
// prices the completion the client asked for.
type clientOptions struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           *int `json:"max_tokens"`
	MaxCompletionTokens *int `json:"max_completion_tokens"`
	// MaxPrice is settle.MaxPriceMember as sent; billing parses it (a 400 when bad).
	MaxPrice json.RawMessage `json:"max_price"`
}

// askedTokens is the completion bound a request asks for: max_completion_tokens, else
// max_tokens; 0 when it asks for none (a request's 0 is refused before, as OpenAI
// refuses it): such a request gets (and is priced for) as long an answer as the
// context allows, never an unpriced one.
func askedTokens(maxCompletionTokens, maxTokens *int) int {
	value := func(p *int) int {
		if p == nil {
			return 0
		}
		return *p
	}
	return cmp.Or(value(maxCompletionTokens), value(maxTokens))
}

// chatCompletions answers POST /v1/chat/completions (the bare backend) and
// POST /p/{id}/v1/chat/completions (through the pipeline). Authentication has read the
// body; the request is checked (host.CheckChatRequest: a 400 naming the member), takes
// a generation slot, is admitted (billing), goes through the pre modules, the backend
// and the post modules, and is answered with a chat.completion or, with "stream": true,
// server-sent chunks ending with "data: [DONE]". A failure before the first chunk is an
// error response with its status; after it, an SSE event "data: {"error": ...}" ends
// the stream, without [DONE]. Billing is a layer around the answer: the charge seals
// its ending with the receipt.
func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	c, err := s.newChatCall(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	release, err := s.acquire(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer release()
	charge, err := s.billing.admit(r, c)
	if err != nil {
		s.refuseAdmission(w, r, err)
		return
	}
	// A panic from here on must not keep the hold until restart; the recoverer
	// answers 500. After the receipt this does nothing.
	defer charge.release()
	c.charge = charge

	out := c.answer(w, charge.keeps())
	c.start = time.Now()
	res, err := c.pipeline.Run(r.Context(), c.body, c.generate, out.stream())
	c.done(res, err)
	s.failures.record(pipelineOf(r.Context()), res, err)
	s.writeEnding(w, r, charge.seal(r, out.ending(r, res, err)))
}

// newChatCall checks the client's request: its size against the pipeline's first pre
// module's input limit (413 before any module runs), its content as a chat request this
// host serves (400 naming the member), and its model against the pipeline's.
func (s *Server) newChatCall(r *http.Request) (*chatCall, error) {
	body := bodyOf(r.Context())
	c := &chatCall{s: s, pipeline: s.bare, body: body, id: newCompletionID(), created: time.Now().Unix()}
	if e := pipelineOf(r.Context()); e != nil {
		c.pipeline, c.model = e.Pipeline, e.Manifest.Model
		if pre := e.Manifest.Pre; len(pre) > 0 {
			if limit := pre[0].Limits.WithDefaults().InputBytes; len(body) > limit {
				return nil, errorf(http.StatusRequestEntityTooLarge, typeInvalidRequest, "body_too_large",
					"the request body is %d bytes, over the input limit of %d bytes of this pipeline's first pre module (%s)", len(body), limit, pre[0].Module)
			}
		}
	}
	if err := host.CheckChatRequest(body); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(body, &c.opts); err != nil {
		return nil, fmt.Errorf("decode a checked request: %w", err) // CheckChatRequest checked these members
	}
	if c.model != "" && c.opts.Model != "" && c.opts.Model != c.model {
		return nil, invalidf("model %q is not this pipeline's: it serves %q", c.opts.Model, c.model)
	}
	return c, nil
}

// chatCall is one chat completion: its request, its identity, and what the backend
// reported.
type chatCall struct {
	s        *Server
	pipeline *host.Pipeline
	body     []byte // the client's, as authenticated
	opts     clientOptions
	model    string // the pipeline's model; empty for the bare backend
	charge   charge
	sse      *sseWriter // the stream of a streamed answer, else nil
	id       string
	created  int64

	start, preEnd, backendEnd time.Time
	respModel                 string
	result                    backend.Result
	// deltas counts the backend's deltas so far, and delivered how many of them had
	// been taken by the pipeline when the last write to the client succeeded: the
	// tokens a cut stream is charged for.
	deltas, delivered int
}

// requestModel is the model the request is for: the pipeline's, or the one the client
// named.
func (c *chatCall) requestModel() string { return cmp.Or(c.model, c.opts.Model) }

// answer is how the answer reaches the client: whole, or streamed with keep set when
// what is written must be kept for an idempotency key.
func (c *chatCall) answer(w http.ResponseWriter, keep bool) answer {
	if !c.opts.Stream {
		return jsonAnswer{c}
	}
	c.sse = &sseWriter{w: w, call: c, digest: sha256.New(), keep: keep,
		includeUsage: c.opts.StreamOptions != nil && c.opts.StreamOptions.IncludeUsage}
	return c.sse
}

// generate is the pipeline's GenerateFunc: it decodes the request the pre stage left
// and runs the backend on it, within the completion bound admission priced.
func (c *chatCall) generate(ctx context.Context, request []byte, emit func(string) error) (host.Generation, error) {
	m := c.s.metrics
	c.preEnd = time.Now()
	m.stages.WithLabelValues(stagePre).Observe(c.preEnd.Sub(c.start).Seconds())
	req, err := toBackendRequest(request)
	if err != nil {
		return host.Generation{}, err
	}
	if c.model != "" {
		req.Model = c.model // the pipeline id covers the model: no module or client changes it
	}
	req.MaxTokens = c.charge.maxTokens(req.MaxTokens)
	c.respModel = c.s.models.name(ctx, req.Model)
	if c.sse != nil {
		// A stream flushes when the backend waits, not after every delta.
		ctx = backend.WithIdle(ctx, c.sse.idle)
	}
	c.result, err = c.s.cfg.Backend.Generate(ctx, req, func(delta string) error {
		if c.deltas++; c.deltas == 1 {
			m.stages.WithLabelValues(stageFirstToken).Observe(time.Since(c.preEnd).Seconds())
		}
		return emit(delta)
	})
	if c.sse != nil {
		err = c.sse.generated(err)
	}
	c.backendEnd = time.Now()
	m.stages.WithLabelValues(stageBackend).Observe(c.backendEnd.Sub(c.preEnd).Seconds())
	m.tokens.WithLabelValues("in").Add(float64(c.result.Usage.PromptTokens))
	m.tokens.WithLabelValues("out").Add(float64(c.result.Usage.CompletionTokens))
	if c.result.Model != "" {
		c.respModel = c.result.Model
	}
	return host.Generation{ID: c.id, Created: c.created, Model: c.respModel, FinishReason: c.result.FinishReason,
		PromptTokens: c.result.Usage.PromptTokens, CompletionTokens: c.result.Usage.CompletionTokens}, err
}

// done records the post stage's time, the request's module time and module failures.
func (c *chatCall) done(res *host.Result, err error) {
	if !c.backendEnd.IsZero() {
		c.s.metrics.stages.WithLabelValues(stagePost).Observe(time.Since(c.backendEnd).Seconds())
	}
	if res != nil && res.ModuleTime > 0 {
		c.s.metrics.moduleTime.Observe(res.ModuleTime.Seconds())
	}
	var he *host.Error
	if errors.As(err, &he) && he.Stage != "" {
		c.s.metrics.moduleFailures.WithLabelValues(string(he.Stage), string(he.Code)).Inc()
	}
}

func newCompletionID() string {
	var b [12]byte
	rand.Read(b[:])
	return "chatcmpl-" + hex.EncodeToString(b[:])
}

// answer is a chat answer on its way out: a JSON chat.completion or an SSE stream.
type answer interface {
	// stream is what the pipeline sends deltas to; nil for a JSON answer.
	stream() func(delta string) error
	// ending is how the answer ends after the pipeline returned res and err.
	ending(r *http.Request, res *host.Result, err error) ending
}

// ending is the end of a chat answer: what goes out after the pipeline ran (the whole
// of a JSON answer, the closing events of a stream), as it is stored for an
// idempotency key, split where a billing host's receipt goes; and the outcome the
// receipt charges for.
type ending struct {
	stored storedResponse
	// started is set when the answer's headers are out, and sent is how much of
	// stored.Before was written already: a stream's chunks, whose bytes digest holds.
	started bool
	sent    int
	digest  hash.Hash
	receipt *settle.Receipt

	call *chatCall
	res  *host.Result
	err  error
}

// jsonAnswer is a non-streaming answer.
type jsonAnswer struct{ call *chatCall }

func (jsonAnswer) stream() func(string) error { return nil }

// ending is the chat.completion or the error.
func (a jsonAnswer) ending(r *http.Request, res *host.Result, err error) ending {
	c := a.call
	e := ending{call: c, res: res, err: err}
	if err != nil {
		e.stored = errorResponse(c.s.toAPIError(r, err))
		return e
	}
	e.stored = storedResponse{Status: http.StatusOK, ContentType: contentTypeJSON, Before: res.Response}
	return e
}

// errorResponse is an error answer as it is sent and stored.
func errorResponse(e *apiError) storedResponse {
	return storedResponse{Status: e.Status, ContentType: contentTypeJSON, Header: e.headers(), Before: encodeJSON(e.body())}
}

// writeEnding writes what of an answer is not out yet: the headers (with the receipt
// of a JSON answer), the rest of stored.Before, a stream's receipt event, and
// stored.After; a replayed answer and an error are written whole the same way. When
// the answers to r are signed (signerOf), an answer written whole carries its
// signature in attest.ResponseSignatureHeader, over its status, Retry-After and body,
// and a stream its signature event, over every byte before it (e.digest holds those
// written already), just before "data: [DONE]" or, when it failed, after its error
// event. Signing happens here, as the bytes go out, so that a replay is signed with
// the key of the host that sends it.
func (s *Server) writeEnding(w http.ResponseWriter, r *http.Request, e ending) {
	stream := e.stored.ContentType == contentTypeSSE
	signer := signerOf(r)
	out := append([]byte(nil), e.stored.Before[e.sent:]...)
	if !stream {
		out = append(out, e.stored.After...)
	}
	if !e.started {
		h := w.Header()
		for k, v := range e.stored.Header {
			h.Set(k, v)
		}
		h.Del(attest.ResponseSignatureHeader) // an answer stored by an earlier version kept its signature
		h.Set("Content-Type", e.stored.ContentType)
		switch {
		case stream:
			sseHeaders(h)
		case e.receipt != nil:
			h.Set(settle.ReceiptHeader, e.receipt.MarshalHeader())
		}
		if !stream && signer != nil {
			h.Set(attest.ResponseSignatureHeader, signer.sign(r, attest.ResponseBody, e.stored.Status, h.Get("Retry-After"), sha256.Sum256(out)))
		}
		w.WriteHeader(e.stored.Status)
	}
	if stream {
		if e.receipt != nil {
			out = append(out, receiptEvent(e.receipt)...)
		}
		tail, completed := bytes.CutSuffix(e.stored.After, doneEvent)
		out = append(out, tail...)
		if signer != nil {
			digest := e.digest
			if digest == nil {
				digest = sha256.New()
			}
			digest.Write(out)
			out = append(out, attest.SignatureEvent(signer.sign(r, attest.ResponseStream, e.stored.Status, "", [32]byte(digest.Sum(nil))))...)
		}
		if completed {
			out = append(out, doneEvent...)
		}
	}
	// A failed write means the client is gone: the receipt is committed. No flush:
	// net/http's own after the handler returns sends the end of a stream with the
	// chunked body's terminator, one write to the connection rather than two.
	w.Write(out)
}

// chatRequest is what the host reads of the request the backend gets, which the pre
// stage left and the host checked (host.CheckChatRequest). Members it does not read
// pass on in backend.Request.Raw.
type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	Seed                *int64          `json:"seed"`
	Stop                json.RawMessage `json:"stop"`
}

// toBackendRequest decodes the checked request that left the pre stage. It fails only
// if the host's check let through what it should not: an internal error.
func toBackendRequest(b []byte) (*backend.Request, error) {
	var cr chatRequest
	if err := json.Unmarshal(b, &cr); err != nil {
		return nil, fmt.Errorf("decode the checked request: %w", err)
	}
	req := &backend.Request{Model: cr.Model, Temperature: cr.Temperature, TopP: cr.TopP, Seed: cr.Seed, Raw: b,
		MaxTokens: askedTokens(cr.MaxCompletionTokens, cr.MaxTokens)}
	for i, m := range cr.Messages {
		text, err := messageText(m.Content)
		if err != nil {
			return nil, fmt.Errorf("decode the checked request: messages[%d].content: %w", i, err)
		}
		req.Messages = append(req.Messages, backend.Message{Role: m.Role, Content: text})
	}
	var err error
	if req.Stop, err = stopSequences(cr.Stop); err != nil {
		return nil, fmt.Errorf("decode the checked request: stop: %w", err)
	}
	return req, nil
}

// messageText returns the text of a message's content: a string, null, or an array of
// text parts, concatenated.
func messageText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var text string
	if raw[0] == '"' {
		err := json.Unmarshal(raw, &text)
		return text, err
	}
	var parts []struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", err
	}
	for _, p := range parts {
		text += p.Text
	}
	return text, nil
}

// stopSequences decodes "stop": null, a string, or an array of strings.
func stopSequences(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '"' {
		var one string
		err := json.Unmarshal(raw, &one)
		return []string{one}, err
	}
	var many []string
	err := json.Unmarshal(raw, &many)
	return many, err
}
