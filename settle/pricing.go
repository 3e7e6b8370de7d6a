package settle

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
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

// UtilizationScale is full utilization in the integer units prices use: parts per
// million of the host's request slots in use.
const UtilizationScale = 1_000_000

// LoadCurve maps utilization to the load coefficient, the market part of the price:
//
//	coefficient(u) = Min + ⌊(Max − Min) · u² / 10¹² + ½⌋,   u ∈ [0, 10⁶]
//
// in thousandths (1000 = the base price), u in parts per million of the host's request
// slots in use (UtilizationScale), smoothed (billing.Pricer) with time constant
// Smoothing so that a burst moves the price gradually. Every step is an integer
// operation on values below 2⁶³ (Max − Min ≤ 99 999, u² ≤ 10¹²), so a client
// recomputes the coefficient of a price list exactly from its utilization. The square
// keeps the price near Min while the host has room and raises it steeply as the host
// fills: a client pays Min at idle, Max when the host is saturated, and never anything
// outside [Min, Max].
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

// Coefficient is the curve at utilization u parts per million, rounded half up to the
// thousandth; u is clamped to UtilizationScale, so the result is always in [MinMilli,
// MaxMilli] and never decreases as u grows. For a curve Validate refuses it stays in
// [MinMilli, max(MinMilli, MaxMilli)].
func (c LoadCurve) Coefficient(u uint64) uint64 {
	if c.MaxMilli <= c.MinMilli {
		return c.MinMilli
	}
	u = min(u, UtilizationScale)
	const half = UtilizationScale * UtilizationScale / 2
	// A validated curve's span is below 100 000, so span·u² < 2⁶³; a wider span (a
	// curve Validate refuses) is cut there rather than overflow.
	span := min(c.MaxMilli-c.MinMilli, 100_000)
	return c.MinMilli + (span*u*u+half)/(UtilizationScale*UtilizationScale)
}

// Quote is the price a request is admitted at: its model's table and the load
// coefficient.
type Quote struct {
	Prices    PriceTable `json:"prices"`
	LoadMilli uint64     `json:"load_milli"`
}

// ModelPrice is one model's base prices in a price list.
type ModelPrice struct {
	// Model is the model's name as requests and pipeline manifests name it.
	Model  string     `json:"model"`
	Prices PriceTable `json:"prices"`
}

// Prices is a host's base prices: a table for each model it lists, in increasing byte
// order of the names, each name once, and optionally a default table for every model
// it does not list. Without a default, a model not listed is not served at any price.
type Prices struct {
	Models  []ModelPrice `json:"models"`
	Default *PriceTable  `json:"default,omitempty"`
}

// SamePrices is the same table for every model: a default and no model of its own.
func SamePrices(t PriceTable) Prices { return Prices{Models: []ModelPrice{}, Default: &t} }

// For returns the table of model: its own, else the default; ok is false when the
// prices have neither.
func (p Prices) For(model string) (t PriceTable, ok bool) {
	i, found := findModel(p.Models, model, func(m ModelPrice) string { return m.Model })
	switch {
	case found:
		return p.Models[i].Prices, true
	case p.Default != nil:
		return *p.Default, true
	}
	return PriceTable{}, false
}

// checkShape refuses prices a client could read two ways or not at all: a model named
// twice or out of order (For's search needs the order), an empty or overlong name, or
// no table at all.
func (p Prices) checkShape() error {
	if len(p.Models) == 0 && p.Default == nil {
		return fmt.Errorf("settle: prices: no table: give a default or at least one model's")
	}
	return checkModelNames("prices", p.Models, func(m ModelPrice) string { return m.Model })
}

// checkModelNames refuses a list of models (what names it in the error) a client could
// read two ways: a name a list cannot carry (ListableModel), or not after the one
// before it in byte order (a model twice, or out of the order findModel's search
// needs).
func checkModelNames[T any](what string, list []T, name func(T) string) error {
	for i, m := range list {
		switch n := name(m); {
		case !ListableModel(n):
			return fmt.Errorf("settle: %s: model name %.40q: want 1 to %d bytes of UTF-8", what, n, maxModelName)
		case i > 0 && name(list[i-1]) >= n:
			return fmt.Errorf("settle: %s: model %.40q after %.40q: models must be in increasing byte order, each once", what, n, name(list[i-1]))
		}
	}
	return nil
}

// findModel returns the index of model in list, in the order checkModelNames checks:
// a binary search.
func findModel[T any](list []T, model string, name func(T) string) (int, bool) {
	return slices.BinarySearchFunc(list, model, func(m T, model string) int { return strings.Compare(name(m), model) })
}

// maxModelName bounds a model name in prices: a pipeline manifest's model is at most
// 256 bytes (host/manifest.MaxModelBytes).
const maxModelName = 256

