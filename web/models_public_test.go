package web

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
)

// countingModels counts the backend's model list reads.
type countingModels struct {
	backend.Backend
	reads *atomic.Int32
}

func (c countingModels) Models(ctx context.Context) ([]backend.Model, error) {
	c.reads.Add(1)
	return c.Backend.Models(ctx)
}

// TestModelsNeedNoCredential: the model lists answer without a credential (as pipeline
// evidence, which names the model too, does), a wrong credential is still a 401, and a flood of
// anonymous reads reads the backend's list once (admission's cache), not once each.
func TestModelsNeedNoCredential(t *testing.T) {
	var reads atomic.Int32
	f := newFixture(t, func(c *Config, r *recorder) { r.Backend = countingModels{r.Backend, &reads} })
	id := f.push(emptyPipeline)
	before := reads.Load()
	for range 20 {
		for _, path := range []string{"/v1/models", "/p/" + id + "/v1/models"} {
			var list listJSON[modelJSON]
			res := f.do("GET", path, "", nil)
			res.json(t, &list)
			if res.status != http.StatusOK || len(list.Data) != 1 || list.Data[0].ContextLength != 512 {
				t.Fatalf("%s without a credential: %d %s", path, res.status, res.body)
			}
		}
	}
	if n := reads.Load() - before; n > 1 {
		t.Errorf("40 anonymous reads read the backend's list %d times, want at most once", n)
	}
	if res := f.do("GET", "/v1/models", "wrong-key", nil); res.status != http.StatusUnauthorized {
		t.Errorf("a wrong credential: %d %s", res.status, res.body)
	}
}

// failingModels is a backend whose model list cannot be read.
type failingModels struct {
	backend.Backend
	reads *atomic.Int32
}

func (f failingModels) Models(context.Context) ([]backend.Model, error) {
	f.reads.Add(1)
	return nil, backend.Errorf(backend.CodeUnavailable, "the model list is unavailable")
}

// TestModelsFloodWhileTheBackendFails performs an anonymous flood of GET /v1/models
// while the backend cannot list its models: every read failed, so none was cached, and
// each anonymous request read the backend's list again (one at a time, holding the
// lock admission waits on). The flood reads it at most once per modelsRetry, and each
// request still gets the backend's error, naming no address.
func TestModelsFloodWhileTheBackendFails(t *testing.T) {
	var reads atomic.Int32
	f := newFixture(t, func(c *Config, r *recorder) { r.Backend = failingModels{r.Backend, &reads} })
	before := reads.Load()
	for range 20 {
		res := f.do("GET", "/v1/models", "", nil)
		if res.status != http.StatusServiceUnavailable || !strings.Contains(string(res.body), "the model list is unavailable") {
			t.Fatalf("the model list of a failing backend: %d %s", res.status, res.body)
		}
	}
	// Generous: the 20 reads take far less than 2 s even on a loaded machine, so at
	// most two retry periods begin.
	if n := reads.Load() - before; n > 2 {
		t.Errorf("20 anonymous reads read the failing backend's list %d times, want at most twice", n)
	}
}

// twiceListed lists its backend's first model twice: once with its window, once with
// a window 64 times as long, first when longerFirst.
type twiceListed struct {
	backend.Backend
	longerFirst bool
}

func (b twiceListed) Models(ctx context.Context) ([]backend.Model, error) {
	models, err := b.Backend.Models(ctx)
	if err != nil || len(models) == 0 {
		return models, err
	}
	longer := models[0]
	longer.ContextLength *= 64
	if b.longerFirst {
		return append([]backend.Model{longer}, models...), nil
	}
	return append(models, longer), nil
}

