package ledger

// SetNoSync turns off bbolt's fsync for l, as a ledger that does not make its commits
// durable would: the power-loss test's child uses it to show that the test catches that.
func SetNoSync(l *Ledger) { l.db.NoSync = true }
