package verifier

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/settle"
)

// The browser client library's checks (web/browser): thin wrappers of the Go code that
// makes and checks the same bytes for the Go client, behind JSON in and JSON out, so
// that a browser and `cocoon chat` cannot disagree on what verifies. Each returns
// {"error": "..."} on any failure and never panics on input.

// Keys are what a client pins from evidence that verified: the host key, the
// end-to-end keys it signed (attest.E2EKeys) and the settlement key the verified event
// log measures. Verify sets them (Result.Keys) only when the report passed, taken from
// the very evidence the checks ran on, so that a client never parses evidence itself
// (a parser of its own could read other members than the verifier did).
type Keys struct {
	HostKey       []byte          `json:"host_key"`
	E2E           *attest.E2EKeys `json:"e2e_keys,omitempty"`
	SettlementKey []byte          `json:"settlement_key,omitempty"`
}

// pinnedKeys returns the keys of ev, which verified; nil settlement key when its event
// log measures none (a host without billing).
func pinnedKeys(ev *attest.Evidence) *Keys {
	k := &Keys{HostKey: ev.HostKey, E2E: ev.E2EKeys}
	if events, err := attest.ParseEventLog(ev.EventLog); err == nil { // VerifyEvidence parsed and replayed it
		k.SettlementKey = attest.SettlementKeyOf(events)
	}
	return k
}

// AnswerArgs say which answer CheckAnswer checks, as JSON:
//
//	{"host_key": "<base64 ed25519 key>",  the pinned host key (Result.Keys.HostKey)
//	 "pipeline_id": "<64 hex>",           the pipeline of the path the request went to, "" for none
//	 "kind": "body" | "stream",
//	 "status": 200, "retry_after": "",    a whole answer's status and Retry-After
//	 "signature": "ed25519=..."}          a whole answer's Cocoon-Signature
type AnswerArgs struct {
	HostKey    []byte `json:"host_key"`
	PipelineID string `json:"pipeline_id"`
	Kind       string `json:"kind"`
	Status     int    `json:"status"`
	RetryAfter string `json:"retry_after"`
	Signature  string `json:"signature"`
}

// AnswerResult is CheckAnswer's result, and CheckReceipt's: for a stream that verified,
// the data of its events before the signature event (chunks, the receipt event, an
// error event), the only events a client may act on.
type AnswerResult struct {
	OK     bool     `json:"ok"`
	Events []string `json:"events,omitempty"`
}

// failure is the result of every function here that fails: {"error": "..."}, with
// "code": "bad_answer" when what failed is an answer that verified but is not one a
// host sends (errBadAnswer), which a client refuses as such, not as a forgery.
type failure struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// errBadAnswer is wrapped by CheckAnswer's refusals of a signed answer that is not one
// a host sends: a stream's receipt out of place (settle.StreamReceipt), an event that
// is not JSON.
var errBadAnswer = errors.New("not an answer a host sends")

// run decodes args into an A (decodeArgs), runs f and returns its result as JSON, or
// {"error": ...} when either fails.
func run[A any](args []byte, f func(A) (any, error)) []byte {
	var a A
	if err := decodeArgs(args, &a); err != nil {
		return encode(failure{Error: err.Error()})
	}
	v, err := f(a)
	if err != nil {
		refused := failure{Error: err.Error()}
		if errors.Is(err, errBadAnswer) {
			refused.Code = "bad_answer"
		}
		return encode(refused)
	}
	return encode(v)
}

// CheckAnswer checks the host's signature on an answer (attest.ResponseVerifier) to
// the request body request: a whole body, or a stream's opened bytes from its first
// event to its end, which must verify to the end (SignedStream.Next to io.EOF), and
// whose events must each be JSON with the receipt event in its place
// (settle.StreamReceipt, the rule web/client's Chat applies): else {"error": ...,
// "code": "bad_answer"}. answer is at most maxAnswer bytes. Cost: a sha256 of the
// answer, one ed25519 verification (two for an error body signed without the
// request), and a JSON decoding of each event of a stream.
func CheckAnswer(args, request, answer []byte) []byte {
	return run(args, func(a AnswerArgs) (any, error) { return checkAnswer(a, request, answer) })
}

// maxAnswer bounds what CheckAnswer reads: web/client.MaxAnswerBytes.
const maxAnswer = 16 << 20

