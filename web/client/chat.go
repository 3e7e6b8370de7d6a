package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/web/e2e"
)

// ChatRequest is the part of an OpenAI chat completion request that Chat sends.
type ChatRequest struct {
	Messages    []ChatMessage `json:"messages"`
	Stream      bool          `json:"stream,omitempty"`
	MaxTokens   int           `json:"max_tokens,omitempty"`
	Temperature *float64      `json:"temperature,omitempty"`
	// MaxPrice caps what the request may cost, in nanoTON (settle.MaxPriceMember): a
	// billing host refuses it (402 max_price_exceeded, nothing charged) when its worst
	// case is more, and Chat refuses a receipt that reserved more. 0: for a request
	// signed for an escrow, Chat sets the worst case at the price list it verified
	// before sending (settle.PriceList.RequestMaxPrice); an API-key request then
	// carries none.
	MaxPrice uint64 `json:"max_price,omitempty,string"`
}

// ChatMessage is one message of a ChatRequest.
type ChatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// MaxAnswerBytes bounds an answer Chat reads whole, and one event of a stream.
const MaxAnswerBytes = 16 << 20

// ChatAnswer is what Chat learnt of an answer besides its text.
type ChatAnswer struct {
	// Receipt is the receipt of a billed answer, nil when the host does not bill it.
	// Chat checked it (settle.CheckReceipt) against the attested settlement key, the
	// pipeline, the escrow and the signed request, and the host's price list.
	Receipt *settle.Receipt
	// Verified is set when the answer was checked against the attested host key.
	Verified bool
}

