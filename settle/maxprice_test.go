package settle

import (
	"crypto/ed25519"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
)

// maxPriceList is a signed list with model "m" at its own prices, a default for the
// rest, and a curve from ×1 to ×2.
func maxPriceList() *PriceList {
	l := &PriceList{Prices: Prices{Models: []ModelPrice{{Model: "m", Prices: PriceTable{PromptPerMillion: 1e6, CompletionPerMillion: 3e6, ComputePerMillion: 7}}},
		Default: &PriceTable{PromptPerMillion: 5e5, CompletionPerMillion: 5e5}}, LoadMilli: 1000, Curve: LoadCurve{MinMilli: 1000, MaxMilli: 2000}}
	l.Sign(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	return l
}

// TestRequestMaxPrice: the default max_price is the worst case a host's admission
// computes (Quote.WorstCase of AdmissionUsage, the very call billing makes) at the
// curve's top, for the model and window the host reads: the model named, else the
// backend's first; a pipeline's model whatever the body names; the window listed,
// else DefaultContextWindow; max_completion_tokens before max_tokens, capped at the
// window, the window when neither is asked. Bad bodies, lists and unpriced models are
// errors naming what is wrong.
func TestRequestMaxPrice(t *testing.T) {
	l := maxPriceList()
	mTable, _ := l.For("m")
	worst := func(t PriceTable, window, completion uint64) uint64 {
		return Quote{Prices: t, LoadMilli: 2000}.WorstCase(Usage{PromptTokens: window, CompletionTokens: completion, ComputeUnits: uint64(abi.RequestModuleTime / time.Microsecond)})
	}
	const models = `{"object":"list","data":[{"id":"m","context_length":4096},{"id":"other"}]}`
	for _, tc := range []struct {
		name, body, models string
		pipeline           bool
		want               uint64
		err                string
	}{
		{"the first model, its window", `{"messages":[]}`, models, false, worst(mTable, 4096, 4096), ""},
		{"max_tokens", `{"max_tokens":100}`, models, false, worst(mTable, 4096, 100), ""},
		{"max_completion_tokens first", `{"max_tokens":100,"max_completion_tokens":7}`, models, false, worst(mTable, 4096, 7), ""},
		{"max_tokens over the window", `{"max_tokens":100000}`, models, false, worst(mTable, 4096, 4096), ""},
		{"max_tokens 0 or negative: the window", `{"max_tokens":-5}`, models, false, worst(mTable, 4096, 4096), ""},
		{"a model without a window", `{"model":"other","max_tokens":10}`, models, false, worst(*l.Default, DefaultContextWindow, 10), ""},
		{"a model the backend does not list", `{"model":"x","max_tokens":10}`, models, false, worst(*l.Default, DefaultContextWindow, 10), ""},
		{"a pipeline's model, whatever the body names", `{"model":"other","max_tokens":10}`, models, true, worst(mTable, 4096, 10), ""},
		{"no model at all", `{}`, `{"data":[]}`, false, 0, "names no model"},
		{"not a request", `[`, models, false, 0, "not a chat completion request"},
		{"not a model list", `{}`, `{"data":1}`, false, 0, "model list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := l.RequestMaxPrice([]byte(tc.body), []byte(tc.models), tc.pipeline)
			switch {
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("max_price %d, err %v; want an error saying %q", got, err, tc.err)
			case tc.err == "" && (err != nil || got != tc.want):
				t.Fatalf("max_price %d, err %v; want %d", got, err, tc.want)
			}
		})
	}
	onlyM := *l
	onlyM.Default = nil
	if _, err := onlyM.RequestMaxPrice([]byte(`{"model":"x"}`), []byte(models), false); err == nil || !strings.Contains(err.Error(), "no price for model") {
		t.Errorf("a model the list does not price: %v", err)
	}
}

// TestMaxPriceCoversTheCurve: a host admitting at any coefficient of its curve
// reserves at most the max_price of its list (so the load moving never refuses a
// request), and a raised table reserves more (so a raise is refused).
func TestMaxPriceCoversTheCurve(t *testing.T) {
	l := maxPriceList()
	u := AdmissionUsage(4096, 100, ComputeBound)
	price, _ := l.MaxPrice("m", u)
	for _, ppm := range []uint64{0, 1, 500_000, 999_999, UtilizationScale} {
		q, _ := l.Quote("m")
		q.LoadMilli = l.Curve.Coefficient(ppm)
		if w := q.WorstCase(u); w > price {
			t.Errorf("at %d ppm the host reserves %d, over the max_price %d", ppm, w, price)
		}
	}
	raised := Quote{Prices: PriceTable{PromptPerMillion: 1e6 + 1, CompletionPerMillion: 3e6, ComputePerMillion: 7}, LoadMilli: l.Curve.MaxMilli}
	if w := raised.WorstCase(u); w <= price {
		t.Errorf("a raised prompt price reserves %d, not over the max_price %d", w, price)
	}
	if got := (Quote{Prices: PriceTable{PromptPerMillion: 1e15}, LoadMilli: 100_000}).WorstCase(Usage{PromptTokens: math.MaxUint64}); got != math.MaxUint64 {
		t.Errorf("an overflowing worst case is %d, want 2⁶⁴−1", got)
	}
}

// FuzzRequestMaxPrice: any body and model list a client gets (the model list is the
// host's, unsigned) give a price or an error, never a panic.
func FuzzRequestMaxPrice(f *testing.F) {
	f.Add([]byte(`{"max_tokens":100}`), []byte(`{"data":[{"id":"m","context_length":4096}]}`), false)
	f.Add([]byte(`{"model":"x","max_completion_tokens":-1}`), []byte(`{"data":[]}`), true)
	l := maxPriceList()
	f.Fuzz(func(t *testing.T, body, models []byte, pipeline bool) {
		if price, err := l.RequestMaxPrice(body, models, pipeline); err == nil && price == 0 {
			t.Fatalf("a max_price of 0 (no cap) for %q, %q", body, models)
		}
	})
}

// BenchmarkRequestMaxPrice is the default max_price of one request: what each billed
// chat of both clients adds before it is sent.
func BenchmarkRequestMaxPrice(b *testing.B) {
	l := maxPriceList()
	body := []byte(`{"messages":[{"role":"user","content":"hello"}],"max_tokens":256,"stream":true}`)
	models := []byte(`{"object":"list","data":[{"id":"m","object":"model","owned_by":"x","context_length":32768}]}`)
	for b.Loop() {
		if _, err := l.RequestMaxPrice(body, models, false); err != nil {
			b.Fatal(err)
		}
	}
}
