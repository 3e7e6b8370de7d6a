package openai

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"

	"github.com/cocoonhost/cocoon/host/backend"
)

// chunk is what the adapter reads of a chat.completion.chunk, or of an error object a
// server sends in its place.
type chunk struct {
	Model   string   `json:"model"`
	Choices []choice `json:"choices"`
	Usage   *usage   `json:"usage"`
	upstreamError
}

type choice struct {
	Index int `json:"index"`
	Delta struct {
		// Content is decoded by appendUnquoted, which keeps the bytes of a
		// character split across chunks; encoding/json would replace them.
		Content json.RawMessage `json:"content"`
	} `json:"delta"`
	FinishReason string `json:"finish_reason"`
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// emitError carries the error of the caller's emit through readStream unchanged.
type emitError struct{ err error }

func (e emitError) Error() string { return e.err.Error() }

// stream turns the events of one chat completion into deltas for emit and a result.
type stream struct {
	emit   func(delta string) error
	redact *strings.Replacer // for upstream error messages; nil redacts nothing
	model  string            // as requested, then as the server names it
	finish string
	usage  *usage
	deltas int // content deltas received, for the fallback count
	done   bool
	text   joiner
	buf    []byte
	chunks chunkDecoder
}

// readStream reads a chat completion event stream from r up to [DONE] or the end of r.
// Errors are the reader's, a *backend.Error for what the server sent, or an emitError.
func readStream(r io.Reader, maxLine int, s *stream) error {
	er := newEventReader(r, maxLine)
	defer er.release()
	for !s.done {
		ev, err := er.next()
		if err == io.EOF {
			// Some servers close without [DONE]; the answer is whole if it has
			// a finish reason.
			if s.finish == "" {
				return backend.Errorf(backend.CodeUpstream, "inference server ended the stream before the answer was complete")
			}
			break
		}
		if err != nil {
			return err
		}
		if err := s.handle(ev); err != nil {
			return err
		}
	}
	if s.finish == "abort" { // vLLM and SGLang, when the engine drops the request
		return backend.Errorf(backend.CodeUpstream, "inference server aborted the generation")
	}
	if tail := s.text.flush(); tail != "" {
		if err := s.emit(tail); err != nil {
			return emitError{err}
		}
	}
	return nil
}

var doneMarker = []byte("[DONE]")

func (s *stream) handle(ev event) error {
	data := bytes.TrimSpace(ev.data)
	switch {
	case ev.isError:
		return s.errorEvent(data)
	case len(data) == 0:
		return nil
	case bytes.Equal(data, doneMarker):
		s.done = true
		return nil
	}
	c, err := s.chunks.decode(data)
	if err != nil {
		return backend.Errorf(backend.CodeUpstream, "inference server sent an event that is not a JSON chunk")
	}
	if msg, status, ok := c.describe(); ok {
		return upstreamFailure(s.redact, msg, status)
	}
	if c.Model != "" {
		s.model = c.Model
	}
	if c.Usage != nil {
		s.usage = c.Usage
	}
	for i := range c.Choices {
		ch := &c.Choices[i]
		if ch.Index != 0 { // one answer per request: other choices are not ours
			continue
		}
		if err := s.content(ch.Delta.Content); err != nil {
			return err
		}
		if ch.FinishReason != "" {
			s.finish = ch.FinishReason
		}
	}
	return nil
}

// errorEvent decodes an error event: an error object in either shape, or the bare
// {"code":500,"message":...} that llama.cpp sends in an "error:" field.
func (s *stream) errorEvent(data []byte) error {
	var ue upstreamError
	if json.Unmarshal(data, &ue) == nil {
		if msg, status, ok := ue.describe(); ok {
			return upstreamFailure(s.redact, msg, status)
		}
	}
	var d errorDetail
	_ = json.Unmarshal(data, &d)
	return upstreamFailure(s.redact, d.Message, statusIn(d.Code))
}

// content passes the text of one delta to emit, holding back a character split across
// chunks until its last byte arrives.
func (s *stream) content(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var ok bool
	if s.buf, ok = appendUnquoted(s.buf[:0], raw); !ok {
		return backend.Errorf(backend.CodeUpstream, "inference server sent a delta whose content is not a string")
	}
	if len(s.buf) == 0 {
		return nil
	}
	s.deltas++
	if d := s.text.push(s.buf); d != "" {
		if err := s.emit(d); err != nil {
			return emitError{err}
		}
	}
	return nil
}

// result is the outcome so far. Without a usage chunk from the server, usage is counted
// locally: completion tokens as the number of non-empty content deltas (vLLM, SGLang,
// llama.cpp and Ollama send one per token, so this is exact unless the server batches
// tokens), prompt tokens estimated as one per 4 bytes of message text (the usual ratio
// of BPE tokenizers on English; role names and template tokens are not counted).
func (s *stream) result(req *backend.Request) backend.Result {
	res := backend.Result{FinishReason: "stop", Model: s.model}
	if s.finish == "length" {
		res.FinishReason = "length"
	}
	if s.usage != nil {
		res.Usage = backend.Usage{PromptTokens: s.usage.PromptTokens, CompletionTokens: s.usage.CompletionTokens}
		return res
	}
	n := 0
	for _, m := range req.Messages {
		n += len(m.Content)
	}
	res.Usage = backend.Usage{PromptTokens: (n + 3) / 4, CompletionTokens: s.deltas}
	return res
}
