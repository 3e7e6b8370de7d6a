package settle

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"maps"
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

// TestLoadCurveCoefficient: the coefficient at the edges and between them, to the
// thousandth, by the integer formula of LoadCurve's doc (the values a client
// recomputes).
func TestLoadCurveCoefficient(t *testing.T) {
	def := LoadCurve{MinMilli: 500, MaxMilli: 2000, Smoothing: 30 * time.Second}
	widest := LoadCurve{MinMilli: 1, MaxMilli: 100_000, Smoothing: time.Second}
	for _, tt := range []struct {
		name string
		c    LoadCurve
		u    uint64
		want uint64
	}{
		{"idle", def, 0, 500},
		{"one ppm", def, 1, 500},
		{"half", def, 500_000, 875}, // 500 + 1500/4
		{"full", def, UtilizationScale, 2000},
		{"over full", def, UtilizationScale + 1, 2000},
		{"overflow-sized", def, math.MaxUint64, 2000},
		{"rounds half up", LoadCurve{MinMilli: 1000, MaxMilli: 1002, Smoothing: time.Second}, 500_000, 1001},         // 2/4 = 0.5 → 1
		{"rounds below half down", LoadCurve{MinMilli: 1000, MaxMilli: 1001, Smoothing: time.Second}, 707_106, 1000}, // 0.49999… → 0
		{"rounds above half up", LoadCurve{MinMilli: 1000, MaxMilli: 1001, Smoothing: time.Second}, 707_107, 1001},   // 0.50000… → 1
		{"flat", LoadCurve{MinMilli: 1000, MaxMilli: 1000, Smoothing: time.Second}, 300_000, 1000},
		{"widest, full", widest, UtilizationScale, 100_000},
		{"widest, overflow-sized", widest, math.MaxUint64, 100_000},
		{"widest, idle", widest, 0, 1},
		{"inverted (refused by Validate)", LoadCurve{MinMilli: 2000, MaxMilli: 1000}, UtilizationScale, 2000},
		{"span past ×100 (refused by Validate)", LoadCurve{MinMilli: 1, MaxMilli: math.MaxUint64}, math.MaxUint64, 100_001},
	} {
		if got := tt.c.Coefficient(tt.u); got != tt.want {
			t.Errorf("%s: coefficient(%d) = %d, want %d", tt.name, tt.u, got, tt.want)
		}
	}
}