// Chat sends req through pipeline (its id; "" for the host's bare model), signed by s
// for an escrow (nil: with the API key), and gives the answer's text to onText: a
// stream's deltas as they arrive, a whole answer once. It checks the host's signature
// on every byte of the answer whenever it knows the attested host key: an https host's,
// pinned by the TLS handshake, or, with a trust (WithTrust), an http host's, whose boot
// evidence it verifies first (one more request; a failed check is an Error
// with its Report). An http host verified so whose evidence carries end-to-end keys
// gets the request sealed to them, credentials included, and its answer is opened with
// this request's key (web/E2E.md), unless c is WithPlaintext's: a relay between sees sizes and
// timing only. The first such Chat to a host key is sealed to it with
// ML-KEM-768+X25519 and asks for a session; once the host granted one, Chats to that
// key are sealed under it (web/E2E.md §8: no KEM, an HKDF and an AES-GCM pass), for up
// to an hour, and a relay sees that they belong to one session. A whole answer that does not verify is not given to onText; a
// stream's text is given as it arrives and the stream fails CodeNotVerified at its end
// when it does not verify: a caller that shows text as it arrives shows unverified
// text until then. An error status of the host is a CodeRefused error, an error event
// midway an error after the text before it, a stream whose receipt event is out of
// place (a second one, more of the answer after it: settle.StreamReceipt) CodeBadAnswer
// after the text before it. A credential (the API key, s's signature)
// goes in a plaintext header over http only to a loopback host: to any other http
// host a request that is not sealed (no trust, WithPlaintext, no end-to-end keys) is
// CodeInvalid before it is sent. A request signed for an escrow (s) is sent
// only to a verified host (https, or with a trust; else CodeInvalid before anything is
// sent). Before it is signed Chat fetches the host's price list and checks it is
// signed by the settlement key the verified evidence measures (a host measuring none
// is CodeNotVerified, nothing sent), and unless req.MaxPrice is set sets max_price to
// the request's worst case at that list's prices and context windows
// (settle.PriceList.RequestMaxPrice; for a pipeline, the dearest model of the list):
// one more request. A host
// whose prices rose since refuses it (CodeRefused, HostCode max_price_exceeded,
// nothing charged). The answer must come with a receipt, which Chat checks
// (settle.CheckReceipt) against that settlement key, the pipeline, the escrow, the
// request it signed, the cap the request carried and the list (once more against the
// list fetched again when that one refuses it: one more request); a receipt that does
// not verify is CodeNotVerified, after a stream's text.
func (c *Client) Chat(ctx context.Context, pipeline string, req ChatRequest, s *Signer, onText func(string) error) (*ChatAnswer, error) {
	path := "/v1/chat/completions"
	if pipeline != "" {
		path = "/p/" + pipeline + path
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var requestHash string // of the request s signs, which the receipt must bill
	if s != nil {
		if c.ratls == nil && !c.trusted {
			return nil, &Error{Code: CodeInvalid, Message: fmt.Sprintf("the host at %s is not verified, so its receipt could not be checked against an attested settlement key: verify it (https, or --trust-sim-root, --policy or --collateral) before signing for an escrow", c.base)}
		}
		s = s.recordingTo(&requestHash)
	}
	var bootKey ed25519.PublicKey
	var boot *attest.Evidence
	var sealTo *attest.E2EKeys
	if c.ratls == nil && c.trusted {
		boot, _, err = c.VerifyBoot(ctx)
		if err != nil {
			return nil, err
		}
		bootKey = boot.HostKey
		if !c.plaintext {
			sealTo = boot.E2EKeys // bound to the host key: its own line of the boot report
		}
	}
	want := settle.ReceiptWant{Pipeline: pipeline, MaxPrice: req.MaxPrice}
	if s != nil {
		want.Account = s.account
		if want.PriceList, want.SettlementKey, err = c.agreedPrices(ctx, boot); err != nil {
			return nil, err
		}
		if req.MaxPrice == 0 {
			if req.MaxPrice, err = defaultMaxPrice(want.PriceList, pipeline, body); err != nil {
				return nil, err
			}
			want.MaxPrice = req.MaxPrice
			if body, err = json.Marshal(req); err != nil {
				return nil, err
			}
		}
	}
	var resp *http.Response
	var opener *e2e.Client
	if sealTo != nil {
		resp, opener, err = c.sealedRequest(ctx, path, body, s, sealTo)
	} else {
		resp, err = c.request(ctx, http.MethodPost, path, body, s)
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if opener != nil {
		if err := opener.OpenResponse(resp, MaxAnswerBytes); err != nil {
			return nil, &Error{Code: CodeNotVerified, Status: resp.StatusCode, Err: err,
				Message: fmt.Sprintf("the host's answer (%s) does not open with this request's key, so it is not shown: %v", resp.Status, err)}
		}
	}
	v := &attest.ResponseVerifier{HostKey: c.answerKey(bootKey), Request: body, PipelineID: pipeline}
	if v.HostKey == nil {
		v = nil
	}
	answer := &ChatAnswer{Verified: v != nil}
	if resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") == "text/event-stream" {
		answer.Receipt, err = readStream(streamEvents(resp.Body, v), onText)
	} else {
		answer.Receipt, err = readWhole(resp, v, onText)
	}
	if err != nil {
		return nil, err
	}
	if want.SettlementKey == nil && answer.Receipt != nil { // an answer billed to an API key; checkReceipt needs no key for none
		want.SettlementKey = c.attestedSettlementKey(boot)
	}
	want.RequestHash = requestHash
	if err := c.checkReceipt(ctx, answer.Receipt, want, s != nil); err != nil {
		return nil, err
	}
	return answer, nil
}

// sealedRequest sends a POST of body to path sealed to the host's end-to-end key (the
// post-quantum hybrid suite), or under the session the host granted for it, with its
// credentials (the API key, or s's signature headers) inside the envelope, and returns
// the answer and the client that opens it. A session the host no longer holds
// (e2e_session_unknown) is dropped and the request sent once more, sealed to the key,
// with the same sealed headers: the refusal is unsigned, and a relay could forge it for
// a request that ran, so an escrow-signed request keeps its nonce (the host refuses a
// second one) and an API-key request carries an Idempotency-Key made for it (a billing
// host answers the second with the first's answer), and neither is charged twice.
func (c *Client) sealedRequest(ctx context.Context, path string, body []byte, s *Signer, to *attest.E2EKeys) (*http.Response, *e2e.Client, error) {
	inner := http.Header{"Content-Type": {"application/json"}}
	if s != nil {
		u, err := url.Parse(c.base + path)
		if err != nil {
			return nil, nil, &Error{Code: CodeInvalid, Err: err, Message: fmt.Sprintf("--host %q: %v", c.base, err)}
		}
		s.Sign(&http.Request{Method: http.MethodPost, URL: u, Header: inner}, body)
	} else if c.key != "" {
		inner.Set("Authorization", "Bearer "+c.key)
		// An API key mapped to an escrow is billed with no nonce of the client's: a
		// key of its own makes sending it again below charge it at most once.
		inner.Set(settle.IdempotencyKeyHeader, e2e.NewIdempotencyKey("client"))
	}
	suite := e2e.MLKEM768X25519
	pub := to.Public()
	for attempt := 0; ; attempt++ {
		sealed, opener, err := c.sessions.Seal(suite, pub.Key(suite), http.MethodPost, path, e2e.Request{Header: inner, Body: body})
		if err != nil {
			return nil, nil, &Error{Code: CodeBadAnswer, Err: err, Message: fmt.Sprintf("sealing the request to the host's end-to-end key: %v", err)}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(sealed))
		if err != nil {
			return nil, nil, &Error{Code: CodeInvalid, Err: err, Message: fmt.Sprintf("--host %q: %v", c.base, err)}
		}
		req.Header.Set("Content-Type", e2e.ContentType)
		resp, err := c.do(req, nil)
		if err != nil {
			return nil, nil, c.TransportError(err)
		}
		if !opener.Retry(e2e.RefusalCode(resp, MaxAnswerBytes)) || attempt > 0 {
			return resp, opener, nil
		}
		resp.Body.Close() // the session is dropped: sealed again, to the key
	}
}

// answerKey is the attested host key to check an answer with: an https host's, pinned
// by the TLS handshake that carried the request; else bootKey, from evidence verified
// before the request (nil when none was).
func (c *Client) answerKey(bootKey ed25519.PublicKey) ed25519.PublicKey {
	if c.ratls != nil {
		if ev, _, ok := c.ratls.Pinned(); ok {
			return ev.HostKey
		}
	}
	return bootKey
}

// readWhole gives a non-streaming answer's text to onText once its signature verifies
// (v nil: without a check), or returns the host's error, and returns its receipt.
func readWhole(resp *http.Response, v *attest.ResponseVerifier, onText func(string) error) (*settle.Receipt, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes))
	if err != nil {
		return nil, &Error{Code: CodeUnreachable, Err: err, Message: fmt.Sprintf("reading the answer: %v", err)}
	}
	if v != nil {
		if err := v.VerifyBody(resp.StatusCode, resp.Header.Get("Retry-After"), b, resp.Header.Get(attest.ResponseSignatureHeader)); err != nil {
			return nil, &Error{Code: CodeNotVerified, Status: resp.StatusCode, Err: err,
				Message: fmt.Sprintf("the host's answer (%s) is not signed by the attested host key, so it is not shown: %v", resp.Status, err)}
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	if resp.StatusCode/100 != 2 {
		return nil, responseError(resp)
	}
	receipt, err := headerReceipt(resp.Header)
	if err != nil {
		return nil, err
	}
	var answer struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return nil, &Error{Code: CodeBadAnswer, Err: err, Message: fmt.Sprintf("the host's answer is not a chat completion: %v", err)}
	}
	if len(answer.Choices) == 0 {
		return nil, &Error{Code: CodeBadAnswer, Message: "the host's answer has no choices"}
	}
	return receipt, onText(answer.Choices[0].Message.Content)
}

