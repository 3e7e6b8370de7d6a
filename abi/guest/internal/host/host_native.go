//go:build !wasip1

package host

import (
	"fmt"
	"os"
)

var levels = [...]string{"debug", "info", "warn", "error"}

// Log writes the record to standard error.
func Log(level int32, msg string) {
	name := "error"
	if level >= 0 && int(level) < len(levels) {
		name = levels[level]
	}
	fmt.Fprintf(os.Stderr, "cocoon %s: %s\n", name, msg)
}

// Reject writes the rejection to standard error: natively there is no request to reject.
func Reject(status int32, msg string) {
	fmt.Fprintf(os.Stderr, "cocoon reject %d: %s\n", status, msg)
}

// Config returns nil: natively the config comes from guest.SetTestConfig.
func Config() []byte { return nil }
