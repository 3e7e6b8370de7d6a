package guest_test

import (
	"errors"
	"testing"

	"github.com/cocoonhost/cocoon/abi/guest"
)

type testConfig struct {
	Words []string `json:"words"`
	N     int      `json:"n"`
}

func TestDecodeConfig(t *testing.T) {
	tests := []struct {
		in      string
		want    string // error, "" for none
		wantCfg testConfig
	}{
		{in: `{"words":["a"],"n":2}`, wantCfg: testConfig{Words: []string{"a"}, N: 2}},
		{in: ` {} `},
		{in: ``, want: "config: the module has no config"},
		{in: " \n", want: "config: the module has no config"},
		{in: `{"word":["a"]}`, want: `config: unknown field "word"`},
		{in: `{"words":"a"}`, want: "config: words: want an array, got string"},
		{in: `{"n":1.5}`, want: "config: n: want a number, got number 1.5"},
		{in: `[1]`, want: "config: want an object, got array"},
		{in: `{"n":1} {}`, want: "config: unexpected data after the JSON value"},
		{in: `{"n":`, want: "config: invalid JSON: unexpected end of input"},
		{in: `{"n":x}`, want: "config: invalid JSON at byte 6: invalid character 'x' looking for beginning of value"},
	}
	for _, tt := range tests {
		var cfg testConfig
		err := guest.DecodeConfig([]byte(tt.in), &cfg)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%q: %v", tt.in, err)
			} else if len(cfg.Words) != len(tt.wantCfg.Words) || cfg.N != tt.wantCfg.N {
				t.Errorf("%q: got %+v, want %+v", tt.in, cfg, tt.wantCfg)
			}
			continue
		}
		if err == nil || err.Error() != tt.want {
			t.Errorf("%q: error %v, want %q", tt.in, err, tt.want)
		}
	}
	if err := guest.DecodeConfig(nil, &testConfig{}); !errors.Is(err, guest.ErrNoConfig) {
		t.Errorf("empty config: %v, want ErrNoConfig", err)
	}
}