// headerReceipt decodes the receipt header of a billed answer; nil when there is none.
func headerReceipt(h http.Header) (*settle.Receipt, error) {
	v := h.Get(settle.ReceiptHeader)
	if v == "" {
		return nil, nil
	}
	var r settle.Receipt
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return nil, &Error{Code: CodeBadAnswer, Err: err, Message: fmt.Sprintf("the host's %s header is not a receipt: %v", settle.ReceiptHeader, err)}
	}
	return &r, nil
}

// streamEvents returns a reader of the data of a stream's events, one per call and
// io.EOF at the end: with v, of the events before the signature event, and io.EOF only
// once the stream verified to its end (attest.SignedStream); without, of the events up
// to "data: [DONE]", and io.ErrUnexpectedEOF when the stream ends without it.
func streamEvents(body io.Reader, v *attest.ResponseVerifier) func() ([]byte, error) {
	if v != nil {
		s := v.ReadStream(body, MaxAnswerBytes)
		return func() ([]byte, error) {
			for {
				ev, err := s.Next()
				if err != nil {
					return nil, err
				}
				if ev.Kind == attest.EventData {
					return ev.Data, nil
				}
			}
		}
	}
	r := bufio.NewReader(body)
	return func() ([]byte, error) {
		for {
			line, err := r.ReadString('\n')
			if err == io.EOF {
				return nil, io.ErrUnexpectedEOF
			} else if err != nil {
				return nil, err
			}
			data, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data:")
			if !ok {
				continue // blank lines between events, comments, other fields
			}
			if data = strings.TrimPrefix(data, " "); data == "[DONE]" {
				return nil, io.EOF
			}
			return []byte(data), nil
		}
	}
}

