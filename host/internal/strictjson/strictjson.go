// Package strictjson decodes client JSON strictly and words encoding/json's errors for
// the client. It is shared by package host and package host/manifest, which must build
// without the sandbox (GOOS=js, for the reviewer's page).
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Decode decodes one JSON value from b into v, refusing unknown members and anything
// after the value. Its errors name the problem (Problem's wording), never Go types.
func Decode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty body: expected a JSON object")
		}
		return decodeProblem(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// decodeProblem words a decoding error of Decode for the client.
func decodeProblem(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if errors.As(err, &syntax) || errors.As(err, &typ) {
		return Problem(err)
	}
	// encoding/json has no error type for these two; its wording is stable.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Errorf("unknown member %s", name)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("invalid JSON: unexpected end of input")
	}
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}

// Problem shortens encoding/json's errors to what helps a client or a module author.
func Problem(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Errorf("invalid JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Errorf("JSON %s where an object is required", typ.Value)
		}
		return fmt.Errorf("JSON %s for field %q", typ.Value, typ.Field)
	}
	return fmt.Errorf("invalid JSON: %v", err)
}
