//go:build !(nvml && cgo)

package gpu

import (
	"errors"
	"testing"
)

// TestOpenNVMLNotBuilt: the published host (no cgo, no nvml tag) refuses --gpu nvml
// with a message that says how to get a host that can.
func TestOpenNVMLNotBuilt(t *testing.T) {
	p, err := OpenNVML()
	if !errors.Is(err, ErrNVMLNotBuilt) || p != nil {
		t.Fatalf("OpenNVML() = %v, %v; want ErrNVMLNotBuilt", p, err)
	}
}
