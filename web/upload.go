package web

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/cocoonhost/cocoon/abi"
	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/internal/strictjson"
)

// maxManifestBytes bounds the manifest of an upload, as JSON: 32 modules with a config
// of abi.MaxConfigBytes each, with room to spare.
const maxManifestBytes = 4 << 20

// uploadBody is a decoded upload: the manifest's JSON, and the modules' bytes by the
// "sha256:" hash they were given under (not yet checked against their bytes).
type uploadBody struct {
	manifest []byte
	modules  map[string][]byte
}

// decodeUpload decodes the body of POST /v1/pipelines as it reads it. The body is a
// JSON object with two members: "manifest", the pipeline's manifest, and "modules",
// the bytes of its modules in standard base64 keyed by their "sha256:" hash (a module
// the host already stores may be left out; one that is not in the manifest is an
// error). decodeUpload keeps the manifest's JSON and each module's decoded bytes, never
// the base64 text or the whole body, so an upload holds about the size of its modules
// (three quarters of the body) and a 64 KiB buffer. parseManifest is called with the
// manifest as soon as it is read, so that a bad manifest is refused before the modules
// are read. It takes about a third of the time of encoding/json on the whole body.
//
// It is as strict as encoding/json with DisallowUnknownFields, and stricter: a member
// given twice, a member name in other letter case ("Manifest") and a name over 256
// bytes are refused. Errors are *apiError naming what is wrong, or what parseManifest
// returned; a read error of r (such as http.MaxBytesError) is returned as it is.
func decodeUpload(r io.Reader, parseManifest func([]byte) error) (*uploadBody, error) {
	d := &uploadDecoder{r: bufio.NewReaderSize(r, 64<<10)}
	up := &uploadBody{modules: map[string][]byte{}}
	err := d.object("upload", func(member string) error {
		switch member {
		case "manifest":
			if up.manifest != nil {
				return invalidf(`upload: member "manifest" given twice`)
			}
			var err error
			if up.manifest, err = d.value(maxManifestBytes, "manifest"); err != nil {
				return err
			}
			return parseManifest(up.manifest)
		case "modules":
			if d.null() {
				return nil // what encoding/json makes of a nil map
			}
			return d.object("modules", func(hash string) error {
				if err := host.CheckHash(hash); err != nil {
					return invalidf("modules: %v", err)
				}
				if _, dup := up.modules[hash]; dup {
					return invalidf("modules: %s given twice", hash)
				}
				b, err := d.base64(hash)
				up.modules[hash] = b
				return err
			})
		}
		return invalidf("upload: unknown member %q", member)
	})
	if err != nil {
		return nil, err
	}
	d.space()
	if _, err := d.r.ReadByte(); !errors.Is(err, io.EOF) {
		return nil, d.fail(err, "unexpected data after the JSON value")
	}
	return up, nil
}

// uploadDecoder reads the JSON of an upload from r.
type uploadDecoder struct {
	r   *bufio.Reader
	pos int64 // bytes read so far, for messages
}

// fail returns the error of a syntax problem at the current byte, or err if reading
// failed (a read error is the reader's, not the client's JSON).
func (d *uploadDecoder) fail(err error, format string, args ...any) error {
	switch {
	case err == nil:
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return invalidf("upload: invalid JSON: unexpected end of input")
	default:
		return err
	}
	return invalidf("upload: invalid JSON at byte %d: %s", d.pos, fmt.Sprintf(format, args...))
}

func (d *uploadDecoder) byte() (byte, error) {
	c, err := d.r.ReadByte()
	if err == nil {
		d.pos++
	}
	return c, err
}

// space skips white space.
func (d *uploadDecoder) space() {
	for {
		c, err := d.r.ReadByte()
		if err != nil {
			return
		}
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			d.r.UnreadByte()
			return
		}
		d.pos++
	}
}

// next skips white space and returns the next byte.
func (d *uploadDecoder) next() (byte, error) {
	d.space()
	return d.byte()
}

// null reads the literal null if it comes next.
func (d *uploadDecoder) null() bool {
	if b, err := d.r.Peek(4); err != nil || string(b) != "null" {
		return false
	}
	d.r.Discard(4)
	d.pos += 4
	return true
}

