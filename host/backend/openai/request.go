package openai

import (
	"cmp"
	"encoding/json"

	"github.com/cocoonhost/cocoon/host/backend"
)

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// chatBody builds the body of POST /chat/completions from req.Raw, with the typed fields
// of req authoritative (a typed field left unset removes the member from Raw), "n"
// removed (one answer per request) and streaming with usage forced. It returns the model
// asked for.
func (b *Backend) chatBody(req *backend.Request) ([]byte, string, error) {
	if len(req.Messages) == 0 {
		return nil, "", backend.Errorf(backend.CodeInvalidRequest, "the request has no messages")
	}
	var fields map[string]json.RawMessage
	if len(req.Raw) > 0 {
		if err := json.Unmarshal(req.Raw, &fields); err != nil || fields == nil {
			return nil, "", backend.Errorf(backend.CodeInvalidRequest, "the request is not a JSON object")
		}
	} else {
		fields = map[string]json.RawMessage{}
	}
	messages := make([]message, len(req.Messages))
	for i, m := range req.Messages {
		messages[i] = message(m)
	}
	model := cmp.Or(b.cfg.overrideModel, req.Model, b.cfg.defaultModel)
	var err error
	set := func(key string, v any, present bool) {
		if !present {
			delete(fields, key)
			return
		}
		raw, merr := json.Marshal(v)
		if merr != nil && err == nil {
			err = backend.Errorf(backend.CodeInvalidRequest, "%s is not a finite number", key)
		}
		fields[key] = raw
	}
	set("model", model, model != "")
	set("messages", messages, true)
	// max_completion_tokens is OpenAI's newer name for max_tokens; every server
	// takes max_tokens, and sending both invites a conflict.
	delete(fields, "max_completion_tokens")
	set("max_tokens", req.MaxTokens, req.MaxTokens > 0)
	set("temperature", req.Temperature, req.Temperature != nil)
	set("top_p", req.TopP, req.TopP != nil)
	set("seed", req.Seed, req.Seed != nil)
	set("stop", req.Stop, len(req.Stop) > 0)
	delete(fields, "n")
	if err != nil {
		return nil, "", err
	}
	fields["stream"] = json.RawMessage("true")
	// Keep the client's other stream options (vLLM's continuous_usage_stats).
	var opts map[string]json.RawMessage
	if json.Unmarshal(fields["stream_options"], &opts) != nil || opts == nil {
		opts = map[string]json.RawMessage{}
	}
	opts["include_usage"] = json.RawMessage("true")
	set("stream_options", opts, true)
	body, err := json.Marshal(fields)
	if err != nil { // every member is valid JSON, so this is not expected
		return nil, "", backend.Errorf(backend.CodeInvalidRequest, "the request cannot be encoded")
	}
	return body, model, nil
}
