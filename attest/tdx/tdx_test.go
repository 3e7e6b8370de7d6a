//go:build !js

package tdx

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRegisterErrors(t *testing.T) {
	dir := t.TempDir()
	missing := &Register{path: filepath.Join(dir, "rtmr3:sha384")}
	if err := missing.Extend([48]byte{}); err == nil {
		t.Error("Extend on a missing attribute succeeded")
	}
	if _, err := missing.Read(); err == nil {
		t.Error("Read on a missing attribute succeeded")
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte{1, 2, 3}, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Register{path: short}).Read(); err == nil || !strings.Contains(err.Error(), "want 48") {
		t.Errorf("Read of 3 bytes = %v", err)
	}
}

func TestUnavailable(t *testing.T) {
	if Available() {
		t.Skip("this machine is a TDX guest")
	}
	if _, err := New(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("New = %v, want ErrUnavailable", err)
	}
}
