package web

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
)

// IdempotentReplayHeader marks the answer to a retried request (settle.IdempotencyKeyHeader):
// the first answer and receipt, sent again, not charged again.
const IdempotentReplayHeader = "Idempotent-Replayed"

// maxIdempotencyKey bounds an idempotency key.
const maxIdempotencyKey = 255

// storedResponse is what the ledger keeps for an idempotency key: the response as sent,
// split where the receipt goes (after Before: the header for a JSON answer, the receipt
// event for a stream), with the headers that go with it (an error's Retry-After). The
// host's signature is not kept: writeEnding signs a replay as it sends it.
type storedResponse struct {
	Status      int               `json:"status"`
	ContentType string            `json:"content_type"`
	Header      map[string]string `json:"header,omitempty"`
	Before      []byte            `json:"before"`
	After       []byte            `json:"after,omitempty"`
}

// A biller is the billing layer of the chat path, picked once by New: free when the
// host does not bill, escrowBilling when it does. Handlers never ask which.
type biller interface {
	// admit admits a checked chat request before its pipeline runs. A request whose
	// idempotency key completed comes back as *billing.IdempotentError.
	admit(r *http.Request, c *chatCall) (charge, error)
}

// A charge is one admitted request's side of billing.
type charge interface {
	// maxTokens is the completion bound to tell the backend for a request that asks
	// for asked tokens (0: none).
	maxTokens(asked int) int
	// keeps reports whether the answer must be kept as written, for an idempotency
	// key.
	keeps() bool
	// seal ends the answer: it commits the receipt of the outcome in e (storing the
	// answer for the idempotency key) and returns e with the receipt to attach; if the
	// receipt cannot be recorded, the ending that says so instead.
	seal(r *http.Request, e ending) ending
	// release gives up the admission if the answer was not sealed (a panic).
	release()
}

// free is the billing layer of a host that does not bill: nothing to admit, no receipt.
type free struct{}

func (free) admit(*http.Request, *chatCall) (charge, error) { return free{}, nil }
func (free) maxTokens(asked int) int                        { return asked }
func (free) keeps() bool                                    { return false }
func (free) seal(_ *http.Request, e ending) ending          { return e }
func (free) release()                                       {}

// escrowBilling bills chat requests to TON escrows through Config.Billing.
type escrowBilling struct{ s *Server }

// admit admits the request to the principal's escrow: its maximum cost is the model's
// whole context window of prompt tokens and the completion it asks for, or the whole
// window when it asks for none (max_tokens absent or 0), at the current price of the
// model it runs (400 model_not_priced for a model the price list lacks). A
// request whose max_price that maximum exceeds is refused (402 max_price_exceeded)
// before its pipeline runs or anything is reserved.
func (b escrowBilling) admit(r *http.Request, c *chatCall) (charge, error) {
	p := principalOf(r.Context())
	if p.Account == "" {
		return nil, errorf(http.StatusPaymentRequired, typeInvalidRequest, settle.CodeUnknownAccount,
			"this host bills requests to a TON escrow: sign the request with the escrow's client key (see %s), or use an API key mapped to an escrow", settle.ClientSignatureHeader)
	}
	key := r.Header.Get(settle.IdempotencyKeyHeader)
	if len(key) > maxIdempotencyKey {
		return nil, invalidf("%s is longer than %d bytes", settle.IdempotencyKeyHeader, maxIdempotencyKey)
	}
	maxPrice, err := settle.ParseMaxPrice(c.opts.MaxPrice)
	if err != nil {
		return nil, invalidf("%v", err)
	}
	// The model whose prices apply is the one the request runs: the pipeline's (no
	// module can change it), else the one named, else the backend's default.
	model := b.s.models.name(r.Context(), c.requestModel())
	u, reported := b.s.models.admissionUsage(r.Context(), model, c.opts)
	// A backend bounds an answer by its own context (what is left of it after the
	// prompt): when it reported that window and admission priced all of it, the bound
	// is the backend's, which vLLM and SGLang refuse to be told explicitly (prompt plus
	// max_tokens over the window is a 400 there).
	backendBounds := reported && u.CompletionTokens == u.PromptTokens
	t, err := b.s.cfg.Billing.Admit(r.Context(), billing.Admission{Account: p.Account, Verified: p.Verified,
		Method: r.Method, Path: r.URL.Path, Body: c.body, IdempotencyKey: key,
		MaxPromptTokens: u.PromptTokens, MaxCompletionTokens: u.CompletionTokens, MaxPrice: maxPrice, Pipeline: chi.URLParam(r, "id"), Model: model})
	if err != nil {
		return nil, err
	}
	return &bill{s: b.s, ticket: t, completion: int(u.CompletionTokens), backendBounds: backendBounds, keep: key != ""}, nil
}

