// Package proctest helps tests that measure a process: it runs a test function in a
// child process, whose peak memory is then its own, and reads the resident memory of
// the current process from /proc (Linux only; elsewhere the tests that need it skip).
package proctest

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// childEnv is set in the environment of a child started by Child, to the name of the
// test it runs.
const childEnv = "COCOON_PROCTEST_CHILD"

// IsChild reports whether this process is a child started by Child to run test.
// A test meant to run only as a child skips unless IsChild.
func IsChild(test string) bool { return os.Getenv(childEnv) == test }

// Child runs the test function named test in a child process (the test binary again)
// and returns the rest of the last line of its output that starts with "RESULT ",
// failing t if there is none.
func Child(t testing.TB, test string, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), childEnv+"="+test), env...)
	out, err := cmd.CombinedOutput()
	result, found := "", false
	for line := range strings.Lines(string(out)) {
		if r, ok := strings.CutPrefix(line, "RESULT "); ok {
			result, found = strings.TrimSpace(r), true
		}
	}
	if !found {
		t.Fatalf("child %s: %v\n%s", test, err, out)
	}
	return result
}

// KiB returns a field of /proc/self/status in KiB, such as "VmRSS" (resident memory
// now) or "VmHWM" (its peak). It skips t where there is no /proc.
func KiB(t testing.TB, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kib
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}
