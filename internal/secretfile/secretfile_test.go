package secretfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckMode: a file its group or other users may read is refused, naming the mode
// and the chmod that fixes it; one only its owner reads (or writes, or runs) is
// accepted. Write and execute bits of others are not a disclosure and pass.
func TestCheckMode(t *testing.T) {
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true}, {0o400, true}, {0o700, true}, {0o200, true}, {0o000, true},
		{0o620, true}, {0o602, true}, {0o611, true},
		{0o640, false}, {0o604, false}, {0o644, false}, {0o440, false}, {0o404, false}, {0o755, false}, {0o777, false},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(path, []byte("the secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			err = CheckMode(path, info)
			switch {
			case tc.ok && err != nil:
				t.Errorf("mode %04o refused: %v", tc.mode, err)
			case !tc.ok && (err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) || !strings.Contains(err.Error(), fmt.Sprintf("(mode %04o)", tc.mode))):
				t.Errorf("mode %04o: %v, want a refusal naming chmod 600 %s", tc.mode, err, path)
			}
		})
	}
}
