// Package stream declares a module's cocoon_chunk and cocoon_end hooks (SPEC.md §3,
// §5): importing it makes the module export both, and [Handle] sets what they do. The
// host calls chunk with every text delta of a streamed answer, in order, on one instance
// of the module, then end once; the module may hold text back between calls, for
// instance while a word may still be completed by the next delta.
//
// A complete module that upper-cases the answer, holding nothing back:
//
//	package main
//
//	import (
//		"strings"
//
//		"github.com/cocoonhost/cocoon/abi/guest/stream"
//	)
//
//	func init() {
//		stream.Handle(
//			func(delta string) (string, error) { return strings.ToUpper(delta), nil },
//			func() (string, error) { return "", nil },
//		)
//	}
//
//	func main() {}
//
// The instance lives for the whole answer, often thousands of calls; the SDK collects
// garbage between calls (see package guest), so handlers may allocate freely.
package stream

import (
	"unsafe"

	"github.com/cocoonhost/cocoon/abi/guest/internal/hook"
)

var chunkHandler, endHandler hook.Func

// Handle makes chunk and end the module's stream hooks. chunk gets one delta (UTF-8
// text, never split inside a character) and returns the text to emit now, possibly
// empty; end returns whatever was held back. Returning an error from guest.Reject ends
// the stream with that error; any other error fails the request and is logged. Call
// Handle from an init function; a later call replaces the handlers.
func Handle(chunk func(delta string) (string, error), end func() (string, error)) {
	chunkHandler, endHandler = nil, nil
	if chunk != nil {
		chunkHandler = func(in []byte) ([]byte, error) {
			// Zero-copy both ways: the input buffer is never reused, and the host only
			// reads the output.
			out, err := chunk(unsafe.String(unsafe.SliceData(in), len(in)))
			return unsafe.Slice(unsafe.StringData(out), len(out)), err
		}
	}
	if end != nil {
		endHandler = func([]byte) ([]byte, error) {
			out, err := end()
			return unsafe.Slice(unsafe.StringData(out), len(out)), err
		}
	}
}
