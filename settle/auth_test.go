package settle

import (
	"strings"
	"testing"
)

func TestParseAccount(t *testing.T) {
	raw := "0:" + strings.Repeat("ab", 32)
	for _, in := range []string{raw, "0:" + strings.Repeat("AB", 32), "EQCrq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq8Uk", "UQCrq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq5jh"} {
		got, err := ParseAccount(in)
		if err != nil || got != raw {
			t.Errorf("ParseAccount(%q) = %q, %v; want %q", in, got, err, raw)
		}
	}
	for _, in := range []string{"", "0:abc", "not an address", "EQCrq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq8Ul"} {
		if _, err := ParseAccount(in); err == nil {
			t.Errorf("ParseAccount(%q) succeeds", in)
		}
	}
}
