package web

import (
	"bytes"
	"encoding/json"
	"hash"
	"net/http"
)

// sseWriter writes a chat completion as OpenAI's server-sent chunks. Headers go out with
// the first chunk, so that a failure before it can still be an ordinary error response.
type sseWriter struct {
	w            http.ResponseWriter
	rc           *http.ResponseController
	call         *chatCall
	includeUsage bool
	started      bool
	// keep records what is written in transcript, for an idempotency key.
	keep       bool
	transcript bytes.Buffer
	// content hashes the text sent, for the response signature.
	content hash.Hash
}

type chunkJSON struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"`
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Choices []chunkChoice `json:"choices"`
	Usage   *usageJSON    `json:"usage,omitempty"`
	// Signature is set on the last chunk: see attest.ResponseSignatureHeader.
	Signature string `json:"cocoon_signature,omitempty"`
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

// event writes one "data:" event and flushes it; an error means the client is gone.
func (s *sseWriter) event(data []byte) error { return s.write(sseFrame(data)) }

// write writes whole events and flushes them.
func (s *sseWriter) write(events []byte) error {
	if s.keep {
		s.transcript.Write(events)
	}
	if !s.started {
		s.started = true
		h := s.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no") // proxies such as nginx must not hold chunks back
		s.w.WriteHeader(http.StatusOK)
	}
	if _, err := s.w.Write(events); err != nil {
		return err
	}
	return s.rc.Flush()
}

// chunkEvent is a chat.completion.chunk event.
func (s *sseWriter) chunkEvent(choices []chunkChoice, usage *usageJSON, signature string) []byte {
	b, _ := json.Marshal(chunkJSON{ID: s.call.id, Object: "chat.completion.chunk", Created: s.call.created,
		Model: s.call.respModel, Choices: choices, Usage: usage, Signature: signature}) // plain strings and numbers
	return sseFrame(b)
}

// delta sends text; the first chunk also carries the assistant role.
func (s *sseWriter) delta(text string) error {
	d := deltaJSON{Content: &text}
	if !s.started {
		d.Role = "assistant"
	}
	s.content.Write([]byte(text))
	return s.write(s.chunkEvent([]chunkChoice{{Delta: d}}, nil, ""))
}

// closingEvents are the events that end a completed stream: the opening role if
// nothing was sent, the finish reason, the usage when asked for, and [DONE] (always
// last). The last chunk before [DONE] carries the response signature.
func (s *sseWriter) closingEvents() []byte {
	var out []byte
	if !s.started { // an empty answer still opens with the role
		empty := ""
		out = s.chunkEvent([]chunkChoice{{Delta: deltaJSON{Role: "assistant", Content: &empty}}}, nil, "")
	}
	u := s.call.result.Usage
	signature := s.call.signer.sign([32]byte(s.content.Sum(nil)), u.PromptTokens, u.CompletionTokens)
	reason := s.call.result.FinishReason
	finishSignature := signature
	if s.includeUsage {
		finishSignature = ""
	}
	out = append(out, s.chunkEvent([]chunkChoice{{Delta: deltaJSON{}, FinishReason: &reason}}, nil, finishSignature)...)
	if s.includeUsage {
		out = append(out, s.chunkEvent([]chunkChoice{}, &usageJSON{u.PromptTokens, u.CompletionTokens, u.PromptTokens + u.CompletionTokens}, signature)...)
	}
	return append(out, doneEvent...)
}

// failEvent is the error event that ends a failed stream.
func (s *sseWriter) failEvent(e *apiError) []byte {
	b, _ := json.Marshal(e.body())
	return sseFrame(b)
}