// TestMaxPriceOfAModelListedTwice: a backend (the operator's) listing a model twice with
// two context windows. Admission once read the last while clients read the first: the
// honest client's default max_price was below admission's worst case, a 402 for a
// request it had priced right. The signed price list gives the model the window it is
// first listed with, and admission reads that one too: each request is served within
// the cap its client computed from the signed list alone.
func TestMaxPriceOfAModelListedTwice(t *testing.T) {
	for _, tt := range []struct {
		name        string
		pipeline    bool
		longerFirst bool
	}{
		{"the bare backend, the longer window listed second", false, false},
		{"the bare backend, the longer window listed first", false, true},
		{"a pipeline, the longer window listed second", true, false},
		{"a pipeline, the longer window listed first", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := newBilling(t, 10e9, func(c *Config, r *recorder) { r.Backend = twiceListed{r.Backend, tt.longerFirst} })
			var list settle.PriceList
			if res := b.do("GET", "/v1/pricing", "", nil); res.status != http.StatusOK {
				t.Fatalf("GET /v1/pricing: %d %s", res.status, res.body)
			} else {
				res.json(t, &list)
			}
			if err := list.Verify(b.hostKey.Public().(ed25519.PublicKey)); err != nil {
				t.Fatal(err)
			}
			prefix, body := "/v1", strings.Replace(chatBody, `"max_tokens":16`, `"max_tokens":16,"model":"`+testModel+`"`, 1)
			if tt.pipeline {
				prefix, body = "/p/"+b.push(emptyPipeline)+"/v1", chatBody
			}
			first := uint64(512)
			if tt.longerFirst {
				first *= 64
			}
			if got := list.Windows.For(testModel); got != first {
				t.Fatalf("the signed list gives %s the window %d, want the first listed: %d", testModel, got, first)
			}
			maxPrice, err := list.RequestMaxPrice([]byte(body), tt.pipeline)
			if err != nil {
				t.Fatal(err)
			}
			capped := strings.Replace(body, `"max_tokens":16`, `"max_tokens":16,"max_price":"`+strconv.FormatUint(maxPrice, 10)+`"`, 1)
			res := b.signed(t, b.clientKey, prefix+"/chat/completions", capped, nil)
			if res.status != http.StatusOK {
				t.Fatalf("a request at the max_price the client computed from the host's own model list: %d %s", res.status, res.body)
			}
			if r := b.receipt(t, res); r.MaxCost > maxPrice {
				t.Errorf("reserved %d, over the cap %d", r.MaxCost, maxPrice)
			}
		})
	}
}

// hungUpModels lists models, or fails with its context's error once that ended, as a
// backend across a network does.
type hungUpModels struct {
	backend.Backend
	models atomic.Pointer[[]backend.Model]
}

func (b *hungUpModels) Models(ctx context.Context) ([]backend.Model, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return *b.models.Load(), nil
}

// TestModelsReadOfAClientThatHangsUp: the backend's model list was read on the context
// of the request that found it due, an anonymous GET /v1/pricing or /v1/models. A
// client hanging up ended the read: everyone then had no list (the first read: 503 on
// GET /v1/models) or the previous one, and its windows in the signed price list, for
// modelsRetry, and a client hanging up each time it came due kept them so forever. The
// read is shared, so it runs on no caller's context.
func TestModelsReadOfAClientThatHangsUp(t *testing.T) {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	for _, tc := range []struct {
		name  string
		first bool // the hung-up request is the first to read the list
	}{
		{"the first read", true},
		{"a read again after modelsTTL", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pricer, err := billing.NewPricer(settle.SamePrices(settle.PriceTable{PromptPerMillion: 1}), settle.LoadCurve{MinMilli: 1000, MaxMilli: 1000, Smoothing: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			b := &hungUpModels{}
			m := &modelWindows{backend: b, publish: pricer.SetWindows}
			if !tc.first {
				b.models.Store(&[]backend.Model{{ID: "a", ContextLength: 1000}})
				m.sync(context.Background())
				m.mu.Lock()
				m.read = m.read.Add(-modelsTTL)
				m.mu.Unlock()
			}
			b.models.Store(&[]backend.Model{{ID: "a", ContextLength: 5000}})
			gone, hangUp := context.WithCancel(context.Background())
			hangUp()
			m.sync(gone)

			if models, err := m.list(context.Background()); err != nil || len(models) != 1 || models[0].ContextLength != 5000 {
				t.Errorf("the model list after a client hung up on its read: %+v, %v; want a's window of 5000", models, err)
			}
			if got := pricer.PriceList(key, "0:00", 3600).Windows.For("a"); got != 5000 {
				t.Errorf("the signed window of a after a client hung up on its read: %d, want 5000", got)
			}
		})
	}
}
