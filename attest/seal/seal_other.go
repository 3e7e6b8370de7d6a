//go:build !linux

package seal

import "errors"

// checkMemoryBacked fails: only Linux tells which file systems are memory-backed, and
// TDX guests run Linux.
func checkMemoryBacked(string) error {
	return errors.New("a sealing key file is supported on Linux only")
}
