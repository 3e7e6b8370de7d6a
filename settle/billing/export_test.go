package billing

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SetClock makes c read the time from now, so that tests move a clock instead of
// sleeping past the cache's TTL.
func (c *ChainEscrows) SetClock(now func() time.Time) { c.now = now }

// SetLimits bounds c's caches to cached escrows and unknown addresses.
func (c *ChainEscrows) SetLimits(cached, unknown int) { c.maxCached, c.maxUnknown = cached, unknown }

// Remembered is how many escrows and unknown addresses c remembers.
func (c *ChainEscrows) Remembered() (cached, unknown int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cache), len(c.unknown)
}

// Collectors are m's collectors, as a Service serves them.
func (m *Metrics) Collectors() []prometheus.Collector { return m.collectors() }
