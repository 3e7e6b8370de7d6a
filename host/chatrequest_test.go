package host

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCheckChatRequest(t *testing.T) {
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name, request string
		want          string // the whole message; "" for a request that passes
	}{
		// Passes.
		{"minimal", `{` + msgs + `}`, ""},
		{"everything the host reads", `{"model":"m",` + msgs + `,"max_tokens":16,"max_completion_tokens":1,"temperature":0.7,"top_p":1,
			"seed":-3,"stop":["\n"],"stream":true,"stream_options":{"include_usage":true},"n":1,"user":"u","presence_penalty":-2,"frequency_penalty":1.5}`, ""},
		{"nulls", `{"model":null,` + msgs + `,"max_tokens":null,"temperature":null,"stop":null,"stream":null,"stream_options":null,"n":null,"tools":null}`, ""},
		{"content forms", `{"messages":[{"role":"system","content":null},{"role":"user","name":"ann","content":[{"type":"text","text":"a"}]},{"role":"assistant","content":"b","tool_calls":[]}]}`, ""},
		{"neutral values of unsupported parameters", `{` + msgs + `,"tools":[],"functions":[],"tool_choice":"none","function_call":"none",
			"response_format":{"type":"text"},"logprobs":false,"top_logprobs":0,"logit_bias":{},"modalities":["text"]}`, ""},
		{"unknown members pass", `{` + msgs + `,"repetition_penalty":1.1,"metadata":{"x":1},"store":true,"reasoning_effort":"low"}`, ""},
		{"stop as a string", `{` + msgs + `,"stop":"END"}`, ""},

		// The inputs.
		{"empty object", `{}`, "messages: missing: a chat request needs a non-empty array of messages"},
		{"no messages", `{"messages":[]}`, "messages: must be a non-empty array of messages"},
		{"messages a string", `{"messages":"hi"}`, "messages: must be a non-empty array of messages"},
		{"not an object", `[]`, "array where an object is required"},
		{"not JSON", `{"messages":`, "invalid JSON at byte 12"},

		// Messages.
		{"message not an object", `{"messages":["hi"]}`, "messages[0]: must be an object with a role and a content"},
		{"no role", `{"messages":[{"role":"user","content":"a"},{"content":"b"}]}`, "messages[1].role: missing: every message needs a string role"},
		{"role a number", `{"messages":[{"role":1}]}`, "messages[0].role: must be a string"},
		{"tool role", `{"messages":[{"role":"tool","content":"42","tool_call_id":"c"}]}`, `messages[0].role: "tool" is not supported by this host (no tool calls)`},
		{"tool calls", `{"messages":[{"role":"assistant","tool_calls":[{"id":"c"}]}]}`, "messages[0].tool_calls: not supported by this host (no tool calls)"},
		{"content a number", `{"messages":[{"role":"user","content":5}]}`, "messages[0].content: must be a string, null or an array of text parts"},
		{"image part", `{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}}]}]}`,
			`messages[0].content[1].type: "image_url" is not supported by this host (text parts only)`},
		{"part without text", `{"messages":[{"role":"user","content":[{"type":"text"}]}]}`, "messages[0].content[0].text: must be a string"},
		{"part not an object", `{"messages":[{"role":"user","content":["a"]}]}`, `messages[0].content[0]: must be an object {"type": "text", "text": ...}`},
		{"name a number", `{"messages":[{"role":"user","name":3}]}`, "messages[0].name: must be a string"},

		// Members the host reads.
		{"max_tokens 0, refused as OpenAI does", `{` + msgs + `,"max_tokens":0}`, "max_tokens: must be an integer from 1 to 2147483647"},
		{"max_completion_tokens 0", `{` + msgs + `,"max_completion_tokens":0}`, "max_completion_tokens: must be an integer from 1 to 2147483647"},
		{"negative max_tokens", `{` + msgs + `,"max_tokens":-1}`, "max_tokens: must be an integer from 1 to 2147483647"},
		{"fractional max_tokens", `{` + msgs + `,"max_tokens":1.5}`, "max_tokens: must be an integer from 1 to"},
		{"huge max_completion_tokens", `{` + msgs + `,"max_completion_tokens":99999999999}`, "max_completion_tokens: must be an integer from 1 to"},
		{"max_tokens a string", `{` + msgs + `,"max_tokens":"16"}`, "max_tokens: must be an integer from 1 to"},
		{"hot temperature", `{` + msgs + `,"temperature":3}`, "temperature: must be a number from 0 to 2"},
		{"overflowing temperature", `{` + msgs + `,"temperature":1e400}`, "temperature: must be a number from 0 to 2"},
		{"top_p", `{` + msgs + `,"top_p":-0.1}`, "top_p: must be a number from 0 to 1"},
		{"seed", `{` + msgs + `,"seed":1.5}`, "seed: must be an integer"},
		{"stop", `{` + msgs + `,"stop":5}`, "stop: must be a string or an array of strings"},
		{"stop element", `{` + msgs + `,"stop":["a",1]}`, "stop: must be a string or an array of strings"},
		{"stream", `{` + msgs + `,"stream":"yes"}`, "stream: must be true or false"},
		{"stream_options", `{` + msgs + `,"stream_options":{"include_usage":1}}`, "stream_options.include_usage: must be true or false"},
		{"n", `{` + msgs + `,"n":2}`, "n: must be 1: this host answers with one choice"},
		{"model", `{"model":7,` + msgs + `}`, "model: must be a string"},
		{"penalty", `{` + msgs + `,"presence_penalty":3}`, "presence_penalty: must be a number from -2 to 2"},
		{"second occurrence", `{` + msgs + `,"max_tokens":5,"max_tokens":-5}`, "max_tokens: must be an integer from 1 to"},

		// Parameters the host does not implement.
		{"tools", `{` + msgs + `,"tools":[{"type":"function","function":{"name":"f"}}]}`, "tools: not supported by this host (no tool calls)"},
		{"tool_choice", `{` + msgs + `,"tool_choice":"auto"}`, "tool_choice: not supported by this host (no tool calls)"},
		{"functions", `{` + msgs + `,"functions":[{"name":"f"}]}`, "functions: not supported by this host (no tool calls)"},
		{"function_call", `{` + msgs + `,"function_call":{"name":"f"}}`, "function_call: not supported by this host (no tool calls)"},
		{"json output", `{` + msgs + `,"response_format":{"type":"json_object"}}`, `response_format: not supported by this host (only {"type": "text"})`},
		{"json schema", `{` + msgs + `,"response_format":{"type":"text","json_schema":{}}}`, "response_format: not supported"},
		{"logprobs", `{` + msgs + `,"logprobs":true}`, "logprobs: not supported by this host (no log probabilities)"},
		{"top_logprobs", `{` + msgs + `,"top_logprobs":3}`, "top_logprobs: not supported by this host (no log probabilities)"},
		{"logit_bias", `{` + msgs + `,"logit_bias":{"50256":-100}}`, "logit_bias: not supported by this host"},
		{"audio", `{` + msgs + `,"audio":{"voice":"alloy"}}`, "audio: not supported by this host (text only)"},
		{"modalities", `{` + msgs + `,"modalities":["text","audio"]}`, "modalities: not supported by this host (text only)"},
		{"prediction", `{` + msgs + `,"prediction":{"type":"content","content":"x"}}`, "prediction: not supported by this host"},
		{"web search", `{` + msgs + `,"web_search_options":{}}`, "web_search_options: not supported by this host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckChatRequest([]byte(tt.request))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeInvalidRequest || e.Status != 400 || !strings.Contains(e.Message, tt.want) {
				t.Fatalf("got %#v, want a 400 invalid_request containing %q", err, tt.want)
			}
		})
	}
}

