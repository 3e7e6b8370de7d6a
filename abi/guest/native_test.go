//go:build !wasip1

package guest_test

import (
	"testing"

	"github.com/cocoonhost/cocoon/abi/guest"
)

func TestConfigNative(t *testing.T) {
	guest.SetTestConfig([]byte(`{"n":7}`))
	defer guest.SetTestConfig(nil)
	var cfg testConfig
	if err := guest.ConfigJSON(&cfg); err != nil || cfg.N != 7 {
		t.Errorf("ConfigJSON: %+v, %v", cfg, err)
	}
	if got := string(guest.Config()); got != `{"n":7}` {
		t.Errorf("Config: %q", got)
	}
}
