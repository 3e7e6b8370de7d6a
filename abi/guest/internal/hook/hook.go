// Package hook runs a module's handlers under the ABI's rules (SPEC.md §3): it owns the
// memory the host writes input to and reads output from, turns errors, rejections and
// panics into a hook's result, and collects garbage between calls. The hook packages
// pre, post and stream export the hooks and call Run.
package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/cocoonhost/cocoon/abi/guest"
	"github.com/cocoonhost/cocoon/abi/guest/internal/host"
)

// Func is a handler on a hook's raw input and output.
type Func func(in []byte) (out []byte, err error)

// maxStackLog caps the stack trace logged with a panic: the log limit is shared with
// everything else the module logs in the request, and exceeding it would report
// log_limit instead of the panic.
const maxStackLog = 2048

// Call runs f on in for the hook named export and reports whether it succeeded. A nil
// f, an error, a rejection or a panic fail the call; all but a valid rejection are
// logged at error level, naming export.
func Call(export string, in []byte, f Func) (out []byte, ok bool) {
	if f == nil {
		guest.Errorf("%s: no handler is registered; register one from an init function of package main", export)
		return nil, false
	}
	defer func() {
		if v := recover(); v != nil {
			guest.Errorf("%s: panic: %v\n%s", export, v, truncate(debug.Stack(), maxStackLog))
			out, ok = nil, false
		}
	}()
	out, err := f(in)
	if err != nil {
		fail(export, err)
		return nil, false
	}
	return out, true
}

func fail(export string, err error) {
	var rej *guest.Rejection
	if !errors.As(err, &rej) {
		guest.Errorf("%s: %v", export, err)
		return
	}
	if !rej.Allowed() {
		guest.Errorf("%s: %v: the host only accepts statuses 400, 403, 409, 413, 422, 429 and 451", export, err)
		return
	}
	host.Reject(int32(rej.Status), rej.Message)
}

// truncate cuts b to at most n bytes, at the end of a line when it has to cut.
func truncate(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	b = b[:n]
	for i := len(b) - 1; i > 0; i-- {
		if b[i] == '\n' {
			return b[:i]
		}
	}
	return b
}

// JSON adapts f, a handler on a decoded JSON document of type T (guest.ChatRequest or
// guest.ChatResponse), to a Func. what names the document in error messages.
func JSON[T any, PT interface {
	*T
	json.Unmarshaler
}](what string, f func(*T) (*T, error)) Func {
	return func(in []byte) ([]byte, error) {
		var v T
		// UnmarshalJSON checks the syntax as it decodes: no validation pass first.
		if err := PT(&v).UnmarshalJSON(in); err != nil {
			return nil, fmt.Errorf("decoding the %s: %w", what, err)
		}
		out, err := f(&v)
		if err != nil {
			return nil, err
		}
		if out == nil {
			return nil, fmt.Errorf("the handler returned no %s and no error", what)
		}
		return guest.Marshal(out)
	}
}
