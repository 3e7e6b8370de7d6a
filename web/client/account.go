package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/settle"
)

// Signer signs requests to a host with an escrow's client key (settle.SignedRequest),
// in place of an API key: the host admits and bills them against the escrow.
type Signer struct {
	account string // the escrow, raw form
	key     ed25519.PrivateKey
	// signed, when set, receives the request hash of each request Sign signs: the
	// copy Chat signs its one request with, so that it knows which request the
	// answer's receipt must bill.
	signed *string
}

// NewSigner returns the signer of requests for the escrow account (its raw address,
// settle.ParseAccount) with its client key.
func NewSigner(account string, key ed25519.PrivateKey) *Signer {
	return &Signer{account: account, key: key}
}

// Account is the escrow the signer signs for, in raw form.
func (s *Signer) Account() string { return s.account }

// Sign sets req's signing headers for body (settle.SignedRequest), with a fresh nonce
// and the current time: a host admits a signed request once.
func (s *Signer) Sign(req *http.Request, body []byte) {
	signed := settle.SignedRequest{Account: s.account, Timestamp: time.Now().Unix(), Nonce: settle.NewNonce(),
		Method: req.Method, Path: req.URL.Path, Body: body}
	signed.Sign(req.Header, s.key)
	if s.signed != nil {
		*s.signed = settle.RequestHash(signed.SigningString())
	}
}

// recordingTo returns a copy of s whose Sign stores the request hash of what it signs
// in *requestHash. The copy is for one request at a time: it is not safe for
// concurrent use.
func (s *Signer) recordingTo(requestHash *string) *Signer {
	c := *s
	c.signed = requestHash
	return &c
}

// getSigned is a GET signed by s that decodes the JSON answer into out.
func (c *Client) getSigned(ctx context.Context, path string, s *Signer, out any) error {
	resp, err := c.send(ctx, http.MethodGet, path, nil, s)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeAnswer(resp.Body, http.MethodGet, path, out)
}

// PriceList fetches the host's price list (GET /v1/pricing, a public route: GetBytes,
// no credential over http) and checks its signature by the key it names. Whether that
// key is the host's attested settlement key is VerifiedPriceList's to check. It reads
// at most settle.MaxPriceListBytes.
func (c *Client) PriceList(ctx context.Context) (*settle.PriceList, error) {
	b, err := c.GetBytes(ctx, "/v1/pricing", settle.MaxPriceListBytes)
	if err != nil {
		return nil, err
	}
	var l settle.PriceList
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, &Error{Code: CodeBadAnswer, Err: err, Message: fmt.Sprintf("the host's price list is not the expected JSON: %v", err)}
	}
	if err := l.Verify(nil); err != nil {
		return nil, &Error{Code: CodeNotVerified, Err: err, Message: fmt.Sprintf("the host's price list: %v", err)}
	}
	return &l, nil
}

// VerifiedPriceList verifies the host's boot evidence (AttestedSettlementKey) and its
// price list, which must be signed by the attested settlement key. Cost: two requests.
func (c *Client) VerifiedPriceList(ctx context.Context) (*settle.PriceList, error) {
	key, err := c.AttestedSettlementKey(ctx)
	if err != nil {
		return nil, err
	}
	l, err := c.PriceList(ctx)
	if err != nil {
		return nil, err
	}
	if !key.Equal(ed25519.PublicKey(l.HostKey)) {
		return nil, &Error{Code: CodeNotVerified, Message: fmt.Sprintf("the host's price list is signed by key %x, but its attestation measures settlement key %x: refusing", l.HostKey, key)}
	}
	return l, nil
}

