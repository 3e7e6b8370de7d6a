package billing

import (
	"crypto/ed25519"
	"math"
	"sync"
	"time"

	"github.com/cocoonhost/cocoon/settle"
)

// checkMaxPrice refuses a request whose worst-case cost, what admission would reserve,
// exceeds the client's cap (a.MaxPrice; 0: none) with a settle.CodeMaxPrice error naming both figures.
// It runs before anything is reserved, so a refused request costs the client nothing.
func checkMaxPrice(worstCase uint64, a Admission, q settle.Quote) error {
	maxPrice := a.MaxPrice
	if maxPrice == 0 || worstCase <= maxPrice {
		return nil
	}
	return errorf(settle.CodeMaxPrice, "this request may cost up to %d nanoTON (%s TON: %d prompt tokens, the model's context window, and %d completion tokens at load ×%d/1000), over its %s of %d nanoTON: raise %s, lower max_tokens, or try a cheaper host",
		worstCase, settle.FormatTON(worstCase), a.MaxPromptTokens, a.MaxCompletionTokens, q.LoadMilli, settle.MaxPriceMember, maxPrice, settle.MaxPriceMember)
}

// DefaultLoadCurve halves the price at idle and doubles it at saturation, smoothed over
// 30 seconds.
var DefaultLoadCurve = settle.LoadCurve{MinMilli: 500, MaxMilli: 2000, Smoothing: 30 * time.Second}

// Pricer holds the price table and the smoothed utilization. It is safe for concurrent
// use.
type Pricer struct {
	table settle.PriceTable
	curve settle.LoadCurve
	now   func() time.Time

	mu          sync.Mutex
	utilization float64
	observed    time.Time
}

// NewPricer validates table and curve and starts at idle.
func NewPricer(table settle.PriceTable, curve settle.LoadCurve) (*Pricer, error) {
	if err := table.Validate(); err != nil {
		return nil, err
	}
	if err := curve.Validate(); err != nil {
		return nil, err
	}
	return &Pricer{table: table, curve: curve, now: time.Now, observed: time.Now()}, nil
}

// Observe feeds the current utilization (slots in use / slots) into the smoothing: the
// smoothed value moves toward it by 1 − e^(−Δt/Smoothing), Δt being the time since the
// last observation. Call it whenever a request starts or ends.
func (p *Pricer) Observe(inUse, slots int) {
	if slots <= 0 {
		return
	}
	x := float64(inUse) / float64(slots)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	dt := now.Sub(p.observed)
	p.observed = now
	if dt <= 0 {
		return
	}
	p.utilization += (x - p.utilization) * (1 - math.Exp(-float64(dt)/float64(p.curve.Smoothing)))
}

// Quote returns the current prices and load coefficient.
func (p *Pricer) Quote() settle.Quote {
	p.mu.Lock()
	u := p.utilization
	p.mu.Unlock()
	return settle.Quote{Prices: p.table, LoadMilli: p.curve.Coefficient(u)}
}

// PriceList returns the current price list for the host's wallet and minimum escrow
// timeout, signed with key.
func (p *Pricer) PriceList(key ed25519.PrivateKey, wallet string, minTimeout uint32) settle.PriceList {
	p.mu.Lock()
	u := p.utilization
	p.mu.Unlock()
	l := settle.PriceList{
		Quote:            settle.Quote{Prices: p.table, LoadMilli: p.curve.Coefficient(u)},
		Curve:            p.curve,
		Wallet:           wallet,
		MinTimeout:       minTimeout,
		UtilizationMilli: uint64(math.Round(math.Min(1, u) * 1000)),
		Time:             p.now().Unix(),
	}
	l.Sign(key)
	return l
}
