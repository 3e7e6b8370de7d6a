package settle

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// ReceiptHeader is the HTTP response header that carries a non-streaming request's
// receipt as JSON. A streaming response carries it instead as the `cocoon_receipt`
// member of one data event: the last before `[DONE]`, or before the error event that
// ends a failed stream (StreamReceipt).
const ReceiptHeader = "Cocoon-Receipt"

// Receipt statuses: what happened to the request it bills.
const (
	// StatusCompleted is a request that ran to its end.
	StatusCompleted = "completed"
	// StatusFailed is a request that a module, the backend or the host ended with an
	// error; it is charged for what was served before the failure.
	StatusFailed = "failed"
	// StatusCancelled is a request whose client went away; it is charged for what was
	// served before that.
	StatusCancelled = "cancelled"
)

// receiptDomain starts every receipt's signed encoding, so that a receipt signature can
// never be mistaken for a signature over anything else the settlement key signs.
const receiptDomain = "cocoon-receipt-v1"

// Receipt is one request's bill, signed by the host's settlement key (see ESCROW.md;
// the key is measured into the host's boot event log, so the attestation vouches for
// it). An account's receipts form a chain: Seq counts from 1 without gaps, and each
// Cumulative is the previous one plus Cost. The host charges the escrow with the
// Cumulative of the account's latest receipt, so a client holding the chain knows
// exactly what it can be charged.
type Receipt struct {
	// Account is the escrow contract's address in raw form ("0:" and 64 hex digits).
	Account string `json:"account"`
	Seq     uint64 `json:"seq"`
	// RequestHash is the hex SHA-256 that identifies the request (see RequestHash).
	RequestHash string `json:"request_hash"`
	// Pipeline is the pipeline id, empty for the bare /v1/chat/completions endpoint.
	Pipeline string `json:"pipeline"`
	Model    string `json:"model"`
	Usage    Usage  `json:"usage"`
	// Prices and LoadMilli are the quote the request was admitted under.
	Prices    PriceTable `json:"prices"`
	LoadMilli uint64     `json:"load_milli"`
	// MaxCost is what admission reserved; Cost never exceeds it.
	MaxCost    uint64 `json:"max_cost,string"`
	Cost       uint64 `json:"cost,string"`
	Cumulative uint64 `json:"cumulative,string"`
	Status     string `json:"status"`
	// Time is when the receipt was committed, in Unix seconds.
	Time      int64  `json:"time"`
	HostKey   []byte `json:"host_key"`
	Signature []byte `json:"signature"`
}

// Usage is what a request consumed: tokens as the backend counted them (or the host,
// when the backend did not report them) and module compute units.
type Usage struct {
	PromptTokens     uint64 `json:"prompt_tokens"`
	CompletionTokens uint64 `json:"completion_tokens"`
	// ComputeUnits is module compute in microseconds of module time.
	ComputeUnits uint64 `json:"compute_units"`
}

// Sign sets r.HostKey and r.Signature with key. It costs one ed25519 signature (about
// 25 µs).
func (r *Receipt) Sign(key ed25519.PrivateKey) {
	r.HostKey = append([]byte(nil), key.Public().(ed25519.PublicKey)...)
	r.Signature = ed25519.Sign(key, r.signedBytes())
}

// ErrReceipt is wrapped by every receipt verification failure.
var ErrReceipt = errors.New("settle: invalid receipt")

// Verify checks r's signature against hostKey (nil accepts r.HostKey: use only when the
// key is checked elsewhere), and that its cost is what its usage, prices and load give,
// capped at MaxCost.
func (r *Receipt) Verify(hostKey ed25519.PublicKey) error {
	if len(r.HostKey) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: host key has %d bytes", ErrReceipt, len(r.HostKey))
	}
	if hostKey != nil && !hostKey.Equal(ed25519.PublicKey(r.HostKey)) {
		return fmt.Errorf("%w: seq %d is signed by another key", ErrReceipt, r.Seq)
	}
	if !ed25519.Verify(r.HostKey, r.signedBytes(), r.Signature) {
		return fmt.Errorf("%w: seq %d: bad signature", ErrReceipt, r.Seq)
	}
	if want := r.Prices.Cost(r.Usage, r.LoadMilli, r.MaxCost); r.Cost != want {
		return fmt.Errorf("%w: seq %d costs %d nanoTON, but its usage at its prices is %d", ErrReceipt, r.Seq, r.Cost, want)
	}
	switch r.Status {
	case StatusCompleted, StatusFailed, StatusCancelled:
	default:
		return fmt.Errorf("%w: seq %d: unknown status %q", ErrReceipt, r.Seq, r.Status)
	}
	return nil
}

