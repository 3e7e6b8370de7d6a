package settle

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
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
// MaxPrice at AdmissionUsage of the model's window (l.Windows), the completion the
// body asks for (max_completion_tokens, else max_tokens, as a host reads them) and
// ComputeBound. Everything it reads is signed: no answer a relay could rewrite (the
// model list, GET /v1/models) moves it.
//
// The model is the one the body names, for a request to the host's bare model. For a
// pipeline (the host runs its manifest's model, whatever the body names) and for a
// body that names none (the host runs its backend's first), the client does not know
// the model from anything signed, so the price is the largest MaxPrice over every
// model the list prices (Dearest): never below what admission computes, exactly it on
// a host that prices one model at one window.
//
// It fails, naming what is wrong, on a body that is not the JSON expected or a model
// the list does not price. Cost: one small JSON decoding and a big.Int product per
// model the list names.
func (l *PriceList) RequestMaxPrice(body []byte, pipeline bool) (uint64, error) {
	var req struct {
		Model               string `json:"model"`
		MaxTokens           *int64 `json:"max_tokens"`
		MaxCompletionTokens *int64 `json:"max_completion_tokens"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return 0, fmt.Errorf("settle: the request is not a chat completion request: %v", err)
	}
	positive := func(p *int64) uint64 {
		if p == nil || *p < 0 {
			return 0
		}
		return uint64(*p)
	}
	asked := cmp.Or(positive(req.MaxCompletionTokens), positive(req.MaxTokens))
	if pipeline || req.Model == "" {
		price, ok := l.Dearest(asked)
		if !ok {
			return 0, fmt.Errorf("settle: the host's price list prices no model")
		}
		return price, nil
	}
	price, ok := l.MaxPrice(req.Model, AdmissionUsage(l.Windows.For(req.Model), asked, ComputeBound))
	if !ok {
		return 0, fmt.Errorf("settle: the host's price list has no price for model %.80q", req.Model)
	}
	return price, nil
}

// Dearest is the largest MaxPrice of a request asking for maxTokens (0: none) over
// every model a host of this list may run: each model it prices or gives a window,
// at its table and window, and, with a default table, any model it names nowhere (the
// default table at the default window). ok is false when it prices none. Cost: a
// big.Int product per model the list names.
func (l *PriceList) Dearest(maxTokens uint64) (price uint64, ok bool) {
	consider := func(model string) {
		if p, priced := l.MaxPrice(model, AdmissionUsage(l.Windows.For(model), maxTokens, ComputeBound)); priced {
			price, ok = max(price, p), true
		}
	}
	for _, m := range l.Models {
		consider(m.Model)
	}
	for _, m := range l.Windows.Models {
		consider(m.Model)
	}
	if l.Default != nil {
		consider("") // a name neither list holds: Prices and Windows both refuse ""
	}
	return price, ok
}
