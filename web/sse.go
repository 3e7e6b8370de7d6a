package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"

	"github.com/cocoonhost/cocoon/host"
)

// Content types of chat answers.
const (
	contentTypeJSON = "application/json"
	contentTypeSSE  = "text/event-stream"
)

// errClientGone is why a stream stopped when a write to its client failed: the client
// closed the connection, or stopped reading for Config.WriteTimeout. Its request ends
// cancelled (settle.StatusCancelled), as when the client disconnects.
var errClientGone = errors.New("the client stopped reading the stream")

// sseWriter writes a chat completion as OpenAI's server-sent chunks. Headers go out with
// the first chunk, so that a failure before it can still be an ordinary error response.
type sseWriter struct {
	w            http.ResponseWriter
	call         *chatCall
	includeUsage bool
	started      bool
	// keep records what is written in transcript, for an idempotency key.
	keep       bool
	transcript bytes.Buffer
	// digest hashes every byte written, which the stream's signature event covers
	// (writeEnding).
	digest hash.Hash
}

type chunkJSON struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"`
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Choices []chunkChoice `json:"choices"`
	Usage   *usageJSON    `json:"usage,omitempty"`
}

type chunkChoice struct {
	Index        int       `json:"index"`
	Delta        deltaJSON `json:"delta"`
	FinishReason *string   `json:"finish_reason"`
}

type deltaJSON struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type usageJSON struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// doneEvent ends a stream that completed.
var doneEvent = sseFrame([]byte("[DONE]"))

// sseFrame is data as one server-sent event.
func sseFrame(data []byte) []byte {
	return append(append([]byte("data: "), data...), "\n\n"...)
}

// sseHeaders sets the headers of an event stream but its content type.
func sseHeaders(h http.Header) {
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // proxies such as nginx must not hold chunks back
}

func (s *sseWriter) stream() func(string) error { return s.delta }

// write writes whole events and flushes them, each write under the server's write
// deadline (writeDeadlines). On success every backend delta taken so far counts as
// delivered; on failure the client is gone (errClientGone).
func (s *sseWriter) write(events []byte) error {
	if s.keep {
		s.transcript.Write(events)
	}
	s.digest.Write(events)
	if !s.started {
		s.started = true
		h := s.w.Header()
		h.Set("Content-Type", contentTypeSSE)
		sseHeaders(h)
		s.w.WriteHeader(http.StatusOK)
	}
	_, err := s.w.Write(events)
	if err == nil {
		err = flushError(s.w)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errClientGone, err)
	}
	s.call.delivered = s.call.deltas
	return nil
}

// chunkEvent is a chat.completion.chunk event.
func (s *sseWriter) chunkEvent(choices []chunkChoice, usage *usageJSON) []byte {
	b, _ := json.Marshal(chunkJSON{ID: s.call.id, Object: "chat.completion.chunk", Created: s.call.created,
		Model: s.call.respModel, Choices: choices, Usage: usage}) // plain strings and numbers
	return sseFrame(b)
}

// delta sends text; the first chunk also carries the assistant role.
func (s *sseWriter) delta(text string) error {
	d := deltaJSON{Content: &text}
	if !s.started {
		d.Role = "assistant"
	}
	return s.write(s.chunkEvent([]chunkChoice{{Delta: d}}, nil))
}

// ending ends the stream: a failure before the first chunk is an ordinary error
// answer; otherwise the closing events, split before "data: [DONE]", or, after a
// failure, the error event. What was written before is in stored.Before when kept.
func (s *sseWriter) ending(r *http.Request, res *host.Result, err error) ending {
	e := ending{call: s.call, res: res, err: err, started: s.started, sent: s.transcript.Len(), digest: s.digest}
	switch {
	case err != nil && !s.started:
		e.stored = errorResponse(s.call.s.toAPIError(r, err))
	case err != nil:
		b, _ := json.Marshal(s.call.s.toAPIError(r, err).body()) // strings only
		e.stored = storedResponse{Status: http.StatusOK, ContentType: contentTypeSSE, Before: s.transcript.Bytes(), After: sseFrame(b)}
	default:
		closing := s.closingEvents()
		e.stored = storedResponse{Status: http.StatusOK, ContentType: contentTypeSSE,
			Before: append(s.transcript.Bytes(), closing...), After: doneEvent}
	}
	return e
}

// closingEvents are the events that end a completed stream before a billing host's
// receipt, the signature event and "data: [DONE]": the opening role if nothing was
// sent, the finish reason, and the usage when asked for.
func (s *sseWriter) closingEvents() []byte {
	var out []byte
	if !s.started { // an empty answer still opens with the role
		empty := ""
		out = s.chunkEvent([]chunkChoice{{Delta: deltaJSON{Role: "assistant", Content: &empty}}}, nil)
	}
	u := s.call.result.Usage
	reason := s.call.result.FinishReason
	out = append(out, s.chunkEvent([]chunkChoice{{Delta: deltaJSON{}, FinishReason: &reason}}, nil)...)
	if s.includeUsage {
		out = append(out, s.chunkEvent([]chunkChoice{}, &usageJSON{u.PromptTokens, u.CompletionTokens, u.PromptTokens + u.CompletionTokens})...)
	}
	return out
}
