// Package template is the logic of the prompt-template module: it puts the pipeline's
// system prompt first, decides what happens to the client's own system messages, and
// wraps user messages in a template.
package template

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cocoonhost/cocoon/abi/guest"
)

// Placeholder is replaced by a user message's text in the user template.
const Placeholder = "{{content}}"

// Config is a parsed module config.
type Config struct {
	// System, when not empty, is inserted as the first message, with role "system".
	System string `json:"system"`
	// OnExisting says what happens to client messages with role "system" or
	// "developer": "keep" them after the injected one (the default), "drop" them, or
	// "reject" the request with status 403.
	OnExisting string `json:"on_existing"`
	// UserTemplate, when not empty, replaces every text of every message with role
	// "user": each Placeholder in it is replaced by the original text.
	UserTemplate string `json:"user_template"`
}

// Values of Config.OnExisting.
const (
	Keep   = "keep"
	Drop   = "drop"
	Reject = "reject"
)

// Client-visible rejections.
const (
	RejectSystemMessage = "this pipeline does not accept system messages"
	RejectNoMessages    = "request has no messages left after removing system messages"
)

// ParseConfig parses the module's JSON config,
//
//	{"system": "You are a storyteller.", "on_existing": "keep", "user_template": "Write a story about: {{content}}"}
//
// strictly: unknown members, an on_existing other than "keep", "drop" or "reject" (""
// means "keep"), and a user_template without {{content}} are errors. A module without
// config is an error too: a template module with nothing to do is a mistake.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	if err := guest.DecodeConfig(b, &c); err != nil {
		return Config{}, err
	}
	switch c.OnExisting {
	case "":
		c.OnExisting = Keep
	case Keep, Drop, Reject:
	default:
		return Config{}, fmt.Errorf("config: on_existing is %q; want \"keep\", \"drop\" or \"reject\"", c.OnExisting)
	}
	if c.UserTemplate != "" && !strings.Contains(c.UserTemplate, Placeholder) {
		return Config{}, errors.New("config: user_template does not contain {{content}}")
	}
	return c, nil
}

// Request applies c to req, in this order: reject the request if c.OnExisting is
// "reject" and it has a system or developer message; drop those messages if it is
// "drop" (rejecting with status 400 a request left without messages and without a
// system prompt to add); apply the user template; insert the system prompt. Everything
// else in req is left as it is. Rejections are *guest.Rejection errors.
func (c Config) Request(req *guest.ChatRequest) error {
	switch c.OnExisting {
	case Reject:
		if slices.ContainsFunc(req.Messages, isSystem) {
			return guest.Reject(guest.StatusPolicy, RejectSystemMessage)
		}
	case Drop:
		req.Messages = slices.DeleteFunc(req.Messages, isSystem)
		if len(req.Messages) == 0 && c.System == "" {
			return guest.Reject(guest.StatusBadRequest, RejectNoMessages)
		}
	}
	if c.UserTemplate != "" {
		for i := range req.Messages {
			if req.Messages[i].Role == "user" {
				req.Messages[i].Content.MapText(c.apply)
			}
		}
	}
	if c.System != "" {
		system := guest.Message{Role: "system", Content: guest.TextContent(c.System)}
		req.Messages = slices.Insert(req.Messages, 0, system)
	}
	return nil
}

// apply returns the user template with text in place of every placeholder. Text is
// inserted once: placeholders inside text are not expanded.
func (c Config) apply(text string) string {
	return strings.ReplaceAll(c.UserTemplate, Placeholder, text)
}

func isSystem(m guest.Message) bool {
	return m.Role == "system" || m.Role == "developer"
}
