// Command typed is a test module with every hook. Its pre hook acts on the text of the
// last message: "reject", "reject-teapot", "error", "panic", "config", "log" and "nil"
// exercise the SDK's failure paths, anything else upper-cases every text. Its post hook
// appends "!" to every choice's text; its stream hook upper-cases deltas, fails on the
// deltas "error" and "reject", and ends with "<end>".
package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cocoonhost/cocoon/abi/guest"
	"github.com/cocoonhost/cocoon/abi/guest/post"
	"github.com/cocoonhost/cocoon/abi/guest/pre"
	"github.com/cocoonhost/cocoon/abi/guest/stream"
)

func init() {
	pre.Handle(preHook)
	post.Handle(func(resp *guest.ChatResponse) (*guest.ChatResponse, error) {
		for i := range resp.Choices {
			resp.Choices[i].Message.Content.MapText(func(s string) string { return s + "!" })
		}
		return resp, nil
	})
	stream.Handle(func(delta string) (string, error) {
		switch delta {
		case "error":
			return "", errors.New("bad delta")
		case "reject":
			return "", guest.Reject(guest.StatusUnavailableForLegal, "no")
		}
		return strings.ToUpper(delta), nil
	}, func() (string, error) {
		return "<end>", nil
	})
}

func preHook(req *guest.ChatRequest) (*guest.ChatRequest, error) {
	var last string
	if n := len(req.Messages); n > 0 {
		last = req.Messages[n-1].Content.Text()
	}
	switch last {
	case "reject":
		return nil, fmt.Errorf("checking: %w", guest.Reject(guest.StatusPolicy, "blocked: café"))
	case "reject-teapot":
		return nil, guest.Reject(418, "teapot")
	case "error":
		return nil, errors.New("boom")
	case "panic":
		panic("kaboom")
	case "nil":
		return nil, nil
	case "log":
		guest.Debugf("d%d", 0)
		guest.Infof("i%d", 1)
		guest.Warnf("w%d", 2)
		guest.Errorf("e%d", 3)
		return req, nil
	case "config":
		var cfg struct {
			Greeting string `json:"greeting"`
		}
		if err := guest.ConfigJSON(&cfg); err != nil {
			return nil, err
		}
		req.Messages = append(req.Messages, guest.Message{Role: "assistant", Content: guest.TextContent(cfg.Greeting)})
		return req, nil
	}
	for i := range req.Messages {
		req.Messages[i].Content.MapText(strings.ToUpper)
	}
	return req, nil
}

func main() {}