// ReceiptWant is what the receipt of one billed answer must be, as far as its client
// knows: CheckReceipt's second argument.
type ReceiptWant struct {
	// SettlementKey is the settlement key the host's verified evidence measures
	// (attest.SettlementKeyOf of an event log VerifyEvidence replayed to the quote).
	// Required: a receipt is a bill only when the attested host signed it, so a host
	// whose evidence measures none has no receipt a client can accept.
	SettlementKey ed25519.PublicKey
	// PriceList is the host's price list (GET /v1/pricing), nil when the client has
	// not fetched one: the receipt's prices are then checked against nothing but its
	// own cost.
	PriceList *PriceList
	// Pipeline is the id of the pipeline the request went to, "" for the bare
	// /v1/chat/completions endpoint. Always checked.
	Pipeline string
	// Account is the escrow the request was signed for (raw form), "" when unknown
	// (a request with an API key).
	Account string
	// RequestHash is the signed request's hash (RequestHash of its SigningString,
	// without an idempotency key), "" when unknown.
	RequestHash string
	// MaxPrice is the max_price the request carried (MaxPriceMember), 0 when it
	// carried none. A host that honoured it reserved at most that much (it refuses a
	// request whose worst case is more), so a receipt that reserved more is from a
	// host that ignored the cap, whatever price list it shows.
	MaxPrice uint64
}

// CheckReceipt checks the receipt of one billed answer against what its client knows
// of the request: signed by want.SettlementKey, costing what its usage comes to at its
// prices and load (Verify), with a sequence number from 1 and a total its cost can be
// part of (at least the cost, the cost itself at seq 1); for want.Pipeline; for want.Account and want.RequestHash
// when set; reserving (MaxCost, so costing) at most want.MaxPrice when set; and, with
// want.PriceList, at the list's prices for the receipt's model and a load within the
// list's curve, the list signed by the same key. A host, or anything between, cannot
// then pass off a receipt of another key, pipeline, escrow or request, above the cap
// the request carried, or at prices it never published, as this answer's. It does not check the receipt's
// place in its account's chain (VerifyChain) nor that its prices are the ones the host
// quoted when it admitted the request (the list may have changed since: a list fetched
// after the answer may refuse a receipt of the prices before).
//
// It costs one ed25519 verification, two with a price list (and a JSON encoding of
// the list). Every failure wraps ErrReceipt and its message, naming what differs, is
// safe to show: it holds only what the receipt and want hold.
func CheckReceipt(r *Receipt, want ReceiptWant) error {
	if len(want.SettlementKey) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: the host's attestation measures no settlement key: its receipts are not attested", ErrReceipt)
	}
	if err := r.Verify(want.SettlementKey); err != nil {
		return err
	}
	if err := r.canStartChain(); err != nil {
		return err
	}
	switch {
	case r.Pipeline != want.Pipeline:
		return fmt.Errorf("%w: the receipt is for pipeline %q, the request went to %q", ErrReceipt, r.Pipeline, want.Pipeline)
	case want.Account != "" && r.Account != want.Account:
		return fmt.Errorf("%w: the receipt is for account %s, not for escrow %s", ErrReceipt, r.Account, want.Account)
	case want.RequestHash != "" && r.RequestHash != want.RequestHash:
		return fmt.Errorf("%w: the receipt bills request %s, not this one (%s)", ErrReceipt, r.RequestHash, want.RequestHash)
	case want.MaxPrice != 0 && r.MaxCost > want.MaxPrice:
		return fmt.Errorf("%w: the receipt reserved %d nanoTON (%s TON) and costs %d, over the request's %s of %d nanoTON: the host ignored the cap the request carried",
			ErrReceipt, r.MaxCost, FormatTON(r.MaxCost), r.Cost, MaxPriceMember, want.MaxPrice)
	}
	l := want.PriceList
	if l == nil {
		return nil
	}
	if err := l.Verify(want.SettlementKey); err != nil {
		return fmt.Errorf("%w: %v", ErrReceipt, err)
	}
	if prices, ok := l.For(r.Model); !ok || r.Prices != prices || r.LoadMilli < l.Curve.MinMilli || r.LoadMilli > l.Curve.MaxMilli {
		return fmt.Errorf("%w: the receipt's prices %+v at load %d‰ are not the price list's for model %q, %+v at a load from %d‰ to %d‰",
			ErrReceipt, r.Prices, r.LoadMilli, r.Model, prices, l.Curve.MinMilli, l.Curve.MaxMilli)
	}
	return nil
}

