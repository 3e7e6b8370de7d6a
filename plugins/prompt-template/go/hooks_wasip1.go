//go:build wasip1

package main

import (
	"sync"

	"github.com/cocoonhost/cocoon/abi/guest"
	"github.com/cocoonhost/cocoon/abi/guest/pre"
	"github.com/cocoonhost/cocoon/plugins/prompt-template/go/template"
)

// config is parsed on first use, so that a bad config fails the hook with a logged
// reason rather than the module's initialization.
var config = sync.OnceValues(func() (template.Config, error) {
	return template.ParseConfig(guest.Config())
})

func init() {
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
