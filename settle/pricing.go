package settle

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"time"
)

// PriceTable is the operator's base prices in nanoTON (1 TON = 10⁹ nanoTON).
type PriceTable struct {
	PromptPerMillion     uint64 `json:"prompt_per_million,string"`
	CompletionPerMillion uint64 `json:"completion_per_million,string"`
	// ComputePerMillion prices module compute: per million microseconds of module time.
	ComputePerMillion uint64 `json:"compute_per_million,string"`
}

// Cost is what usage costs at these prices and a load coefficient of loadMilli/1000,
// rounded up to the nanoTON and capped at maxCost:
//
//	min(maxCost, ⌈(prompt·P + completion·C + compute·U) · loadMilli / 10⁹⌉)
//
// It is exact (no overflow, no floating point), so a client recomputes every receipt's
// cost to the nanoTON.
func (p PriceTable) Cost(u Usage, loadMilli, maxCost uint64) uint64 {
	sum := new(big.Int)
	var term big.Int
	for _, f := range [][2]uint64{{u.PromptTokens, p.PromptPerMillion}, {u.CompletionTokens, p.CompletionPerMillion}, {u.ComputeUnits, p.ComputePerMillion}} {
		sum.Add(sum, term.Mul(term.SetUint64(f[0]), new(big.Int).SetUint64(f[1])))
	}
	sum.Mul(sum, term.SetUint64(loadMilli))
	sum.Add(sum, big.NewInt(1e9-1)) // round up
	sum.Quo(sum, big.NewInt(1e9))
	if !sum.IsUint64() || sum.Uint64() > maxCost {
		return maxCost
	}
	return sum.Uint64()
}

// MaxPriceMember is the chat request body member in which a client caps what one
// request may cost it, in nanoTON: a JSON string of decimal digits ("5000000") or a
// JSON integer. It is in the body, not a header, so that a signed request's signature
// (over the body's hash) covers it: a relay cannot remove or raise the cap.
const MaxPriceMember = "max_price"

// ParseMaxPrice reads a max_price member's raw JSON value: a positive whole number of
// nanoTON, as a string of decimal digits or an integer, at most 2⁶⁴−1. An absent member
// (nil raw) is no cap, 0. Anything else (a sign, a fraction, an exponent, 0, null) is an
// error naming what is wrong, for a 400.
func ParseMaxPrice(raw []byte) (uint64, error) {
	if raw == nil {
		return 0, nil
	}
	s := string(raw)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	n, err := strconv.ParseUint(s, 10, 64)
	switch {
	case err != nil || s == "" || s[0] < '0' || s[0] > '9':
		return 0, fmt.Errorf("%s must be a whole number of nanoTON (digits, as a string or a JSON integer, at most %d), not %.40s", MaxPriceMember, uint64(math.MaxUint64), raw)
	case n == 0:
		return 0, fmt.Errorf("%s must be positive: leave it out for no cap", MaxPriceMember)
	}
	return n, nil
}

// Validate refuses a table that would make every request free or that a total could
// overflow in practice.
func (p PriceTable) Validate() error {
	if p.PromptPerMillion == 0 && p.CompletionPerMillion == 0 && p.ComputePerMillion == 0 {
		return fmt.Errorf("settle: price table: every price is 0")
	}
	const ceiling = 1e15 // a million TON per million units
	if p.PromptPerMillion > ceiling || p.CompletionPerMillion > ceiling || p.ComputePerMillion > ceiling {
		return fmt.Errorf("settle: price table: a price over %d nanoTON per million", uint64(ceiling))
	}
	return nil
}

// LoadCurve maps utilization to the load coefficient, the market part of the price:
//
//	coefficient(u) = Min + (Max − Min) · u²,   u ∈ [0, 1]
//
// in thousandths (1000 = the base price). u is the fraction of the host's request slots
// in use, smoothed exponentially with time constant Smoothing so that a burst moves the
// price gradually. The square keeps the price near Min while the host has room and
// raises it steeply as the host fills: a client pays Min at idle, Max when the host is
// saturated, and never anything outside [Min, Max].
type LoadCurve struct {
	MinMilli  uint64        `json:"min_milli"`
	MaxMilli  uint64        `json:"max_milli"`
	Smoothing time.Duration `json:"-"`
}

