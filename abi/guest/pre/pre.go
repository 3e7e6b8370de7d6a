// Package pre declares a module's cocoon_pre hook (SPEC.md §3, §5): importing it makes
// the module export cocoon_pre, and [Handle] or [HandleRaw] sets what it does. The hook
// gets the client's chat completion request and returns the request to send on, or
// rejects it.
//
// A complete module that puts a system prompt first:
//
//	package main
//
//	import (
//		"slices"
//
//		"github.com/cocoonhost/cocoon/abi/guest"
//		"github.com/cocoonhost/cocoon/abi/guest/pre"
//	)
//
//	func init() {
//		pre.Handle(func(req *guest.ChatRequest) (*guest.ChatRequest, error) {
//			system := guest.Message{Role: "system", Content: guest.TextContent("Answer in French.")}
//			req.Messages = slices.Insert(req.Messages, 0, system)
//			return req, nil
//		})
//	}
//
//	func main() {}
package pre

import (
	"github.com/cocoonhost/cocoon/abi/guest"
	"github.com/cocoonhost/cocoon/abi/guest/internal/hook"
)

var handler hook.Func

// Handle makes f the module's pre hook. f gets the decoded request and returns the
// request to send on; members the types have no field for are passed through (see
// [guest.ChatRequest]). Returning an error from [guest.Reject] rejects the request; any
// other error fails it and is logged. A module must not change the request's stream
// member: the host restores the client's value. Call Handle from an init function; a
// later call replaces the handler.
func Handle(f func(req *guest.ChatRequest) (*guest.ChatRequest, error)) {
	handler = hook.JSON("request", f)
}

// HandleRaw makes f the module's pre hook on raw bytes: f gets the request JSON and
// returns the request JSON to send on, for modules that want their own JSON handling.
// Errors are treated as with [Handle].
func HandleRaw(f func(req []byte) ([]byte, error)) {
	handler = f
}
