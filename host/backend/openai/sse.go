package openai

import (
	"bufio"
	"bytes"
	"io"
	"sync"

	"github.com/cocoonhost/cocoon/host/backend"
)

// readBuffer is the size of the buffered reader under an event stream: most lines fit,
// longer ones are assembled in eventReader.long.
const readBuffer = 64 << 10

// event is one dispatched server-sent event.
type event struct {
	data []byte // valid until the next call of next
	// isError marks an error event: "event: error", or llama.cpp's non-standard
	// "error: {...}" field.
	isError bool
}

// eventReader splits a text/event-stream body into events as the WHATWG HTML standard
// says: lines end in LF or CRLF (a lone CR, which no inference server sends, is not a
// line end); "data" fields accumulate, joined by LF; a blank line dispatches; lines
// starting with ':' are comments; "id", "retry" and unknown fields are ignored; an event
// without its blank line at the end of the body is dropped (it may be cut short).
type eventReader struct {
	r       *bufio.Reader
	maxLine int
	long    []byte // a line longer than r's buffer
	data    []byte
	hasData bool
	isError bool
}

// lineReaders recycles the buffered readers of event streams: a fresh one per stream
// cost an allocation of readBuffer, zeroed, which was most of what a relayed stream
// allocated.
var lineReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBuffer) }}

// newEventReader returns a reader of the events of r, which must be released when
// the stream is read.
func newEventReader(r io.Reader, maxLine int) *eventReader {
	br := lineReaders.Get().(*bufio.Reader)
	br.Reset(r)
	return &eventReader{r: br, maxLine: maxLine}
}

// release recycles er's buffer: er and the events it returned must not be used after.
func (er *eventReader) release() {
	er.r.Reset(nil)
	lineReaders.Put(er.r)
	er.r = nil
}

// next returns the next event, or io.EOF after the last one. Other errors are the
// reader's, or a *backend.Error for a line over maxLine.
func (er *eventReader) next() (event, error) {
	er.data, er.hasData, er.isError = er.data[:0], false, false
	for {
		line, err := er.line()
		if err != nil {
			return event{}, err
		}
		if len(line) == 0 {
			if er.hasData {
				return event{data: er.data, isError: er.isError}, nil
			}
			er.isError = false // an event type without data ends here
			continue
		}
		if line[0] == ':' {
			continue
		}
		name, value, _ := bytes.Cut(line, []byte{':'})
		value = bytes.TrimPrefix(value, []byte{' '})
		switch string(name) {
		case "data":
			er.appendData(value)
		case "error":
			er.appendData(value)
			er.isError = true
		case "event":
			er.isError = string(value) == "error"
		}
	}
}

func (er *eventReader) appendData(value []byte) {
	if er.hasData {
		er.data = append(er.data, '\n')
	}
	er.data = append(er.data, value...)
	er.hasData = true
}

// line returns the next line without its line end. It is valid until the next call.
func (er *eventReader) line() ([]byte, error) {
	b, err := er.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		er.long = append(er.long[:0], b...)
		for err == bufio.ErrBufferFull {
			// The line end is not counted: allow for a CRLF.
			if len(er.long) > er.maxLine+2 {
				return nil, er.tooLong()
			}
			b, err = er.r.ReadSlice('\n')
			er.long = append(er.long, b...)
		}
		b = er.long
	}
	if err != nil && (err != io.EOF || len(b) == 0) {
		return nil, err
	}
	b = bytes.TrimSuffix(b, []byte{'\n'})
	b = bytes.TrimSuffix(b, []byte{'\r'})
	if len(b) > er.maxLine {
		return nil, er.tooLong()
	}
	return b, nil
}

func (er *eventReader) tooLong() error {
	return backend.Errorf(backend.CodeUpstream, "inference server sent an event stream line over %d bytes", er.maxLine)
}
