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
// than forget. A principal given a quota records at most that many ids per generation
// (ErrReplayQuota beyond), so that no one of them can fill the cache for everyone.
// Safe for concurrent use; a Check costs two map lookups under a mutex.
type ReplayGuard struct {
	window   time.Duration
	capacity int

	mu        sync.Mutex
	current   map[[16]byte]struct{}
	previous  map[[16]byte]struct{}
	counts    map[string]int // ids recorded this generation by each principal with a quota
	rotatedAt time.Time
}

// Errors of ReplayGuard.Check, each wrapping ErrE2E.
var (
	ErrReplayed        = fmt.Errorf("%w: replayed request: this request id was already run", ErrE2E)
	ErrStale           = fmt.Errorf("%w: request time is outside the host's replay window", ErrE2E)
	ErrReplayCacheFull = fmt.Errorf("%w: the host's replay cache is full: retry shortly", ErrE2E)
	ErrReplayQuota     = fmt.Errorf("%w: too many sealed requests from this credential: retry later", ErrE2E)
)

// NewReplayGuard returns a guard of window (each side of the host's clock) holding at
// most capacity ids per generation.
func NewReplayGuard(window time.Duration, capacity int) *ReplayGuard {
	return &ReplayGuard{window: window, capacity: capacity,
		current: map[[16]byte]struct{}{}, previous: map[[16]byte]struct{}{}, counts: map[string]int{}}
}

// Check records id of a request of principal sealed at t, seen at now, and fails when
// t is outside the window, the id was seen, the cache is full, or quota > 0 and
// principal recorded quota ids in this generation already.
func (g *ReplayGuard) Check(principal string, quota int, id [16]byte, t, now time.Time) error {
	if d := now.Sub(t); d > g.window || d < -g.window {
		return fmt.Errorf("%w (%s each side; the request is %s off)", ErrStale, g.window, d.Round(time.Second))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.rotatedAt) >= 2*g.window {
		g.previous, g.current, g.rotatedAt = g.current, make(map[[16]byte]struct{}, len(g.current)), now
		clear(g.counts)
	}
	_, a := g.current[id]
	_, b := g.previous[id]
	switch {
	case a || b:
		return ErrReplayed
	case len(g.current) >= g.capacity:
		return ErrReplayCacheFull
	case quota > 0 && g.counts[principal] >= quota:
		return ErrReplayQuota
	}
	g.current[id] = struct{}{}
	if quota > 0 {
		g.counts[principal]++
	}
	return nil
}

// Rotation is how long after now the current generation ends, when a principal's quota
// and the cache's room start afresh: the Retry-After of ErrReplayQuota and
// ErrReplayCacheFull.
func (g *ReplayGuard) Rotation(now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return max(g.rotatedAt.Add(2*g.window).Sub(now), time.Second)
}
