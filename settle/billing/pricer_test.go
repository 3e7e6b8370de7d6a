package billing

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/settle"
)

// TestPricerFollowsLoad drives the pricer with a fake clock: the price rises while the
// host is saturated, toward the curve's maximum, and falls back when it idles, to the
// exact values of the integer smoothing and curve (a float would be off by one here or
// there, and a client could not recompute them).
func TestPricerFollowsLoad(t *testing.T) {
	p, err := NewPricer(settle.SamePrices(settle.PriceTable{CompletionPerMillion: 1000}), DefaultLoadCurve)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	p.now, p.observed = func() time.Time { return now }, now
	quote := func() uint64 {
		t.Helper()
		q, err := p.Quote("any")
		if err != nil {
			t.Fatal(err)
		}
		return q.LoadMilli
	}
	if got := quote(); got != 500 {
		t.Fatalf("idle host quotes %d, want 500", got)
	}
	prev := uint64(0)
	for i := 0; i < 10; i++ {
		now = now.Add(10 * time.Second)
		p.Observe(4, 4)
		got := quote()
		if got <= prev {
			t.Fatalf("step %d: a saturated host's price went from %d to %d", i, prev, got)
		}
		prev = got
	}
	// Ten steps of a third of the time constant: 943 686 485 291 parts per 10¹², 943 686 ppm.
	if prev != 1836 || p.utilizationPPM() != 943_686 {
		t.Fatalf("after 100 s saturated the coefficient is %d at %d ppm, want 1836 at 943686", prev, p.utilizationPPM())
	}
	// One burst after a long idle moves the price only a little.
	now = now.Add(10 * time.Minute)
	p.Observe(0, 4)
	if got := quote(); got != 500 || p.utilizationPPM() != 1 {
		t.Fatalf("after 10 idle minutes the coefficient is %d at %d ppm, want 500 at 1", got, p.utilizationPPM())
	}
	now = now.Add(time.Second)
	p.Observe(4, 4)
	if got := quote(); got != 502 || p.utilizationPPM() != 32_259 {
		t.Fatalf("a one-second burst: coefficient %d at %d ppm, want 502 at 32259", got, p.utilizationPPM())
	}
	p.Observe(1, 0) // no slots: ignored
	p.Observe(9, 4) // more in use than slots: full
	p.Observe(-1, 4)
}

// TestPricerShortSteps: a busy host observes at every request's start and end, so
// its steps are short; each still moves the utilization. A second of 10 µs steps at
// full load comes to 1 − e^(−1/30) = 3.278% as the exponential does.
func TestPricerShortSteps(t *testing.T) {
	var s uint64
	for range 100_000 {
		s = smooth(s, fineScale, 10*time.Microsecond, 30*time.Second)
	}
	if s != 32_783_894_125 {
		t.Fatalf("after 100000 steps of 10 µs: %d parts per 10¹², want 32783894125", s)
	}
}

// TestSmooth: the smoothing's exact values at the edges: no move, a step of the time
// constant (half way), the longest steps and constants a Duration holds, and the tie
// rounding toward the target.
func TestSmooth(t *testing.T) {
	const maxDuration = time.Duration(math.MaxInt64)
	for _, tt := range []struct {
		name    string
		s, x    uint64
		dt, tau time.Duration
		want    uint64
	}{
		{"no time", 123_456, fineScale, 0, time.Second, 123_456},
		{"a nanosecond of 30 s", 0, fineScale, 1, 30 * time.Second, 33},
		{"one time constant up", 0, fineScale, 30 * time.Second, 30 * time.Second, fineScale / 2},
		{"one time constant down", fineScale, 0, 30 * time.Second, 30 * time.Second, fineScale / 2},
		{"three constants: halved three times", 0, fineScale, 3 * time.Second, time.Second, 875_000_000_000},
		{"39 constants: one unit short", fineScale, 0, 39 * time.Second, time.Second, 1},
		{"40 constants: there", fineScale, 0, 40 * time.Second, time.Second, 0},
		{"longest step, longest constant", 0, fineScale, maxDuration, maxDuration, fineScale / 2},
		{"longest step, shortest constant", 0, fineScale, maxDuration, 1, fineScale},
		{"longest step down", fineScale, 0, maxDuration, 1, 0},
		{"shortest step, longest constant", 0, fineScale, 1, maxDuration, 0},
		{"a tie rounds up toward x", 0, 1, 1, 1, 1},
		{"a tie rounds down toward x", 1, 0, 1, 1, 0},
	} {
		if got := smooth(tt.s, tt.x, tt.dt, tt.tau); got != tt.want {
			t.Errorf("%s: smooth(%d, %d, %v, %v) = %d, want %d", tt.name, tt.s, tt.x, tt.dt, tt.tau, got, tt.want)
		}
	}
}

