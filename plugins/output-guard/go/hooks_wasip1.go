//go:build wasip1

package main

import (
	"sync"

	"github.com/cocoonhost/cocoon/abi/guest"
	"github.com/cocoonhost/cocoon/abi/guest/post"
	"github.com/cocoonhost/cocoon/abi/guest/stream"
	"github.com/cocoonhost/cocoon/plugins/output-guard/go/guard"
)

// config is parsed once, in initialization, so that the host's snapshot holds it
// parsed and no request parses it again; a bad config fails each hook with a logged
// reason rather than the module's initialization.
var config = sync.OnceValues(func() (guard.Config, error) {
	return guard.ParseConfig(guest.Config())
})

// answer is the stream of this instance: the host makes a fresh instance per request.
var answer *guard.Stream

func init() {
	_, _ = config() // its error is each hook's
	post.Handle(func(resp *guest.ChatResponse) (*guest.ChatResponse, error) {
		c, err := config()
		if err != nil {
			return nil, err
		}
		c.Response(resp)
		return resp, nil
	})
	stream.Handle(func(delta string) (string, error) {
		s, err := started()
		if err != nil {
			return "", err
		}
		return s.Chunk(delta), nil
	}, func() (string, error) {
		s, err := started()
		if err != nil {
			return "", err
		}
		return s.End(), nil
	})
}

func started() (*guard.Stream, error) {
	if answer == nil {
		c, err := config()
		if err != nil {
			return nil, err
		}
		answer = c.NewStream()
	}
	return answer, nil
}
