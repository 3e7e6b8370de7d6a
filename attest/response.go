package attest

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
)

// Errors of verifying a response. Every failure wraps ErrResponseSignature; one whose
// signature is well formed but does not verify with the key over what was received
// (the answer was altered, or another key signed it: the host restarted) also wraps
// ErrSignatureMismatch.
var (
	ErrResponseSignature = errors.New("response signature")
	ErrSignatureMismatch = errors.New("does not verify with the host key")
)

// ResponseSignatureHeader carries the signature of an answer that is a whole body (a
// chat.completion or an error): "ed25519=<standard base64 of the 64-byte signature>",
// over a SignedResponse of kind ResponseBody. A streamed answer carries its signature
// in its last event instead (SignatureEvent).
const ResponseSignatureHeader = "Cocoon-Signature"

// Kinds of signed answers.
const (
	// ResponseBody is an answer read whole: its signature is in ResponseSignatureHeader
	// and its digest is the sha256 of the body's bytes.
	ResponseBody = "body"
	// ResponseStream is a text/event-stream answer: its signature is in its signature
	// event, and its digest is the sha256 of every byte of the stream before that event.
	ResponseStream = "stream"
)

// SignedResponse is what a host signs for every answer of its chat routes: the digest
// of every byte of the answer the client reads (but the signature itself), the status
// and Retry-After that go with it, and what binds it to a request.
type SignedResponse struct {
	// Kind is ResponseBody or ResponseStream.
	Kind string
	// RequestSHA256 is the sha256 of the request body as the client sent it; nil for an
	// error the host answered before it read the body (at capacity, a credential
	// refused, a body too large or too slow), which is bound to no request.
	RequestSHA256 *[32]byte
	// PipelineID is the pipeline id of the path the request addressed, as written
	// there ("" for /v1/chat/completions).
	PipelineID string
	// Status is the HTTP status of the answer (200 for every stream).
	Status int
	// RetryAfter is the value of the answer's Retry-After header, "" when it has none.
	RetryAfter string
	// BodySHA256 is the digest of the answer (see Kind).
	BodySHA256 [32]byte
}

// responseDomain is the first field of every signed response message; a new encoding
// gets a new domain, so that no signature of one verifies as the other.
const responseDomain = "cocoon-host response v2"

// Message returns the bytes the host key signs:
//
//	lp("cocoon-host response v2") || lp(Kind) || lp(RequestSHA256: 32 bytes, or none) ||
//	lp(PipelineID) || lp(uint16be(Status)) || lp(RetryAfter) || lp(BodySHA256)
//
// where lp(x) is a 4-byte big-endian length followed by x. The message is itself the
// encoding, not a digest: ed25519 hashes what it signs.
func (r SignedResponse) Message() []byte {
	var request []byte
	if r.RequestSHA256 != nil {
		request = r.RequestSHA256[:]
	}
	var status [2]byte
	binary.BigEndian.PutUint16(status[:], uint16(r.Status))
	var b bytes.Buffer
	b.Grow(160 + len(r.PipelineID) + len(r.RetryAfter))
	writeFields(&b, []byte(responseDomain), []byte(r.Kind), request, []byte(r.PipelineID), status[:],
		[]byte(r.RetryAfter), r.BodySHA256[:])
	return b.Bytes()
}

// Sign returns the signature of r by key.
func (r SignedResponse) Sign(key ed25519.PrivateKey) []byte { return ed25519.Sign(key, r.Message()) }

// Verify reports whether sig is hostKey's signature of r.
func (r SignedResponse) Verify(hostKey ed25519.PublicKey, sig []byte) bool {
	return len(hostKey) == ed25519.PublicKeySize && ed25519.Verify(hostKey, r.Message(), sig)
}

