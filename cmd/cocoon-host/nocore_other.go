//go:build !unix

package main

// forbidCoreDumps does nothing where there is no core file limit to set.
func forbidCoreDumps() error { return nil }
