package guest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/cocoonhost/cocoon/abi/guest/internal/host"
)

// ErrNoConfig is returned by [ConfigJSON] and [DecodeConfig] when the module has no
// config.
var ErrNoConfig = errors.New("config: the module has no config")

var config struct {
	sync.Mutex
	loaded bool
	b      []byte
}

// Config returns the module's config from the pipeline manifest: opaque bytes, usually
// JSON, at most 64 KiB; nil if the pipeline sets none. The bytes are read from the host
// on the first call and cached, so later calls are free. The caller must not modify them.
func Config() []byte {
	config.Lock()
	defer config.Unlock()
	if !config.loaded {
		config.b = host.Config()
		config.loaded = true
	}
	return config.b
}

// ConfigJSON decodes the module's config into v with [DecodeConfig].
func ConfigJSON(v any) error {
	return DecodeConfig(Config(), v)
}

// DecodeConfig decodes the JSON config b into v strictly: a member v has no field for,
// a value of the wrong type, or anything after the JSON value is an error whose message
// names the member, fit for the module's log. Empty b returns [ErrNoConfig] and leaves v
// unchanged. It is exported so that a module's logic can parse configs in native tests
// exactly as the module does.
func DecodeConfig(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return ErrNoConfig
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("config: %s", describeJSONError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("config: unexpected data after the JSON value")
	}
	return nil
}

// describeJSONError rewords encoding/json errors without Go type names.
func describeJSONError(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return fmt.Sprintf("want %s, got %s", jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
		}
		return fmt.Sprintf("%s: want %s, got %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("invalid JSON at byte %d: %s", syntaxErr.Offset, strings.TrimPrefix(syntaxErr.Error(), "json: "))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "invalid JSON: unexpected end of input"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// jsonKind names a Go reflect kind as the JSON value it decodes from.
func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "a number"
	}
	return kind
}
