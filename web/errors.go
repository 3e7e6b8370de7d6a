package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/settle/billing"
)

// apiError is the one error type of the HTTP boundary: what a client gets, written in
// the OpenAI error shape. Errors of the layers below (*host.Error, *backend.Error) are
// turned into it by toAPIError, and nothing else reaches a client.
type apiError struct {
	Status  int
	Type    string
	Code    string
	Message string
	// Reason refines Code, such as the abi code of a module that failed validation.
	Reason string
	// RetryAfter, when positive, is sent as the Retry-After header, in seconds. A 429
	// or 503 without one gets a default (see headers).
	RetryAfter int
}

// Retry-After of a 429 and a 503 that do not say: every such answer tells the client
// when to come back, so that SDKs back off instead of hammering or giving up.
const (
	defaultRetryAfter429 = 1
	defaultRetryAfter503 = 5
)

// headers are the headers that go with the error: Retry-After for a 429 or a 503.
func (e *apiError) headers() map[string]string {
	after := e.RetryAfter
	switch {
	case after > 0:
	case e.Status == http.StatusTooManyRequests:
		after = defaultRetryAfter429
	case e.Status == http.StatusServiceUnavailable:
		after = defaultRetryAfter503
	default:
		return nil
	}
	return map[string]string{"Retry-After": strconv.Itoa(after)}
}

func (e *apiError) Error() string { return e.Message }

// OpenAI error types used here.
const (
	typeInvalidRequest = "invalid_request_error"
	typeAuthentication = "authentication_error"
	typePermission     = "permission_error"
	typeNotFound       = "not_found_error"
	typeRateLimit      = "rate_limit_error"
	typeModule         = "module_error"
	typeBackend        = "backend_error"
	typeServer         = "server_error"
)

func errorf(status int, typ, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Type: typ, Code: code, Message: fmt.Sprintf(format, args...)}
}

func invalidf(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, typeInvalidRequest, "invalid_request", format, args...)
}

// rejectTypes are the OpenAI error types of the statuses a module may reject with
// (SPEC.md §4.2).
var rejectTypes = map[int]string{
	400: typeInvalidRequest, 403: "policy_violation", 409: "conflict", 413: "request_too_large",
	422: "unprocessable_entity", 429: typeRateLimit, 451: "unavailable_for_legal_reasons",
}

// settleTypes are the OpenAI error types of settlement errors by status.
var settleTypes = map[int]string{400: typeInvalidRequest, 401: typeAuthentication, 402: "insufficient_quota", 409: "conflict",
	422: "unprocessable_entity", 503: typeServer}

// toAPIError maps err to what the client is told. Errors of unknown type are internal:
// the client gets a generic message and the operator's log gets err.
func (s *Server) toAPIError(r *http.Request, err error) *apiError {
	var (
		ae *apiError
		he *host.Error
		be *backend.Error
		se *billing.Error
	)
	switch {
	case errors.As(err, &ae):
		return ae
	case r.Context().Err() != nil && errors.Is(context.Cause(r.Context()), errShuttingDown):
		// Whatever failed, it failed because Server.Shutdown cut the request.
		e := errorf(http.StatusServiceUnavailable, typeServer, "shutting_down", "the host is shutting down: retry on another host, or here in a moment")
		e.RetryAfter = 5
		return e
	case errors.As(err, &se):
		return &apiError{Status: se.Status(), Type: settleTypes[se.Status()], Code: se.Code, Message: se.Message}
	case errors.As(err, &he):
		e := &apiError{Status: he.Status, Type: typeModule, Code: string(he.Code), Message: he.Error(), Reason: he.Reason}
		switch he.Code {
		case host.CodeRejected:
			e.Type = rejectTypes[he.Status]
		case host.CodeInvalidRequest, host.CodeInvalidModule, host.CodeInvalidPipeline:
			e.Type = typeInvalidRequest
		}
		return e
	case errors.As(err, &be):
		status, typ := be.Status, typeBackend
		if status == 0 {
			status = http.StatusBadGateway
		}
		if be.Code == backend.CodeInvalidRequest {
			typ = typeInvalidRequest
		}
		if be.Unwrap() != nil {
			s.log.LogAttrs(r.Context(), slog.LevelWarn, "backend failure", slog.String("path", r.URL.Path), slog.Any("err", be.Unwrap()))
		}
		return &apiError{Status: status, Type: typ, Code: string(be.Code), Message: be.Error()}
	case errors.Is(err, errClientGone), errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// Nobody reads this answer; the status shows in metrics and logs.
		return errorf(499, typeInvalidRequest, "cancelled", "the client closed the request")
	}
	s.log.LogAttrs(r.Context(), slog.LevelError, "internal error", slog.String("path", r.URL.Path), slog.Any("err", err))
	return errorf(http.StatusInternalServerError, typeServer, "internal_error", "internal error: the operator's log has the details")
}

// errorBody is the OpenAI error shape.
type errorBody struct {
	Error errorObject `json:"error"`
}

type errorObject struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    string  `json:"code"`
	Reason  string  `json:"reason,omitempty"`
}

func (e *apiError) body() errorBody {
	return errorBody{errorObject{Message: e.Message, Type: e.Type, Code: e.Code, Reason: e.Reason}}
}

// writeError answers with err in the OpenAI error shape, with its Retry-After. On the
// chat routes of an attesting host the answer is signed, as every answer there is
// (writeEnding).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	s.writeEnding(w, r, ending{stored: errorResponse(s.toAPIError(r, err))})
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", contentTypeJSON)
	w.WriteHeader(status)
	w.Write(encodeJSON(v)) // a failed write means the client is gone; nothing to tell it
}

// encodeJSON is v as the host sends JSON: not HTML-escaped, and a newline after it.
// It is for values that always encode (strings, numbers, and structs of them).
func encodeJSON(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	return b.Bytes()
}