// TestLastPreOutputIsChecked: what the last pre module returns is checked as the
// client's request is, and a problem there is that module's invalid_output, naming
// the member. The echo module passes on what the host gives it, as a careless module
// would pass on a field it set wrong.
func TestLastPreOutputIsChecked(t *testing.T) {
	s := newTestSandbox(t)
	echo := compile(t, s, "spec_example")
	p := pipeline(t, s, PipelineSpec{Pre: []ModuleSpec{{Module: echo}}})
	for _, tt := range []struct{ request, want string }{
		{`{"messages":[{"role":"user","content":"x"}],"max_tokens":-1}`, "max_tokens: must be an integer from 1 to"},
		{`{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]}`, "tools: not supported by this host"},
		{`{"prompt":"x"}`, "messages: missing"},
	} {
		_, err := p.Run(context.Background(), []byte(tt.request), storyteller, nil)
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeInvalidOutput || e.Status != 500 || e.Stage != StagePre ||
			!strings.HasPrefix(e.Error(), "pre module 1 ("+echo.Hash+"): cocoon_pre returned an invalid chat request (") ||
			!strings.Contains(e.Error(), tt.want) {
			t.Errorf("%s: got %v, want invalid_output of pre module 1 naming %q", tt.request, err, tt.want)
		}
	}
}

