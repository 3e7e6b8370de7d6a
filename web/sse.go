package web

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"sync"
	"unicode/utf8"

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

	// coalesce is set while the backend calls the idle hook (backend.WithIdle) before
	// each wait for its server: events then wait in pending (up to coalesceBytes)
	// until the next call writes and flushes them, so that the deltas of one read from
	// the server reach the client in one write and one flush rather than one each.
	// written is call.deltas at the last event: the deltas pending delivers once
	// flushed.
	coalesce bool
	pending  []byte
	written  int

	// event is where the next delta event is encoded; head is the start of every
	// delta event of model headModel, encoded once (appendDeltaEvent).
	event, head []byte
	headModel   string
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

// coalesceBytes bounds the events a stream holds back for the idle hook: a server
// that sends faster than this between two waits gets a write every coalesceBytes.
const coalesceBytes = 32 << 10

// pendingBuffer is what sseWriter.pending starts from, recycled in pendingBuffers:
// room for coalesceBytes and the event that passes it, so that a stream's batches
// neither grow their buffer nor allocate one each.
type pendingBuffer [coalesceBytes + 8<<10]byte

var pendingBuffers = sync.Pool{New: func() any { return new(pendingBuffer) }}

// release returns the stream's pending buffer to pendingBuffers; the stream writes
// nothing more through it.
func (s *sseWriter) release() {
	if cap(s.pending) == len(pendingBuffer{}) {
		pendingBuffers.Put((*pendingBuffer)(s.pending[:cap(s.pending)]))
	}
	s.pending = nil
}

// write writes whole events, at once or, while the backend's idle hook will
// (coalesce), when it is called. Once they are flushed, under the server's write
// deadline (writeDeadlines), every backend delta taken so far counts as delivered; on
// failure the client is gone (errClientGone).
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
	if s.pending == nil {
		s.pending = pendingBuffers.Get().(*pendingBuffer)[:0]
	}
	s.pending = append(s.pending, events...)
	s.written = s.call.deltas
	if s.coalesce && len(s.pending) < coalesceBytes {
		return nil
	}
	return s.flush()
}

// flush writes the pending events and flushes them to the client.
func (s *sseWriter) flush() error {
	_, err := s.w.Write(s.pending)
	s.pending = s.pending[:0]
	if err == nil {
		err = flushError(s.w)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errClientGone, err)
	}
	s.call.delivered = s.written
	return nil
}

// idle is the backend's idle hook (backend.WithIdle): the backend is about to read
// from its server, and may wait, so what it emitted goes to the client now. Its first
// call tells that the backend calls it before every read: events wait for it from
// then on. So the first content goes out at once, nothing the backend read waits for
// its next read, and the deltas of one read go out in one write and one flush: as
// many as the server sent while the host was busy, which is more the busier the
// machine is, and one when it is idle.
func (s *sseWriter) idle() error {
	s.coalesce = true
	if len(s.pending) == 0 {
		return nil
	}
	return s.flush()
}

// generated ends coalescing when the backend returned err: what it emitted is flushed
// (but not to a client already gone), and what the post stage writes after it is
// flushed as it is written.
func (s *sseWriter) generated(err error) error {
	s.coalesce = false
	if len(s.pending) == 0 || errors.Is(err, errClientGone) {
		return err
	}
	return cmp.Or(err, s.flush())
}

// chunkEvent is a chat.completion.chunk event.
func (s *sseWriter) chunkEvent(choices []chunkChoice, usage *usageJSON) []byte {
	b, _ := json.Marshal(chunkJSON{ID: s.call.id, Object: "chat.completion.chunk", Created: s.call.created,
		Model: s.call.respModel, Choices: choices, Usage: usage}) // plain strings and numbers
	return sseFrame(b)
}

// delta sends text; the first chunk also carries the assistant role.
func (s *sseWriter) delta(text string) error {
	s.event = s.appendDeltaEvent(s.event[:0], text)
	return s.write(s.event)
}

// appendDeltaEvent appends the event of a delta of text to dst: byte for byte what
// chunkEvent makes of it (FuzzDeltaEvent), without encoding/json's reflection and
// allocations on every token.
func (s *sseWriter) appendDeltaEvent(dst []byte, text string) []byte {
	if s.head == nil || s.headModel != s.call.respModel {
		s.headModel = s.call.respModel
		s.head = append(append(s.head[:0], `data: {"id":`...), appendJSONString(nil, s.call.id)...)
		s.head = strconv.AppendInt(append(s.head, `,"object":"chat.completion.chunk","created":`...), s.call.created, 10)
		s.head = append(appendJSONString(append(s.head, `,"model":`...), s.headModel), `,"choices":[{"index":0,"delta":{`...)
	}
	dst = append(dst, s.head...)
	if !s.started {
		dst = append(dst, `"role":"assistant",`...)
	}
	dst = appendJSONString(append(dst, `"content":`...), text)
	return append(dst, "},\"finish_reason\":null}]}\n\n"...)
}

// appendJSONString appends s as a JSON string to dst exactly as encoding/json encodes
// it: HTML-safe, bytes that are not UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			if r == utf8.RuneError {
				dst = append(dst, `\ufffd`...)
			} else {
				dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(append(dst, s[start:]...), '"')
}

// ending ends the stream: a failure before the first chunk is an ordinary error
// answer; otherwise the closing events, split before "data: [DONE]", or, after a
// failure, the error event. What was written before is in stored.Before when kept.
func (s *sseWriter) ending(r *http.Request, res *host.Result, err error) ending {
	s.release()
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
