package e2e

import (
	"fmt"
	"sync"
	"time"
)

// ReplayGuard refuses a request id it saw within the window, and a request whose
// time is further than the window from the host's clock. It remembers ids in two
// generations that rotate every two windows, so an id is remembered for at least the
// two windows in which its time is accepted, and memory stays bounded: at most
// capacity ids per generation, beyond which Check refuses (ErrReplayCacheFull) rather
// than forget. Safe for concurrent use; a Check costs a map lookup under a mutex.
type ReplayGuard struct {
	window   time.Duration
	capacity int

	mu        sync.Mutex
	current   map[[16]byte]struct{}
	previous  map[[16]byte]struct{}
	rotatedAt time.Time
}

// Errors of ReplayGuard.Check, each wrapping ErrE2E.
var (
	ErrReplayed        = fmt.Errorf("%w: replayed request: this request id was already run", ErrE2E)
	ErrStale           = fmt.Errorf("%w: request time is outside the host's replay window", ErrE2E)
	ErrReplayCacheFull = fmt.Errorf("%w: the host's replay cache is full: retry shortly", ErrE2E)
)

// NewReplayGuard returns a guard of window (each side of the host's clock) holding at
// most capacity ids per generation.
func NewReplayGuard(window time.Duration, capacity int) *ReplayGuard {
	return &ReplayGuard{window: window, capacity: capacity,
		current: map[[16]byte]struct{}{}, previous: map[[16]byte]struct{}{}}
}

// Check records id of a request sealed at t, seen at now, and fails when t is outside
// the window, the id was seen, or the cache is full.
func (g *ReplayGuard) Check(id [16]byte, t, now time.Time) error {
	if d := now.Sub(t); d > g.window || d < -g.window {
		return fmt.Errorf("%w (%s each side; the request is %s off)", ErrStale, g.window, d.Round(time.Second))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.rotatedAt) >= 2*g.window {
		g.previous, g.current, g.rotatedAt = g.current, make(map[[16]byte]struct{}, len(g.current)), now
	}
	_, a := g.current[id]
	_, b := g.previous[id]
	switch {
	case a || b:
		return ErrReplayed
	case len(g.current) >= g.capacity:
		return ErrReplayCacheFull
	}
	g.current[id] = struct{}{}
	return nil
}
