package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/cocoonhost/cocoon/host/internal/jsonscan"
)

// chunkDecoder decodes the data of a stream's events into chunks as json.Unmarshal
// does. Chunks in the shape every server streams take a fast path (scanChunk) on the
// host's JSON scanner, which checks the whole event in one pass and hands the members
// over without allocating or reflection: encoding/json was most of the adapter's cost
// per token. Anything else, error objects included, goes to encoding/json, so both
// paths agree on every input (FuzzDecodeChunk).
//
// A server sends every token of an answer in the same frame: the chunk's bytes before
// and after its content string are those of the chunk before. So when the fast path
// decoded a chunk with one choice whose delta's content is a string, the decoder keeps
// the bytes around that string (head and tail, at most one event's size), and a next
// chunk that is the same head, one JSON string and the same tail is that chunk with the
// new content: the scanner would walk head and tail exactly as before, whatever string
// stands between them. That costs two comparisons and a scan of the string instead of
// a scan of the whole event (FuzzDecodeFramedChunk holds it to a decoding from
// scratch).
type chunkDecoder struct {
	c          chunk // the last decoded, whose memory the next one reuses
	framed     bool  // head and tail frame c's one content string
	head, tail []byte
	scan       jsonscan.Decoder
}

// decode decodes data, replacing the last chunk; the chunk is valid until the next
// call and as long as data.
func (cd *chunkDecoder) decode(data []byte) (*chunk, error) {
	c := &cd.c
	if cd.framed && cd.reframe(data) {
		return c, nil
	}
	at, ok := scanChunk(data, c)
	if cd.framed = ok && at >= 0; cd.framed {
		end := at + len(c.Choices[0].Delta.Content)
		cd.head = append(cd.head[:0], data[:at]...)
		cd.tail = append(cd.tail[:0], data[end:]...)
	}
	if ok {
		return c, nil
	}
	*c = chunk{}
	return c, json.Unmarshal(data, c)
}

// reframe decodes data into the last chunk if data is its head, one JSON string
// literal (valid as the scanner checks strings) and its tail: the content changes,
// nothing else. It reports false, leaving the chunk as it was, for anything else.
func (cd *chunkDecoder) reframe(data []byte) bool {
	end := len(data) - len(cd.tail)
	if end <= len(cd.head) || !bytes.HasPrefix(data, cd.head) || !bytes.Equal(data[end:], cd.tail) {
		return false
	}
	content := data[len(cd.head):end]
	if content[0] != '"' { // the scanner would skip white space before it
		return false
	}
	cd.scan.Reset(content)
	if v, err := cd.scan.Value(); err != nil || len(v) != len(content) {
		return false
	}
	cd.c.Choices[0].Delta.Content = content
	return true
}

// errSlowPath stops the fast path's walk: the chunk is for encoding/json.
var errSlowPath = errors.New("not in the fast path's shape")

// scanChunk decodes data into c, replacing what c held, if data is a JSON object that
// json.Unmarshal would decode into the same c without an error, and whose members are
// in the plain form the fast path knows: the members it decodes named in lower case
// without escapes, each at most once per object; "model", "object" and
// "finish_reason" strings without escapes or bytes beyond ASCII, or null; "index" and
// the token counts integers or null; "content" a string or null; no "error",
// "message" or "code" member and no "object": "error" (an error object); strings
// valid UTF-8 and nesting at most jsonscan.MaxDepth deep (the scanner's rules). It
// reports false, leaving c in any state, for everything else, valid or not. So that a
// stream decodes its chunks without allocating, c's choices are reused (an absent
// member leaves them empty, where encoding/json leaves nil) and so are its strings
// when they repeat. contentAt is where the content string of c's one choice starts in
// data, or -1 if c has not one choice or its content is not a string.
func scanChunk(data []byte, c *chunk) (contentAt int, ok bool) {
	prev := *c
	*c = chunk{Choices: c.Choices[:0]}
	contentAt = -1
	var d jsonscan.Decoder
	d.Reset(data)
	err := fields(&d, func(name int) error {
		switch name {
		case nameModel:
			return plainString(&d, &c.Model, prev.Model)
		case nameObject:
			if err := plainString(&d, &c.Object, prev.Object); err != nil || c.Object == "error" {
				return errSlowPath
			}
			return nil
		case nameChoices:
			return choices(&d, c, &contentAt)
		case nameUsage:
			return usageOf(&d, c)
		case nameError, nameMessage, nameCode: // an error object's
			return errSlowPath
		}
		return skip(&d)
	})
	if len(c.Choices) != 1 {
		contentAt = -1
	}
	return contentAt, err == nil && d.End() == nil
}

// fields reads an object, passing the name of each member that names a field of a
// chunk to field, which reads its value; it skips the others. A name repeated, or
// one encoding/json could match to a field only as it folds case, sends the chunk to
// encoding/json.
func fields(d *jsonscan.Decoder, field func(name int) error) error {
	var seen names
	return d.Object(func(key []byte) error {
		switch n := seen.add(key); n {
		case nameOther:
			return skip(d)
		case nameRepeated, nameNotPlain:
			return errSlowPath
		default:
			return field(n)
		}
	})
}

// skip reads a value the chunk does not keep.
func skip(d *jsonscan.Decoder) error {
	_, err := d.Value()
	return err
}

