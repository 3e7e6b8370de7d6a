package settle

import "time"

// SetClock makes c read the time from now, so that tests move a clock instead of
// sleeping past the cache's TTL.
func (c *ChainEscrows) SetClock(now func() time.Time) { c.now = now }
