package host

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cocoonhost/cocoon/host/internal/jsonscan"
	"github.com/cocoonhost/cocoon/internal/strictjson"
)

// The host reads only what it must of the JSON that crosses a module boundary: enough
// to check the shape SPEC.md §5 requires and to restore the fields a module may not
// change. Everything else passes through as the module wrote it. The checks use
// jsonscan, not encoding/json: they run twice per module per request.

// requestShape is the part of a chat completion request the host keeps.
type requestShape struct {
	Stream []byte // raw, nil if absent
}

// decodeObject checks that b is a JSON object and returns its "stream" member.
func decodeObject(b []byte) (*requestShape, error) {
	var r requestShape
	err := jsonscan.Members(b, func(key string, v []byte) error {
		if key == "stream" {
			r.Stream = v
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// parseRequest checks the client's request before any module sees it: a JSON object.
// Pre modules may turn any object into a chat request, so its shape is checked after
// the last of them (or here, when there is none: see Session.Pre).
func parseRequest(b []byte) (*requestShape, error) {
	r, err := decodeObject(b)
	if err != nil {
		return nil, invalidRequest(err)
	}
	return r, nil
}

func invalidRequest(err error) *Error {
	return &Error{Code: CodeInvalidRequest, Status: statusOf(CodeInvalidRequest),
		Message: fmt.Sprintf("the request is not a chat completion request: got %v", err)}
}

// checkRequest checks a pre module's output, which the next module or the backend
// gets: a JSON object, and a chat request the host can serve (CheckChatRequest) if
// last. It puts back the client's "stream".
func checkRequest(out []byte, client *requestShape, last bool) ([]byte, error) {
	r, err := decodeObject(out)
	if err != nil {
		return nil, err
	}
	if last {
		if err := chatRequestProblem(out); err != nil {
			return nil, fmt.Errorf("an invalid chat request (%v)", err)
		}
	}
	if bytes.Equal(r.Stream, client.Stream) {
		return out, nil
	}
	return setField(out, "stream", client.Stream)
}

// responseShape is the part of a chat.completion the host checks.
type responseShape struct {
	Usage []byte // raw, nil if absent
}

// decodeResponse checks that b is a JSON object with a "choices" array.
func decodeResponse(b []byte) (*responseShape, error) {
	var r responseShape
	var choices []byte
	err := jsonscan.Members(b, func(key string, v []byte) error {
		switch key {
		case "choices":
			choices = v
		case "usage":
			r.Usage = v
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if kind := jsonscan.KindOf(choices); kind != jsonscan.Array {
		if choices == nil {
			return nil, errors.New("a response without choices")
		}
		return nil, fmt.Errorf("a response whose choices are a JSON %s", kind)
	}
	return &r, nil
}

// parseResponse checks the response the host built for the post stage.
func parseResponse(b []byte) (*responseShape, error) {
	r, err := decodeResponse(b)
	if err != nil {
		return nil, fmt.Errorf("host: response for post modules: %w", err)
	}
	return r, nil
}

// checkResponse checks a post module's output and puts back the host's "usage".
func checkResponse(out []byte, host *responseShape) ([]byte, error) {
	r, err := decodeResponse(out)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(r.Usage, host.Usage) {
		return out, nil
	}
	return setField(out, "usage", host.Usage)
}

// setField returns the JSON object b with key set to value, or removed if value is nil.
func setField(b []byte, key string, value json.RawMessage) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, strictjson.Problem(err)
	}
	if value == nil {
		delete(obj, key)
	} else {
		obj[key] = value
	}
	return json.Marshal(obj)
}

// mapContents applies f to the string content of every choice's message.
func mapContents(response []byte, f func([]byte) ([]byte, error)) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(response, &obj); err != nil {
		return nil, err
	}
	var choices []map[string]json.RawMessage
	if err := json.Unmarshal(obj["choices"], &choices); err != nil {
		return nil, err
	}
	for _, choice := range choices {
		var msg map[string]json.RawMessage
		if err := json.Unmarshal(choice["message"], &msg); err != nil || msg == nil {
			continue
		}
		var content string
		if err := json.Unmarshal(msg["content"], &content); err != nil {
			continue // null or parts: nothing a stream hook can take
		}
		out, err := f([]byte(content))
		if err != nil {
			return nil, err
		}
		msg["content"], _ = json.Marshal(string(out))
		choice["message"], _ = json.Marshal(msg)
	}
	obj["choices"], _ = json.Marshal(choices)
	return json.Marshal(obj)
}
