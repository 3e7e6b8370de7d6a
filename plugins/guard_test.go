package plugins_test

import (
	"strings"
	"testing"
)

// hostileResponses are chat.completion bodies built to break a JSON decoder written by
// hand, each one the host lets through to a post module.
func hostileResponses() map[string]string {
	many := new(strings.Builder)
	for i := range 5000 {
		many.WriteString(`"x` + strings.Repeat("y", i%7) + string(rune('a'+i%26)) + `":[1,{"a":null}],`)
	}
	msg := func(content string) string {
		return `{"choices":[{"index":0,"message":{"role":"assistant","content":` + content + `}}]}`
	}
	return map[string]string{
		"nesting as deep as the host allows": `{"x_vendor":` + strings.Repeat("[", 998) + strings.Repeat("]", 998) + `,"choices":[{"message":{"content":"heck"}}]}`,
		"deep nesting inside a message":      `{"choices":[{"message":{"content":"heck","x":` + strings.Repeat(`{"a":`, 990) + `1` + strings.Repeat("}", 990) + `}}]}`,
		"unpaired surrogate escapes":         msg(`"a\ud800heck\udc00 heck\ud83d\ude00 \ud800\u0041heck"`),
		"escaped member names":               `{"ch\u006fices":[{"m\u0065ssage":{"c\u006fntent":"\u0068eck \"heck\"\/heck\\heck"}}]}`,
		"member names folded as Go folds":    `{"choiceſ":1,"choices":[{"Message":{"CONTENT":"heck"}},{"meſſage":{"content":"heck"}}]}`,
		"choices under two spellings":        `{"CHOICES":[{"message":{"content":"heck"}}],"choices":[{"message":{"content":"heck"}}]}`,
		"a 1 MiB string":                     msg(`"` + strings.Repeat("é日😀 heck ", 1<<20/16) + `"`),
		"5,000 unknown members":              `{` + many.String() + `"choices":[{"message":{"content":"heck"}}]}`,
		"duplicate members":                  `{"choices":[{"message":{"content":"heck"}}],"choices":[{"message":{"content":"a","content":"b heck","role":"x","role":"assistant"}}]}`,
		"duplicate text parts":               msg(`[{"type":"text","text":"heck","type":"refusal"},{"text":"heck","type":"image_url","type":"text","text":"heck b"}]`),
		"integers at the edges":              `{"created":-9223372036854775808,"usage":{"prompt_tokens":9223372036854775807},"choices":[{"index":0,"message":{"content":"heck"}}]}`,
		"an integer past int64":              `{"created":9223372036854775808,"choices":[{"message":{"content":"heck"}}]}`,
		"an integer with an exponent":        `{"created":1e3,"choices":[{"message":{"content":"heck"}}]}`,
		"a negative zero index":              `{"choices":[{"index":-0,"message":{"content":"heck"}}]}`,
		"null everywhere":                    `{"id":null,"created":null,"usage":null,"choices":[null,{"index":null,"message":null,"finish_reason":null},{"message":{"role":null,"content":null}},{"message":{"content":[null,{"type":null,"text":null}]}}]}`,
		"wrong types in known members":       `{"choices":[{"message":{"role":1,"content":"heck"}}]}`,
		"a usage field of the wrong type":    `{"usage":{"total_tokens":"3"},"choices":[{"message":{"content":"heck"}}]}`,
		"a part that is not an object":       msg(`["heck"]`),
		"control characters and escapes":     msg(`"\u0000heck\u001f\b\f\n\r\theck"`),
		"whitespace everywhere":              " \t\n{ \"choices\" : [ { \"message\" : { \"content\" : \"heck\" } } ] } \r\n",
	}
}

// TestOutputGuardHostileResponses sends hostile responses through every build of the
// output guard in the real sandbox: each must give what the Go build gives (the Go SDK
// is the reference for how a response is decoded), the same JSON or a failure.
func TestOutputGuardHostileResponses(t *testing.T) {
	s := newSandbox(t)
	impls := implementations(t, s, "output-guard")
	config := []byte(`{"words":["heck"],"replacement":"#"}`)
	goImpl := built(t, s, "output-guard", "go")
	for name, resp := range hostileResponses() {
		t.Run(name, func(t *testing.T) {
			want := runHook(t, s, goImpl, "post", config, []byte(resp))
			for _, impl := range impls {
				if got := runHook(t, s, impl, "post", config, []byte(resp)); !sameOutcome(got, want) {
					t.Errorf("%s: %.300s %s\nGo: %.300s %s", impl.lang, got.out, got.code, want.out, want.code)
				}
			}
		})
	}
}

// FuzzOutputGuardAgree feeds arbitrary responses and configs to every build of the
// output guard: whatever the host lets through, each must give what the Go build gives.
func FuzzOutputGuardAgree(f *testing.F) {
	for _, c := range loadCases(f, "output-guard") {
		if c.Hook == "post" {
			f.Add([]byte(c.Input), []byte(c.Config))
		}
	}
	for _, resp := range hostileResponses() {
		f.Add([]byte(resp), []byte(`{"words":["heck"]}`))
	}
	s := newSandbox(f)
	goImpl := built(f, s, "output-guard", "go")
	var impls []implementation
	for _, lang := range []string{"as", "c", "rust"} {
		impls = append(impls, built(f, s, "output-guard", lang))
	}
	f.Fuzz(func(t *testing.T, resp, config []byte) {
		want := runHook(t, s, goImpl, "post", config, resp)
		for _, impl := range impls {
			if got := runHook(t, s, impl, "post", config, resp); !sameOutcome(got, want) {
				t.Fatalf("response %q config %q\n%s: %s %s %q\nGo: %s %s %q", resp, config, impl.lang, got.out, got.code, got.msg, want.out, want.code, want.msg)
			}
		}
	})
}