// The signature event is the last event of a stream before "data: [DONE]", or the last
// of a stream that ends with an error event: a chunk with no choices, which OpenAI
// clients pass over, and nothing but the signature, so that no byte a client reads is
// outside it.
const (
	signatureEventPrefix = `data: {"object":"chat.completion.chunk","choices":[],"cocoon_signature":"`
	signatureEventSuffix = "\"}\n\n"
	signatureScheme      = "ed25519="
)

// SignatureEvent returns the event that ends a signed stream, for the value
// (Host.SignResponse) of its SignedResponse:
//
//	data: {"object":"chat.completion.chunk","choices":[],"cocoon_signature":"ed25519=<base64>"}
//
// followed by a blank line, byte for byte.
func SignatureEvent(value string) []byte {
	return []byte(signatureEventPrefix + value + signatureEventSuffix)
}

// parseSignature decodes "ed25519=<standard base64 of 64 bytes>".
func parseSignature(value string) ([]byte, error) {
	b64, ok := strings.CutPrefix(value, signatureScheme)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not \"ed25519=<base64>\"", ErrResponseSignature, value)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(b64) // one spelling per signature
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: not a base64 %d-byte ed25519 signature", ErrResponseSignature, ed25519.SignatureSize)
	}
	return sig, nil
}

// ResponseVerifier checks the host's signatures on the answers to one request: the
// attested host key, the request body exactly as sent, and the pipeline id of the
// path it was sent to ("" for /v1/chat/completions).
type ResponseVerifier struct {
	HostKey    ed25519.PublicKey
	Request    []byte
	PipelineID string
}

func (v ResponseVerifier) signed(kind string, status int, retryAfter string, digest [32]byte) SignedResponse {
	request := sha256.Sum256(v.Request)
	return SignedResponse{Kind: kind, RequestSHA256: &request, PipelineID: v.PipelineID, Status: status,
		RetryAfter: retryAfter, BodySHA256: digest}
}

// VerifyBody checks an answer read whole: its status, the value of its Retry-After
// header ("" when absent), its body's bytes, and signature, the value of its
// Cocoon-Signature header. An answer with an error status may be signed without the
// request (the host answered before it read the body): such an answer is the host's,
// but could have been sent to another request. Errors wrap ErrResponseSignature.
// Cost: a sha256 of the body and one ed25519 verification (two for a failing error).
func (v ResponseVerifier) VerifyBody(status int, retryAfter string, body []byte, signature string) error {
	switch {
	case signature == "":
		return fmt.Errorf("%w: the host sent none (no %s header)", ErrResponseSignature, ResponseSignatureHeader)
	case status < 100 || status > 999:
		return fmt.Errorf("%w: status %d is not an HTTP status", ErrResponseSignature, status)
	}
	sig, err := parseSignature(signature)
	if err != nil {
		return err
	}
	r := v.signed(ResponseBody, status, retryAfter, sha256.Sum256(body))
	if r.Verify(v.HostKey, sig) {
		return nil
	}
	if status >= 400 {
		if r.RequestSHA256 = nil; r.Verify(v.HostKey, sig) {
			return nil
		}
	}
	return fmt.Errorf("%w: %w over this request, pipeline, status %d and body", ErrResponseSignature, ErrSignatureMismatch, status)
}

// StreamEventKind says what an event of a signed stream is.
type StreamEventKind int

const (
	// EventData is an event before the signature event: a chunk, a billing host's
	// receipt, or an error event. It is not verified until the signature event is.
	EventData StreamEventKind = iota
	// EventSignature is the signature event, verified.
	EventSignature
	// EventDone is "data: [DONE]" after the signature event of a completed stream.
	EventDone
)

// StreamEvent is one event of a signed stream.
type StreamEvent struct {
	// Raw is the event's bytes as received: "data: ", Data, and "\n\n".
	Raw []byte
	// Data is the event's data.
	Data []byte
	Kind StreamEventKind
}

// IsError reports whether the event is a host's error event ({"error": {...}}),
// which ends a failed stream.
func (e StreamEvent) IsError() bool { return bytes.HasPrefix(e.Data, []byte(`{"error":`)) }

