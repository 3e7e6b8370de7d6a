// Package backend defines what the host needs from an inference backend: streaming chat
// generation with token usage, cancellation, model listing and health. Implementations:
// the embedded pure-Go engine (package embedded), an adapter for OpenAI-compatible GPU
// servers (package openai), and out-of-process backends (package plugin).
package backend

import (
	"context"
	"fmt"
)

// Message is one chat message as a backend sees it: the text of its content.
type Message struct {
	Role    string
	Content string
}

// Request is one chat completion for a backend, decoded from the request JSON that left
// the pipeline's pre stage.
type Request struct {
	Model    string
	Messages []Message
	// MaxTokens caps the completion; 0 means the backend's default.
	MaxTokens int
	// Temperature, TopP and Seed are nil when the client did not set them.
	Temperature *float64
	TopP        *float64
	Seed        *int64
	// Stop sequences end generation; the stop text itself is not emitted.
	Stop []string
	// Raw is the request JSON as the pre stage left it. Backends that forward requests
	// (an OpenAI-compatible server) send it on, so fields the host does not interpret
	// reach the server; the other fields above take precedence where they differ.
	Raw []byte
}

// Usage counts tokens as the backend's tokenizer does.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	// Estimated is set when the backend did not report the counts and they were
	// estimated locally (see the backend's documentation for how).
	Estimated bool
}

// Result is how a generation ended. Generate returns it also when it fails, with the
// usage of what was produced before the failure, so partial work can be billed.
type Result struct {
	// FinishReason is "stop" (end of text or a stop sequence), "length" (MaxTokens or
	// the context window) or "cancelled".
	FinishReason string
	Usage        Usage
	// Model is the model that answered.
	Model string
}

// Model describes one model a backend serves.
type Model struct {
	ID      string
	OwnedBy string
	// ContextLength is the model's context window in tokens, 0 if unknown.
	ContextLength int
}

// Backend generates chat completions. Implementations are safe for concurrent use.
type Backend interface {
	// Generate produces the assistant's answer to req, calling emit with each text
	// delta in order. Deltas never split a UTF-8 sequence. It stops promptly when ctx
	// is done (returning ctx.Err()) or emit fails (returning emit's error), with a
	// Result whose FinishReason is "cancelled". Its own failures are *Error; any other
	// error is an internal failure whose text must not reach clients.
	Generate(ctx context.Context, req *Request, emit func(delta string) error) (Result, error)
	// Models lists the models the backend serves.
	Models(ctx context.Context) ([]Model, error)
	// Health returns nil if the backend can serve now.
	Health(ctx context.Context) error
	// Close releases the backend. Generations in flight fail.
	Close() error
}

// idleKey is the context key of the idle hook (WithIdle).
type idleKey struct{}

// WithIdle returns a copy of ctx that carries idle, for a caller of Generate that
// buffers what emit gets to send it on in fewer writes (an HTTP server that would
// otherwise flush once per token). A backend that honours it calls idle on the
// goroutine that calls emit: before the first time it waits for its server, after
// which it calls it before every wait and once after its last emit unless Generate
// returns without waiting again. So from the first call on, whatever emit got is sent
// on in time if the caller holds it until the next call of idle or until Generate
// returns; until that first call the caller must send each delta on at once,
// which is what it gets from a backend that never calls idle (one that produces
// tokens itself, one tokens a process away). An error from idle stops the generation
// as an error from emit does, and Generate returns it. Time spent in idle is the
// caller's, not the server's silence.
func WithIdle(ctx context.Context, idle func() error) context.Context {
	return context.WithValue(ctx, idleKey{}, idle)
}

// IdleHook returns the idle hook that ctx carries (WithIdle), nil if none.
func IdleHook(ctx context.Context) func() error {
	idle, _ := ctx.Value(idleKey{}).(func() error)
	return idle
}

// Code says why a backend failed.
type Code string

// Backend error codes.
const (
	// CodeInvalidRequest: the request cannot be served as written (unknown model,
	// prompt longer than the context window, bad parameters).
	CodeInvalidRequest Code = "invalid_request"
	// CodeUnavailable: the backend cannot serve now (down, overloaded, restarting).
	CodeUnavailable Code = "unavailable"
	// CodeTimeout: the backend did not answer in time (first byte or idle timeout).
	CodeTimeout Code = "timeout"
	// CodeUpstream: the backend failed while generating.
	CodeUpstream Code = "upstream_error"
)

// Error is the one error type of the backend boundary. Message is safe to show to a
// client: it never holds credentials, internal addresses or stack traces.
type Error struct {
	Code    Code
	Message string
	// Status is the HTTP status a server answers with.
	Status int
	// cause is the underlying error, for operators' logs (Unwrap); it may hold
	// internal detail and is never part of Message.
	cause error
}

func (e *Error) Error() string { return fmt.Sprintf("backend: %s", e.Message) }

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.cause }

// WithCause returns a copy of e that wraps cause for operators' logs.
func (e *Error) WithCause(cause error) *Error {
	c := *e
	c.cause = cause
	return &c
}

// Errorf returns an *Error with the status that fits code.
func Errorf(code Code, format string, args ...any) *Error {
	status := map[Code]int{CodeInvalidRequest: 400, CodeUnavailable: 503, CodeTimeout: 504, CodeUpstream: 502}[code]
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Status: status}
}
