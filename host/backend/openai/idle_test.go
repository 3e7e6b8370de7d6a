package openai

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/host/backend"
)

// TestIdleHook checks the contract of backend.WithIdle that a caller's coalescing
// rests on: the hook comes before the first emit, before every wait for the server
// (so after the deltas of one read and before the server's next write), and after the
// last emit when the server keeps the body open after [DONE]; an error from it stops
// the generation as the caller's own.
func TestIdleHook(t *testing.T) {
	next, last := make(chan struct{}), make(chan struct{})
	h := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		flush(w, sseChunk("Once", "")+sseChunk(" upon", ""))
		<-next // the server waits: what the adapter emitted must be idle's by now
		flush(w, sseChunk(" a time", "stop")+"data: [DONE]\n\n")
		select { // the body stays open: the last delta must be idle's before it ends
		case <-last:
		case <-time.After(5 * time.Second):
		}
	}
	b, _ := newBackend(t, http.HandlerFunc(h))
	var events []string
	ctx := backend.WithIdle(t.Context(), func() error {
		switch {
		case len(events) == 0:
		case events[len(events)-1] == " upon":
			close(next)
		case events[len(events)-1] == " a time":
			close(last)
		}
		events = append(events, "idle")
		return nil
	})
	if _, err := b.Generate(ctx, storyRequest(), func(d string) error {
		events = append(events, d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(events, "|")
	// Reads may split the events anywhere; these are the orders every split keeps.
	if !strings.HasPrefix(got, "idle|") || !strings.HasSuffix(got, "| a time|idle") || !strings.Contains(got, " upon|idle") {
		t.Fatalf("emits and idle calls: %s", got)
	}

	gone := errors.New("the client went away")
	res, err := b.Generate(backend.WithIdle(t.Context(), func() error { return gone }), storyRequest(), func(string) error { return nil })
	if err != gone || res.FinishReason != "cancelled" {
		t.Fatalf("with a failing idle hook: %+v, %v; want its error and cancelled", res, err)
	}
}