// streamState is where a SignedStream is.
type streamState int

const (
	beforeSignature streamState = iota
	mismatched                  // the signature event did not verify with the key
	signed                      // the signature verified; [DONE] or the end follows
	afterDone                   // [DONE] came; only the end may follow
	finished                    // the end came, or a failure
)

// SignedStream reads a streamed answer event by event and checks it against the host's
// signature. A host frames every event as "data: <one line>\n\n"; the stream is
//
//	event* signature-event ["data: [DONE]\n\n"]
//
// where the signature event (SignatureEvent) signs a SignedResponse of kind
// ResponseStream, status 200, whose digest is the sha256 of every byte before it.
// "data: [DONE]" follows it when the last event before it is not an error event, and
// nothing else follows. It is not safe for concurrent use.
type SignedStream struct {
	v         ResponseVerifier
	r         *bufio.Reader
	max       int
	digest    hash.Hash
	state     streamState
	lastError bool // the last event before the signature is an error event
	// pending is what the signature event signs, sig its signature and sigEvent the
	// event, kept after a mismatch for RetryWithKey.
	pending  SignedResponse
	sig      []byte
	sigEvent StreamEvent
}

// ReadStream returns a SignedStream reading r, which refuses any event over maxEvent
// bytes.
func (v ResponseVerifier) ReadStream(r io.Reader, maxEvent int) *SignedStream {
	return &SignedStream{v: v, r: bufio.NewReaderSize(r, 64<<10), max: maxEvent, digest: sha256.New()}
}

// Next returns the next event. Events before the signature event come as EventData,
// unverified; the signature event comes as EventSignature once it verified, then
// [DONE] as EventDone. After the last event Next returns io.EOF, and only then is the
// whole stream verified. Any other error means the stream must not be trusted: it
// wraps ErrResponseSignature (altered, reordered, cut short, badly framed, or an
// event past maxEvent) or is the error of reading. A signature event that does not
// verify wraps ErrSignatureMismatch too, and RetryWithKey may check it with another
// key. Cost: a sha256 of each event's bytes, and one ed25519 verification.
func (s *SignedStream) Next() (StreamEvent, error) {
	switch s.state {
	case mismatched, finished:
		return StreamEvent{}, fmt.Errorf("%w: the stream did not verify", ErrResponseSignature)
	}
	ev, err := s.readEvent()
	end := errors.Is(err, io.EOF)
	switch {
	case end && s.state == signed && s.lastError, end && s.state == afterDone:
		s.state = finished
		return StreamEvent{}, io.EOF
	case end && s.state == signed:
		err = fmt.Errorf(`%w: the stream ended after its signature without "data: [DONE]"`, ErrResponseSignature)
	case end:
		err = fmt.Errorf("%w: the stream ended before its signature event", ErrResponseSignature)
	case err == nil && s.state == afterDone:
		err = fmt.Errorf(`%w: an event after "data: [DONE]"`, ErrResponseSignature)
	case err == nil && s.state == signed:
		if ev.Data = ev.Raw[len("data: ") : len(ev.Raw)-2]; string(ev.Data) == "[DONE]" && !s.lastError {
			s.state = afterDone
			ev.Kind = EventDone
			return ev, nil
		}
		err = fmt.Errorf("%w: an event after the signature event", ErrResponseSignature)
	}
	if err != nil {
		s.state = finished
		return StreamEvent{}, err
	}
	if value, ok := bytes.CutPrefix(ev.Raw, []byte(signatureEventPrefix)); ok {
		return s.signature(ev, value)
	}
	ev.Data = ev.Raw[len("data: ") : len(ev.Raw)-2]
	if string(ev.Data) == "[DONE]" {
		s.state = finished
		return StreamEvent{}, fmt.Errorf(`%w: "data: [DONE]" before the signature event`, ErrResponseSignature)
	}
	s.digest.Write(ev.Raw)
	s.lastError = ev.IsError()
	return ev, nil
}