// FuzzSmooth: whatever the step and constant, the smoothed value lands between where
// it was and its target.
func FuzzSmooth(f *testing.F) {
	f.Add(uint64(0), uint64(fineScale), int64(1), int64(30e9))
	f.Add(uint64(fineScale), uint64(0), int64(math.MaxInt64), int64(1))
	f.Fuzz(func(t *testing.T, s, x uint64, dt, tau int64) {
		s, x = s%(fineScale+1), x%(fineScale+1)
		if dt <= 0 || tau <= 0 {
			return
		}
		got := smooth(s, x, time.Duration(dt), time.Duration(tau))
		if got < min(s, x) || got > max(s, x) {
			t.Fatalf("smooth(%d, %d, %d, %d) = %d, outside [%d, %d]", s, x, dt, tau, got, min(s, x), max(s, x))
		}
	})
}

func TestPriceListSignature(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	p, err := NewPricer(settle.Prices{Models: []settle.ModelPrice{{Model: "b", Prices: settle.PriceTable{PromptPerMillion: 5}}, {Model: "a", Prices: settle.PriceTable{CompletionPerMillion: 7}}}}, DefaultLoadCurve)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.SetWindows(settle.Windows{Models: []settle.ModelWindow{{Model: "a", Tokens: 4096}}, Default: settle.DefaultContextWindow}); err != nil {
		t.Fatal(err)
	}
	l := p.PriceList(key, "0:"+string(bytes.Repeat([]byte{'a'}, 64)), 3600)
	if err := l.Verify(key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	if got := l.Windows.For("a"); got != 4096 {
		t.Fatalf("the list gives a the window %d, SetWindows set 4096", got)
	}
	for name, tamper := range map[string]func(*settle.PriceList){
		"window":         func(l *settle.PriceList) { l.Windows.Models = []settle.ModelWindow{{Model: "a", Tokens: 1 << 30}} },
		"default window": func(l *settle.PriceList) { l.Windows.Default = 1 << 30 },
		"price":          func(l *settle.PriceList) { l.Models[0].Prices.CompletionPerMillion++ },
		"model":          func(l *settle.PriceList) { l.Models[1].Model = "c" },
		"default":        func(l *settle.PriceList) { l.Default = &settle.PriceTable{PromptPerMillion: 1} },
		"utilization":    func(l *settle.PriceList) { l.UtilizationPPM = 1; l.LoadMilli = l.Curve.Coefficient(1) },
		"wallet":         func(l *settle.PriceList) { l.Wallet = "0:" + string(bytes.Repeat([]byte{'b'}, 64)) },
		"time":           func(l *settle.PriceList) { l.Time++ },
		"min timeout":    func(l *settle.PriceList) { l.MinTimeout = 1 },
	} {
		bad := l
		tamper(&bad)
		if err := bad.Verify(nil); err == nil {
			t.Errorf("a price list with a changed %s verifies", name)
		}
	}
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32)).Public().(ed25519.PublicKey)
	if err := l.Verify(other); err == nil {
		t.Error("a price list verifies against another key")
	}
}

