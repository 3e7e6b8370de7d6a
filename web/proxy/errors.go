package proxy

import (
	"encoding/json"
	"net/http"
)

// Error is an answer of the proxy itself, never a host's: an HTTP status, a stable
// code and a message safe to show the app (it names hosts and failed checks, never a
// key or a credential). It is sent in the OpenAI error shape with the type
// "cocoon_proxy_error".
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// The codes of the proxy's own answers.
const (
	// CodeNotFound (404): a route the proxy does not serve.
	CodeNotFound = "not_found"
	// CodeInvalidRequest (413): the request body is unreadable or too large.
	CodeInvalidRequest = "invalid_request"
	// CodeHostNotVerified (502): no verified host can take the request.
	CodeHostNotVerified = "host_not_verified"
	// CodeHostError (502): the host failed after it may have accepted the request,
	// which the proxy does not send elsewhere because that could charge twice; or a
	// stream already partly released broke off.
	CodeHostError = "host_error"
	// CodeUnverified (502): the host's answer is not signed by its attested key.
	CodeUnverified = "unverified_response"
)

type errorBody struct {
	Error struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    string `json:"code"`
	} `json:"error"`
}

func (e *Error) body() []byte {
	var b errorBody
	b.Error.Message, b.Error.Type, b.Error.Code = e.Message, "cocoon_proxy_error", e.Code
	out, _ := json.Marshal(b) // strings only
	return out
}

// Write answers with e in the OpenAI error shape.
func (e *Error) Write(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	w.Write(append(e.body(), '\n'))
}

// event is e as the last event of a stream already under way.
func (e *Error) event() []byte { return []byte("data: " + string(e.body()) + "\n\n") }