// admissionUsage is the usage admission prices a request with opts for model at,
// module compute aside (the billing service adds its reserve): settle.AdmissionUsage
// of model's window (the one the signed price list gives it) and the completion opts
// ask for, the arithmetic clients compute their max_price with
// (settle.PriceList.RequestMaxPrice). reported is window's.
func (m *modelWindows) admissionUsage(ctx context.Context, model string, opts clientOptions) (u settle.Usage, reported bool) {
	window, reported := m.window(ctx, model)
	asked := askedTokens(opts.MaxCompletionTokens, opts.MaxTokens) // host.CheckChatRequest refused a negative one
	return settle.AdmissionUsage(uint64(window), uint64(max(asked, 0)), 0), reported
}

// bill is one billed chat request: its admission ticket and what to store for its
// idempotency key.
type bill struct {
	s      *Server
	ticket *billing.Ticket
	// completion is the completion bound admission priced: the backend never
	// generates more, whatever the pre stage asks for.
	completion int
	// backendBounds is set when completion is the model's whole context window as the
	// backend reported it: the backend cannot generate more, so it is not told.
	backendBounds bool
	keep          bool
}

func (b *bill) maxTokens(asked int) int {
	switch {
	case asked > 0 && asked <= b.completion:
		return asked
	case b.backendBounds:
		return 0 // unset: the backend's own bound, the window admission priced
	}
	return b.completion
}

func (b *bill) keeps() bool { return b.keep }

func (b *bill) release() { b.ticket.Release() }

// seal commits the receipt, even if the client is gone: an answer goes out only with
// its receipt recorded, and a cut one is charged for what was written.
func (b *bill) seal(r *http.Request, e ending) ending {
	u, status := e.usage()
	var stored []byte
	if b.keep {
		stored, _ = json.Marshal(e.stored) // byte slices, strings and numbers
	}
	receipt, err := b.ticket.Finish(context.WithoutCancel(r.Context()), u, status, stored)
	if err != nil {
		b.s.log.LogAttrs(r.Context(), slog.LevelError, "receipt not committed", slog.Any("err", err))
		failed := errorf(http.StatusServiceUnavailable, typeServer, settle.CodeUnavailable, "the receipt could not be recorded: retry")
		if e.started {
			b, _ := json.Marshal(failed.body()) // strings only
			e.stored.After = sseFrame(b)
		} else {
			e.stored, e.sent = errorResponse(failed), 0
		}
		return e
	}
	e.receipt = receipt
	return e
}

// usage is what the request is charged for. A completed request: the tokens the
// backend counted (or the host estimated) and the module time. A failed or cancelled
// one: the prompt, the module time, and, if its stream had started reaching the
// client, the completion tokens whose text was written to the client before it
// failed or was cut (one per backend delta, at most what the backend counted): only
// output the client received is charged.
func (e ending) usage() (settle.Usage, string) {
	c := e.call
	u := settle.Usage{PromptTokens: uint64(max(0, c.result.Usage.PromptTokens))}
	if e.res != nil {
		u.ComputeUnits = uint64(e.res.ModuleTime.Microseconds())
	}
	completion := max(0, c.result.Usage.CompletionTokens)
	switch {
	case e.err == nil:
		u.CompletionTokens = uint64(completion)
		return u, settle.StatusCompleted
	case e.started:
		u.CompletionTokens = uint64(min(completion, c.delivered))
	}
	if errors.Is(e.err, errClientGone) || errors.Is(e.err, context.Canceled) {
		return u, settle.StatusCancelled
	}
	return u, settle.StatusFailed
}

// refuseAdmission answers a request admission refused: with the first answer again for
// a completed idempotency key, else with the error.
func (s *Server) refuseAdmission(w http.ResponseWriter, r *http.Request, err error) {
	var idem *billing.IdempotentError
	if !errors.As(err, &idem) {
		s.writeError(w, r, err)
		return
	}
	var resp storedResponse
	if len(idem.Response) == 0 || json.Unmarshal(idem.Response, &resp) != nil {
		s.writeError(w, r, errorf(http.StatusConflict, typeInvalidRequest, "idempotency_key_completed",
			"the request with this idempotency key completed (receipt seq %d), and its response was not kept", idem.Receipt.Seq))
		return
	}
	w.Header().Set(IdempotentReplayHeader, "true")
	s.writeEnding(w, r, ending{stored: resp, receipt: idem.Receipt})
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

// pricing answers GET /v1/pricing: the current price list, signed by the settlement
// key, with the context windows of the backend's model list admission reads now
// (modelWindows.sync: at most one read of it per modelsTTL).
func (s *Server) pricing(w http.ResponseWriter, r *http.Request) {
	s.models.sync(r.Context())
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
// signed with the escrow's client key (verified by authenticate), or an API key mapped
// to the account.
func (s *Server) ownAccount(w http.ResponseWriter, r *http.Request) (string, bool) {
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
	return account, true
}
