package billing

import (
	"crypto/ed25519"
	"math/bits"
	"slices"
	"strings"
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

// Pricer holds the price tables and the smoothed utilization. It is safe for
// concurrent use.
type Pricer struct {
	prices settle.Prices
	curve  settle.LoadCurve
	now    func() time.Time

	mu sync.Mutex
	// windows is what the price list publishes as the models' context windows
	// (SetWindows): what admission prices.
	windows settle.Windows
	// utilization is the smoothed share of slots in use in fineScale units: finer
	// than the published parts per million, so that the many short steps of a busy
	// host (Observe at every request's start and end) each move it.
	utilization uint64
	observed    time.Time
}

// NewPricer validates prices (settle.Prices.Validate; the models in any order, each
// once: it sorts a copy) and curve, and starts at idle.
func NewPricer(prices settle.Prices, curve settle.LoadCurve) (*Pricer, error) {
	prices.Models = slices.Clone(prices.Models)
	if prices.Models == nil {
		prices.Models = []settle.ModelPrice{}
	}
	slices.SortFunc(prices.Models, func(a, b settle.ModelPrice) int { return strings.Compare(a.Model, b.Model) })
	if prices.Default != nil {
		d := *prices.Default
		prices.Default = &d
	}
	if err := prices.Validate(); err != nil {
		return nil, err
	}
	if err := curve.Validate(); err != nil {
		return nil, err
	}
	return &Pricer{prices: prices, curve: curve, windows: settle.SameWindow(settle.DefaultContextWindow), now: time.Now, observed: time.Now()}, nil
}

// SetWindows sets the context windows the price list publishes, signed with the
// prices: the caller's admission must price each model's prompt at exactly these
// (cocoon-host's web server sets them from the backend's model list each time it
// reads it, the list its admission reads), since clients cap their requests with them
// (settle.PriceList.RequestMaxPrice). Until it is called, every model has
// settle.DefaultContextWindow. It refuses windows settle.Windows.Validate refuses,
// keeping the previous ones.
func (p *Pricer) SetWindows(w settle.Windows) error {
	if err := w.Validate(); err != nil {
		return err
	}
	w.Models = slices.Clone(w.Models)
	if w.Models == nil {
		w.Models = []settle.ModelWindow{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.windows = w
	return nil
}

// fineScale is full utilization inside the pricer: parts per 10¹². A step of the
// smoothing below one unit is lost to rounding, which at this scale takes a step
// shorter than tau/10¹² (30 ps for 30 s).
const fineScale = settle.UtilizationScale * settle.UtilizationScale

// Observe feeds the current utilization, ⌊min(inUse, slots) · 10¹² / slots⌋ parts per
// 10¹², into the smoothing (smooth). Call it whenever a request starts or ends; a call
// with no slots is ignored.
func (p *Pricer) Observe(inUse, slots int) {
	if slots <= 0 {
		return
	}
	x := uint64(min(max(inUse, 0), slots)) * fineScale / uint64(slots)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	dt := now.Sub(p.observed)
	p.observed = now
	if dt <= 0 {
		return
	}
	p.utilization = smooth(p.utilization, x, dt, p.curve.Smoothing)
}

// smooth moves smoothed utilization s toward x over dt, with time constant tau, in
// integers (parts per 10¹², nanoseconds). Whole periods of tau first, each a step
// half way,
//
//	s ← (s + x) / 2                                   while dt > tau, dt −= tau
//
// then the rest of dt in one backward-Euler step of ds/dt = (x − s)/tau,
//
//	s ← (tau·s + dt·x) / (tau + dt)
//
// each step rounded to the nearest integer, a tie toward x (so s reaches x rather
// than stopping one short). Every step is a weighted mean of s and x, so s stays
// between them and within [0, 10¹²]; a short step moves as e^(−dt/tau) does, a long
// gap halves the distance every tau (a host idle for 40·tau is back at x exactly).
// The products are 128-bit, so no dt or tau overflows them; the halving loop ends once
// s is x, after at most 41 rounds.
func smooth(s, x uint64, dt, tau time.Duration) uint64 {
	for ; dt > tau && s != x; dt -= tau {
		s = weightedMean(s, x, uint64(tau), uint64(tau))
	}
	return weightedMean(s, x, uint64(tau), uint64(dt))
}

// weightedMean is (ws·s + wx·x) / (ws + wx), rounded to nearest with a tie toward x,
// for weights below 2⁶³ (their sum fits in 64 bits) and s, x ≤ 10¹² (the products in
// 128 bits); a zero weight of x gives s.
func weightedMean(s, x, ws, wx uint64) uint64 {
	den := ws + wx
	if den == 0 || wx == 0 {
		return s
	}
	hi, lo := bits.Mul64(ws, s)
	hi2, lo2 := bits.Mul64(wx, x)
	lo, carry := bits.Add64(lo, lo2, 0)
	hi += hi2 + carry
	q, r := bits.Div64(hi, lo, den) // q ≤ max(s, x): hi < den, no overflow
	switch {
	case r > den-r, r == den-r && x > s: // over half, or a tie rounded up toward x
		q++
	}
	return q
}

// Quote returns the current prices of model and the load coefficient, or a
// settle.CodeUnpricedModel error when the host has no price for model.
func (p *Pricer) Quote(model string) (settle.Quote, error) {
	t, ok := p.prices.For(model)
	if !ok {
		return settle.Quote{}, errorf(settle.CodeUnpricedModel, "this host has no price for model %.80q: its price list (GET /v1/pricing) names the models it serves", model)
	}
	return settle.Quote{Prices: t, LoadMilli: p.curve.Coefficient(p.utilizationPPM())}, nil
}

// utilizationPPM is the smoothed utilization in the parts per million a price list
// publishes: rounded to nearest, a tie up.
func (p *Pricer) utilizationPPM() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return (p.utilization + settle.UtilizationScale/2) / settle.UtilizationScale
}

// PriceList returns the current price list for the host's wallet and minimum escrow
// timeout, with the windows SetWindows last set, signed with key.
func (p *Pricer) PriceList(key ed25519.PrivateKey, wallet string, minTimeout uint32) settle.PriceList {
	u := p.utilizationPPM()
	p.mu.Lock()
	windows := p.windows
	p.mu.Unlock()
	l := settle.PriceList{
		Prices:         p.prices,
		Windows:        windows,
		LoadMilli:      p.curve.Coefficient(u),
		Curve:          p.curve,
		Wallet:         wallet,
		MinTimeout:     minTimeout,
		UtilizationPPM: u,
		Time:           p.now().Unix(),
	}
	l.Sign(key)
	return l
}
