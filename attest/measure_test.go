package attest

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// envMeasureHelper makes TestExecutableSHA256 act as the measured process: it waits for a
// line on stdin, then prints its ExecutableSHA256 in hex.
const envMeasureHelper = "COCOON_ATTEST_MEASURE_HELPER"

// TestExecutableSHA256 runs a copy of the test binary and changes the file at its path
// while it runs, as an in-place upgrade (or an attacker with the disk) would: the
// measurement must stay that of the code the process was started from. Measuring the
// file at os.Executable's path would hash the replacement, or fail once it is removed.
func TestExecutableSHA256(t *testing.T) {
	if os.Getenv(envMeasureHelper) == "1" {
		bufio.NewReader(os.Stdin).ReadString('\n')
		sum, err := ExecutableSHA256()
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(hex.EncodeToString(sum[:]))
		os.Exit(0)
	}
	if runtime.GOOS != "linux" {
		t.Skip("the measurement of a replaced binary is defined on Linux only")
	}
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(self)
	for _, tc := range []struct {
		name   string
		change func(path string) error
	}{
		{"as started", func(string) error { return nil }},
		{"replaced at its path", func(path string) error {
			if err := os.WriteFile(path+".new", []byte("#!/bin/sh\necho another host\n"), 0o755); err != nil {
				return err
			}
			return os.Rename(path+".new", path)
		}},
		{"removed", os.Remove},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exe := filepath.Join(t.TempDir(), "cocoon-host")
			if err := os.WriteFile(exe, self, 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(exe, "-test.run=^TestExecutableSHA256$")
			cmd.Env = append(os.Environ(), envMeasureHelper+"=1")
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if err := tc.change(exe); err != nil {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatal(err)
			}
			io.WriteString(stdin, "measure\n")
			if err := cmd.Wait(); err != nil {
				t.Fatalf("the measured process: %v\n%s", err, out.String())
			}
			if got := strings.TrimSpace(out.String()); got != hex.EncodeToString(want[:]) {
				t.Errorf("measured %s, want %x: the sha256 of the binary the process runs", got, want)
			}
		})
	}
}