// VerifyChain checks an account's receipts in order: each one's Verify, one account,
// sequence numbers consecutive from the first (never 0, never past 2⁶⁴−1 back to 0),
// and each Cumulative the previous one plus Cost. The first receipt's Cumulative must
// be its Cost when its Seq is 1; a chain that starts later is checked from where it
// starts. It returns the last Cumulative.
func VerifyChain(receipts []Receipt, hostKey ed25519.PublicKey) (uint64, error) {
	if len(receipts) == 0 {
		return 0, fmt.Errorf("%w: no receipts", ErrReceipt)
	}
	first := receipts[0]
	if err := first.canStartChain(); err != nil {
		return 0, err
	}
	prev := first.Cumulative - first.Cost
	for i := range receipts {
		r := &receipts[i]
		if err := r.Verify(hostKey); err != nil {
			return 0, err
		}
		if r.Account != first.Account {
			return 0, fmt.Errorf("%w: seq %d is for account %s, the chain is for %s", ErrReceipt, r.Seq, r.Account, first.Account)
		}
		if i > 0 && receipts[i-1].Seq == math.MaxUint64 {
			return 0, fmt.Errorf("%w: seq %d after seq %d: sequence numbers do not wrap", ErrReceipt, r.Seq, uint64(math.MaxUint64))
		}
		if want := first.Seq + uint64(i); r.Seq != want {
			return 0, fmt.Errorf("%w: expected seq %d, found %d (missing or reordered receipts)", ErrReceipt, want, r.Seq)
		}
		if r.Cumulative < prev || r.Cumulative-prev != r.Cost {
			return 0, fmt.Errorf("%w: seq %d: cumulative %d is not %d + cost %d", ErrReceipt, r.Seq, r.Cumulative, prev, r.Cost)
		}
		prev = r.Cumulative
	}
	return prev, nil
}

// canStartChain checks what the first receipt a client holds of an account must
// satisfy (VerifyChain's first, CheckReceipt's one): a sequence number from 1, a total
// at least its cost, and exactly its cost at seq 1, where the account's bills begin.
func (r *Receipt) canStartChain() error {
	if r.Seq == 0 {
		return fmt.Errorf("%w: seq 0: a host's sequence numbers start at 1, so the total of %d nanoTON cannot follow from its cost of %d", ErrReceipt, r.Cumulative, r.Cost)
	}
	if r.Cost > r.Cumulative || (r.Seq == 1 && r.Cumulative != r.Cost) {
		return fmt.Errorf("%w: seq %d: a total of %d nanoTON cannot follow from its cost of %d", ErrReceipt, r.Seq, r.Cumulative, r.Cost)
	}
	return nil
}

// signedBytes is the length-prefixed encoding the signature covers: every member but
// Signature, in a fixed order, after receiptDomain.
func (r *Receipt) signedBytes() []byte {
	b := make([]byte, 0, 256)
	for _, s := range []string{receiptDomain, r.Account, r.RequestHash, r.Pipeline, r.Model, r.Status, string(r.HostKey)} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	for _, n := range []uint64{r.Seq, r.Usage.PromptTokens, r.Usage.CompletionTokens, r.Usage.ComputeUnits,
		r.Prices.PromptPerMillion, r.Prices.CompletionPerMillion, r.Prices.ComputePerMillion,
		r.LoadMilli, r.MaxCost, r.Cost, r.Cumulative, uint64(r.Time)} {
		b = binary.BigEndian.AppendUint64(b, n)
	}
	return b
}

// MarshalHeader encodes r for the ReceiptHeader: compact JSON.
func (r *Receipt) MarshalHeader() string {
	b, _ := json.Marshal(r) // a struct of strings, numbers and byte slices
	return string(b)
}

// IdempotentRequestHash is the request hash a receipt names for a request with an
// idempotency key (settle.IdempotencyKeyHeader, signed or not): the RequestHash of
// "cocoon-idempotent-v1", the escrow's raw address, the key, the method, the path and
// the hex SHA-256 of the body, joined by newlines. A retry of the request, signed
// again with a new nonce or not, has the same hash, so its client can check the
// receipt of whichever attempt ran. It costs two SHA-256 passes.
func IdempotentRequestHash(account, idempotencyKey, method, path string, body []byte) string {
	b := sha256.Sum256(body)
	return RequestHash([]byte(strings.Join([]string{"cocoon-idempotent-v1", account, idempotencyKey, method, path, hex.EncodeToString(b[:])}, "\n")))
}

// RequestHash identifies a request for its receipt: the hex SHA-256 of what the client
// signed (see ClientAuth) or, for an API-key request, of the request body.
func RequestHash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