// TestSetWindowsValidates: windows a client would refuse are never published; the
// ones before stay, and a pricer starts with DefaultContextWindow for every model.
func TestSetWindowsValidates(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	p, err := NewPricer(settle.SamePrices(settle.PriceTable{PromptPerMillion: 1}), DefaultLoadCurve)
	if err != nil {
		t.Fatal(err)
	}
	if l := p.PriceList(key, "0:00", 3600); l.Windows.For("any") != settle.DefaultContextWindow || l.Verify(nil) != nil {
		t.Fatalf("a new pricer's windows: %+v", l.Windows)
	}
	for name, w := range map[string]settle.Windows{
		"no default":    {Models: []settle.ModelWindow{{Model: "a", Tokens: 1}}},
		"a window of 0": {Models: []settle.ModelWindow{{Model: "a", Tokens: 0}}, Default: 1},
		"unsorted":      {Models: []settle.ModelWindow{{Model: "b", Tokens: 1}, {Model: "a", Tokens: 1}}, Default: 1},
	} {
		if err := p.SetWindows(w); err == nil {
			t.Errorf("%s: SetWindows took %+v", name, w)
		}
	}
	if l := p.PriceList(key, "0:00", 3600); l.Windows.For("a") != settle.DefaultContextWindow || l.Verify(nil) != nil {
		t.Errorf("after refused windows: %+v", l.Windows)
	}
}

// TestNewPricerValidates: a pricer is never built on prices or a curve that their
// Validate refuses.
func TestNewPricerValidates(t *testing.T) {
	one := settle.PriceTable{CompletionPerMillion: 1}
	model := func(name string, t settle.PriceTable) settle.ModelPrice {
		return settle.ModelPrice{Model: name, Prices: t}
	}
	// Tables of long names JSON escapes (6 bytes a character): a signed list of 5 MB,
	// which no client reads (settle.MaxPriceListBytes).
	var many []settle.ModelPrice
	for i := range 3000 {
		many = append(many, model(fmt.Sprintf("%05d%s", i, strings.Repeat("<", 251)), one))
	}
	for name, tt := range map[string]struct {
		prices settle.Prices
		curve  settle.LoadCurve
		want   string
	}{
		"all-zero default":       {settle.SamePrices(settle.PriceTable{}), DefaultLoadCurve, "every price is 0"},
		"all-zero model":         {settle.Prices{Models: []settle.ModelPrice{model("a", settle.PriceTable{})}}, DefaultLoadCurve, `model "a"`},
		"no table":               {settle.Prices{}, DefaultLoadCurve, "no table"},
		"a model twice":          {settle.Prices{Models: []settle.ModelPrice{model("a", one), model("a", one)}}, DefaultLoadCurve, "each once"},
		"an empty name":          {settle.Prices{Models: []settle.ModelPrice{model("", one)}}, DefaultLoadCurve, "model name"},
		"a name not UTF-8":       {settle.Prices{Models: []settle.ModelPrice{model("a\xff", one)}}, DefaultLoadCurve, "model name"},
		"tables no client reads": {settle.Prices{Models: many}, DefaultLoadCurve, "bytes of JSON"},
		"min over max":           {settle.SamePrices(one), settle.LoadCurve{MinMilli: 2000, MaxMilli: 1000, Smoothing: time.Second}, "min"},
		"without smoothing":      {settle.SamePrices(one), settle.LoadCurve{MinMilli: 1000, MaxMilli: 1000}, "smoothing"},
	} {
		if _, err := NewPricer(tt.prices, tt.curve); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: NewPricer = %v, want an error with %q", name, err, tt.want)
		}
	}
}

// BenchmarkPricerObserveQuote is the pricer's share of one request: an Observe at its
// start and a Quote of its model (the integer smoothing and coefficient), with the clock
// 10 µs on each time.
func BenchmarkPricerObserveQuote(b *testing.B) {
	p, err := NewPricer(settle.Prices{Models: []settle.ModelPrice{{Model: "a", Prices: settle.PriceTable{PromptPerMillion: 1}},
		{Model: "m", Prices: settle.PriceTable{CompletionPerMillion: 1}}, {Model: "z", Prices: settle.PriceTable{PromptPerMillion: 2}}}}, DefaultLoadCurve)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	p.now, p.observed = func() time.Time { return now }, now
	for i := 0; b.Loop(); i++ {
		now = now.Add(10 * time.Microsecond)
		p.Observe(i%5, 4)
		if _, err := p.Quote("m"); err != nil {
			b.Fatal(err)
		}
	}
}