// FuzzLoadCurveCoefficient: for any curve Validate accepts, the coefficient never
// decreases as utilization grows and stays within [Min, Max].
func FuzzLoadCurveCoefficient(f *testing.F) {
	f.Add(uint64(500), uint64(2000), uint64(0), uint64(1))
	f.Add(uint64(1), uint64(100_000), uint64(999_999), uint64(math.MaxUint64))
	f.Add(uint64(1000), uint64(1000), uint64(5), uint64(7))
	f.Fuzz(func(t *testing.T, lo, hi, u, v uint64) {
		c := LoadCurve{MinMilli: lo, MaxMilli: hi, Smoothing: time.Second}
		if c.Validate() != nil {
			return
		}
		if u > v {
			u, v = v, u
		}
		cu, cv := c.Coefficient(u), c.Coefficient(v)
		switch {
		case cu > cv:
			t.Fatalf("curve %d..%d: coefficient(%d) = %d > coefficient(%d) = %d", lo, hi, u, cu, v, cv)
		case cu < lo || cv > hi:
			t.Fatalf("curve %d..%d: coefficients %d, %d outside it", lo, hi, cu, cv)
		}
	})
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

func TestPricesFor(t *testing.T) {
	small, large, other := PriceTable{CompletionPerMillion: 1}, PriceTable{CompletionPerMillion: 9}, PriceTable{PromptPerMillion: 5}
	listed := Prices{Models: []ModelPrice{{"large", large}, {"small", small}}}
	withDefault := listed
	withDefault.Default = &other
	for _, tt := range []struct {
		name  string
		p     Prices
		model string
		want  PriceTable
		ok    bool
	}{
		{"its own", listed, "small", small, true},
		{"its own over the default", withDefault, "large", large, true},
		{"the default", withDefault, "medium", other, true},
		{"no price", listed, "medium", PriceTable{}, false},
		{"the empty name", listed, "", PriceTable{}, false},
		{"same for all", SamePrices(other), "anything", other, true},
	} {
		if got, ok := tt.p.For(tt.model); got != tt.want || ok != tt.ok {
			t.Errorf("%s: For(%q) = %+v, %v; want %+v, %v", tt.name, tt.model, got, ok, tt.want, tt.ok)
		}
	}
}

// TestPriceListVerify: a client reads a price list of this format only, with one
// reading of its prices and the coefficient its curve gives at its utilization; each
// check fails on a list the host signed (so the signature alone does not pass it).
func TestPriceListVerify(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	curve := LoadCurve{MinMilli: 500, MaxMilli: 2000}
	good := func() PriceList {
		return PriceList{Prices: Prices{Models: []ModelPrice{{"a", PriceTable{PromptPerMillion: 1}}, {"b", PriceTable{PromptPerMillion: 2}}}},
			Windows: Windows{Models: []ModelWindow{{"a", 4096}, {"c", 32768}}, Default: DefaultContextWindow},
			Curve:   curve, UtilizationPPM: 500_000, LoadMilli: 875, Wallet: "0:00", MinTimeout: 3600, Time: 1}
	}
	l := good()
	l.Sign(key)
	if err := l.Verify(key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("a good list: %v", err)
	}
	for _, tt := range []struct {
		name, want string
		edit       func(*PriceList)
	}{
		{"models out of order", "increasing byte order", func(l *PriceList) { l.Models[0], l.Models[1] = l.Models[1], l.Models[0] }},
		{"a model twice", "increasing byte order", func(l *PriceList) { l.Models[1].Model = "a" }},
		{"an empty model name", "model name", func(l *PriceList) { l.Models[0].Model = "" }},
		{"no table", "no table", func(l *PriceList) { l.Models = nil }},
		{"windows out of order", "windows: model \"a\" after \"c\"", func(l *PriceList) {
			l.Windows.Models[0], l.Windows.Models[1] = l.Windows.Models[1], l.Windows.Models[0]
		}},
		{"a window twice", "windows: model \"c\" after \"c\"", func(l *PriceList) { l.Windows.Models[0].Model = "c" }},
		{"an empty window name", "windows: model name", func(l *PriceList) { l.Windows.Models[0].Model = "" }},
		{"an overlong window name", "windows: model name", func(l *PriceList) { l.Windows.Models[1].Model = strings.Repeat("c", maxModelName+1) }},
		{"a window name not UTF-8", "windows: model name", func(l *PriceList) { l.Windows.Models[1].Model = "c\xff" }},
		{"a price name not UTF-8", "prices: model name", func(l *PriceList) { l.Models[1].Model = "b\xff" }},
		{"windows over their bytes", "bytes of JSON", func(l *PriceList) {
			l.Windows.Models = nil
			for i := range MaxWindowsBytes / 256 {
				l.Windows.Models = append(l.Windows.Models, ModelWindow{fmt.Sprintf("%06d%s", i, strings.Repeat("w", 250)), MaxContextWindow})
			}
		}},
		{"a window of 0", "window 0", func(l *PriceList) { l.Windows.Models[1].Tokens = 0 }},
		{"a window over the bound", "window 4294967297", func(l *PriceList) { l.Windows.Models[1].Tokens = MaxContextWindow + 1 }},
		{"no default window", "default window 0", func(l *PriceList) { l.Windows.Default = 0 }},
		{"a default window over the bound", "default window 18446744073709551615", func(l *PriceList) { l.Windows.Default = math.MaxUint64 }},
		{"a coefficient off its curve", "load coefficient 876", func(l *PriceList) { l.LoadMilli = 876 }},
		{"a utilization past full priced below max", "load coefficient 875", func(l *PriceList) { l.UtilizationPPM = math.MaxUint64 }},
	} {
		l := good()
		tt.edit(&l)
		l.Sign(key)
		if err := l.Verify(nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Verify = %v, want an error with %q", tt.name, err, tt.want)
		}
	}
	// Another format, signed as this one would be: refused before its signature.
	other := good()
	other.Sign(key)
	other.Format = "cocoon-pricing-v4"
	if err := other.Verify(nil); err == nil || !strings.Contains(err.Error(), `format "cocoon-pricing-v4"`) {
		t.Errorf("another format: %v", err)
	}
}

// TestPriceListWindowTampered: a relay that enlarges a model's window, or the default
// one, in a signed list (to raise the max_price a client computes from it) breaks the
// signature; so does one that moves a window to another model.
func TestPriceListWindowTampered(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{6}, ed25519.SeedSize))
	for name, edit := range map[string]func(*PriceList){
		"a model's window":   func(l *PriceList) { l.Windows.Models[0].Tokens = 1_000_000_000 },
		"the default window": func(l *PriceList) { l.Windows.Default = 1_000_000_000 },
		"a window renamed":   func(l *PriceList) { l.Windows.Models[0].Model = "b" },
		"a window added":     func(l *PriceList) { l.Windows.Models = append(l.Windows.Models, ModelWindow{"z", 1 << 20}) },
	} {
		l := PriceList{Prices: SamePrices(PriceTable{PromptPerMillion: 1}), Windows: Windows{Models: []ModelWindow{{"a", 4096}}, Default: 2048},
			Curve: LoadCurve{MinMilli: 500, MaxMilli: 2000}, LoadMilli: 500}
		l.Sign(key)
		// Through JSON, as a relay would rewrite it.
		b, _ := json.Marshal(l)
		var tampered PriceList
		if err := json.Unmarshal(b, &tampered); err != nil {
			t.Fatal(err)
		}
		edit(&tampered)
		if err := tampered.Verify(key.Public().(ed25519.PublicKey)); err == nil || !strings.Contains(err.Error(), "bad signature") {
			t.Errorf("%s: Verify = %v, want a bad signature", name, err)
		}
	}
}