// ListableModel reports whether a price list can name model: 1 to 256 bytes of valid
// UTF-8. JSON carries no other bytes: a name that is not UTF-8 is encoded as U+FFFD,
// so a client reading the list would see another name, in another order, under a
// signature that no longer verifies.
func ListableModel(model string) bool {
	return model != "" && len(model) <= maxModelName && utf8.ValidString(model)
}

// MaxPricesBytes bounds the JSON of a host's per-model tables (Prices.Models): half of
// MaxPriceListBytes, so that with the windows (MaxWindowsBytes) the signed list stays
// one every client reads.
const MaxPricesBytes = MaxPriceListBytes / 2

// Validate checks the shape (checkShape), every table (PriceTable.Validate) and that
// the tables' JSON is at most MaxPricesBytes. Cost: a JSON encoding of the tables.
func (p Prices) Validate() error {
	if err := p.checkShape(); err != nil {
		return err
	}
	if b, _ := json.Marshal(p.Models); len(b) > MaxPricesBytes {
		return fmt.Errorf("settle: prices: %d models take %d bytes of JSON: want at most %d, so that clients read the price list", len(p.Models), len(b), MaxPricesBytes)
	}
	for _, m := range p.Models {
		if err := m.Prices.Validate(); err != nil {
			return fmt.Errorf("model %.40q: %w", m.Model, err)
		}
	}
	if p.Default != nil {
		if err := p.Default.Validate(); err != nil {
			return fmt.Errorf("default prices: %w", err)
		}
	}
	return nil
}

// ModelWindow is one model's context window in a price list.
type ModelWindow struct {
	// Model is the model's name as requests and pipeline manifests name it.
	Model string `json:"model"`
	// Tokens is its context window: the prompt tokens admission prices a request at.
	Tokens uint64 `json:"tokens"`
}

// Windows is the context window, in tokens, of every model a host serves, as its
// admission prices requests (settle.AdmissionUsage): a window for each model its
// backend reports one for, in increasing byte order of the names, each name once, and
// a default (DefaultContextWindow on cocoon-host) for every other model. It is signed
// with the prices (PriceList) because a client's max_price (RequestMaxPrice) grows
// with the window: read from an unsigned answer, a relay could make it unbounded.
type Windows struct {
	Models  []ModelWindow `json:"models"`
	Default uint64        `json:"default"`
}

// SameWindow is the same window for every model: a default and no model of its own.
func SameWindow(tokens uint64) Windows { return Windows{Models: []ModelWindow{}, Default: tokens} }

// MaxContextWindow bounds a window in a price list: 2³², far above any model's (10⁶
// tokens is large), and a figure every JSON reader holds exactly. A host clamps a
// backend's larger figure to it, for admission too.
const MaxContextWindow = 1 << 32

// MaxPriceListBytes is the most of a price list (GET /v1/pricing) a client reads.
const MaxPriceListBytes = 1 << 20

// MaxWindowsBytes bounds the JSON of a list's windows (Windows.Models, with
// ModelWindow.Size): a quarter of MaxPriceListBytes, so that a backend listing many
// models, or long names whose every byte JSON escapes six times, does not make a
// price list no client reads. A host gives the models that do not fit the default
// window, for admission too.
const MaxWindowsBytes = MaxPriceListBytes / 4

// WindowsSize counts the bytes of JSON that windows' models take, as Windows.Validate
// bounds them by MaxWindowsBytes, so that a host choosing which models a list can carry
// counts them as a client's Verify will. The zero value is an empty list's.
type WindowsSize struct{ bytes int }

// Add counts m (its encoding and the comma after it) and returns the models' bytes so
// far: the brackets, less the last comma, and every model added.
func (s *WindowsSize) Add(m ModelWindow) int {
	b, _ := json.Marshal(m)
	s.bytes += len(b) + 1
	return s.Bytes()
}

// Bytes is the models' bytes so far.
func (s WindowsSize) Bytes() int { return s.bytes + 1 }

// Fits reports whether m fits with the models counted so far, and counts it if so.
func (s *WindowsSize) Fits(m ModelWindow) bool {
	before := *s
	if s.Add(m) > MaxWindowsBytes {
		*s = before
		return false
	}
	return true
}

// For returns model's window: its own, else the default.
func (w Windows) For(model string) uint64 {
	if i, found := findModel(w.Models, model, modelWindowName); found {
		return w.Models[i].Tokens
	}
	return w.Default
}