func checkAnswer(a AnswerArgs, request, answer []byte) (*AnswerResult, error) {
	if len(a.HostKey) != ed25519.PublicKeySize {
		return nil, errors.New("host_key: not a 32-byte ed25519 key")
	}
	if len(answer) > maxAnswer {
		return nil, fmt.Errorf("the answer exceeds %d bytes", maxAnswer)
	}
	v := attest.ResponseVerifier{HostKey: a.HostKey, Request: request, PipelineID: a.PipelineID}
	switch a.Kind {
	case attest.ResponseBody:
		if err := v.VerifyBody(a.Status, a.RetryAfter, answer, a.Signature); err != nil {
			return nil, err
		}
		return &AnswerResult{OK: true}, nil
	case attest.ResponseStream:
		s := v.ReadStream(bytes.NewReader(answer), maxAnswer)
		var events []string
		for {
			ev, err := s.Next()
			switch {
			case errors.Is(err, io.EOF):
				return &AnswerResult{OK: true, Events: events}, streamOrder(events)
			case err != nil:
				return nil, err
			case ev.Kind == attest.EventData:
				events = append(events, string(ev.Data))
			}
		}
	}
	return nil, fmt.Errorf("kind %q: want %q or %q", a.Kind, attest.ResponseBody, attest.ResponseStream)
}

// streamOrder applies settle.StreamReceipt to the data of a verified stream's events,
// once the whole stream verified: an error wraps errBadAnswer.
func streamOrder(events []string) error {
	var order settle.StreamReceipt
	for i, data := range events {
		var ev struct { // raw, so that a chunk costs a scan, not a decoding of its members
			Receipt json.RawMessage `json:"cocoon_receipt"`
			Error   json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			return fmt.Errorf("%w: event %d of the stream is not a JSON object: %v", errBadAnswer, i+1, err)
		}
		var receipt *settle.Receipt
		if len(ev.Receipt) > 0 && string(ev.Receipt) != "null" {
			receipt = new(settle.Receipt)
			if err := json.Unmarshal(ev.Receipt, receipt); err != nil {
				return fmt.Errorf("%w: the receipt of event %d is not a receipt: %v", errBadAnswer, i+1, err)
			}
		}
		if err := order.Event(receipt, bytes.HasPrefix(ev.Error, []byte("{"))); err != nil { // an error object, as the clients take it
			return fmt.Errorf("%w: %w", errBadAnswer, err)
		}
	}
	return nil
}

// ReceiptArgs say what a receipt must be, as JSON:
//
//	{"receipt": {...},                    as the host sent it (Cocoon-Receipt, cocoon_receipt)
//	 "settlement_key": "<base64>",        the attested settlement key (Result.Keys)
//	 "price_list": {...} or null,         the host's price list (GET /v1/pricing), when fetched
//	 "pipeline_id": "<64 hex>" or "",
//	 "account": "0:<64 hex>" or "",       the escrow of a signed request
//	 "request_hash": "<64 hex>" or "",    SignRequest's request_hash for a signed request
//	 "max_price": "<nanoTON>"}            the max_price the request carried; "0" or absent: none
type ReceiptArgs struct {
	Receipt       settle.Receipt    `json:"receipt"`
	SettlementKey []byte            `json:"settlement_key"`
	PriceList     *settle.PriceList `json:"price_list"`
	PipelineID    string            `json:"pipeline_id"`
	Account       string            `json:"account"`
	RequestHash   string            `json:"request_hash"`
	MaxPrice      uint64            `json:"max_price,string"`
}

// CheckReceipt checks the receipt of one billed answer with settle.CheckReceipt, the
// check `cocoon chat` makes: signed by the attested settlement key with the cost its
// usage, prices and load give, for this pipeline, and, as far as the caller knows
// them, for its escrow and its signed request, at the prices of the host's price list
// for its model (signed by the same key) and a load within its curve, reserving at
// most the max_price the request carried, whatever list the caller passes. Result:
// {"ok": true} or {"error": ...}. Cost: two ed25519 verifications with a price list,
// one without.
func CheckReceipt(args []byte) []byte {
	return run(args, func(a ReceiptArgs) (any, error) {
		return &AnswerResult{OK: true}, settle.CheckReceipt(&a.Receipt, settle.ReceiptWant{SettlementKey: a.SettlementKey,
			PriceList: a.PriceList, Pipeline: a.PipelineID, Account: a.Account, RequestHash: a.RequestHash, MaxPrice: a.MaxPrice})
	})
}

// MaxPriceArgs say what MaxPrice prices, as JSON:
//
//	{"settlement_key": "<base64>",        the attested settlement key (Result.Keys)
//	 "price_list": {...},                 the host's price list (GET /v1/pricing), as kept
//	 "pipeline": true}                    whether the request goes to a pipeline
type MaxPriceArgs struct {
	SettlementKey []byte            `json:"settlement_key"`
	PriceList     *settle.PriceList `json:"price_list"`
	Pipeline      bool              `json:"pipeline"`
}

// MaxPriceResult is MaxPrice's result: the max_price to send, nanoTON as a string.
type MaxPriceResult struct {
	MaxPrice uint64 `json:"max_price,string"`
}