// chatRequestSeeds are the fuzzer's seeds: valid and invalid requests of every shape.
var chatRequestSeeds = []string{
	`{"messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"max_tokens":16,"temperature":0.5,"stop":["x"],"n":1,"seed":3}`,
	`{"messages":[{"role":"user","content":null}],"tools":[],"response_format":{"type":"text"},"stream_options":{"include_usage":true}}`,
	`{"messages":[],"max_tokens":-1}`, `{}`, `[]`, `{"messages":"hi"}`, `{"messages":[{"role":1}]}`,
}

// FuzzCheckChatRequest: whatever CheckChatRequest accepts, encoding/json decodes into
// the types the host and the backends read it as; and it never panics.
func FuzzCheckChatRequest(f *testing.F) {
	for _, s := range chatRequestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if CheckChatRequest(b) != nil {
			return
		}
		var r struct {
			Model    *string `json:"model"`
			Messages []struct {
				Role    string          `json:"role"`
				Name    *string         `json:"name"`
				Content json.RawMessage `json:"content"`
			} `json:"messages"`
			MaxTokens           *int32   `json:"max_tokens"`
			MaxCompletionTokens *int32   `json:"max_completion_tokens"`
			Temperature         *float64 `json:"temperature"`
			TopP                *float64 `json:"top_p"`
			Seed                *int64   `json:"seed"`
			Stream              *bool    `json:"stream"`
			N                   *int     `json:"n"`
			StreamOptions       *struct {
				IncludeUsage *bool `json:"include_usage"`
			} `json:"stream_options"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("accepted %q, which does not decode: %v", b, err)
		}
		if len(r.Messages) == 0 || r.MaxTokens != nil && *r.MaxTokens < 0 || r.N != nil && *r.N != 1 {
			t.Fatalf("accepted %q: %+v", b, r)
		}
		for i, m := range r.Messages {
			var text string
			var parts []struct {
				Type string  `json:"type"`
				Text *string `json:"text"`
			}
			if string(m.Content) != "null" && len(m.Content) > 0 && json.Unmarshal(m.Content, &text) != nil {
				if err := json.Unmarshal(m.Content, &parts); err != nil {
					t.Fatalf("accepted %q: message %d content: %v", b, i, err)
				}
				for _, p := range parts {
					if p.Type != "text" || p.Text == nil {
						t.Fatalf("accepted %q: a part %+v", b, p)
					}
				}
			}
		}
	})
}

func BenchmarkCheckChatRequest(b *testing.B) {
	req := []byte(`{"model":"stories260K","messages":[{"role":"system","content":"You are a storyteller."},` +
		`{"role":"user","content":"Once upon a time there was a cat who lived in a house by the sea."}],` +
		`"max_tokens":64,"temperature":0.7,"stream":true,"stream_options":{"include_usage":true}}`)
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		if err := CheckChatRequest(req); err != nil {
			b.Fatal(err)
		}
	}
}
