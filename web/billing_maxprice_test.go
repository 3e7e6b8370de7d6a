package web

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/json"
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
	f.Add(uint8(0), int64(512), int64(2048), uint8(0), int64(16), int64(-1), false, uint64(200_000_000_000), uint64(1000))
	f.Add(uint8(3), int64(0), int64(-5), uint8(0), int64(-1), int64(-1), true, uint64(1e15), uint64(100_000))
	f.Add(uint8(2), int64(1<<62), int64(9), uint8(2), int64(1<<31-1), int64(1<<40), false, uint64(1), uint64(1))
	f.Add(uint8(1), int64(1<<40), int64(100), uint8(1), int64(5), int64(-1), false, uint64(3), uint64(7))
	ids := []string{"a", "b", "c", ""}
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	f.Fuzz(func(t *testing.T, listed uint8, windowA, windowB int64, named uint8, maxTokens, maxCompletion int64, pipeline bool, price, maxMilli uint64) {
		// Two entries, each "a" or "b": possibly the same model twice.
		models := []backend.Model{{ID: ids[listed&1], ContextLength: int(windowA)}, {ID: ids[listed>>1&1], ContextLength: int(windowB)}}
		req := map[string]any{"messages": []map[string]string{{"role": "user", "content": "x"}}}
		if m := ids[named%4]; m != "" {
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

		list := pricer.PriceList(key, "0:00", 3600)
		if err := list.Verify(key.Public().(ed25519.PublicKey)); err != nil {
			t.Fatalf("the host signs a list its clients refuse: %v", err)
		}
		maxPrice, err := list.RequestMaxPrice(body, pipeline)
		switch {
		case err != nil:
			t.Fatalf("the client cannot price %s against %+v: %v", body, list.Windows, err)
		case maxPrice < worst:
			t.Fatalf("%s against %+v (pipeline %v): the client's max_price %d is below admission's worst case %d (usage %+v)",
				body, list.Windows, pipeline, maxPrice, worst, u)
		case !pipeline && opts.Model != "" && maxPrice != worst:
			t.Fatalf("%s against %+v: the client's max_price %d is not admission's worst case %d (usage %+v)",
				body, list.Windows, maxPrice, worst, u)
		}
	})
}
