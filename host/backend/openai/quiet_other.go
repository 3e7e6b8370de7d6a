//go:build !linux

package openai

import "errors"

// canQuiet: elsewhere sockets are not quieted (quiet.go); the host runs on Linux.
const canQuiet = false

func setLowWater(uintptr, int) error { return errors.ErrUnsupported }
