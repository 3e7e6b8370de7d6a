// Package guest is the Go SDK for writing Cocoon modules: WebAssembly programs that the
// Cocoon host runs before (pre) or after (post) the model, under ABI v1 (abi/SPEC.md).
//
// A module is a plain Go function registered from an init function. The SDK handles the
// ABI: memory handed to and from the host, JSON, errors, rejections, logging and
// garbage collection. Which hooks a module implements is decided by which hook package
// it imports: [github.com/cocoonhost/cocoon/abi/guest/pre],
// [github.com/cocoonhost/cocoon/abi/guest/post] or
// [github.com/cocoonhost/cocoon/abi/guest/stream].
//
// A complete pre module that refuses requests mentioning a secret word:
//
//	package main
//
//	import (
//		"strings"
//
//		"github.com/cocoonhost/cocoon/abi/guest"
//		"github.com/cocoonhost/cocoon/abi/guest/pre"
//	)
//
//	func init() {
//		pre.Handle(func(req *guest.ChatRequest) (*guest.ChatRequest, error) {
//			for _, m := range req.Messages {
//				if strings.Contains(m.Content.Text(), "swordfish") {
//					return nil, guest.Reject(guest.StatusPolicy, "this pipeline does not discuss swordfish")
//				}
//			}
//			return req, nil
//		})
//	}
//
//	func main() {}
//
// Build it as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -buildmode=c-shared -ldflags=-buildid= -o mod.wasm .
//
// # Handlers
//
// A handler that returns an error made by [Reject] (possibly wrapped) rejects the request
// with that status and message. Any other error is logged at error level and fails the
// request with module_error; so does a panic, which the SDK recovers and logs with its
// stack. Handlers must be registered from init: in a c-shared build main never runs.
//
// # JSON round trip
//
// [ChatRequest], [ChatResponse] and the types inside them have fields only for the
// members modules commonly edit, and keep every other member, verbatim, in their Extra
// map, so a module passes on what it does not know (tools, response_format, vendor
// extensions). A known member whose value is null is kept in Extra too, as Go cannot
// tell null from a zero value; setting the field replaces it. A known member that was
// present is written back even when zero ("index":0, "content":""); one that was absent
// is written only when set. Encoding writes known members first, then Extra sorted by
// name: the output equals the input as a JSON value, not byte for byte. Decoding makes
// one pass over the document, which checks its syntax as it goes and accepts exactly
// the JSON encoding/json accepts; a malformed document fails with encoding/json's
// error. Encoding leaves <, > and & unescaped.
//
// # Native builds
//
// The package also compiles for the machine it is developed on, so a module's logic can
// be unit-tested with plain go test. There, [Log] writes to standard error and [Config]
// returns what [SetTestConfig] set; the hook exports exist only in wasip1 builds.
//
// # Memory and garbage collection
//
// A Go wasip1 program whose exports are called repeatedly does not run its garbage
// collector by itself between calls, so a post module serving a long stream (thousands of
// cocoon_chunk calls on one instance) would grow its memory until it hit its limit. After
// every hook call the SDK reads how many bytes the program has allocated since it last
// collected, and calls runtime.GC once that passes [GCThreshold]. Live memory therefore
// stays within about the threshold plus what the module keeps, at the cost of one
// collection per threshold allocated: a few milliseconds in wazero, which adds about 15%
// to a stream of 16 KiB deltas that each allocate two copies of the delta.
//
// The host starts every request's instance from the state the module's initialization
// left (SPEC.md §6), so work done there is done once per module, not per request. The
// SDK uses that: at the end of its initialization it runs a round trip of each chat type
// (filling encoding/json's caches), collects garbage, and leaves 2 MiB of free heap. A
// request whose allocations fit in that leaves the memory at its initial size, and the
// host can then reset the instance for the next request rather than instantiate the
// module again. The 2 MiB count against the module's memory limit. A module does well
// to do its own one-time work, such as parsing its config, in an init function too.
package guest