// MaxPrice is the default max_price of a chat request body, the one `cocoon chat`
// sends: the price list must verify by the attested settlement key (settle.PriceList.Verify),
// then settle.PriceList.RequestMaxPrice prices body at the list's prices and the
// context window it signs for the model (for a pipeline, the dearest model of the
// list): nothing unsigned moves it. Result: {"max_price": "..."} or {"error": ...}.
// Cost: one ed25519 verification.
func MaxPrice(args, body []byte) []byte {
	return run(args, func(a MaxPriceArgs) (any, error) {
		switch {
		case len(a.SettlementKey) != ed25519.PublicKeySize:
			return nil, errors.New("settlement_key: want the attested settlement key: a host that measures none bills nothing a client can check")
		case a.PriceList == nil:
			return nil, errors.New("price_list: want the host's price list")
		}
		if err := a.PriceList.Verify(a.SettlementKey); err != nil {
			return nil, err
		}
		price, err := a.PriceList.RequestMaxPrice(body, a.Pipeline)
		return &MaxPriceResult{MaxPrice: price}, err
	})
}

// SignArgs are a request to sign with an escrow's client key, as JSON:
//
//	{"account": "EQ... or 0:...", "client_key": "<base64: 32-byte seed or 64-byte key>",
//	 "method": "POST", "path": "/v1/chat/completions", "idempotency_key": ""}
type SignArgs struct {
	Account        string `json:"account"`
	ClientKey      []byte `json:"client_key"`
	Method         string `json:"method"`
	Path           string `json:"path"`
	IdempotencyKey string `json:"idempotency_key"`
}

// SignedHeaders is SignRequest's result: the headers to send (sealed) with the request,
// and the request hash its receipt must name (settle.IdempotentRequestHash's with an
// idempotency key, which every retry of the request shares).
type SignedHeaders struct {
	Headers     map[string]string `json:"headers,omitempty"`
	RequestHash string            `json:"request_hash,omitempty"`
}

// SignRequest signs a request for body with an escrow's client key
// (settle.SignedRequest, the Go client's Signer): the current time and a fresh nonce,
// so a host admits it once. Cost: one ed25519 signature.
func SignRequest(args, body []byte) []byte {
	return run(args, func(a SignArgs) (any, error) { return signRequest(a, body, time.Now().Unix(), settle.NewNonce()) })
}

func signRequest(a SignArgs, body []byte, now int64, nonce string) (*SignedHeaders, error) {
	account, err := settle.ParseAccount(a.Account)
	if err != nil {
		return nil, fmt.Errorf("account: %w", err)
	}
	key, err := privateKey(a.ClientKey)
	if err != nil {
		return nil, fmt.Errorf("client_key: %w", err)
	}
	if a.Method == "" || a.Path == "" {
		return nil, errors.New("method and path are required")
	}
	req := settle.SignedRequest{Account: account, Timestamp: now, Nonce: nonce, Method: a.Method, Path: a.Path,
		IdempotencyKey: a.IdempotencyKey, Body: body}
	h := http.Header{}
	req.Sign(h, key)
	out := &SignedHeaders{Headers: map[string]string{}}
	for name := range h {
		out.Headers[name] = h.Get(name)
	}
	if a.IdempotencyKey != "" {
		out.RequestHash = settle.IdempotentRequestHash(account, a.IdempotencyKey, a.Method, a.Path, body)
	} else {
		out.RequestHash = settle.RequestHash(req.SigningString())
	}
	return out, nil
}

// privateKey accepts an ed25519 seed (32 bytes) or private key (64 bytes, seed and
// public half, which must match).
func privateKey(b []byte) (ed25519.PrivateKey, error) {
	switch len(b) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	case ed25519.PrivateKeySize:
		k := ed25519.NewKeyFromSeed(b[:ed25519.SeedSize])
		if !bytes.Equal(k, b) {
			return nil, errors.New("the public half does not belong to the seed")
		}
		return k, nil
	}
	return nil, fmt.Errorf("%d bytes: want a 32-byte ed25519 seed or a 64-byte private key", len(b))
}

// maxArgsBytes bounds the JSON arguments of these functions: a receipt and a price
// list are a few KiB.
const maxArgsBytes = 1 << 20

// decodeArgs decodes b strictly into v: unknown members are errors, so a misspelt
// option is not silently dropped.
func decodeArgs(b []byte, v any) error {
	if len(b) > maxArgsBytes {
		return fmt.Errorf("arguments: %d bytes exceeds %d", len(b), maxArgsBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("arguments: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("arguments: trailing data")
	}
	return nil
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil { // strings, numbers and byte slices always encode
		b, _ = json.Marshal(failure{Error: "encoding the result: " + err.Error()})
	}
	return b
}
