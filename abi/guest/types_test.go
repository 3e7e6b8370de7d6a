package guest_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/abi/guest"
)

// canonical re-encodes JSON through any, so that equal JSON values compare equal.
func canonical(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	c, _ := json.Marshal(v)
	return string(c)
}

func roundTrip[T any](t *testing.T, in string) {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(in), &v); err != nil {
		t.Fatalf("decode: %v", err)
	}
	out, err := guest.Marshal(&v)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	if got, want := canonical(t, out), canonical(t, []byte(in)); got != want {
		t.Errorf("round trip changed the value:\ngot  %s\nwant %s", got, want)
	}
}

func TestRequestRoundTrip(t *testing.T) {
	for _, in := range []string{
		`{}`,
		`{"messages":[]}`,
		`{"model":"","messages":[{"role":"","content":"","name":""}]}`,
		`{"model":null,"messages":null,"stream":true}`,
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":64,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"r"}]}`,
		`{"messages":[{"role":"user","content":[]},{"role":"user","content":[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}},{"type":"image_url","image_url":{"url":"u"}},{"type":"text"},{"text":"no type"},{}]}]}`,
		`{"messages":[{"role":"user","content":"<&> \u00e9 \ud83d\ude00 \" \\ \n \u0000 \u2028"}],"tools":[{"type":"function"}],"response_format":{"type":"json_schema","json_schema":{"schema":{}}}}`,
		`{"messages":[{"role":"user","content":"x","role_extra":1}],"temperature":0.1,"seed":9007199254740993,"logit_bias":{"1":-100},"x":[[[[]]]],"y":{"":""}}`,
	} {
		roundTrip[guest.ChatRequest](t, in)
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, in := range []string{
		`{}`,
		`{"choices":[]}`,
		`{"id":"c","object":"chat.completion","created":1764000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"x"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`,
		`{"id":"","created":0,"choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"tool_calls":[]},"logprobs":null,"finish_reason":null}],"usage":null,"system_fingerprint":null}`,
		`{"choices":[{"index":1,"message":{"content":[{"type":"text","text":"a"}]}}],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0,"completion_tokens_details":{"reasoning_tokens":0}},"service_tier":"default"}`,
	} {
		roundTrip[guest.ChatResponse](t, in)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{`[]`, "request: want an object, got array"},
		{`{"model":5}`, "model: want a string, got number"},
		{`{"messages":{}}`, "messages: want an array, got object"},
		{`{"messages":[5]}`, "messages: message: want an object, got number"},
		{`{"messages":[{"role":true}]}`, "messages: role: want a string, got bool"},
		{`{"messages":[{"content":5}]}`, "messages: content: want a string or an array of parts"},
		{`{"messages":[{"content":[{"text":1}]}]}`, "messages: content: text: want a string, got number"},
	}
	for _, tt := range tests {
		var r guest.ChatRequest
		err := json.Unmarshal([]byte(tt.in), &r)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s: error %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestEncodeSetFieldsAndExtra(t *testing.T) {
	var r guest.ChatResponse
	in := `{"choices":[{"index":0,"message":{"role":"assistant","content":null},"finish_reason":null}],"x":1}`
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	// A null member replaced by a value takes the value; new fields appear.
	r.Choices[0].FinishReason = "stop"
	r.Choices[0].Message.Content = guest.TextContent("hi")
	r.Model = "m"
	r.Choices = append(r.Choices, guest.Choice{Index: 1, Message: guest.Message{Role: "assistant", Content: guest.PartsContent(nil)}})
	out, err := guest.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"},{"index":1,"message":{"role":"assistant","content":[]}}],"x":1}`
	if got := canonical(t, out); got != canonical(t, []byte(want)) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if !bytes.HasPrefix(out, []byte(`{"model":"m","choices":`)) {
		t.Errorf("known members are not written first, in order: %s", out)
	}
}

func TestMarshalDoesNotEscapeHTML(t *testing.T) {
	out, err := guest.Marshal(guest.Message{Role: "user", Content: guest.TextContent("<b>&</b>")})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"role":"user","content":"<b>&</b>"}`; string(out) != want {
		t.Errorf("got %s, want %s", out, want)
	}
}

func TestContent(t *testing.T) {
	var m guest.Message
	in := `{"content":[{"type":"text","text":"a"},{"type":"image_url","text":"not text"},{"type":"text","text":"b"}]}`
	if err := json.Unmarshal([]byte(in), &m); err != nil {
		t.Fatal(err)
	}
	c := &m.Content
	if !c.IsParts() || len(c.Parts()) != 3 || c.Text() != "a\nb" {
		t.Errorf("parts content: IsParts %v, %d parts, Text %q", c.IsParts(), len(c.Parts()), c.Text())
	}
	c.MapText(strings.ToUpper)
	if got := []string{c.Parts()[0].Text, c.Parts()[1].Text, c.Parts()[2].Text}; strings.Join(got, ",") != "A,not text,B" {
		t.Errorf("MapText on parts: %q", got)
	}

	s := guest.TextContent("x")
	s.MapText(func(s string) string { return s + "y" })
	if s.IsParts() || s.Parts() != nil || s.Text() != "xy" {
		t.Errorf("string content: IsParts %v, Parts %v, Text %q", s.IsParts(), s.Parts(), s.Text())
	}

	var none guest.Content
	called := false
	none.MapText(func(s string) string { called = true; return s })
	if called || none.Text() != "" {
		t.Errorf("absent content: MapText called %v, Text %q", called, none.Text())
	}
}

func TestRejection(t *testing.T) {
	for status, allowed := range map[int]bool{400: true, 403: true, 409: true, 413: true, 422: true, 429: true, 451: true,
		200: false, 401: false, 418: false, 500: false} {
		err := guest.Reject(status, "m")
		if got := err.(*guest.Rejection).Allowed(); got != allowed {
			t.Errorf("status %d: Allowed %v, want %v", status, got, allowed)
		}
	}
}

// FuzzRequest checks that decoding never panics, even when UnmarshalJSON is called
// directly on malformed input, and that valid requests round-trip.
func FuzzRequest(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a\"b"}]}],"x":[1,{"y":null}]}`))
	f.Add([]byte(`{"messages":[{"role":"user","content":"\u00e9"}]}`))
	f.Add([]byte(`{"messages":[{"content":"`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var direct guest.ChatRequest
		_ = direct.UnmarshalJSON(b)
		var r guest.ChatRequest
		if json.Unmarshal(b, &r) != nil {
			return
		}
		out, err := guest.Marshal(&r)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		var again guest.ChatRequest
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatalf("re-decode %s: %v", out, err)
		}
		out2, _ := guest.Marshal(&again)
		if canonical(t, out) != canonical(t, out2) {
			t.Fatalf("not stable: %s then %s", out, out2)
		}
	})
}
