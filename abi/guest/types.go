package guest

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// ChatRequest is an OpenAI chat completion request (POST /v1/chat/completions), the
// input and output of a pre hook. Only the members a module commonly edits have fields;
// every other member (stream, max_tokens, tools, response_format, vendor extensions…)
// is kept in Extra and passed on unchanged: a decoded-then-encoded request equals the
// original as a JSON value (see "JSON round trip" in the package documentation).
type ChatRequest struct {
	Model    string
	Messages []Message
	// Extra holds the members without a field, and members whose value is null, as raw
	// JSON by name.
	Extra map[string]json.RawMessage

	has present
}

func (r *ChatRequest) members() []member {
	return []member{{"model", &r.Model}, {"messages", &r.Messages}}
}

// UnmarshalJSON decodes a request, keeping unknown members in Extra.
func (r *ChatRequest) UnmarshalJSON(b []byte) error {
	return decodeDocument(b, r.decode)
}

func (r *ChatRequest) decode(d *decoder) error {
	*r = ChatRequest{}
	return d.decodeObject("request", r.members(), &r.Extra, &r.has)
}

// MarshalJSON encodes the request, with the members of Extra.
func (r ChatRequest) MarshalJSON() ([]byte, error) {
	return marshal(r)
}

func (r ChatRequest) appendJSON(buf *bytes.Buffer) error {
	return appendObject(buf, r.members(), r.Extra, r.has)
}

// Message is one message of a chat: role, content and optional name. Other members
// (tool_calls, tool_call_id, refusal…) are kept in Extra; a null content, as in an
// assistant message that only calls tools, is kept too.
type Message struct {
	Role    string
	Content Content
	Name    string
	// Extra holds the members without a field, and members whose value is null.
	Extra map[string]json.RawMessage

	has present
}

func (m *Message) members() []member {
	return []member{{"role", &m.Role}, {"content", &m.Content}, {"name", &m.Name}}
}

// UnmarshalJSON decodes a message, keeping unknown members in Extra.
func (m *Message) UnmarshalJSON(b []byte) error {
	return decodeDocument(b, m.decode)
}

func (m *Message) decode(d *decoder) error {
	*m = Message{}
	return d.decodeObject("message", m.members(), &m.Extra, &m.has)
}

// MarshalJSON encodes the message, with the members of Extra.
func (m Message) MarshalJSON() ([]byte, error) {
	return marshal(m)
}

func (m Message) appendJSON(buf *bytes.Buffer) error {
	return appendObject(buf, m.members(), m.Extra, m.has)
}

// Content is a message's content: either a string or an array of parts. The zero value
// is no content (the member is omitted). Make one with [TextContent] or [PartsContent].
type Content struct {
	kind  contentKind
	text  string
	parts []ContentPart
}

type contentKind uint8

const (
	contentNone contentKind = iota
	contentText
	contentParts
)

// TextContent returns string content.
func TextContent(s string) Content {
	return Content{kind: contentText, text: s}
}

// PartsContent returns content made of parts.
func PartsContent(parts []ContentPart) Content {
	return Content{kind: contentParts, parts: parts}
}

// IsParts reports whether c is an array of parts rather than a string (or nothing).
func (c Content) IsParts() bool { return c.kind == contentParts }

// Parts returns the parts of array content, nil for string content. The slice is
// shared with c: changing a part changes c.
func (c Content) Parts() []ContentPart { return c.parts }

// Text returns the text of c: the string, or the text of every part of type "text"
// joined with "\n" (as OpenAI-compatible servers join them for the model).
func (c Content) Text() string {
	if c.kind != contentParts {
		return c.text
	}
	var texts []string
	for _, p := range c.parts {
		if p.Type == "text" {
			texts = append(texts, p.Text)
		}
	}
	return strings.Join(texts, "\n")
}

// MapText replaces every text of c with f of it: the string, or the Text of every part
// of type "text". Other parts (images, audio…) and absent content are left alone.
func (c *Content) MapText(f func(string) string) {
	switch c.kind {
	case contentText:
		c.text = f(c.text)
	case contentParts:
		for i := range c.parts {
			if c.parts[i].Type == "text" {
				c.parts[i].Text = f(c.parts[i].Text)
			}
		}
	}
}

// UnmarshalJSON decodes a string or an array of parts.
func (c *Content) UnmarshalJSON(b []byte) error {
	return decodeDocument(b, c.decode)
}

func (c *Content) decode(d *decoder) error {
	switch d.peek() {
	case '"':
		var s string
		if err := d.decodeString(&s); err != nil {
			return err
		}
		*c = TextContent(s)
	case '[':
		var parts []ContentPart
		if err := decodeArray(d, &parts); err != nil {
			return err
		}
		*c = PartsContent(parts)
	default:
		return errors.New("want a string or an array of parts")
	}
	return nil
}

// MarshalJSON encodes c as a string or an array of parts (null for no content, though
// a message omits absent content rather than writing null).
func (c Content) MarshalJSON() ([]byte, error) {
	return marshal(c)
}

