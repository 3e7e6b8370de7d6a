package web

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/host"
	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
)

// listedModels is a backend that lists models and does nothing else.
type listedModels struct {
	backend.Backend
	models []backend.Model
}

func (l listedModels) Models(context.Context) ([]backend.Model, error) { return l.models, nil }

// FuzzMaxPriceIsAdmissionsWorstCase: for any request the host accepts (max_tokens and
// max_completion_tokens absent, null, 0, negative or huge; a model named or not, listed
// or not; a pipeline's) and any model list the backend gives (ids listed twice, windows
// absent, negative or huge), and tables and a curve at their limits, the max_price a
// client computes from the signed price list alone (settle.PriceList.RequestMaxPrice,
// the windows in it published by modelWindows, the source admission reads) is never
// below the worst case admission computes (modelWindows.admissionUsage,
// settle.Quote.WorstCase) at the top of the curve (an honest client refused with a 402
// max_price_exceeded), and exactly it for a request naming its model (no slack a host
// raising its prices could use). Run: go test -run '^$' -fuzz
// FuzzMaxPriceIsAdmissionsWorstCase -fuzztime 60s ./web/
func FuzzMaxPriceIsAdmissionsWorstCase(f *testing.F) {
	f.Add(uint8(0), int64(512), int64(2048), uint8(0), int64(16), int64(-1), false, uint64(200_000_000_000), uint64(1000), "a\xff")
	f.Add(uint8(3), int64(0), int64(-5), uint8(0), int64(-1), int64(-1), true, uint64(1e15), uint64(100_000), "a\xff")
	f.Add(uint8(2), int64(1<<62), int64(9), uint8(2), int64(1<<31-1), int64(1<<40), false, uint64(1), uint64(1), "a\xff")
	f.Add(uint8(1), int64(1<<40), int64(100), uint8(1), int64(5), int64(-1), false, uint64(3), uint64(7), "a\xff")
	// The backend's unnamed model first, with a window above the default: admission
	// priced a request naming no model at it, which the list could not carry.
	f.Add(uint8(2), int64(100_000), int64(100), uint8(3), int64(-1), int64(-1), false, uint64(1000), uint64(1000), "a\xff")
	// Two names that are not UTF-8: JSON made both U+FFFD, and the signature failed.
	f.Add(uint8(3+5*4), int64(4096), int64(100), uint8(0), int64(-1), int64(-1), false, uint64(1000), uint64(1000), "a\xff")
	// A name over 256 bytes, first, and named by the request.
	f.Add(uint8(3+5*1), int64(100_000), int64(100), uint8(4), int64(-1), int64(-1), false, uint64(1000), uint64(1000), strings.Repeat("é", 200))
	f.Fuzz(func(t *testing.T, listed uint8, windowA, windowB int64, named uint8, maxTokens, maxCompletion int64, pipeline bool, price, maxMilli uint64, name string) {
		// Two entries, each "a", "b", unnamed, any name (not UTF-8, overlong...) or
		// "a\xfe": possibly the same model twice.
		listedIDs := []string{"a", "b", "", name, "a\xfe"}
		models := []backend.Model{{ID: listedIDs[listed%5], ContextLength: int(windowA)}, {ID: listedIDs[listed/5%5], ContextLength: int(windowB)}}
		req := map[string]any{"messages": []map[string]string{{"role": "user", "content": "x"}}}
		if m := []string{"a", "b", "c", "", name}[named%5]; m != "" {
			req["model"] = m
		}
		// -1 is absent, -2 null; anything else is sent as it is.
		for member, v := range map[string]int64{"max_tokens": maxTokens, "max_completion_tokens": maxCompletion} {
			switch v {
			case -1:
			case -2:
				req[member] = nil
			default:
				req[member] = v
			}
		}
		body, _ := json.Marshal(req)
		if host.CheckChatRequest(body) != nil {
			return // a 400: nothing admitted, nothing to cap
		}
		var opts clientOptions
		if err := json.Unmarshal(body, &opts); err != nil {
			t.Fatalf("a checked request does not decode: %v", err)
		}
		// As chatCall and escrowBilling.admit read it: a pipeline runs its manifest's
		// model ("c", which the backend may not list), and a body naming another is a 400.
		manifest := ""
		if pipeline {
			if manifest = "c"; opts.Model != "" && opts.Model != manifest {
				return
			}
		}
		// b has a table of its own, the rest the default.
		table := settle.PriceTable{PromptPerMillion: min(price, 1e15), CompletionPerMillion: min(price/3+1, 1e15), ComputePerMillion: 1}
		bTable := settle.PriceTable{PromptPerMillion: min(price/7+1, 1e15), CompletionPerMillion: min(price, 1e15)}
		curve := settle.LoadCurve{MinMilli: 1, MaxMilli: max(1, min(maxMilli, 100_000)), Smoothing: time.Minute}
		pricer, err := billing.NewPricer(settle.Prices{Models: []settle.ModelPrice{{Model: "b", Prices: bTable}}, Default: &table}, curve)
		if err != nil {
			t.Fatal(err)
		}
		checkClientCap(t, models, body, opts, manifest, pricer, curve)
	})
}

