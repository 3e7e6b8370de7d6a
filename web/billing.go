package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/settle"
)

// IdempotentReplayHeader marks the answer to a retried request (settle.IdempotencyKeyHeader):
// the first answer and receipt, sent again, not charged again.
const IdempotentReplayHeader = "Idempotent-Replayed"

// maxIdempotencyKey bounds an idempotency key.
const maxIdempotencyKey = 255

// defaultContextTokens bounds a prompt for admission when the backend does not say how
// long its model's context is.
const defaultContextTokens = 8192

// bill is one billed chat request: its admission ticket and what to store for its
// idempotency key.
type bill struct {
	ticket *settle.Ticket
	// maxTokens is the completion bound admission priced: the backend never generates
	// more, whatever the pre stage asks for.
	maxTokens int
	// keep is set when the response must be stored for an idempotency key.
	keep bool
}

// storedResponse is what the ledger keeps for an idempotency key: the response as sent,
// split where the receipt goes (after Before: the header for a JSON answer, the receipt
// event for a stream).
type storedResponse struct {
	Status      int    `json:"status"`
	ContentType string `json:"content_type"`
	Before      []byte `json:"before"`
	After       []byte `json:"after,omitempty"`
}

// admit admits a chat request when the host bills, and returns nil when it does not.
// A completed idempotent request comes back as *settle.IdempotentError.
func (s *Server) admit(r *http.Request, body []byte, model string, opts clientOptions) (*bill, error) {
	if s.cfg.Billing == nil {
		return nil, nil
	}
	p := principalOf(r.Context())
	if p.Account == "" {
		return nil, errorf(http.StatusPaymentRequired, typeInvalidRequest, settle.CodeUnknownAccount,
			"this host bills requests to a TON escrow: sign the request with the escrow's client key (see %s), or use an API key mapped to an escrow", settle.ClientSignatureHeader)
	}
	key := r.Header.Get(settle.IdempotencyKeyHeader)
	if len(key) > maxIdempotencyKey {
		return nil, invalidf("%s is longer than %d bytes", settle.IdempotencyKeyHeader, maxIdempotencyKey)
	}
	window := uint64(s.contextWindow(r.Context(), model))
	maxTokens := window
	if opts.MaxCompletionTokens != nil {
		maxTokens = min(window, uint64(max(0, *opts.MaxCompletionTokens)))
	} else if opts.MaxTokens != nil {
		maxTokens = min(window, uint64(max(0, *opts.MaxTokens)))
	}
	a := settle.Admission{Account: p.Account, Method: r.Method, Path: r.URL.Path, Body: body, IdempotencyKey: key, MaxPromptTokens: window,
		MaxCompletionTokens: maxTokens, Pipeline: chi.URLParam(r, "id"), Model: model}
	if p.Signed {
		signed, sig, err := settle.ParseSignedRequest(r, body)
		if err != nil {
			return nil, err
		}
		a.Signed, a.Signature = &signed, sig
	}
	t, err := s.cfg.Billing.Admit(r.Context(), a)
	if err != nil {
		return nil, err
	}
	return &bill{ticket: t, maxTokens: int(maxTokens), keep: key != ""}, nil
}

// contextWindow is model's context length as the backend reports it, cached.
func (s *Server) contextWindow(ctx context.Context, model string) int {
	if n, ok := s.windows.Load(model); ok {
		return n.(int)
	}
	models, err := s.cfg.Backend.Models(ctx)
	if err != nil {
		return defaultContextTokens
	}
	n := defaultContextTokens
	for _, m := range models {
		if (m.ID == model || model == "") && m.ContextLength > 0 {
			n = m.ContextLength
			break
		}
	}
	s.windows.Store(model, n)
	return n
}

// usage is what the request is charged for. A completed request: the tokens the backend
// counted (or the host estimated) and the module time. A failed or cancelled one: no
// completion tokens unless its stream had started reaching the client, since only
// output the client received is charged.
func usage(c *chatCall, res *host.Result, err error, streamed bool) (settle.Usage, string) {
	u := settle.Usage{PromptTokens: uint64(max(0, c.result.Usage.PromptTokens))}
	if res != nil {
		u.ComputeUnits = uint64(res.ModuleTime.Microseconds())
	}
	status := settle.StatusCompleted
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled):
		status = settle.StatusCancelled
	default:
		status = settle.StatusFailed
	}
	if err == nil || streamed {
		u.CompletionTokens = uint64(max(0, c.result.Usage.CompletionTokens))
	}
	return u, status
}

