package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/settle"
)

// clientOptions are what the host reads of the client's own body. The pre stage may
// reshape the request, but the host keeps the client's stream settings.
type clientOptions struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           *int `json:"max_tokens"`
	MaxCompletionTokens *int `json:"max_completion_tokens"`
}

// chatCompletions answers POST /v1/chat/completions (the bare backend) and
// POST /p/{id}/v1/chat/completions (through the pipeline): the body goes through the
// pre modules, the backend and the post modules, and the answer is a chat.completion or,
// with "stream": true, server-sent chunks ending with "data: [DONE]". A failure before
// the first chunk is an error response with its status; after it, an SSE event
// "data: {"error": ...}" ends the stream, without [DONE].
func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	c := &chatCall{s: s, pipeline: s.bare, id: newCompletionID(), created: time.Now().Unix()}
	c.signer.host = s.cfg.Attestation
	if e := pipelineOf(r.Context()); e != nil {
		c.pipeline, c.model, c.signer.pipelineID = e.Pipeline, e.Manifest.Model, e.ID
	}
	body, err := readBody(w, r, s.cfg.MaxRequestBytes)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	c.signer.request = sha256.Sum256(body)
	var opts clientOptions
	if err := decodeLoose(body, &opts, "request"); err != nil {
		s.writeError(w, r, err)
		return
	}
	if c.model != "" && opts.Model != "" && opts.Model != c.model {
		s.writeError(w, r, invalidf("model %q is not this pipeline's: it serves %q", opts.Model, c.model))
		return
	}
	release, err := s.acquire()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer release()
	model := c.model
	if model == "" {
		model = opts.Model
	}
	if c.bill, err = s.admit(r, body, model, opts); err != nil {
		var idem *settle.IdempotentError
		if errors.As(err, &idem) {
			s.replay(w, r, idem)
		} else {
			s.writeError(w, r, err)
		}
		return
	}

	var sse *sseWriter
	var stream func(string) error
	if opts.Stream {
		sse = &sseWriter{w: w, rc: http.NewResponseController(w), call: c, content: sha256.New(),
			includeUsage: opts.StreamOptions != nil && opts.StreamOptions.IncludeUsage, keep: c.bill != nil && c.bill.keep}
		stream = sse.delta
	}
	c.start = time.Now()
	res, err := c.pipeline.Run(r.Context(), body, c.generate, stream)
	c.done(res, err)
	s.failures.record(pipelineOf(r.Context()), res, err)
	switch {
	case sse != nil && (err == nil || sse.started):
		s.endStream(r, sse, res, err)
	case err != nil:
		e := s.toAPIError(r, err)
		if c.bill != nil {
			body, _ := json.Marshal(e.body())
			if !s.attachReceipt(w, r, c, res, err, storedResponse{Status: e.Status, ContentType: "application/json", Before: body}) {
				return
			}
		}
		s.writeError(w, r, e)
	default:
		s.writeCompletion(w, r, c, res)
	}
}

// endStream ends a stream that reached the client: its closing events (or the error
// event), with the receipt event before them when the request is billed.
func (s *Server) endStream(r *http.Request, sse *sseWriter, res *host.Result, err error) {
	var closing []byte
	if err != nil {
		closing = sse.failEvent(s.toAPIError(r, err))
	} else {
		closing = sse.closingEvents()
	}
	c := sse.call
	if c.bill == nil {
		sse.write(closing)
		return
	}
	// The content is out, so the receipt follows the stream's last chunks; what ends
	// the stream ([DONE] or the error) comes after it.
	tail, after := []byte(nil), closing
	if err == nil {
		tail, after = closing[:len(closing)-len(doneEvent)], doneEvent
		if sse.write(tail) != nil {
			err = context.Canceled // the client went away before the end
		}
	}
	receipt, cerr := c.bill.finish(r, c, res, err, true, storedResponse{Status: http.StatusOK, ContentType: "text/event-stream",
		Before: sse.transcript.Bytes(), After: after})
	if cerr != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "receipt not committed", slog.Any("err", cerr))
		sse.write(sse.failEvent(errorf(http.StatusServiceUnavailable, typeServer, settle.CodeUnavailable, "the receipt could not be recorded")))
		return
	}
	sse.write(append(receiptEvent(receipt), after...))
}

