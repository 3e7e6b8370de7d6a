package web

import (
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

// event writes one "data:" event and flushes it; an error means the client is gone.
func (s *sseWriter) event(data []byte) error {
	if !s.started {
		s.started = true
		h := s.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no") // proxies such as nginx must not hold chunks back
		s.w.WriteHeader(http.StatusOK)
	}
	if _, err := s.w.Write(append(append([]byte("data: "), data...), "\n\n"...)); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *sseWriter) chunk(choices []chunkChoice, usage *usageJSON, signature string) error {
	b, err := json.Marshal(chunkJSON{ID: s.call.id, Object: "chat.completion.chunk", Created: s.call.created,
		Model: s.call.respModel, Choices: choices, Usage: usage, Signature: signature})
	if err != nil {
		return err
	}
	return s.event(b)
}

// delta sends text; the first chunk also carries the assistant role.
func (s *sseWriter) delta(text string) error {
	d := deltaJSON{Content: &text}
	if !s.started {
		d.Role = "assistant"
	}
	s.content.Write([]byte(text))
	return s.chunk([]chunkChoice{{Delta: d}}, nil, "")
}

// finish sends the finish reason, the usage when asked for, and [DONE]. The last chunk
// before [DONE] carries the response signature.
func (s *sseWriter) finish() error {
	if !s.started { // an empty answer still opens with the role
		empty := ""
		if err := s.chunk([]chunkChoice{{Delta: deltaJSON{Role: "assistant", Content: &empty}}}, nil, ""); err != nil {
			return err
		}
	}
	u := s.call.result.Usage
	signature := s.call.signer.sign([32]byte(s.content.Sum(nil)), u.PromptTokens, u.CompletionTokens)
	reason := s.call.result.FinishReason
	finishSignature := signature
	if s.includeUsage {
		finishSignature = ""
	}
	if err := s.chunk([]chunkChoice{{Delta: deltaJSON{}, FinishReason: &reason}}, nil, finishSignature); err != nil {
		return err
	}
	if s.includeUsage {
		if err := s.chunk([]chunkChoice{}, &usageJSON{u.PromptTokens, u.CompletionTokens, u.PromptTokens + u.CompletionTokens}, signature); err != nil {
			return err
		}
	}
	return s.event([]byte("[DONE]"))
}

// fail ends a started stream with an error event.
func (s *sseWriter) fail(e *apiError) {
	b, _ := json.Marshal(e.body())
	s.event(b)
}
