package guest

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// stdString is how encoding/json encodes s with HTML escaping off, which appendString
// must equal byte for byte.
func stdString(t testing.TB, s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return buf.String()[:buf.Len()-1]
}

func TestAppendStringEqualsEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", `"quoted" \back\slash`, "<b> & </b>", "\b\f\n\r\t", "\x00\x01\x1f\x7f",
		"héllo 😀", "\u2028\u2029", "bad \xff utf-8 \xe2\x80", "\xed\xa0\x80", // a surrogate's encoding
	} {
		var buf bytes.Buffer
		appendString(&buf, s)
		if want := stdString(t, s); buf.String() != want {
			t.Errorf("appendString(%q) = %s, want %s", s, buf.String(), want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b\\c\n", "\u2028 \xff é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var buf bytes.Buffer
		appendString(&buf, s)
		if want := stdString(t, s); buf.String() != want {
			t.Errorf("appendString(%q) = %s, want %s", s, buf.String(), want)
		}
	})
}

// TestIsZeroEqualsReflect: isZero tells the chat types' fields apart from zero without
// reflection; it must agree with reflect.Value.IsZero, which it replaced, on every
// member of every type, zero and not.
func TestIsZeroEqualsReflect(t *testing.T) {
	var req ChatRequest
	if err := req.UnmarshalJSON([]byte(`{"model":"m","messages":[{"role":"r","content":"c","name":"n","x":1}]}`)); err != nil {
		t.Fatal(err)
	}
	var resp ChatResponse
	if err := resp.UnmarshalJSON([]byte(`{"id":"i","object":"o","created":1,"model":"m","usage":{"total_tokens":1},
		"choices":[{"index":1,"finish_reason":"stop","message":{"content":[{"type":"text","text":"t"}]}}]}`)); err != nil {
		t.Fatal(err)
	}
	var zeroReq ChatRequest
	var zeroResp ChatResponse
	var zeroChoice Choice
	var zeroPart ContentPart
	var zeroMessage Message
	var zeroUsage Usage
	lists := [][]member{req.members(), zeroReq.members(), resp.members(), zeroResp.members(),
		resp.Choices[0].members(), zeroChoice.members(), req.Messages[0].members(), zeroMessage.members(),
		resp.Choices[0].Message.Content.parts[0].members(), zeroPart.members(), resp.Usage.members(), zeroUsage.members(),
		(&Choice{Message: Message{Extra: map[string]json.RawMessage{}}}).members(), (&Choice{Message: Message{has: 1}}).members(),
		(&Choice{Message: Message{Content: PartsContent(nil)}}).members(), (&Choice{Message: Message{Content: PartsContent([]ContentPart{})}}).members()}
	for _, members := range lists {
		for _, m := range members {
			if got, want := isZero(m.field), reflectIsZero(m.field); got != want {
				t.Errorf("isZero(%s %#v) = %v, want %v", m.name, m.field, got, want)
			}
		}
	}
}

func reflectIsZero(field any) bool { return reflect.ValueOf(field).Elem().IsZero() }
