package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// readBody reads r's body, at most limit bytes; a longer body is a 413.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	return readBodyWithin(w, r, limit, 0)
}

// readBodyWithin is readBody with a deadline: the whole body must arrive within
// timeout (none if 0), or the answer is a 408. The read deadline is cleared when it
// returns: left set, it would cancel the request when it passed (net/http's watch for
// a closed connection reads under it).
func readBodyWithin(w http.ResponseWriter, r *http.Request, limit int64, timeout time.Duration) ([]byte, error) {
	if timeout > 0 {
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Now().Add(timeout))
		defer rc.SetReadDeadline(time.Time{})
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, errorf(http.StatusRequestEntityTooLarge, typeInvalidRequest, "body_too_large",
			"the request body is over the limit of %d bytes", limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		within := "the host's read timeout"
		if timeout > 0 {
			within = timeout.String()
		}
		return nil, errorf(http.StatusRequestTimeout, typeInvalidRequest, "request_timeout",
			"the request body did not arrive within %s", within)
	case err != nil:
		return nil, invalidf("reading the request body: %v", err)
	}
	return b, nil
}

// decodeStrict decodes exactly one JSON value from b into v, refusing unknown members
// and trailing data, with errors that say where the problem is (what names the body in
// messages, such as "upload").
func decodeStrict(b []byte, v any, what string) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidf("%s: %v", what, jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalidf("%s: unexpected data after the JSON value", what)
	}
	return nil
}

// jsonProblem words an encoding/json error for a client.
func jsonProblem(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("empty body: expected JSON")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("invalid JSON: unexpected end of input")
	case errors.As(err, &syntax):
		return fmt.Errorf("invalid JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Errorf("JSON %s where an object is required", typ.Value)
		}
		return fmt.Errorf("JSON %s for field %q", typ.Value, typ.Field)
	}
	// encoding/json has no error type for unknown fields; its wording is stable.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Errorf("unknown member %s", name)
	}
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}