// TestPriceListRefusesOlderFormats: a list of an earlier format, validly signed in its
// own signing domain, is refused by name: v1 (one table for every model, no format
// member) is not read as a list without prices or with the table taken for some
// model's, and v2 (prices without windows) never has its missing windows taken for
// anything.
func TestPriceListRefusesOlderFormats(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize))
	table := map[string]string{"prompt_per_million": "1", "completion_per_million": "2", "compute_per_million": "0"}
	for _, tc := range []struct {
		name, domain, want string
		members            map[string]any
	}{
		{"v1", "cocoon-pricing-v1", `price list format ""`, map[string]any{"prices": table, "utilization_milli": 0}},
		{"v2", "cocoon-pricing-v2", `price list format "cocoon-pricing-v2": this client reads cocoon-pricing-v3 only`,
			map[string]any{"format": "cocoon-pricing-v2", "models": []any{}, "default": table, "utilization_ppm": 0}},
	} {
		list := map[string]any{"load_milli": 500, "curve": map[string]uint64{"min_milli": 500, "max_milli": 2000}, "wallet": "0:00", "min_timeout": 3600,
			"time": 1, "host_key": []byte(key.Public().(ed25519.PublicKey))}
		maps.Copy(list, tc.members)
		body, _ := json.Marshal(list)
		list["signature"] = ed25519.Sign(key, append([]byte(tc.domain+"\x00"), body...))
		b, _ := json.Marshal(list)
		var l PriceList
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatal(err)
		}
		if err := l.Verify(nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("a %s list: Verify = %v, want the format refused", tc.name, err)
		}
	}
}

// FuzzPriceListVerify: whatever bytes a host serves as its price list, decoding and
// Verify never panic, and a list that verifies prices each model one way.
func FuzzPriceListVerify(f *testing.F) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	l := PriceList{Prices: Prices{Models: []ModelPrice{{"a", PriceTable{PromptPerMillion: 1}}}, Default: &PriceTable{CompletionPerMillion: 2}},
		Windows: Windows{Models: []ModelWindow{{"a", 4096}}, Default: DefaultContextWindow},
		Curve:   LoadCurve{MinMilli: 500, MaxMilli: 2000}, LoadMilli: 500}
	l.Sign(key)
	good, _ := json.Marshal(l)
	f.Add(good)
	f.Add([]byte(`{"format":"cocoon-pricing-v3","models":null,"windows":{"models":[{"model":"a","tokens":0}],"default":1},"utilization_ppm":18446744073709551615}`))
	f.Add([]byte(`{"prices":{"prompt_per_million":"1"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var l PriceList
		if json.Unmarshal(b, &l) != nil || l.Verify(nil) != nil {
			return
		}
		for i := 1; i < len(l.Models); i++ {
			if l.Models[i-1].Model >= l.Models[i].Model {
				t.Fatalf("a verified list names %q after %q", l.Models[i].Model, l.Models[i-1].Model)
			}
		}
		for _, m := range l.Models {
			if got, ok := l.For(m.Model); !ok || got != m.Prices {
				t.Fatalf("a verified list prices %q as %+v, %v, not its own %+v", m.Model, got, ok, m.Prices)
			}
		}
		for _, m := range l.Windows.Models {
			if got := l.Windows.For(m.Model); got != m.Tokens || got == 0 || got > MaxContextWindow {
				t.Fatalf("a verified list gives %q the window %d, its own is %d", m.Model, got, m.Tokens)
			}
		}
		if w := l.Windows.For("\xff never listed"); w == 0 || w > MaxContextWindow {
			t.Fatalf("a verified list's default window is %d", w)
		}
	})
}
