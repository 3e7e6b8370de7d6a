//go:build unix

package proctest

import (
	"syscall"
	"time"
)

// CPU is the processor time, user and system, that this process has used: what a
// test or benchmark on a machine shared with other work measures instead of wall
// time, which that work stretches.
func CPU() time.Duration {
	var u syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &u) // cannot fail for RUSAGE_SELF
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}
