package redact_test

import (
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/abi/guest"
	"github.com/cocoonhost/cocoon/abi/guest/guesttest"
	"github.com/cocoonhost/cocoon/plugins/pii-redactor/go/redact"
)

func TestVectors(t *testing.T) {
	guesttest.Run(t, "../../testdata/cases.json", guesttest.Module{
		Pre: func(config []byte, req *guest.ChatRequest) (*guest.ChatRequest, error) {
			c, err := redact.ParseConfig(config)
			if err != nil {
				return nil, err
			}
			c.Request(req)
			return req, nil
		},
	})
}

func TestText(t *testing.T) {
	c, err := redact.ParseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want string }{
		{"", ""},
		{"ann@example.com", "[email]"},
		{"ANN@EXAMPLE.COM.", "[email]."},
		{"a.b@c.d.ef", "[email]"},
		{"ann@example.com4155552671", "[email]4155552671"},
		{"mail ann@example.com or 415-555-2671", "mail [email] or [phone]"},
		{"ann@example.com+1 415 555 2671", "[email]+1 415 555 2671"},
		{"+1 415 555 2671", "[phone]"},
		{"+1 415 555 2671 5", "[phone] 5"},
		{"call 415-555-2671 12 times", "call [phone] 12 times"},
		{"415 555 2671 12", "[phone]"}, // one number of 12 digits
		{"4111 1111 1111 1111 2026", "[card] 2026"},
		{"4111 1111 1111 1112", "4111 1111 1111 1112"},
		{"9 10 2019-2026 12", "9 10 2019-2026 12"},
		{"(415) 555-2671", "[phone]"},
		{"(415)(555)2671", "(415)(555)2671"},
		{"(123456) 555-2671", "(123456) 555-2671"},
		{"()415-555-2671", "()[phone]"},
		{"+ 415 555 2671", "+ [phone]"},
		{"++1 415 555 2671", "+[phone]"},
		{"415-555-2671-", "[phone]-"},
		{"415--555-2671", "415--555-2671"},
		{"415  555  2671", "415  555  2671"},
		{"+1-415-555-2671", "[phone]"},
		{"+123456", "+123456"},
		{"+1234567", "[phone]"},
		{"+1234567890123456", "+1234567890123456"},
		{"12 345 678 901", "12 345 678 901"},
		{"1 000 000 000", "1 000 000 000"},
		{"(1) 000 000 000", "[phone]"},
		{"4111111111111111", "[card]"},
		{"4111 1111 1111 1111", "[card]"},
		{"+4111111111111111", "+4111111111111111"},
		{"4111\u00a01111\u00a01111\u00a01111", "4111\u00a01111\u00a01111\u00a01111"},
		{"№4111111111111111", "№[card]"},
		{"4111111111111111é", "[card]é"},
		{"x4111111111111111", "x4111111111111111"},
		{"/4111111111111111", "/4111111111111111"},
		{"3.4111111111111111", "3.4111111111111111"},
	}
	for _, tt := range tests {
		if got := c.Text(tt.in); got != tt.want {
			t.Errorf("Text(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for in, want := range map[string]string{
		`{"roles":[]}`:     "config: roles is empty, so nothing would be scanned; leave it out to scan every message",
		`{"mail":"x"}`:     `config: unknown field "mail"`,
		`{"roles":"user"}`: "config: roles: want an array, got string",
	} {
		if _, err := redact.ParseConfig([]byte(in)); err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %q", in, err, want)
		}
	}
}

func TestTextWithoutMatch(t *testing.T) {
	c, _ := redact.ParseConfig(nil)
	s := strings.Repeat("Tell me a story about 3 cats in 2026. ", 20)
	if got := c.Text(s); got != s {
		t.Errorf("Text changed the text: %q", got)
	}
}

func BenchmarkText(b *testing.B) {
	c, _ := redact.ParseConfig(nil)
	text := strings.Repeat("Hi, I am ann@example.com, call +1 415 555 2671 about order 12345 on 2026-11-21. ", 1000)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		c.Text(text)
	}
}