// Validate refuses windows a client could read two ways or that bound nothing: a
// model named twice or out of order, a name a list cannot carry (ListableModel), a
// window (the default included) of 0 or over MaxContextWindow, or models whose JSON
// exceeds MaxWindowsBytes. Cost: a JSON encoding of each model's window.
func (w Windows) Validate() error {
	if w.Default == 0 || w.Default > MaxContextWindow {
		return fmt.Errorf("settle: windows: default window %d: want 1 to %d tokens", w.Default, uint64(MaxContextWindow))
	}
	if err := checkModelNames("windows", w.Models, modelWindowName); err != nil {
		return err
	}
	var size WindowsSize
	for _, m := range w.Models {
		if m.Tokens == 0 || m.Tokens > MaxContextWindow {
			return fmt.Errorf("settle: windows: model %.40q: window %d: want 1 to %d tokens", m.Model, m.Tokens, uint64(MaxContextWindow))
		}
		size.Add(m)
	}
	if size.Bytes() > MaxWindowsBytes {
		return fmt.Errorf("settle: windows: %d models take %d bytes of JSON: want at most %d", len(w.Models), size.Bytes(), MaxWindowsBytes)
	}
	return nil
}

func modelWindowName(m ModelWindow) string { return m.Model }

// PriceListFormat names the format of PriceList and starts its signed encoding. A
// client refuses a list of another format (Verify): a list of format v1 (one table
// for every model, no format member) or v2 (no context windows) is never read as
// this one, nor this one by a client of v2.
const PriceListFormat = "cocoon-pricing-v3"

// PriceList is what GET /v1/pricing publishes: the base prices per model, the curve's
// bounds, the current coefficient and utilization, and what a client needs to open an
// escrow with this host (the settlement key and the wallet charges are paid to),
// signed by the settlement key.
type PriceList struct {
	// Format is PriceListFormat.
	Format string `json:"format"`
	Prices
	// Windows is the context window of every model, as admission prices it.
	Windows Windows `json:"windows"`
	// LoadMilli is the current coefficient: Curve.Coefficient(UtilizationPPM).
	LoadMilli uint64    `json:"load_milli"`
	Curve     LoadCurve `json:"curve"`
	// Wallet is the host's wallet, raw address: escrows pay their charges to it.
	Wallet string `json:"wallet"`
	// MinTimeout is the shortest escrow withdrawal timeout (seconds) the host serves.
	MinTimeout uint32 `json:"min_timeout"`
	// UtilizationPPM is the smoothed share of request slots in use, in parts per
	// million (UtilizationScale).
	UtilizationPPM uint64 `json:"utilization_ppm"`
	Time           int64  `json:"time"`
	HostKey        []byte `json:"host_key"`
	Signature      []byte `json:"signature"`
}

// Quote returns the quote of a request for model at the list's prices and current
// coefficient; ok is false when the list prices no such model.
func (l *PriceList) Quote(model string) (q Quote, ok bool) {
	t, ok := l.For(model)
	return Quote{Prices: t, LoadMilli: l.LoadMilli}, ok
}

// Sign sets the list's format and HostKey (key's public half) and signs the list with
// key.
func (l *PriceList) Sign(key ed25519.PrivateKey) {
	l.Format = PriceListFormat
	l.HostKey = append([]byte(nil), key.Public().(ed25519.PublicKey)...)
	l.Signature = ed25519.Sign(key, l.signedBytes())
}

// Verify checks, in this order, that the list is of PriceListFormat, that its
// signature verifies by hostKey (nil: its own HostKey), that its prices and windows
// have one reading (each model once, in order; every window from 1 to
// MaxContextWindow) and that its coefficient is its curve at its utilization. It
// fails with an error naming the first check that failed.
func (l *PriceList) Verify(hostKey ed25519.PublicKey) error {
	switch {
	case l.Format != PriceListFormat:
		return fmt.Errorf("settle: price list format %.40q: this client reads %s only", l.Format, PriceListFormat)
	case len(l.HostKey) != ed25519.PublicKeySize || (hostKey != nil && !hostKey.Equal(ed25519.PublicKey(l.HostKey))):
		return fmt.Errorf("settle: price list is not signed by the expected key")
	case !ed25519.Verify(l.HostKey, l.signedBytes(), l.Signature):
		return fmt.Errorf("settle: price list: bad signature")
	}
	if err := l.Prices.checkShape(); err != nil {
		return err
	}
	if err := l.Windows.Validate(); err != nil {
		return err
	}
	if want := l.Curve.Coefficient(l.UtilizationPPM); l.LoadMilli != want {
		return fmt.Errorf("settle: price list: load coefficient %d is not its curve's %d at utilization %d ppm", l.LoadMilli, want, l.UtilizationPPM)
	}
	return nil
}

// signedBytes is the format followed by a zero byte and the list's JSON without its
// signature: the struct has a fixed member order and no maps, so the encoding is
// canonical.
func (l PriceList) signedBytes() []byte {
	l.Signature = nil
	b, _ := json.Marshal(l)
	return append([]byte(PriceListFormat+"\x00"), b...)
}

// FormatTON renders nanoTON as TON with up to nine decimals.
func FormatTON(nano uint64) string {
	s := fmt.Sprintf("%d.%09d", nano/1e9, nano%1e9)
	for s[len(s)-1] == '0' && s[len(s)-2] != '.' {
		s = s[:len(s)-1]
	}
	return s
}