// Validate refuses a curve whose bounds are inverted, zero or over ×100, or that has no
// smoothing.
func (c LoadCurve) Validate() error {
	if c.MinMilli == 0 || c.MinMilli > c.MaxMilli || c.MaxMilli > 100_000 {
		return fmt.Errorf("settle: load curve: need 0 < min (%d) <= max (%d) <= 100000", c.MinMilli, c.MaxMilli)
	}
	if c.Smoothing <= 0 {
		return fmt.Errorf("settle: load curve: smoothing must be positive")
	}
	return nil
}

// Coefficient is the curve at utilization u, rounded to the nearest thousandth; u is
// clamped to [0, 1] (NaN is 0), so the result is always in [MinMilli, MaxMilli].
func (c LoadCurve) Coefficient(u float64) uint64 {
	if !(u > 0) { // also NaN
		u = 0
	}
	u = math.Min(1, u)
	return c.MinMilli + uint64(math.Round(float64(c.MaxMilli-c.MinMilli)*u*u))
}

// Quote is the price a request is admitted at.
type Quote struct {
	Prices    PriceTable `json:"prices"`
	LoadMilli uint64     `json:"load_milli"`
}

// PricingDomain starts the signed encoding of a PriceList.
const pricingDomain = "cocoon-pricing-v1"

// PriceList is what GET /v1/pricing publishes: the base table, the curve's bounds, the
// current coefficient and utilization, and what a client needs to open an escrow with
// this host (the settlement key and the wallet charges are paid to), signed by the
// settlement key.
type PriceList struct {
	Quote
	Curve LoadCurve `json:"curve"`
	// Wallet is the host's wallet, raw address: escrows pay their charges to it.
	Wallet string `json:"wallet"`
	// MinTimeout is the shortest escrow withdrawal timeout (seconds) the host serves.
	MinTimeout uint32 `json:"min_timeout"`
	// Utilization is the smoothed fraction of request slots in use, in thousandths.
	UtilizationMilli uint64 `json:"utilization_milli"`
	Time             int64  `json:"time"`
	HostKey          []byte `json:"host_key"`
	Signature        []byte `json:"signature"`
}

// Sign sets the list's HostKey to key's public half and signs the list with key.
func (l *PriceList) Sign(key ed25519.PrivateKey) {
	l.HostKey = append([]byte(nil), key.Public().(ed25519.PublicKey)...)
	l.Signature = ed25519.Sign(key, l.signedBytes())
}

// Verify checks the list's signature against hostKey (nil: its own HostKey).
func (l *PriceList) Verify(hostKey ed25519.PublicKey) error {
	if len(l.HostKey) != ed25519.PublicKeySize || (hostKey != nil && !hostKey.Equal(ed25519.PublicKey(l.HostKey))) {
		return fmt.Errorf("settle: price list is not signed by the expected key")
	}
	if !ed25519.Verify(l.HostKey, l.signedBytes(), l.Signature) {
		return fmt.Errorf("settle: price list: bad signature")
	}
	return nil
}

// signedBytes is the domain followed by the list's JSON without its signature: the
// struct has a fixed member order and no maps, so the encoding is canonical.
func (l PriceList) signedBytes() []byte {
	l.Signature = nil
	b, _ := json.Marshal(l)
	return append([]byte(pricingDomain+"\x00"), b...)
}

// FormatTON renders nanoTON as TON with up to nine decimals.
func FormatTON(nano uint64) string {
	s := fmt.Sprintf("%d.%09d", nano/1e9, nano%1e9)
	for s[len(s)-1] == '0' && s[len(s)-2] != '.' {
		s = s[:len(s)-1]
	}
	return s
}