// object reads an object whose members' values member reads, given their names. what
// names the object in messages.
func (d *uploadDecoder) object(what string, member func(name string) error) error {
	c, err := d.next()
	if err != nil || c != '{' {
		if errors.Is(err, io.EOF) && d.pos == 0 {
			return invalidf("upload: empty body: expected JSON")
		}
		return d.fail(err, "%s must be a JSON object", what)
	}
	if c, err = d.next(); err != nil {
		return d.fail(err, "")
	}
	if c == '}' {
		return nil
	}
	for {
		if c != '"' {
			return d.fail(nil, "expected the name of a member of %s", what)
		}
		name, err := d.name()
		if err != nil {
			return err
		}
		if c, err := d.next(); err != nil || c != ':' {
			return d.fail(err, "expected : after %q", name)
		}
		d.space()
		if err := member(name); err != nil {
			return err
		}
		switch c, err := d.next(); {
		case err != nil:
			return d.fail(err, "")
		case c == '}':
			return nil
		case c != ',':
			return d.fail(nil, "expected , or } in %s", what)
		}
		if c, err = d.next(); err != nil {
			return d.fail(err, "")
		}
	}
}

// maxNameBytes bounds a member name: the longest the upload has is a module hash.
const maxNameBytes = 256

// name reads the rest of a member name whose opening quote was read.
func (d *uploadDecoder) name() (string, error) {
	raw := []byte{'"'}
	err := d.stringContent(func(part []byte) error {
		if raw = append(raw, part...); len(raw) > maxNameBytes {
			return invalidf("upload: a member name is over %d bytes", maxNameBytes)
		}
		return nil
	}, true)
	if err != nil {
		return "", err
	}
	var name string
	if err := json.Unmarshal(append(raw, '"'), &name); err != nil {
		return "", d.fail(nil, "%v", strictjson.Problem(err))
	}
	return name, nil
}

// stringContent reads the rest of a string whose opening quote was read, up to and
// including its closing quote, and passes its content to part piece by piece: as it
// is if raw, else with escapes decoded (\uXXXX as UTF-8). It refuses control
// characters and malformed escapes, wherever the reader's buffer cuts them.
func (d *uploadDecoder) stringContent(part func([]byte) error, raw bool) error {
	const (
		plain   = iota
		escaped // after a backslash
		hex     // in the four digits of \u; hex+n after n of them
	)
	state := plain
	var r rune // the code point of \u
	var one [utf8.UTFMax]byte
	emit := func(b []byte) error {
		if len(b) == 0 {
			return nil
		}
		return part(b)
	}
	for {
		b, err := d.r.ReadSlice('"')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return d.fail(err, "")
		}
		start := 0 // of the run of content not yet passed to part
		for i, c := range b {
			switch {
			case state == plain && c == '"':
				d.pos += int64(i + 1)
				return emit(b[start:i])
			case state == plain && c == '\\':
				state = escaped
				if !raw {
					if err := emit(b[start:i]); err != nil {
						return err
					}
					start = i + 1
				}
			case state == plain && c < 0x20:
				d.pos += int64(i)
				return d.fail(nil, "control character %#x in a string", c)
			case state == plain:
			case state == escaped && c == 'u':
				state, r = hex, 0
			case state == escaped:
				decoded, ok := escapes[c]
				if !ok {
					d.pos += int64(i)
					return d.fail(nil, "invalid escape \\%c in a string", c)
				}
				state = plain
				if !raw {
					if err := emit([]byte{decoded}); err != nil {
						return err
					}
					start = i + 1
				}
			default: // a digit of \u
				v, ok := hexDigit(c)
				if !ok {
					d.pos += int64(i)
					return d.fail(nil, "invalid escape \\u in a string")
				}
				r = r<<4 | v
				if state++; state == hex+4 {
					state = plain
					if !raw {
						if err := emit(one[:utf8.EncodeRune(one[:], r)]); err != nil {
							return err
						}
						start = i + 1
					}
				}
			}
		}
		if err := emit(b[start:]); err != nil {
			return err
		}
		d.pos += int64(len(b))
	}
}

// escapes maps the single-character escapes of JSON to what they stand for.
var escapes = map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

func hexDigit(c byte) (rune, bool) {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0'), true
	case c >= 'a' && c <= 'f':
		return rune(c - 'a' + 10), true
	case c >= 'A' && c <= 'F':
		return rune(c - 'A' + 10), true
	}
	return 0, false
}

