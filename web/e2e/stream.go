package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"slices"
)

// A streamed answer is a text/event-stream of sealed records, in order:
//
//	data: <standard base64 of record seq>\n\n           (every record but the last)
//	event: final\ndata: <standard base64 of the last record>\n\n
//
// Record seq's nonce is the base nonce XOR seq and its AAD says whether it is the last
// (recordParams), so a record reordered, dropped, replayed from another answer or marked
// last out of place does not open, and a stream that ends before its final record is
// truncated.
const (
	recordPrefix      = "data: "
	finalRecordPrefix = "event: final\ndata: "
	recordSuffix      = "\n\n"
)

// StreamRecord returns record seq of a streamed answer, framed as its event. plain
// is left as it is.
func (o *Opened) StreamRecord(seq uint64, final bool, plain []byte) []byte {
	return o.AppendStreamRecord(nil, seq, final, bytes.Clone(plain))
}

// AppendStreamRecord appends record seq of a streamed answer (status 200), framed as
// its event, to dst, and returns the extended buffer. The records' plaintexts, in
// order, are ResponseHead of the headers and then the stream's bytes; the last is
// final. It seals plain in place, overwriting its bytes (and, when plain has 16 bytes
// of room beyond its length, allocating nothing), so that a host writing one record per
// flush reuses its two buffers: cost, an AES-256-GCM pass and a base64 encoding.
func (o *Opened) AppendStreamRecord(dst []byte, seq uint64, final bool, plain []byte) []byte {
	prefix := recordPrefix
	if final {
		prefix = finalRecordPrefix
	}
	ct := o.sealRecord(plain[:0], seq, http.StatusOK, final, plain)
	dst = slices.Grow(dst, len(prefix)+base64.StdEncoding.EncodedLen(len(ct))+len(recordSuffix))
	dst = append(dst, prefix...)
	dst = base64.StdEncoding.AppendEncode(dst, ct)
	return append(dst, recordSuffix...)
}

// Stream reads a streamed answer's plaintext: Header is its sealed headers, Read its
// bytes (the inner text/event-stream) as the records open. Read fails, wrapping ErrE2E,
// at a record that does not open, one over the size limit, bytes after the final
// record, and at the end of a stream without one (truncated).
type Stream struct {
	Header http.Header
	c      *Client
	in     *bufio.Reader
	max    int
	seq    uint64
	done   bool
	buf    []byte // opened and not yet read: a part of rec, or of the head's buffer
	rec    []byte // the current record, decoded then opened in place
}

// OpenStream reads the first records of a streamed answer from r until its head is
// complete, each record at most maxRecord bytes of base64.
func (c *Client) OpenStream(r io.Reader, maxRecord int) (*Stream, error) {
	s := &Stream{c: c, in: bufio.NewReaderSize(r, 4096), max: maxRecord}
	var head []byte
	for {
		if err := s.next(); err != nil {
			return nil, err
		}
		head = append(head, s.buf...)
		s.buf = nil
		if len(head) >= 4 {
			n := int(uint32(head[0])<<24 | uint32(head[1])<<16 | uint32(head[2])<<8 | uint32(head[3]))
			if n > maxMeta {
				return nil, fmt.Errorf("%w: head of %d bytes is over %d", ErrE2E, n, maxMeta)
			}
			if len(head) >= 4+n {
				h, rest, err := splitResponse(head)
				if err != nil {
					return nil, err
				}
				s.Header, s.buf = h, rest
				c.granted(h)
				return s, nil
			}
		}
		if s.done {
			return nil, fmt.Errorf("%w: the answer ended inside its head", ErrE2E)
		}
	}
}

// next reads and opens the next record into s.buf, reusing s.rec: the caller has
// consumed s.buf before.
func (s *Stream) next() error {
	if s.done {
		return io.EOF
	}
	line, err := s.line()
	if err != nil {
		return err
	}
	final := string(line) == "event: final\n"
	if final {
		if line, err = s.line(); err != nil {
			return err
		}
	}
	b64, ok := bytes.CutPrefix(line, []byte(recordPrefix))
	if !ok || len(b64) < 2 {
		return fmt.Errorf("%w: record %d is not a sealed record event", ErrE2E, s.seq)
	}
	b64 = b64[:len(b64)-1] // the line's \n
	// Decoded now: the next read reuses line's bytes.
	s.rec = slices.Grow(s.rec[:0], base64.StdEncoding.DecodedLen(len(b64)))
	n, err := base64.StdEncoding.Strict().Decode(s.rec[:cap(s.rec)], b64)
	if err != nil {
		return fmt.Errorf("%w: record %d is not base64", ErrE2E, s.seq)
	}
	if blank, err := s.line(); err != nil {
		return err
	} else if len(blank) != 1 {
		return fmt.Errorf("%w: record %d is not one event of one or two lines", ErrE2E, s.seq)
	}
	ct := s.rec[:n]
	p, err := s.c.openRecord(ct[:0], s.seq, http.StatusOK, final, ct)
	if err != nil {
		return err
	}
	s.seq++
	s.buf, s.done = p, final
	if final {
		// Nothing may follow the final record: bytes after it are not the host's.
		if _, err := s.in.ReadByte(); err != io.EOF {
			return fmt.Errorf("%w: bytes follow the final record", ErrE2E)
		}
	}
	return nil
}

// line reads the next line of the stream, \n included; its bytes are valid until the
// next read. The end of the stream is a truncated answer, since only the final
// record may end it.
func (s *Stream) line() ([]byte, error) {
	line, err := s.in.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		line, err = s.readLong(line)
	}
	if err == io.EOF {
		return nil, fmt.Errorf("%w: the answer ends after record %d without its final record: truncated", ErrE2E, s.seq)
	}
	return line, err
}

// readLong reads the rest of a line longer than the buffer, up to the record limit.
func (s *Stream) readLong(first []byte) ([]byte, error) {
	line := bytes.Clone(first)
	for {
		more, err := s.in.ReadSlice('\n')
		line = append(line, more...)
		if len(line) > s.max+len(finalRecordPrefix)+1 {
			return nil, fmt.Errorf("%w: record %d is over the limit of %d bytes", ErrE2E, s.seq, s.max)
		}
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}

// Read returns the answer's plaintext bytes after its head, in order. It returns
// io.EOF only after the final record opened.
func (s *Stream) Read(p []byte) (int, error) {
	for len(s.buf) == 0 {
		if err := s.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}
