package openai

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/cocoonhost/cocoon/host/backend"
)

const (
	// maxErrorBody caps what is read of an error response: the message is at its start.
	maxErrorBody = 64 << 10
	// maxMessage caps an upstream message shown to clients, in bytes.
	maxMessage = 512
)

// upstreamError decodes both error shapes of OpenAI-compatible servers:
// {"error":{"message":...,"type":...,"code":...}} (OpenAI, SGLang, llama.cpp, Ollama,
// vLLM since 0.10; llama.cpp and Ollama's native API also send "error" as a plain
// string) and vLLM's older top-level {"object":"error","message":...,"code":400}.
type upstreamError struct {
	Error   json.RawMessage `json:"error"`
	Object  string          `json:"object"`
	Message string          `json:"message"`
	Code    json.RawMessage `json:"code"`
}

type errorDetail struct {
	Message string          `json:"message"`
	Code    json.RawMessage `json:"code"`
}

// describe returns the message and the HTTP status in the error's code field (0 if it
// has none or a symbolic one such as "context_length_exceeded"); ok is false when e is
// no error at all.
func (e *upstreamError) describe() (msg string, status int, ok bool) {
	switch {
	case len(e.Error) > 0 && string(e.Error) != "null":
		var d errorDetail
		if json.Unmarshal(e.Error, &d) == nil {
			return d.Message, statusIn(d.Code), true
		}
		var s string
		_ = json.Unmarshal(e.Error, &s)
		return s, 0, true
	case e.Object == "error":
		return e.Message, statusIn(e.Code), true
	}
	return "", 0, false
}

// statusIn returns the HTTP status a JSON code field holds, or 0.
func statusIn(code json.RawMessage) int {
	var n int
	if json.Unmarshal(code, &n) != nil || n < 400 || n > 599 {
		return 0
	}
	return n
}

// codeOf maps an upstream HTTP status to the code of the backend boundary.
func codeOf(status int) backend.Code {
	switch status {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return backend.CodeInvalidRequest
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return backend.CodeUnavailable
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return backend.CodeTimeout
	}
	return backend.CodeUpstream
}

// statusError turns a response with a status other than 200 into an error carrying the
// upstream's own message, or the status when the body has none (an HTML page of a proxy
// is not shown).
func (b *Backend) statusError(c *call) error {
	status := c.resp.StatusCode
	data, err := io.ReadAll(io.LimitReader(c.resp.Body, maxErrorBody))
	if err != nil && c.ctx.Err() != nil {
		return c.ctx.Err()
	}
	var ue upstreamError
	msg := ""
	if json.Unmarshal(data, &ue) == nil {
		msg, _, _ = ue.describe()
	}
	if msg = sanitize(b.redact, msg); msg == "" {
		msg = fmt.Sprintf("inference server answered HTTP %d %s", status, http.StatusText(status))
	}
	return backend.Errorf(codeOf(status), "%s", msg)
}

// notAStream explains a 200 response to a chat completion that is no event stream: an
// error in JSON (some proxies answer so), or a server that ignored "stream": true.
func (b *Backend) notAStream(c *call, mediaType string) error {
	data, err := io.ReadAll(io.LimitReader(c.resp.Body, maxErrorBody))
	if err != nil && c.ctx.Err() != nil {
		return c.ctx.Err()
	}
	var ue upstreamError
	if json.Unmarshal(data, &ue) == nil {
		if msg, status, ok := ue.describe(); ok {
			return upstreamFailure(b.redact, msg, status)
		}
	}
	if mediaType == "" {
		return backend.Errorf(backend.CodeUpstream, "inference server answered without a Content-Type, not an event stream")
	}
	return backend.Errorf(backend.CodeUpstream, "inference server answered %s, not an event stream", mediaType)
}

// upstreamFailure is the error for an error object the server sent with status 200 or
// inside a stream, whose code field may hold the HTTP status it stands for.
func upstreamFailure(redact *strings.Replacer, msg string, status int) *backend.Error {
	code := backend.CodeUpstream
	if status != 0 {
		code = codeOf(status)
	}
	if msg = sanitize(redact, msg); msg == "" {
		msg = "inference server failed without a message"
	}
	return backend.Errorf(code, "%s", msg)
}

// sanitize makes an upstream message fit for clients: the API key and the server's
// address redacted (redact may be nil), control characters and invalid UTF-8 replaced,
// at most maxMessage bytes.
func sanitize(redact *strings.Replacer, msg string) string {
	if redact != nil {
		msg = redact.Replace(msg)
	}
	msg = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(msg, "\uFFFD"))
	msg = strings.TrimSpace(msg)
	if len(msg) <= maxMessage {
		return msg
	}
	cut := maxMessage - len("…")
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "…"
}

// netReason names the kind of a transport failure. Its text is not shown: it holds the
// server's address.
func netReason(err error) string {
	var (
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		recErr  tls.RecordHeaderError
		netErr  net.Error
	)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.As(err, &dnsErr):
		return "host name not found"
	case errors.As(err, &certErr), errors.As(err, &recErr):
		return "TLS failure"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "network timeout"
	}
	return "network error"
}

// mediaType returns the lower-case media type of a Content-Type header, or "".
func mediaType(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return mt
}
