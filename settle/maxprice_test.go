package settle

import (
	"crypto/ed25519"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/abi"
)

// maxPriceList is a signed list with model "m" at its own prices and a window of 4096,
// "w" at the default prices and a window of 16384, a default for the rest (window
// DefaultContextWindow), and a curve from ×1 to ×2.
func maxPriceList() *PriceList {
	l := &PriceList{Prices: Prices{Models: []ModelPrice{{Model: "m", Prices: PriceTable{PromptPerMillion: 1e6, CompletionPerMillion: 3e6, ComputePerMillion: 7}}},
		Default: &PriceTable{PromptPerMillion: 5e5, CompletionPerMillion: 5e5}},
		Windows:   Windows{Models: []ModelWindow{{"m", 4096}, {"w", 16384}}, Default: DefaultContextWindow},
		LoadMilli: 1000, Curve: LoadCurve{MinMilli: 1000, MaxMilli: 2000}}
	l.Sign(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	return l
}

// TestRequestMaxPrice: the default max_price is the worst case a host's admission
// computes (Quote.WorstCase of AdmissionUsage, the very call billing makes) at the
// curve's top, for the model named and the window the signed list gives it (its own,
// else the default); max_completion_tokens before max_tokens, capped at the window,
// the window when neither is asked. A pipeline's request, or one naming no model, is
// priced at the dearest model the list may run. Bad bodies and unpriced models are
// errors naming what is wrong.
func TestRequestMaxPrice(t *testing.T) {
	l := maxPriceList()
	mTable, _ := l.For("m")
	worst := func(t PriceTable, window, completion uint64) uint64 {
		return Quote{Prices: t, LoadMilli: 2000}.WorstCase(Usage{PromptTokens: window, CompletionTokens: completion, ComputeUnits: uint64(abi.RequestModuleTime / time.Microsecond)})
	}
	// The dearest of the list at 10 tokens asked: w's window at the default table
	// (16384·0.5 + 10·0.5 TON per million at ×2) beats m's (4096·1 + 10·3).
	dearest10 := worst(*l.Default, 16384, 10)
	if m := worst(mTable, 4096, 10); dearest10 <= m {
		t.Fatalf("the test's list: w's worst case %d should beat m's %d", dearest10, m)
	}
	for _, tc := range []struct {
		name, body string
		pipeline   bool
		want       uint64
		err        string
	}{
		{"a model, its window", `{"model":"m","messages":[]}`, false, worst(mTable, 4096, 4096), ""},
		{"max_tokens", `{"model":"m","max_tokens":100}`, false, worst(mTable, 4096, 100), ""},
		{"max_completion_tokens first", `{"model":"m","max_tokens":100,"max_completion_tokens":7}`, false, worst(mTable, 4096, 7), ""},
		{"max_tokens over the window", `{"model":"m","max_tokens":100000}`, false, worst(mTable, 4096, 4096), ""},
		{"max_tokens 0 or negative: the window", `{"model":"m","max_tokens":-5}`, false, worst(mTable, 4096, 4096), ""},
		{"a window at the default prices", `{"model":"w","max_tokens":10}`, false, worst(*l.Default, 16384, 10), ""},
		{"a model the list names nowhere: both defaults", `{"model":"x","max_tokens":10}`, false, worst(*l.Default, DefaultContextWindow, 10), ""},
		{"no model named: the dearest", `{"max_tokens":10}`, false, dearest10, ""},
		{"a pipeline: the dearest, whatever the body names", `{"model":"m","max_tokens":10}`, true, dearest10, ""},
		{"not a request", `[`, false, 0, "not a chat completion request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := l.RequestMaxPrice([]byte(tc.body), tc.pipeline)
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
	if _, err := onlyM.RequestMaxPrice([]byte(`{"model":"x"}`), false); err == nil || !strings.Contains(err.Error(), "no price for model") {
		t.Errorf("a model the list does not price: %v", err)
	}
	// Without a default table, w (a window, no price) is not a model the host runs.
	if got, err := onlyM.RequestMaxPrice([]byte(`{"max_tokens":10}`), true); err != nil || got != worst(mTable, 4096, 10) {
		t.Errorf("the dearest of m alone: %d, %v; want %d", got, err, worst(mTable, 4096, 10))
	}
	none := onlyM
	none.Models = nil
	if _, err := none.RequestMaxPrice([]byte(`{}`), true); err == nil || !strings.Contains(err.Error(), "prices no model") {
		t.Errorf("a list that prices nothing: %v", err)
	}
}

// TestDearestBoundsEveryModel: whatever model a host of the list runs (its own
// table or the default, its own window or the default), its admission's worst case is
// at most Dearest, and Dearest is one of them.
func TestDearestBoundsEveryModel(t *testing.T) {
	l := maxPriceList()
	for _, asked := range []uint64{0, 1, 4096, 1 << 40} {
		dearest, ok := l.Dearest(asked)
		if !ok {
			t.Fatal("the list prices models")
		}
		reached := false
		for _, model := range []string{"m", "w", "x", "anything"} {
			q, _ := l.Quote(model)
			q.LoadMilli = l.Curve.MaxMilli
			w := q.WorstCase(AdmissionUsage(l.Windows.For(model), asked, ComputeBound))
			if w > dearest {
				t.Errorf("asked %d: model %q may cost %d, over the dearest %d", asked, model, w, dearest)
			}
			reached = reached || w == dearest
		}
		if !reached {
			t.Errorf("asked %d: the dearest %d is no model's worst case", asked, dearest)
		}
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

// FuzzRequestMaxPrice: any body a client builds gives a price or an error, never a
// panic nor a max_price of 0 (no cap).
func FuzzRequestMaxPrice(f *testing.F) {
	f.Add([]byte(`{"max_tokens":100}`), false)
	f.Add([]byte(`{"model":"x","max_completion_tokens":-1}`), true)
	l := maxPriceList()
	f.Fuzz(func(t *testing.T, body []byte, pipeline bool) {
		if price, err := l.RequestMaxPrice(body, pipeline); err == nil && price == 0 {
			t.Fatalf("a max_price of 0 (no cap) for %q", body)
		}
	})
}

// BenchmarkRequestMaxPrice is the default max_price of one request: what each billed
// chat of both clients adds before it is sent. "pipeline" prices the dearest model of
// a list of 2 tables and 2 windows (RequestMaxPrice's cost grows with the list).
func BenchmarkRequestMaxPrice(b *testing.B) {
	l := maxPriceList()
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hello"}],"max_tokens":256,"stream":true}`)
	for _, pipeline := range []bool{false, true} {
		b.Run(map[bool]string{false: "named", true: "pipeline"}[pipeline], func(b *testing.B) {
			for b.Loop() {
				if _, err := l.RequestMaxPrice(body, pipeline); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
