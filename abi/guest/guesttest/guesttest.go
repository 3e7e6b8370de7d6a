// Package guesttest runs a module's logic natively against JSON test vectors, so the
// same vectors can check implementations of one module in several languages.
//
// A vector file is a JSON array of cases. Every case has a "name", a "hook" ("pre",
// "post" or "stream") and optionally a "config" (any JSON; omitted means the module has
// no config). Then, by hook:
//
//	{"hook": "pre",    "input": <request>,  "want": <request>}
//	{"hook": "post",   "input": <response>, "want": <response>}
//	{"hook": "stream", "chunks": ["Oh da", "rn it"], "want": "Oh *** it"}
//
// and instead of "want", a case may expect the hook to reject the request,
// "reject": {"status": 403, "message": "..."}, or to fail, "error": true. Requests and
// responses compare as JSON values; stream output compares as the exact concatenation of
// every cocoon_chunk output and the cocoon_end output.
package guesttest

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/abi/guest"
)

// Case is one test vector.
type Case struct {
	Name   string          `json:"name"`
	Config json.RawMessage `json:"config,omitempty"`
	Hook   string          `json:"hook"`
	Input  json.RawMessage `json:"input,omitempty"`
	Chunks []string        `json:"chunks,omitempty"`
	Want   json.RawMessage `json:"want,omitempty"`
	Reject *Rejection      `json:"reject,omitempty"`
	Error  bool            `json:"error,omitempty"`
	// HostRefuses marks a pre case whose Want holds members a host does not serve
	// (SPEC.md §5: a non-text content part, tools, logit_bias...). The module must
	// still pass them through unchanged, which Run checks; a host fails such a request
	// with invalid_output naming one of them, which the sandboxed tests check.
	HostRefuses bool `json:"host_refuses,omitempty"`
}

// Rejection is the rejection a case expects.
type Rejection struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
}

// Module is a module's logic as native functions of the config bytes (nil when a case
// has no config). Set the hooks the module implements; a case for a hook left nil fails.
type Module struct {
	Pre  func(config []byte, req *guest.ChatRequest) (*guest.ChatRequest, error)
	Post func(config []byte, resp *guest.ChatResponse) (*guest.ChatResponse, error)
	// Stream starts one streamed answer, as a fresh instance of the module does.
	Stream func(config []byte) (chunk func(delta string) (string, error), end func() (string, error), err error)
}

// Load reads a vector file.
func Load(t testing.TB, path string) []Case {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var cases []Case
	if err := dec.Decode(&cases); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cases
}

// Run runs every case of the vector file at path against m, each as a subtest.
func Run(t *testing.T, path string, m Module) {
	cases := Load(t, path)
	if len(cases) == 0 {
		t.Fatalf("%s has no cases", path)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) { c.run(t, m) })
	}
}

func (c Case) run(t *testing.T, m Module) {
	var config []byte
	if len(c.Config) > 0 {
		config = c.Config
	}
	var got any // JSON value or stream text
	var err error
	switch {
	case c.Hook == "pre" && m.Pre != nil:
		var req guest.ChatRequest
		decode(t, c.Input, &req)
		var out *guest.ChatRequest
		if out, err = m.Pre(config, &req); err == nil {
			got = encode(t, out)
		}
	case c.Hook == "post" && m.Post != nil:
		var resp guest.ChatResponse
		decode(t, c.Input, &resp)
		var out *guest.ChatResponse
		if out, err = m.Post(config, &resp); err == nil {
			got = encode(t, out)
		}
	case c.Hook == "stream" && m.Stream != nil:
		got, err = stream(config, c.Chunks, m)
	default:
		t.Fatalf("the module has no %q hook", c.Hook)
	}
	c.check(t, got, err)
}

func (c Case) check(t *testing.T, got any, err error) {
	var rej *guest.Rejection
	switch {
	case c.Error:
		if err == nil || errors.As(err, &rej) {
			t.Errorf("got %v, want the hook to fail", describe(got, err))
		}
	case c.Reject != nil:
		if !errors.As(err, &rej) || rej.Status != c.Reject.Status || rej.Message != c.Reject.Message {
			t.Errorf("got %v, want a rejection %d %q", describe(got, err), c.Reject.Status, c.Reject.Message)
		}
	case err != nil:
		t.Errorf("hook failed: %v", err)
	default:
		var want any
		if err := json.Unmarshal(c.Want, &want); err != nil {
			t.Fatalf("want: %v", err)
		}
		if !reflect.DeepEqual(got, want) {
			g, _ := guest.Marshal(got)
			w, _ := guest.Marshal(want)
			t.Errorf("got  %s\nwant %s", g, w)
		}
	}
}

func stream(config []byte, chunks []string, m Module) (any, error) {
	chunk, end, err := m.Stream(config)
	if err != nil {
		return nil, err
	}
	var text strings.Builder
	for _, d := range chunks {
		out, err := chunk(d)
		if err != nil {
			return nil, err
		}
		text.WriteString(out)
	}
	out, err := end()
	if err != nil {
		return nil, err
	}
	return text.String() + out, nil
}

func describe(got any, err error) any {
	if err != nil {
		return err
	}
	b, _ := guest.Marshal(got)
	return string(b)
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("input: %v", err)
	}
}

// encode returns v as a generic JSON value, for comparison with the case's want.
func encode(t *testing.T, v any) any {
	t.Helper()
	b, err := guest.Marshal(v)
	if err != nil {
		t.Fatalf("encoding the output: %v", err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("the output is not JSON: %v", err)
	}
	return out
}
