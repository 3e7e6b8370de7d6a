//go:build wasip1

package main

import (
	"sync"

	"github.com/cocoonhost/cocoon/abi/guest"
	"github.com/cocoonhost/cocoon/abi/guest/pre"
	"github.com/cocoonhost/cocoon/plugins/prompt-template/go/template"
)

// config is parsed once, in initialization, so that the host's snapshot holds it
// parsed and no request parses it again; a bad config fails each hook with a logged
// reason rather than the module's initialization.
var config = sync.OnceValues(func() (template.Config, error) {
	return template.ParseConfig(guest.Config())
})

func init() {
	_, _ = config() // its error is each hook's
	pre.Handle(func(req *guest.ChatRequest) (*guest.ChatRequest, error) {
		c, err := config()
		if err != nil {
			return nil, err
		}
		if err := c.Request(req); err != nil {
			return nil, err
		}
		return req, nil
	})
}