// checkClientCap fails t if the max_price a client computes for body, from the price
// list as it reads it (settle.MaxPriceListBytes at most of JSON, verified), is below
// the worst case admission computes (modelWindows.admissionUsage, settle.Quote.WorstCase)
// at the top of curve, or not exactly it for a request naming its model: the backend
// lists models, the host's pricer is pricer, and a pipeline of model manifest ("": the
// bare model) is asked.
func checkClientCap(t *testing.T, models []backend.Model, body []byte, opts clientOptions, manifest string, pricer *billing.Pricer, curve settle.LoadCurve) {
	t.Helper()
	windows := &modelWindows{backend: listedModels{models: models}, publish: pricer.SetWindows}
	model := windows.name(context.Background(), cmp.Or(manifest, opts.Model))
	u, _ := windows.admissionUsage(context.Background(), model, opts)
	u.ComputeUnits = settle.ComputeBound // cocoon-host's reserve
	q, err := pricer.Quote(model)
	if err != nil {
		t.Fatal(err)
	}
	q.LoadMilli = curve.MaxMilli
	worst := q.WorstCase(u)

	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	signed, err := json.Marshal(pricer.PriceList(key, "0:00", 3600))
	if err != nil {
		t.Fatal(err)
	}
	if len(signed) > settle.MaxPriceListBytes {
		t.Fatalf("the host signs a list of %d bytes, more than its clients read (%d)", len(signed), settle.MaxPriceListBytes)
	}
	var list settle.PriceList
	if err := json.Unmarshal(signed, &list); err != nil {
		t.Fatal(err)
	}
	if err := list.Verify(key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("the host signs a list its clients refuse: %v", err)
	}
	pipeline := manifest != ""
	maxPrice, err := list.RequestMaxPrice(body, pipeline)
	switch {
	case err != nil:
		t.Fatalf("the client cannot price %.200s against %.200v: %v", body, list.Windows, err)
	case maxPrice < worst:
		t.Fatalf("%.200s against %.200v (pipeline %v): the client's max_price %d is below admission's worst case %d (usage %+v)",
			body, list.Windows, pipeline, maxPrice, worst, u)
	case !pipeline && opts.Model != "" && maxPrice != worst:
		t.Fatalf("%.200s against %.200v: the client's max_price %d is not admission's worst case %d (usage %+v)",
			body, list.Windows, maxPrice, worst, u)
	}
}

// TestManyModelsMakeAListClientsRead: a backend listing 5,000 models, each name 256
// bytes that JSON escapes (6 bytes a character), made a price list of 7.7 MB, which no
// client reads (settle.MaxPriceListBytes): every client lost the host. The windows that
// do not fit settle.MaxWindowsBytes are the default, for admission too, so that a
// client's cap still matches admission's worst case for every model.
func TestManyModelsMakeAListClientsRead(t *testing.T) {
	var models []backend.Model
	for i := range 5000 {
		models = append(models, backend.Model{ID: fmt.Sprintf("%05d%s", i, strings.Repeat("<", 251)), ContextLength: 10_000 + i})
	}
	table := settle.PriceTable{PromptPerMillion: 1000, CompletionPerMillion: 3000, ComputePerMillion: 1}
	curve := settle.LoadCurve{MinMilli: 1000, MaxMilli: 2000, Smoothing: time.Minute}
	for _, tc := range []struct {
		name, model, manifest string
	}{
		{name: "unnamed"},
		{name: "the first model", model: models[0].ID},
		{name: "a model past what fits", model: models[len(models)-1].ID},
		{name: "a model the backend does not list", model: "other"},
		{name: "a pipeline of a model past what fits", manifest: models[len(models)-1].ID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pricer, err := billing.NewPricer(settle.SamePrices(table), curve)
			if err != nil {
				t.Fatal(err)
			}
			req := map[string]any{"messages": []map[string]string{{"role": "user", "content": "x"}}}
			if tc.model != "" {
				req["model"] = tc.model
			}
			body, _ := json.Marshal(req)
			var opts clientOptions
			if err := json.Unmarshal(body, &opts); err != nil {
				t.Fatal(err)
			}
			checkClientCap(t, models, body, opts, tc.manifest, pricer, curve)
		})
	}
}
