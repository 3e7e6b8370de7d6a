package lifecycle

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// journal records what the parts did, in order.
type journal struct {
	mu     sync.Mutex
	events []string
}

func (j *journal) add(e string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, e)
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.events)
}

// TestStopOrder: parts stop in the reverse order of their start, and a goroutine part
// has returned (here, 50 ms after it was told to stop) before the part started before
// it is stopped: a ledger never closes under the settler that writes to it.
func TestStopOrder(t *testing.T) {
	var j journal
	o := New(slog.New(slog.DiscardHandler))
	o.Add("ledger", func() error { j.add("ledger closed"); return nil })
	o.Go("settler", func(ctx context.Context) error {
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond) // the end of a settlement round
		j.add("settler returned")
		return ctx.Err()
	})
	o.Add("pool", func() error { j.add("pool closed"); return nil })
	o.Go("server", func(ctx context.Context) error {
		<-ctx.Done()
		j.add("server returned")
		return nil
	})
	if err := o.Stop(); err != nil {
		t.Fatal(err)
	}
	want := []string{"server returned", "pool closed", "settler returned", "ledger closed"}
	if got := j.list(); !slices.Equal(got, want) {
		t.Errorf("stopped %q, want %q", got, want)
	}
	if err := o.Stop(); err != nil || len(j.list()) != len(want) {
		t.Errorf("a second Stop: %v, %q", err, j.list())
	}
	if o.Err() != nil {
		t.Errorf("Err %v after a clean stop", o.Err())
	}
}

// TestPartFails: a part that ends by itself fails the owner, once, with its name; the
// others keep running until Stop, which reports only what failed while stopping.
func TestPartFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(ctx context.Context) error
		want string
	}{
		{"error", func(context.Context) error { return errors.New("address in use") }, "http server: address in use"},
		{"returns nil", func(context.Context) error { return nil }, "http server: stopped by itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var j journal
			o := New(slog.New(slog.DiscardHandler))
			o.Add("ledger", func() error { return errors.New("disk gone") })
			o.Go("settler", func(ctx context.Context) error { <-ctx.Done(); j.add("settler returned"); return nil })
			o.Go("http server", tc.run)
			select {
			case <-o.Failed():
			case <-time.After(5 * time.Second):
				t.Fatal("Failed not closed")
			}
			if err := o.Err(); err == nil || err.Error() != tc.want {
				t.Errorf("Err %v, want %q", err, tc.want)
			}
			if got := j.list(); len(got) != 0 {
				t.Errorf("another part stopped before Stop: %q", got)
			}
			err := o.Stop()
			if err == nil || err.Error() != "ledger: disk gone" || strings.Contains(err.Error(), "http server") {
				t.Errorf("Stop: %v, want only the ledger's error", err)
			}
			if got := j.list(); !slices.Equal(got, []string{"settler returned"}) {
				t.Errorf("after Stop: %q", got)
			}
		})
	}
}
