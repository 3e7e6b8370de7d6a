package template_test

import (
	"testing"

	"github.com/cocoonhost/cocoon/abi/guest"
	"github.com/cocoonhost/cocoon/abi/guest/guesttest"
	"github.com/cocoonhost/cocoon/plugins/prompt-template/go/template"
)

func TestVectors(t *testing.T) {
	guesttest.Run(t, "../../testdata/cases.json", guesttest.Module{
		Pre: func(config []byte, req *guest.ChatRequest) (*guest.ChatRequest, error) {
			c, err := template.ParseConfig(config)
			if err != nil {
				return nil, err
			}
			if err := c.Request(req); err != nil {
				return nil, err
			}
			return req, nil
		},
	})
}

func TestConfigErrors(t *testing.T) {
	for in, want := range map[string]string{
		``:                              "config: the module has no config",
		`{"sytem":"x"}`:                 `config: unknown field "sytem"`,
		`{"on_existing":"replace"}`:     `config: on_existing is "replace"; want "keep", "drop" or "reject"`,
		`{"user_template":"no marker"}`: "config: user_template does not contain {{content}}",
		`{"system":5}`:                  "config: system: want a string, got number",
	} {
		if _, err := template.ParseConfig([]byte(in)); err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %q", in, err, want)
		}
	}
}