// value reads one JSON value of at most limit bytes and returns it as it is; what
// names it in messages. Its syntax is checked by whoever parses it.
func (d *uploadDecoder) value(limit int, what string) ([]byte, error) {
	var out []byte
	add := func(b ...byte) error {
		if out = append(out, b...); len(out) > limit {
			return invalidf("upload: %s is over the limit of %d bytes", what, limit)
		}
		return nil
	}
	depth := 0
	for {
		c, err := d.byte()
		if err != nil {
			return nil, d.fail(err, "")
		}
		switch c {
		case '"':
			if err := add(c); err != nil {
				return nil, err
			}
			if err := d.stringContent(func(part []byte) error { return add(part...) }, true); err != nil {
				return nil, err
			}
			c = '"'
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		}
		if err := add(c); err != nil {
			return nil, err
		}
		if depth > 0 {
			continue
		}
		// A complete object, array or string, or a scalar up to the next delimiter.
		if c == '}' || c == ']' || c == '"' {
			return out, nil
		}
		next, err := d.r.Peek(1)
		if err != nil || next[0] == ',' || next[0] == '}' || next[0] == ']' || next[0] <= ' ' {
			return out, nil
		}
	}
}

// base64 reads a string of standard base64 (white space in it aside, as
// encoding/base64 allows) and returns the bytes it encodes, at most
// abi.MaxModuleBytes of them. hash names the module in messages.
func (d *uploadDecoder) base64(hash string) ([]byte, error) {
	if c, err := d.byte(); err != nil || c != '"' {
		return nil, d.fail(err, "the bytes of %s must be a base64 string", hash)
	}
	m := moduleDecoder{hash: hash}
	if err := d.stringContent(m.write, false); err != nil {
		return nil, err
	}
	if err := m.flush(true); err != nil {
		return nil, err
	}
	return m.bytes(), nil
}

// moduleDecoder decodes base64 text given in pieces into chunks of bytes.
type moduleDecoder struct {
	hash   string
	text   []byte   // characters not decoded yet
	done   int      // characters decoded, for messages
	chunks [][]byte // decoded bytes, in chunks of moduleChunk
	size   int      // decoded bytes
	padded bool     // the text decoded so far ended with padding
}

const moduleChunk = 1 << 20

func (m *moduleDecoder) write(part []byte) error {
	for _, c := range part {
		if c != '\r' && c != '\n' { // skipped by encoding/base64, and here
			m.text = append(m.text, c)
		}
	}
	if len(m.text) >= 64<<10 {
		return m.flush(false)
	}
	return nil
}

// flush decodes the text held in whole groups of four characters, or all of it if
// final.
func (m *moduleDecoder) flush(final bool) error {
	n := len(m.text) &^ 3
	if final {
		n = len(m.text)
	}
	if n == 0 {
		return nil
	}
	if m.padded { // data after the padding of what was decoded
		return invalidf("modules: %s is not standard base64: illegal base64 data at input byte %d", m.hash, m.done)
	}
	if m.size+base64.StdEncoding.DecodedLen(n) > abi.MaxModuleBytes+2 {
		return invalidf("modules: %s is over the limit of %d bytes", m.hash, abi.MaxModuleBytes)
	}
	for src := m.text[:n]; len(src) > 0; {
		if len(m.chunks) == 0 || len(m.chunks[len(m.chunks)-1]) == moduleChunk {
			m.chunks = append(m.chunks, make([]byte, 0, moduleChunk))
		}
		last := &m.chunks[len(m.chunks)-1]
		k := min(len(src), (moduleChunk-len(*last))/3*4) // whole groups that fit
		if k == 0 {
			// Less than a group's room left: start the next chunk.
			m.chunks = append(m.chunks, make([]byte, 0, moduleChunk))
			continue
		}
		w, err := base64.StdEncoding.Decode((*last)[len(*last):cap(*last)], src[:k])
		var corrupt base64.CorruptInputError
		if errors.As(err, &corrupt) {
			return invalidf("modules: %s is not standard base64: illegal base64 data at input byte %d", m.hash, m.done+int(corrupt))
		}
		*last = (*last)[:len(*last)+w]
		m.size += w
		m.done += k
		m.padded = src[k-1] == '='
		src = src[k:]
	}
	if m.size > abi.MaxModuleBytes {
		return invalidf("modules: %s is %d bytes, over the limit of %d", m.hash, m.size, abi.MaxModuleBytes)
	}
	m.text = append(m.text[:0], m.text[n:]...)
	return nil
}

// bytes returns the decoded bytes in one slice.
func (m *moduleDecoder) bytes() []byte {
	if len(m.chunks) == 1 {
		return m.chunks[0]
	}
	out := make([]byte, 0, m.size)
	for _, c := range m.chunks {
		out = append(out, c...)
	}
	return out
}
