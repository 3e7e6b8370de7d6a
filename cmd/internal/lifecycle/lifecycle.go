// Package lifecycle gives a daemon one owner for its long-lived parts. Each part is
// registered as it starts, with how to stop it; Stop stops them in the reverse order and
// waits for each before the next, so that a part is never stopped under a later one that
// uses it (a ledger under the settler that writes to it, a connection pool under the
// server whose requests query it).
//
//	o := lifecycle.New(log)
//	defer o.Stop()
//	db, _ := open()
//	o.Add("ledger", db.Close)
//	o.Go("settler", settler.Run) // stopped, and waited for, before the ledger closes
//	select { case <-ctx.Done(): case <-o.Failed(): }
//	return errors.Join(o.Err(), o.Stop())
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Owner starts and stops a daemon's parts. Add and Go are called by the goroutine that
// builds the daemon; Failed and Err may be read from any goroutine.
type Owner struct {
	log   *slog.Logger
	parts []part

	failOnce sync.Once
	failed   chan struct{}
	err      error // the first part that ended by itself, set before failed is closed
}

// part is one started part: stop stops it and returns when it has stopped.
type part struct {
	name string
	stop func() error
}

// New returns an owner that logs to log how each part stops.
func New(log *slog.Logger) *Owner {
	return &Owner{log: log, failed: make(chan struct{})}
}

// Add registers a part that is already running, such as an open database: Stop calls
// stop after every part registered later has stopped.
func (o *Owner) Add(name string, stop func() error) {
	o.parts = append(o.parts, part{name, stop})
}

// Go runs run in a goroutine as the next part. Stop cancels run's context and waits for
// run to return; run must return soon after its context is done. A run that returns
// before Stop asked it to (with an error, or nil: a daemon's part is not meant to end
// by itself) fails the owner: Failed is closed and Err says which part ended and why.
func (o *Owner) Go(name string, run func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := run(ctx)
		if ctx.Err() == nil { // not asked to stop
			if err == nil {
				err = errors.New("stopped by itself")
			}
			o.fail(fmt.Errorf("%s: %w", name, err))
			err = nil // Err reports it, Stop does not again
		}
		done <- err
	}()
	o.Add(name, func() error {
		cancel()
		err := <-done
		if errors.Is(err, context.Canceled) {
			return nil // stopped as asked
		}
		return err
	})
}

func (o *Owner) fail(err error) {
	o.failOnce.Do(func() {
		o.err = err
		close(o.failed)
	})
}

// Failed is closed when a part started with Go has ended by itself.
func (o *Owner) Failed() <-chan struct{} { return o.failed }

// Err is the error of the first part that ended by itself, or nil.
func (o *Owner) Err() error {
	select {
	case <-o.failed:
		return o.err
	default:
		return nil
	}
}

// Stop stops the parts in the reverse order of their start, each once it has waited
// for the ones after it, and returns their errors joined, each named by its part. It
// forgets the parts it stopped, so a second Stop does nothing.
func (o *Owner) Stop() error {
	var errs []error
	for i := len(o.parts) - 1; i >= 0; i-- {
		p := o.parts[i]
		start := time.Now()
		if err := p.stop(); err != nil {
			o.log.Error("stopping failed", "part", p.name, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
			continue
		}
		o.log.Debug("stopped", "part", p.name, "took", time.Since(start))
	}
	o.parts = nil
	return errors.Join(errs...)
}
