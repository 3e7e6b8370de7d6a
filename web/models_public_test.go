package web

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/cocoonhost/cocoon/host/backend"
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

// TestModelsNeedNoCredential: the model lists answer without a credential (a client
// signing for an escrow reads its model's window there for its max_price, and must not
// show its signature to a relay), a wrong credential is still a 401, and a flood of
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
