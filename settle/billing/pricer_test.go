package billing

import (
	"bytes"
	"crypto/ed25519"
	"math"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/settle"
)

// TestPricerFollowsLoad drives the pricer with a fake clock: the price rises while the
// host is saturated, toward the curve's maximum, and falls back when it idles.
func TestPricerFollowsLoad(t *testing.T) {
	p, err := NewPricer(settle.PriceTable{CompletionPerMillion: 1000}, DefaultLoadCurve)
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
	p, err := NewPricer(settle.PriceTable{PromptPerMillion: 5, CompletionPerMillion: 7}, DefaultLoadCurve)
	if err != nil {
		t.Fatal(err)
	}
	l := p.PriceList(key, "0:"+string(bytes.Repeat([]byte{'a'}, 64)), 3600)
	if err := l.Verify(key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	for name, tamper := range map[string]func(*settle.PriceList){
		"price":       func(l *settle.PriceList) { l.Prices.CompletionPerMillion++ },
		"load":        func(l *settle.PriceList) { l.LoadMilli = 100 },
		"wallet":      func(l *settle.PriceList) { l.Wallet = "0:" + string(bytes.Repeat([]byte{'b'}, 64)) },
		"time":        func(l *settle.PriceList) { l.Time++ },
		"min timeout": func(l *settle.PriceList) { l.MinTimeout = 1 },
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

// TestNewPricerValidates: a pricer is never built on a table or curve that its Validate refuses.
func TestNewPricerValidates(t *testing.T) {
	for name, tt := range map[string]struct {
		table settle.PriceTable
		curve settle.LoadCurve
	}{
		"all-zero table":    {settle.PriceTable{}, DefaultLoadCurve},
		"min over max":      {settle.PriceTable{CompletionPerMillion: 1}, settle.LoadCurve{MinMilli: 2000, MaxMilli: 1000, Smoothing: time.Second}},
		"without smoothing": {settle.PriceTable{CompletionPerMillion: 1}, settle.LoadCurve{MinMilli: 1000, MaxMilli: 1000}},
	} {
		if _, err := NewPricer(tt.table, tt.curve); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
