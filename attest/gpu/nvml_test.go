//go:build nvml && cgo

package gpu

import (
	"errors"
	"os"
	"testing"
)

// TestOpenNVMLWithoutDriver: a host built with NVML, on a machine without the NVIDIA
// driver, fails at once with ErrNoDriver rather than crash or serve without its GPU.
// On a GPU machine (COCOON_TEST_NVML_DRIVER=1) it is skipped.
func TestOpenNVMLWithoutDriver(t *testing.T) {
	if os.Getenv("COCOON_TEST_NVML_DRIVER") == "1" {
		t.Skip("this machine has the NVIDIA driver")
	}
	p, err := OpenNVML()
	if !errors.Is(err, ErrNoDriver) || p != nil {
		t.Fatalf("OpenNVML() = %v, %v; want ErrNoDriver", p, err)
	}
}
