//go:build wasip1

package main

import (
	"sync"

	"github.com/cocoonhost/cocoon/abi/guest"
	"github.com/cocoonhost/cocoon/abi/guest/pre"
	"github.com/cocoonhost/cocoon/plugins/pii-redactor/go/redact"
)

// config is parsed on first use, so that a bad config fails the hook with a logged
// reason rather than the module's initialization.
var config = sync.OnceValues(func() (redact.Config, error) {
	return redact.ParseConfig(guest.Config())
})

func init() {
	pre.Handle(func(req *guest.ChatRequest) (*guest.ChatRequest, error) {
		c, err := config()
		if err != nil {
			return nil, err
		}
		c.Request(req)
		return req, nil
	})
}