// finish commits the request's receipt, storing resp for its idempotency key.
func (b *bill) finish(r *http.Request, c *chatCall, res *host.Result, err error, streamed bool, resp storedResponse) (*settle.Receipt, error) {
	u, status := usage(c, res, err, streamed)
	b.ticket.ServedBy(c.respModel)
	var stored []byte
	if b.keep {
		stored, _ = json.Marshal(resp) // byte slices and numbers
	}
	// The client may be gone; the receipt is committed all the same.
	return b.ticket.Finish(context.WithoutCancel(r.Context()), u, status, stored)
}

// replay answers a retried idempotent request with what the first one returned.
func (s *Server) replay(w http.ResponseWriter, r *http.Request, idem *settle.IdempotentError) {
	var resp storedResponse
	if len(idem.Response) == 0 || json.Unmarshal(idem.Response, &resp) != nil {
		s.writeError(w, r, errorf(http.StatusConflict, typeInvalidRequest, "idempotency_key_completed",
			"the request with this idempotency key completed (receipt seq %d), and its response was not kept", idem.Receipt.Seq))
		return
	}
	h := w.Header()
	h.Set(IdempotentReplayHeader, "true")
	h.Set("Content-Type", resp.ContentType)
	if resp.ContentType == "text/event-stream" {
		w.WriteHeader(resp.Status)
		w.Write(resp.Before)
		w.Write(receiptEvent(idem.Receipt))
		w.Write(resp.After)
		return
	}
	h.Set(settle.ReceiptHeader, idem.Receipt.MarshalHeader())
	w.WriteHeader(resp.Status)
	w.Write(resp.Before)
}

// receiptEvent is the SSE event that carries a stream's receipt: a chunk with no
// choices, so that OpenAI clients pass over it.
func receiptEvent(rc *settle.Receipt) []byte {
	b, _ := json.Marshal(struct {
		Object  string          `json:"object"`
		Choices []struct{}      `json:"choices"`
		Receipt *settle.Receipt `json:"cocoon_receipt"`
	}{"chat.completion.chunk", []struct{}{}, rc})
	return sseFrame(b)
}

// pricing answers GET /v1/pricing: the current price list, signed by the settlement key.
func (s *Server) pricing(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Billing == nil {
		s.writeError(w, r, errorf(http.StatusNotFound, typeNotFound, "billing_disabled", "this host does not bill requests"))
		return
	}
	writeJSON(w, http.StatusOK, s.cfg.Billing.PriceList())
}

// account answers GET /v1/accounts/{account} to the account's own client (a signed
// request, or an API key mapped to it): its ledger totals and escrow balance.
func (s *Server) account(w http.ResponseWriter, r *http.Request) {
	account, ok := s.ownAccount(w, r)
	if !ok {
		return
	}
	st, err := s.cfg.Billing.Account(r.Context(), account)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st.View())
}

// receipts answers GET /v1/accounts/{account}/receipts?from=SEQ&limit=N to the
// account's own client: its receipts in order, at most 1000 at a time.
func (s *Server) receipts(w http.ResponseWriter, r *http.Request) {
	account, ok := s.ownAccount(w, r)
	if !ok {
		return
	}
	from, limit := uint64(1), 1000
	if v := r.URL.Query().Get("from"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			s.writeError(w, r, invalidf("from must be a sequence number from 1"))
			return
		}
		from = n
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.writeError(w, r, invalidf("limit must be 1 to 1000"))
			return
		}
		limit = n
	}
	list, err := s.cfg.Billing.Receipts(r.Context(), account, from, limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []settle.Receipt{}
	}
	writeJSON(w, http.StatusOK, struct {
		Receipts []settle.Receipt `json:"receipts"`
	}{list})
}

// ownAccount checks that the caller is the client of the account in the path: a request
// signed with the escrow's client key, or an API key mapped to the account.
func (s *Server) ownAccount(w http.ResponseWriter, r *http.Request) (string, bool) {
	if s.cfg.Billing == nil {
		s.writeError(w, r, errorf(http.StatusNotFound, typeNotFound, "billing_disabled", "this host does not bill requests"))
		return "", false
	}
	account, err := settle.ParseAccount(chi.URLParam(r, "account"))
	if err != nil {
		s.writeError(w, r, invalidf("account: %v", err))
		return "", false
	}
	p := principalOf(r.Context())
	if p.Account != account {
		s.writeError(w, r, errorf(http.StatusForbidden, typePermission, "not_your_account", "only the client of escrow %s may read its account", account))
		return "", false
	}
	if p.Signed {
		signed, sig, err := settle.ParseSignedRequest(r, nil)
		if err == nil {
			err = s.cfg.Billing.Authenticate(r.Context(), signed, sig)
		}
		if err != nil {
			s.writeError(w, r, err)
			return "", false
		}
	}
	return account, true
}
