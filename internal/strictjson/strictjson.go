// Package strictjson decodes client JSON strictly and words encoding/json's errors for
// the client or operator, never naming Go types. It is shared by package host, package
// host/manifest (which must build without the sandbox: GOOS=js, for the reviewer's
// page) and the commands' configuration files.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
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
		return DecodeError(err, v)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// DecodeError words an error of a json.Decoder's Decode into v for the client, as
// Decode does, for callers that decode with checks of their own around it.
func DecodeError(err error, v any) error {
	into := reflect.TypeOf(v)
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if errors.As(err, &syntax) || errors.As(err, &typ) {
		return problem(err, into)
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
func Problem(err error) error { return problem(err, nil) }

// problem is Problem for a value of type into (nil when unknown), whose Go names it
// keeps out of member paths.
func problem(err error, into reflect.Type) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Errorf("invalid JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Errorf("JSON %s where an object is required", typ.Value)
		}
		return fmt.Errorf("JSON %s for field %q", typ.Value, jsonPath(into, typ.Field))
	}
	return fmt.Errorf("invalid JSON: %v", err)
}

// jsonPath is the member path of an UnmarshalTypeError's Field in t, the type decoded
// into, without the Go names encoding/json puts in it: an embedded struct's, as in
// "billingConfig.prices.x". With t nil, it is Field as it is.
func jsonPath(t reflect.Type, field string) string {
	if t == nil {
		return field
	}
	var kept []string
	for _, name := range strings.Split(field, ".") {
		for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map) {
			t = t.Elem()
		}
		var next reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			for i := range t.NumField() {
				f := t.Field(i)
				tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				if f.Anonymous && tag == "" && f.Name == name {
					next = f.Type
					name = "" // a Go name: not a member
					break
				}
				if tag == name || tag == "" && f.Name == name {
					next = f.Type
					break
				}
			}
		}
		if name != "" {
			kept = append(kept, name)
		}
		t = next
	}
	return strings.Join(kept, ".")
}