func (c Content) appendJSON(buf *bytes.Buffer) error {
	switch c.kind {
	case contentText:
		return encodeTo(buf, c.text)
	case contentParts:
		if c.parts == nil {
			buf.WriteString("[]")
			return nil
		}
		return appendArray(buf, c.parts)
	}
	buf.WriteString("null")
	return nil
}

// ContentPart is one part of array content, such as {"type":"text","text":"…"} or
// {"type":"image_url","image_url":{…}}. Members other than type and text are kept in
// Extra.
type ContentPart struct {
	Type string
	Text string
	// Extra holds the members without a field, and members whose value is null.
	Extra map[string]json.RawMessage

	has present
}

func (p *ContentPart) members() []member {
	return []member{{"type", &p.Type}, {"text", &p.Text}}
}

// UnmarshalJSON decodes a part, keeping unknown members in Extra.
func (p *ContentPart) UnmarshalJSON(b []byte) error {
	return decodeDocument(b, p.decode)
}

func (p *ContentPart) decode(d *decoder) error {
	*p = ContentPart{}
	return d.decodeObject("content part", p.members(), &p.Extra, &p.has)
}

// MarshalJSON encodes the part, with the members of Extra.
func (p ContentPart) MarshalJSON() ([]byte, error) {
	return marshal(p)
}

func (p ContentPart) appendJSON(buf *bytes.Buffer) error {
	return appendObject(buf, p.members(), p.Extra, p.has)
}

// ChatResponse is an OpenAI chat.completion object, the input and output of a post
// hook. Members without a field (system_fingerprint, vendor extensions…) are kept in
// Extra. The host restores usage from the backend's figures whatever a module returns.
type ChatResponse struct {
	ID      string
	Object  string
	Created int64
	Model   string
	Choices []Choice
	Usage   *Usage
	// Extra holds the members without a field, and members whose value is null.
	Extra map[string]json.RawMessage

	has present
}

func (r *ChatResponse) members() []member {
	return []member{{"id", &r.ID}, {"object", &r.Object}, {"created", &r.Created},
		{"model", &r.Model}, {"choices", &r.Choices}, {"usage", &r.Usage}}
}

// UnmarshalJSON decodes a response, keeping unknown members in Extra.
func (r *ChatResponse) UnmarshalJSON(b []byte) error {
	return decodeDocument(b, r.decode)
}

func (r *ChatResponse) decode(d *decoder) error {
	*r = ChatResponse{}
	return d.decodeObject("response", r.members(), &r.Extra, &r.has)
}

// MarshalJSON encodes the response, with the members of Extra.
func (r ChatResponse) MarshalJSON() ([]byte, error) {
	return marshal(r)
}

func (r ChatResponse) appendJSON(buf *bytes.Buffer) error {
	return appendObject(buf, r.members(), r.Extra, r.has)
}

// Choice is one choice of a response. Members other than index, message and
// finish_reason (logprobs…) are kept in Extra.
type Choice struct {
	Index        int
	Message      Message
	FinishReason string
	// Extra holds the members without a field, and members whose value is null.
	Extra map[string]json.RawMessage

	has present
}

func (c *Choice) members() []member {
	return []member{{"index", &c.Index}, {"message", &c.Message}, {"finish_reason", &c.FinishReason}}
}

// UnmarshalJSON decodes a choice, keeping unknown members in Extra.
func (c *Choice) UnmarshalJSON(b []byte) error {
	return decodeDocument(b, c.decode)
}

func (c *Choice) decode(d *decoder) error {
	*c = Choice{}
	return d.decodeObject("choice", c.members(), &c.Extra, &c.has)
}

// MarshalJSON encodes the choice, with the members of Extra.
func (c Choice) MarshalJSON() ([]byte, error) {
	return marshal(c)
}

func (c Choice) appendJSON(buf *bytes.Buffer) error {
	return appendObject(buf, c.members(), c.Extra, c.has)
}

// Usage is a response's token counts. Other members (completion_tokens_details…) are
// kept in Extra.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	TotalTokens      int
	// Extra holds the members without a field, and members whose value is null.
	Extra map[string]json.RawMessage

	has present
}

func (u *Usage) members() []member {
	return []member{{"prompt_tokens", &u.PromptTokens}, {"completion_tokens", &u.CompletionTokens},
		{"total_tokens", &u.TotalTokens}}
}

// UnmarshalJSON decodes usage, keeping unknown members in Extra.
func (u *Usage) UnmarshalJSON(b []byte) error {
	return decodeDocument(b, u.decode)
}

func (u *Usage) decode(d *decoder) error {
	*u = Usage{}
	return d.decodeObject("usage", u.members(), &u.Extra, &u.has)
}

// MarshalJSON encodes usage, with the members of Extra.
func (u Usage) MarshalJSON() ([]byte, error) {
	return marshal(u)
}

func (u Usage) appendJSON(buf *bytes.Buffer) error {
	return appendObject(buf, u.members(), u.Extra, u.has)
}