// signature checks the signature event ev, whose bytes after the fixed prefix are
// value.
func (s *SignedStream) signature(ev StreamEvent, value []byte) (StreamEvent, error) {
	ev.Kind = EventSignature
	ev.Data = ev.Raw[len("data: ") : len(ev.Raw)-2]
	sigValue, ok := bytes.CutSuffix(value, []byte(signatureEventSuffix))
	sig, err := parseSignature(string(sigValue))
	if !ok || err != nil {
		s.state = finished
		return StreamEvent{}, fmt.Errorf("%w: the signature event is not %s...%s", ErrResponseSignature, signatureEventPrefix, strings.TrimSpace(signatureEventSuffix))
	}
	s.pending, s.sig, s.sigEvent = s.v.signed(ResponseStream, 200, "", [32]byte(s.digest.Sum(nil))), sig, ev
	if !s.pending.Verify(s.v.HostKey, sig) {
		s.state = mismatched
		return StreamEvent{}, fmt.Errorf("%w: %w over this request, pipeline and stream", ErrResponseSignature, ErrSignatureMismatch)
	}
	s.state = signed
	return ev, nil
}

// RetryWithKey checks a signature event that did not verify (Next failed with
// ErrSignatureMismatch) with key, such as the key of the host's fresh evidence after
// a restart. When it verifies, it returns the signature event, and the stream goes on
// as if it had verified at first: Next returns what follows. Errors wrap
// ErrResponseSignature. Cost: one ed25519 verification.
func (s *SignedStream) RetryWithKey(key ed25519.PublicKey) (StreamEvent, error) {
	if s.state != mismatched {
		return StreamEvent{}, fmt.Errorf("%w: no signature event to check again", ErrResponseSignature)
	}
	if !s.pending.Verify(key, s.sig) {
		return StreamEvent{}, fmt.Errorf("%w: %w over this request, pipeline and stream", ErrResponseSignature, ErrSignatureMismatch)
	}
	s.v.HostKey, s.state = key, signed
	return s.sigEvent, nil
}

// readEvent reads one event: a line "data: <data>\n" and an empty line. A clean end
// before an event is io.EOF.
func (s *SignedStream) readEvent() (StreamEvent, error) {
	line, err := s.readLine(nil)
	switch {
	case err == io.EOF && len(line) == 0:
		return StreamEvent{}, io.EOF
	case err == io.EOF:
		return StreamEvent{}, fmt.Errorf("%w: the stream ended inside an event", ErrResponseSignature)
	case err != nil:
		return StreamEvent{}, err
	case !bytes.HasPrefix(line, []byte("data: ")) || bytes.IndexByte(line, '\r') >= 0:
		return StreamEvent{}, fmt.Errorf(`%w: an event that is not "data: <line>" and an empty line`, ErrResponseSignature)
	}
	raw, err := s.readLine(line)
	switch {
	case err == io.EOF:
		return StreamEvent{}, fmt.Errorf("%w: the stream ended inside an event", ErrResponseSignature)
	case err != nil:
		return StreamEvent{}, err
	case len(raw) != len(line)+1:
		return StreamEvent{}, fmt.Errorf(`%w: an event that is not "data: <line>" and an empty line`, ErrResponseSignature)
	}
	return StreamEvent{Raw: raw}, nil
}

// readLine appends the next line, through its '\n', to dst. It fails once dst would
// exceed the largest event.
func (s *SignedStream) readLine(dst []byte) ([]byte, error) {
	for {
		chunk, err := s.r.ReadSlice('\n')
		if len(dst)+len(chunk) > s.max {
			return nil, fmt.Errorf("%w: an event exceeds %d bytes", ErrResponseSignature, s.max)
		}
		dst = append(dst, chunk...)
		if !errors.Is(err, bufio.ErrBufferFull) {
			return dst, err
		}
	}
}
