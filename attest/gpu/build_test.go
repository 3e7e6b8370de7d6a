package gpu

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNVMLBuildWithoutDriver builds this package with NVML (cgo and the nvml tag), as a
// GPU host is built, and runs TestOpenNVMLWithoutDriver in it: the NVML host must build
// where there is no driver and fail there with ErrNoDriver. It needs a C compiler.
func TestNVMLBuildWithoutDriver(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles go-nvml with cgo: not in -short")
	}
	cc, err := exec.Command("go", "env", "CC").Output()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath(strings.Fields(string(cc) + " gcc")[0]); err != nil {
		t.Skipf("no C compiler (%s): the nvml build needs cgo", strings.TrimSpace(string(cc)))
	}
	cmd := exec.Command("go", "test", "-count=1", "-tags", "nvml", "-run", "^TestOpenNVMLWithoutDriver$", "-v", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "CGO_CFLAGS=-Wno-deprecated-declarations")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestOpenNVMLWithoutDriver") {
		t.Fatalf("go test -tags nvml: %v\n%s", err, out)
	}
}
