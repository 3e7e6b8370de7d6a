package settle

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/cocoonhost/cocoon/abi"
)

// DefaultContextWindow is the context window, in tokens, a billing host assumes for a
// model whose backend does not report one: admission prices that many prompt tokens.
const DefaultContextWindow = 8192

// ComputeBound is the most module compute (microseconds) one request can use: its
// modules' time limit (abi.RequestModuleTime). A host reserves at most this much
// (cocoon-host reserves exactly this), so a client's worst case counts all of it.
const ComputeBound = uint64(abi.RequestModuleTime / time.Microsecond)

// AdmissionUsage is the usage a billing host's admission prices a chat request at,
// before anything runs: the model's whole context window of prompt tokens (a prompt
// is not counted before the pre module has run), the completion asked for (maxTokens,
// at most the window) or the whole window when none is (maxTokens 0), and
// computeReserve microseconds of module time.
func AdmissionUsage(window, maxTokens, computeReserve uint64) Usage {
	completion := window
	if maxTokens > 0 {
		completion = min(maxTokens, window)
	}
	return Usage{PromptTokens: window, CompletionTokens: completion, ComputeUnits: computeReserve}
}

// WorstCase is what u costs at the quote, not capped (at most 2⁶⁴−1): for
// AdmissionUsage, what admission reserves, and what a request's max_price is compared
// with (402 max_price_exceeded when it is below). Cost never exceeds it.
func (q Quote) WorstCase(u Usage) uint64 { return q.Prices.Cost(u, q.LoadMilli, math.MaxUint64) }

// MaxPrice is the max_price a client sends for a request to model that may use u
// (AdmissionUsage), priced by this list, which the client verified before sending: the
// worst case at the model's table and the highest coefficient of the list's curve
// (Curve.MaxMilli). The load moving within the curve the host signed never makes the
// host refuse the request; a table or curve raised since does (the worst case the host
// computes then exceeds it). ok is false when the list prices no such model.
func (l *PriceList) MaxPrice(model string, u Usage) (price uint64, ok bool) {
	t, ok := l.For(model)
	return Quote{Prices: t, LoadMilli: l.Curve.MaxMilli}.WorstCase(u), ok
}

// RequestMaxPrice is the default max_price of a chat request body (an OpenAI chat
// completion request) that a client sends to a host whose price list l it verified:
// MaxPrice at AdmissionUsage of the request's model's window, the completion it asks
// for (max_completion_tokens, else max_tokens, as a host reads them) and ComputeBound.
// The model and its window come from models, the host's answer to GET /v1/models (for
// a pipeline, GET /p/{id}/v1/models: its one model, whatever the body names), read as
// the host reads its backend's list: the model the body names, else the first; its
// context_length, else DefaultContextWindow. It fails, naming what is wrong, on a body
// or models answer that is not the JSON expected, or a model the list does not price.
// Cost: two small JSON decodings and a big.Int product.
func (l *PriceList) RequestMaxPrice(body, models []byte, pipeline bool) (uint64, error) {
	var req struct {
		Model               string `json:"model"`
		MaxTokens           *int64 `json:"max_tokens"`
		MaxCompletionTokens *int64 `json:"max_completion_tokens"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return 0, fmt.Errorf("settle: the request is not a chat completion request: %v", err)
	}
	type listed struct {
		ID            string `json:"id"`
		ContextLength int64  `json:"context_length"`
	}
	var list struct {
		Data []listed `json:"data"`
	}
	if err := json.Unmarshal(models, &list); err != nil {
		return 0, fmt.Errorf("settle: the host's model list is not the expected JSON: %v", err)
	}
	model, window := req.Model, uint64(DefaultContextWindow)
	i := 0 // a pipeline's one model, or the backend's default: the first listed
	if !pipeline && model != "" {
		i = slices.IndexFunc(list.Data, func(m listed) bool { return m.ID == model })
	}
	if i >= 0 && i < len(list.Data) {
		m := list.Data[i]
		model = m.ID
		if m.ContextLength > 0 {
			window = uint64(m.ContextLength)
		}
	}
	if model == "" {
		return 0, fmt.Errorf("settle: the request names no model and the host lists none")
	}
	positive := func(p *int64) uint64 {
		if p == nil || *p < 0 {
			return 0
		}
		return uint64(*p)
	}
	asked := cmp.Or(positive(req.MaxCompletionTokens), positive(req.MaxTokens))
	price, ok := l.MaxPrice(model, AdmissionUsage(window, asked, ComputeBound))
	if !ok {
		return 0, fmt.Errorf("settle: the host's price list has no price for model %.80q", model)
	}
	return price, nil
}
