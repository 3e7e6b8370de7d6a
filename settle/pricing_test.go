package settle

import (
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
	if err := (PriceTable{}).Validate(); err == nil {
		t.Error("an all-zero table is accepted")
	}
	if err := (PriceTable{PromptPerMillion: 2e15}).Validate(); err == nil {
		t.Error("an absurd price is accepted")
	}
	if err := (LoadCurve{MinMilli: 2000, MaxMilli: 1000, Smoothing: time.Second}).Validate(); err == nil {
		t.Error("a curve with min > max is accepted")
	}
	if err := (LoadCurve{MinMilli: 1000, MaxMilli: 1000}).Validate(); err == nil {
		t.Error("a curve without smoothing is accepted")
	}
}

func TestLoadCurveBounds(t *testing.T) {
	c := LoadCurve{MinMilli: 500, MaxMilli: 2000, Smoothing: 30 * time.Second}
	for _, tt := range []struct {
		u    float64
		want uint64
	}{{-1, 500}, {0, 500}, {0.5, 875}, {1, 2000}, {7, 2000}, {math.NaN(), 500}} {
		got := c.Coefficient(tt.u)
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
