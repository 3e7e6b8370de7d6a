package settle

import (
	"bytes"
	"crypto/ed25519"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCost(t *testing.T) {
	p := PriceTable{PromptPerMillion: 100_000_000, CompletionPerMillion: 300_000_000, ComputePerMillion: 50_000_000}
	tests := []struct {
		name      string
		u         Usage
		loadMilli uint64
		maxCost   uint64
		want      uint64
	}{
		{"nothing used", Usage{}, 1000, math.MaxUint64, 0},
		{"base price", Usage{PromptTokens: 1_000_000, CompletionTokens: 1_000_000, ComputeUnits: 1_000_000}, 1000, math.MaxUint64, 450_000_000},
		{"one token rounds up to a nanoTON", Usage{PromptTokens: 1}, 1000, math.MaxUint64, 100},
		{"a fraction rounds up", Usage{PromptTokens: 1}, 1001, math.MaxUint64, 101}, // 100.1
		{"half price when idle", Usage{CompletionTokens: 10}, 500, math.MaxUint64, 1500},
		{"double when busy", Usage{CompletionTokens: 10}, 2000, math.MaxUint64, 6000},
		{"capped at the reservation", Usage{CompletionTokens: 1000}, 1000, 1234, 1234},
		{"no overflow at the extremes", Usage{PromptTokens: math.MaxUint64, CompletionTokens: math.MaxUint64}, 100_000, math.MaxUint64, math.MaxUint64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Cost(tt.u, tt.loadMilli, tt.maxCost); got != tt.want {
				t.Errorf("Cost = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestPriceTableValidate(t *testing.T) {
	if err := (PriceTable{}).validate(); err == nil {
		t.Error("an all-zero table is accepted")
	}
	if err := (PriceTable{PromptPerMillion: 2e15}).validate(); err == nil {
		t.Error("an absurd price is accepted")
	}
	if _, err := NewPricer(PriceTable{CompletionPerMillion: 1}, LoadCurve{MinMilli: 2000, MaxMilli: 1000, Smoothing: time.Second}); err == nil {
		t.Error("a curve with min > max is accepted")
	}
	if _, err := NewPricer(PriceTable{CompletionPerMillion: 1}, LoadCurve{MinMilli: 1000, MaxMilli: 1000}); err == nil {
		t.Error("a curve without smoothing is accepted")
	}
}

func TestLoadCurveBounds(t *testing.T) {
	c := DefaultLoadCurve
	for _, tt := range []struct {
		u    float64
		want uint64
	}{{-1, 500}, {0, 500}, {0.5, 875}, {1, 2000}, {7, 2000}, {math.NaN(), 500}} {
		got := c.coefficient(tt.u)
		if math.IsNaN(tt.u) {
			if got < c.MinMilli || got > c.MaxMilli {
				t.Errorf("coefficient(NaN) = %d, outside [%d, %d]", got, c.MinMilli, c.MaxMilli)
			}
			continue
		}
		if got != tt.want {
			t.Errorf("coefficient(%v) = %d, want %d", tt.u, got, tt.want)
		}
	}
}

// TestPricerFollowsLoad drives the pricer with a fake clock: the price rises while the
// host is saturated, toward the curve's maximum, and falls back when it idles.
func TestPricerFollowsLoad(t *testing.T) {
	p, err := NewPricer(PriceTable{CompletionPerMillion: 1000}, DefaultLoadCurve)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	p.now, p.observed = func() time.Time { return now }, now
	if got := p.Quote().LoadMilli; got != 500 {
		t.Fatalf("idle host quotes %d, want 500", got)
	}
	prev := uint64(0)
	for i := 0; i < 10; i++ {
		now = now.Add(10 * time.Second)
		p.Observe(4, 4)
		got := p.Quote().LoadMilli
		if got <= prev {
			t.Fatalf("step %d: a saturated host's price went from %d to %d", i, prev, got)
		}
		prev = got
	}
	u := 1 - math.Exp(-100.0/30) // smoothing 30 s
	if want := 500 + uint64(math.Round(1500*u*u)); prev != want {
		t.Fatalf("after 100 s saturated the coefficient is %d, want %d", prev, want)
	}
	// One burst after a long idle moves the price only a little.
	now = now.Add(10 * time.Minute)
	p.Observe(0, 4)
	if got := p.Quote().LoadMilli; got > 505 {
		t.Fatalf("after 10 idle minutes the coefficient is %d", got)
	}
	now = now.Add(time.Second)
	p.Observe(4, 4)
	if got := p.Quote().LoadMilli; got > 510 {
		t.Fatalf("a one-second burst raised the coefficient to %d", got)
	}
	p.Observe(1, 0) // no slots: ignored
}

func TestPriceListSignature(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	p, err := NewPricer(PriceTable{PromptPerMillion: 5, CompletionPerMillion: 7}, DefaultLoadCurve)
	if err != nil {
		t.Fatal(err)
	}
	l := p.PriceList(key, "0:"+string(bytes.Repeat([]byte{'a'}, 64)), 3600)
	if err := l.Verify(key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	for name, tamper := range map[string]func(*PriceList){
		"price":       func(l *PriceList) { l.Prices.CompletionPerMillion++ },
		"load":        func(l *PriceList) { l.LoadMilli = 100 },
		"wallet":      func(l *PriceList) { l.Wallet = "0:" + string(bytes.Repeat([]byte{'b'}, 64)) },
		"time":        func(l *PriceList) { l.Time++ },
		"min timeout": func(l *PriceList) { l.MinTimeout = 1 },
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

func TestParseMaxPrice(t *testing.T) {
	for _, tt := range []struct {
		raw  string
		want uint64
		ok   bool
	}{
		{`"5000000"`, 5_000_000, true},
		{`5000000`, 5_000_000, true},
		{`"18446744073709551615"`, math.MaxUint64, true},
		{`"18446744073709551616"`, 0, false},
		{`"0"`, 0, false},
		{`-1`, 0, false},
		{`"+1"`, 0, false},
		{`1.0`, 0, false},
		{`1e9`, 0, false},
		{`null`, 0, false},
		{`""`, 0, false},
		{`"`, 0, false},
		{`" 1"`, 0, false},
		{`{}`, 0, false},
	} {
		got, err := ParseMaxPrice([]byte(tt.raw))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseMaxPrice(%s) = %d, %v; want %d, ok %v", tt.raw, got, err, tt.want, tt.ok)
		}
	}
	if got, err := ParseMaxPrice(nil); got != 0 || err != nil {
		t.Errorf("an absent max_price: %d, %v", got, err)
	}
}

// FuzzParseMaxPrice: any bytes a client sends as max_price either parse to a positive
// amount whose decimal form is what was sent, or fail; nothing panics.
func FuzzParseMaxPrice(f *testing.F) {
	for _, s := range []string{`"1"`, `12`, `"18446744073709551616"`, `-0`, `"0x10"`, `1e3`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		n, err := ParseMaxPrice(raw)
		if err != nil {
			return
		}
		digits := strings.Trim(string(raw), `"`)
		if n == 0 || strings.TrimLeft(digits, "0") != strconv.FormatUint(n, 10) {
			t.Fatalf("%q parsed as %d", raw, n)
		}
	})
}