// The member names the fast path decodes, as names.add tells them.
const (
	nameOther    = iota // plain, and no field's
	nameNotPlain        // may match a field as encoding/json folds case: its own
	nameRepeated        // a field's, again: encoding/json keeps the last
	nameModel
	nameObject
	nameChoices
	nameUsage
	nameError
	nameMessage
	nameCode
	nameIndex
	nameFinishReason
	nameDelta
	nameContent
	namePromptTokens
	nameCompletionTokens
)

// fieldName tells which field of a chunk name is exactly, nameOther if none.
func fieldName(name []byte) int {
	switch string(name) {
	case "model":
		return nameModel
	case "object":
		return nameObject
	case "choices":
		return nameChoices
	case "usage":
		return nameUsage
	case "error":
		return nameError
	case "message":
		return nameMessage
	case "code":
		return nameCode
	case "index":
		return nameIndex
	case "finish_reason":
		return nameFinishReason
	case "delta":
		return nameDelta
	case "content":
		return nameContent
	case "prompt_tokens":
		return namePromptTokens
	case "completion_tokens":
		return nameCompletionTokens
	}
	return nameOther
}

// names are the field names seen in one object.
type names uint32

// add tells which field name, as written (escapes and all), names, and records it.
// A name a field of a chunk could match only as encoding/json folds case (Unicode
// folds included, such as the Kelvin sign for 'k') is nameNotPlain.
func (s *names) add(name []byte) int {
	for _, b := range name {
		if !('a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '_') {
			return nameNotPlain
		}
	}
	n := fieldName(name)
	if n == nameOther {
		return nameOther
	}
	if *s&(1<<n) != 0 {
		return nameRepeated
	}
	*s |= 1 << n
	return n
}

// orNull reads null and reports true if it comes next, so that the caller leaves its
// field as it is.
func orNull(d *jsonscan.Decoder) bool {
	if d.Kind() != jsonscan.Null {
		return false
	}
	skip(d)
	return true
}

// choices reads the choices array or null, setting contentAt where a content string
// starts.
func choices(d *jsonscan.Decoder, c *chunk, contentAt *int) error {
	if orNull(d) {
		c.Choices = nil
		return nil
	}
	if c.Choices == nil {
		c.Choices = []choice{}
	}
	return d.Array(func() error {
		c.Choices = append(c.Choices, choice{})
		if orNull(d) {
			return nil
		}
		ch := &c.Choices[len(c.Choices)-1]
		return fields(d, func(name int) error {
			switch name {
			case nameIndex:
				return integer(d, &ch.Index)
			case nameFinishReason:
				return plainString(d, &ch.FinishReason, "")
			case nameDelta:
				return delta(d, ch, contentAt)
			}
			return skip(d)
		})
	})
}

// delta reads a choice's delta, an object or null. Its content is kept as a
// json.RawMessage keeps it, without a copy: valid as long as the event's bytes; where
// it is a string, contentAt is set to its offset.
func delta(d *jsonscan.Decoder, ch *choice, contentAt *int) error {
	if orNull(d) {
		return nil
	}
	return fields(d, func(name int) error {
		if name != nameContent {
			return skip(d)
		}
		switch d.Kind() {
		case jsonscan.String:
			*contentAt = d.Offset()
		case jsonscan.Null:
		default:
			return errSlowPath
		}
		var err error
		ch.Delta.Content, err = d.Value()
		return err
	})
}

// usageOf reads the usage object or null.
func usageOf(d *jsonscan.Decoder, c *chunk) error {
	if orNull(d) {
		return nil
	}
	u := &usage{}
	c.Usage = u
	return fields(d, func(name int) error {
		switch name {
		case namePromptTokens:
			return integer(d, &u.PromptTokens)
		case nameCompletionTokens:
			return integer(d, &u.CompletionTokens)
		}
		return skip(d)
	})
}

// plainString reads a string without escapes or bytes beyond ASCII (which
// encoding/json may replace) into s, or null, which leaves s as it is. A string equal
// to prev is prev, not a copy.
func plainString(d *jsonscan.Decoder, s *string, prev string) error {
	v, err := scalar(d, jsonscan.String)
	if v == nil {
		return err
	}
	lit := v[1 : len(v)-1]
	for _, b := range lit {
		if b == '\\' || b >= 0x80 {
			return errSlowPath
		}
	}
	if *s = prev; string(lit) != prev {
		*s = string(lit)
	}
	return nil
}

// integer reads an integer that fits an int, or null, which leaves n as it is. A
// fraction or an exponent is not one: encoding/json refuses it for an int.
func integer(d *jsonscan.Decoder, n *int) error {
	v, err := scalar(d, jsonscan.Number)
	if v == nil {
		return err
	}
	for _, b := range v {
		if b == '.' || b == 'e' || b == 'E' {
			return errSlowPath
		}
	}
	if *n, err = strconv.Atoi(string(v)); err != nil {
		return errSlowPath
	}
	return nil
}

// scalar reads a value of kind k, or null, for which it returns nil; any other kind
// sends the chunk to encoding/json.
func scalar(d *jsonscan.Decoder, k jsonscan.Kind) ([]byte, error) {
	switch d.Kind() {
	case jsonscan.Null:
		return nil, skip(d)
	case k:
		v, err := d.Value()
		if err != nil {
			return nil, err
		}
		return v, nil
	}
	return nil, errSlowPath
}
