// Command raw is a test module whose pre hook returns its input unchanged, as the very
// bytes it was given, and which links the post and stream hooks without registering
// handlers for them.
package main

import (
	"github.com/cocoonhost/cocoon/abi/guest/pre"

	_ "github.com/cocoonhost/cocoon/abi/guest/post"
	_ "github.com/cocoonhost/cocoon/abi/guest/stream"
)

func init() {
	pre.HandleRaw(func(req []byte) ([]byte, error) { return req, nil })
}

func main() {}