// attachReceipt commits the receipt of a non-streaming answer and sets its header. On
// failure it answers 503 itself and returns false: an answer goes out only with its
// receipt recorded.
func (s *Server) attachReceipt(w http.ResponseWriter, r *http.Request, c *chatCall, res *host.Result, err error, resp storedResponse) bool {
	receipt, cerr := c.bill.finish(r, c, res, err, false, resp)
	if cerr != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "receipt not committed", slog.Any("err", cerr))
		s.writeError(w, r, errorf(http.StatusServiceUnavailable, typeServer, settle.CodeUnavailable, "the receipt could not be recorded: retry"))
		return false
	}
	w.Header().Set(settle.ReceiptHeader, receipt.MarshalHeader())
	return true
}

// writeCompletion writes a non-streaming answer, signed in the Cocoon-Signature header,
// with its receipt when billed.
func (s *Server) writeCompletion(w http.ResponseWriter, r *http.Request, c *chatCall, res *host.Result) {
	response := res.Response
	if c.signer.host != nil {
		content, err := responseContent(response)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		u := c.result.Usage
		w.Header().Set(attest.ResponseSignatureHeader, c.signer.sign(content, u.PromptTokens, u.CompletionTokens))
	}
	if c.bill != nil && !s.attachReceipt(w, r, c, res, nil, storedResponse{Status: http.StatusOK, ContentType: "application/json", Before: response}) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(response)
}

// chatCall is one chat completion: its identity, and what the backend reported.
type chatCall struct {
	s        *Server
	pipeline *host.Pipeline
	model    string // the pipeline's model; empty for the bare backend
	signer   responseSigner
	bill     *bill // nil when the host does not bill
	id       string
	created  int64

	start, preEnd, backendEnd time.Time
	respModel                 string
	result                    backend.Result
}

// generate is the pipeline's GenerateFunc: it decodes the request the pre stage left
// and runs the backend on it.
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
	if c.bill != nil && (req.MaxTokens == 0 || req.MaxTokens > c.bill.maxTokens) {
		req.MaxTokens = c.bill.maxTokens // what admission reserved for, whatever the pre stage asked
	}
	c.respModel = req.Model
	first := true
	c.result, err = c.s.cfg.Backend.Generate(ctx, req, func(delta string) error {
		if first {
			first = false
			m.stages.WithLabelValues(stageFirstToken).Observe(time.Since(c.preEnd).Seconds())
		}
		return emit(delta)
	})
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

// done records the post stage's time and module failures.
func (c *chatCall) done(res *host.Result, err error) {
	if !c.backendEnd.IsZero() {
		c.s.metrics.stages.WithLabelValues(stagePost).Observe(time.Since(c.backendEnd).Seconds())
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

// chatRequest is what the host reads of the request the backend gets. Members it does
// not know pass on in backend.Request.Raw.
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
	N                   *int            `json:"n"`
}

// toBackendRequest decodes the request that left the pre stage. Errors are 400s that
// name the member.
func toBackendRequest(b []byte) (*backend.Request, error) {
	var cr chatRequest
	if err := decodeLoose(b, &cr, "request"); err != nil {
		return nil, err
	}
	if cr.N != nil && *cr.N != 1 {
		return nil, invalidf("request: n is %d: this host answers with one choice", *cr.N)
	}
	req := &backend.Request{Model: cr.Model, Temperature: cr.Temperature, TopP: cr.TopP, Seed: cr.Seed, Raw: b}
	switch {
	case cr.MaxCompletionTokens != nil:
		req.MaxTokens = *cr.MaxCompletionTokens
	case cr.MaxTokens != nil:
		req.MaxTokens = *cr.MaxTokens
	}
	if req.MaxTokens < 0 {
		return nil, invalidf("request: max_tokens must not be negative")
	}
	for i, m := range cr.Messages {
		text, err := messageText(m.Content)
		if err != nil {
			return nil, invalidf("request: messages[%d].content: %v", i, err)
		}
		req.Messages = append(req.Messages, backend.Message{Role: m.Role, Content: text})
	}
	var err error
	if req.Stop, err = stopSequences(cr.Stop); err != nil {
		return nil, invalidf("request: stop: %v", err)
	}
	return req, nil
}

// messageText returns the text of a message's content: a string, null, or an array of
// parts of which only text parts are supported.
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
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", errors.New("must be a string or an array of content parts")
	}
	for i, p := range parts {
		if p.Type != "text" || p.Text == nil {
			return "", fmt.Errorf("part %d is of type %q: the backend takes text parts only", i, p.Type)
		}
		text += *p.Text
	}
	return text, nil
}

// stopSequences decodes "stop": null, a string, or an array of strings.
func stopSequences(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, errors.New("must be a string or an array of strings")
	}
	return many, nil
}
