package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/cocoonhost/cocoon/host"
)

// readBody reads r's body, at most limit bytes; a longer body is a 413.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return nil, bodyError(err, limit)
	}
	return b, nil
}

// bodyError words an error of reading a body of at most limit bytes: a 413 for a
// longer body; errors that are already for the client pass as they are.
func bodyError(err error, limit int64) error {
	var (
		tooBig *http.MaxBytesError
		ae     *apiError
		he     *host.Error
	)
	switch {
	case errors.As(err, &tooBig):
		return bodyTooLarge(limit)
	case errors.As(err, &ae), errors.As(err, &he):
		return err
	}
	return invalidf("reading the request body: %v", err)
}

func bodyTooLarge(limit int64) *apiError {
	return errorf(http.StatusRequestEntityTooLarge, typeInvalidRequest, "body_too_large",
		"the request body is over the limit of %d bytes", limit)
}

// decodeLoose decodes b into v, ignoring unknown members: an OpenAI request carries
// many fields the host passes on without reading.
func decodeLoose(b []byte, v any, what string) error {
	if err := json.Unmarshal(b, v); err != nil {
		return invalidf("%s: %v", what, jsonProblem(err))
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