// Account fetches the host's view of s's account: what its receipts add up to, what
// is reserved for requests running and what is settled.
func (c *Client) Account(ctx context.Context, s *Signer) (*settle.AccountView, error) {
	var v settle.AccountView
	if err := c.getSigned(ctx, "/v1/accounts/"+s.account, s, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// receiptsPage is how many receipts one request fetches, the host's maximum.
const receiptsPage = 1000

// Receipts fetches s's account's receipts from sequence number from on, a page of 1000
// per request, until the host has no more.
func (c *Client) Receipts(ctx context.Context, s *Signer, from uint64) ([]settle.Receipt, error) {
	var all []settle.Receipt
	for {
		var page struct {
			Receipts []settle.Receipt `json:"receipts"`
		}
		path := "/v1/accounts/" + s.account + "/receipts?from=" + strconv.FormatUint(from, 10) + "&limit=" + strconv.Itoa(receiptsPage)
		if err := c.getSigned(ctx, path, s, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Receipts...)
		if len(page.Receipts) < receiptsPage {
			return all, nil
		}
		from = page.Receipts[len(page.Receipts)-1].Seq + 1
	}
}

// CheckReceipts verifies a chain of receipts against key (nil: the first receipt's own
// key, reported as not checked; source says where a given key comes from) and, when
// view is the host's, that the chain reaches the end of the host's ledger. It returns
// one check per property, in the order a reader reads them, and the chain's last
// cumulative total (0 when the chain does not verify). list must not be empty.
func CheckReceipts(list []settle.Receipt, key ed25519.PublicKey, source string, view *settle.AccountView) ([]attest.Check, uint64) {
	first, last := list[0], list[len(list)-1]
	var checks []attest.Check
	if key != nil {
		checks = append(checks, attest.Check{Name: "settlement key", OK: true, Detail: fmt.Sprintf("%x, %s", []byte(key), source)})
	} else {
		key = first.HostKey
		checks = append(checks, attest.Check{Name: "settlement key", OK: true, Skipped: true,
			Detail: fmt.Sprintf("not checked: the receipts name key %x; pass --settlement-key, or fetch them with --host, to check it is the host's attested key", first.HostKey)})
	}

	signatures := attest.Check{Name: "signatures", OK: true, Detail: fmt.Sprintf("%d receipts, each signed by the settlement key and costing what its usage comes to at its prices and load", len(list))}
	for i := range list {
		if err := list[i].Verify(key); err != nil {
			signatures = attest.Check{Name: "signatures", Detail: err.Error()}
			break
		}
	}
	checks = append(checks, signatures)

	total, err := settle.VerifyChain(list, key)
	if err != nil {
		checks = append(checks, attest.Check{Name: "chain", Detail: err.Error()})
		return checks, 0
	}
	checks = append(checks,
		attest.Check{Name: "chain", OK: true, Detail: fmt.Sprintf("account %s, seq %d to %d without gaps, each cumulative the previous one plus the receipt's cost", first.Account, first.Seq, last.Seq)},
		attest.Check{Name: "total", OK: true, Detail: fmt.Sprintf("%s TON charged by seq %d, of which %s TON by these %d receipts",
			settle.FormatTON(total), last.Seq, settle.FormatTON(total-(first.Cumulative-first.Cost)), len(list))})
	if view != nil {
		if view.LastSeq == last.Seq && view.Cumulative == last.Cumulative {
			checks = append(checks, attest.Check{Name: "complete", OK: true, Detail: fmt.Sprintf("the host's ledger ends at seq %d too, with the same total", last.Seq)})
		} else {
			checks = append(checks, attest.Check{Name: "complete", Detail: fmt.Sprintf("the host's ledger ends at seq %d with %s TON, the receipts served at seq %d with %s TON",
				view.LastSeq, settle.FormatTON(view.Cumulative), last.Seq, settle.FormatTON(last.Cumulative))})
		}
	}
	return checks, total
}

// agreedPrices fetches the host's price list before a request signed for an escrow is
// sent (one request) and checks it is signed by the settlement key the verified
// evidence measures (boot's, or an https host's, pinned by that very fetch): the
// prices the client agrees to, which its max_price and its receipt's check come from.
// A host whose evidence measures no settlement key, or that was not verified, is
// CodeNotVerified before anything is signed: no receipt of it could be checked.
func (c *Client) agreedPrices(ctx context.Context, boot *attest.Evidence) (*settle.PriceList, ed25519.PublicKey, error) {
	l, err := c.PriceList(ctx)
	if err != nil {
		return nil, nil, err
	}
	key := c.attestedSettlementKey(boot)
	if key == nil {
		return nil, nil, &Error{Code: CodeNotVerified, Message: fmt.Sprintf("the host at %s bills requests, but the evidence verified measures no settlement key, or none was verified (an http host without a trust): its receipts are not attested, refusing to sign for an escrow", c.base)}
	}
	if err := l.Verify(key); err != nil {
		return nil, nil, &Error{Code: CodeNotVerified, Err: err, Message: fmt.Sprintf("the host's price list is not signed by its attested settlement key, so there is no price to agree to: %v", err)}
	}
	return l, key, nil
}

// defaultMaxPrice is the max_price of request body to pipeline when its caller gave
// none: its worst case at the prices and context windows of l, which Chat verified
// before sending (settle.PriceList.RequestMaxPrice; the dearest model of l for a
// pipeline or a body naming none). Nothing unsigned (no model list) moves it. A
// model l does not price, or a body that is not a chat request, is CodeBadAnswer
// before the request is sent.
func defaultMaxPrice(l *settle.PriceList, pipeline string, body []byte) (uint64, error) {
	price, err := l.RequestMaxPrice(body, pipeline != "")
	if err != nil {
		return 0, &Error{Code: CodeBadAnswer, Err: err, Message: fmt.Sprintf("the request's max_price (give one to skip this): %v", err)}
	}
	return price, nil
}

// checkReceipt checks the receipt of an answer Chat received with settle.CheckReceipt
// against want: signed by want.SettlementKey, the key the evidence Chat verified
// measures (nil when it verified none, or it measures none: the receipt is then
// refused), for its pipeline, escrow and request, reserving at most the max_price the
// request carried, at the prices of want.PriceList, the list verified before a signed
// request was sent, or for an API-key request the list fetched now (one request). A
// receipt the list before refuses is checked once more against the list fetched again
// (one request): the host may have changed its prices since, and a bill within the
// cap the request carried stands at the prices the host signed. A signed request
// (signed) must have a receipt; a request with the API key may have none. Failures are
// CodeNotVerified; a receipt that fails on its prices alone says so, at the cost of two
// more ed25519 verifications.
func (c *Client) checkReceipt(ctx context.Context, r *settle.Receipt, want settle.ReceiptWant, signed bool) error {
	switch {
	case r == nil && signed:
		return &Error{Code: CodeNotVerified, Message: "the host sent no receipt: it does not bill this request"}
	case r == nil:
		return nil
	case want.SettlementKey == nil:
		return &Error{Code: CodeNotVerified, Message: fmt.Sprintf("the host at %s sent a receipt, but the evidence verified measures no settlement key, or none was verified (an http host without a trust): its receipts are not attested, refusing", c.base)}
	}
	fetchAgain := want.PriceList != nil
	var err error
	if want.PriceList == nil {
		if want.PriceList, err = c.PriceList(ctx); err != nil {
			return err
		}
	}
	err = settle.CheckReceipt(r, want)
	if err != nil && fetchAgain {
		if want.PriceList, err = c.PriceList(ctx); err != nil {
			return err
		}
		err = settle.CheckReceipt(r, want)
	}
	if err == nil {
		return nil
	}
	list := want.PriceList
	if want.PriceList = nil; list.Verify(want.SettlementKey) == nil && settle.CheckReceipt(r, want) == nil {
		// All but the prices verify, the cap included.
		return &Error{Code: CodeNotVerified, Err: err, Message: fmt.Sprintf("the host's receipt for this request is signed by its attested settlement key, "+
			"but at prices its price list, fetched before the request and after the answer, does not show: it bills above what it publishes, or changed its prices since it admitted the request: %v", err)}
	}
	return &Error{Code: CodeNotVerified, Err: err, Message: fmt.Sprintf("the host's receipt does not verify: %v", err)}
}

// attestedSettlementKey is the settlement key measured by the evidence Chat checks an
// answer with (answerKey's): an https host's, verified in the TLS handshake, else boot,
// verified before the request; nil when neither was verified or it measures none.
func (c *Client) attestedSettlementKey(boot *attest.Evidence) ed25519.PublicKey {
	if c.ratls != nil {
		if pinned, _, ok := c.ratls.Pinned(); ok {
			boot = &pinned
		}
	}
	if boot == nil {
		return nil
	}
	key, _ := measuredSettlementKey(boot)
	return key
}

// ReadReceipts reads a chain saved as JSON lines (WriteReceipts, AppendReceipt); blank
// lines are skipped, and a line may be at most 1 MiB.
func ReadReceipts(path string) ([]settle.Receipt, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var list []settle.Receipt
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var r settle.Receipt
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, &Error{Code: CodeInvalid, Err: err, Message: fmt.Sprintf("%s:%d: not a receipt: %v", path, n, err)}
		}
		list = append(list, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return list, nil
}

// WriteReceipts saves a chain as JSON lines, replacing path.
func WriteReceipts(path string, list []settle.Receipt) error {
	var b bytes.Buffer
	for i := range list {
		b.WriteString(list[i].MarshalHeader())
		b.WriteByte('\n')
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// AppendReceipt adds one receipt to a chain saved as JSON lines.
func AppendReceipt(path string, r *settle.Receipt) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = io.WriteString(f, r.MarshalHeader()+"\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