// readStream gives the content of each chunk of a stream to onText as it arrives,
// from next (streamEvents), and returns the receipt of a billed stream (its
// cocoon_receipt event). An error event, or a stream that does not end as it should
// (or, checked, does not verify), is an error; so is a receipt event out of place
// (settle.StreamReceipt: a second one, or more of the answer after it), CodeBadAnswer
// after the text before it. The events after one out of place are read to the
// stream's end but not given out, so that a checked stream that does not verify is
// CodeNotVerified (a relay's doing), not taken for the host's bad answer.
func readStream(next func() ([]byte, error), onText func(string) error) (*settle.Receipt, error) {
	var receipt settle.StreamReceipt
	var failed error // an error event's, or a bad answer's: the stream's end follows
	outOfPlace := false
	for {
		data, err := next()
		switch {
		case err == io.EOF && failed == nil:
			return receipt.Receipt(), nil
		case failed != nil && (err == io.EOF || err == io.ErrUnexpectedEOF):
			return nil, failed
		case errors.Is(err, attest.ErrResponseSignature):
			return nil, &Error{Code: CodeNotVerified, Err: err, Message: fmt.Sprintf("the answer above is not signed by the attested host key: do not trust it: %v", err)}
		case err == io.ErrUnexpectedEOF:
			return nil, &Error{Code: CodeBadAnswer, Err: err, Message: "the stream ended before the answer was complete"}
		case err != nil:
			return nil, &Error{Code: CodeUnreachable, Err: err, Message: fmt.Sprintf("reading the stream: %v", err)}
		case outOfPlace:
			continue
		}
		var chunk struct {
			apiError
			Receipt *settle.Receipt `json:"cocoon_receipt"`
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(data, &chunk); err != nil {
			return nil, &Error{Code: CodeBadAnswer, Err: err, Message: fmt.Sprintf("the stream holds an event that is not JSON: %v", err)}
		}
		if err := receipt.Event(chunk.Receipt, chunk.Error != nil); err != nil {
			failed, outOfPlace = &Error{Code: CodeBadAnswer, Err: err, Message: fmt.Sprintf("the host's stream is not an answer a host sends, so its bill is not taken: %v", err)}, true
			continue
		}
		if chunk.Error != nil {
			failed = &Error{Code: CodeRefused, HostCode: chunk.Error.Code, Message: fmt.Sprintf("the answer failed midway: %s", chunk.Error.Message)} // the stream's end follows
			continue
		}
		for _, ch := range chunk.Choices {
			if err := onText(ch.Delta.Content); err != nil {
				return nil, err
			}
		}
	}
}
