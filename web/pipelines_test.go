package web

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/host"
)

func hashOf(b []byte) string { return host.HashOf(b) }

func TestUploadPipeline(t *testing.T) {
	f := newFixture(t)
	pii := plugin(t, "pii-redactor/go/pii-redactor.wasm")
	guard := plugin(t, "output-guard/c/output-guard.wasm")
	manifest := `{"abi_version":1,"model":"stories260K","pre":[{"module":"` + hashOf(pii) + `"}],
		"post":[{"module":"` + hashOf(guard) + `","config":{"words": ["darn"]},"limits":{"time_ms":500}}]}`
	m, err := host.ParseManifest([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}

	res := f.do("POST", "/v1/pipelines", ownerKey, upload(manifest, pii, guard))
	if res.status != http.StatusCreated {
		t.Fatalf("upload: %d %s", res.status, res.body)
	}
	var p pipelineJSON
	res.json(t, &p)
	if p.ID != m.ID() || p.Object != "pipeline" || p.BaseURL != "/p/"+m.ID()+"/v1" {
		t.Errorf("answer %s: want id %s", res.body, m.ID())
	}
	if len(p.Modules) != 2 || p.Modules[0] != hashOf(pii) || p.Modules[1] != hashOf(guard) {
		t.Errorf("modules %v", p.Modules)
	}
	if p.Manifest.Post[0].Limits.CallTimeout == 0 || string(p.Manifest.Post[0].Config) != `{"words":["darn"]}` {
		t.Errorf("manifest %+v: want limits filled in and the config compact", p.Manifest)
	}

	// Same content: same id, 200; modules already stored may be left out.
	for _, body := range []map[string]any{upload(manifest, pii, guard), upload(manifest)} {
		res = f.do("POST", "/v1/pipelines", ownerKey, body)
		var again pipelineJSON
		res.json(t, &again)
		if res.status != http.StatusOK || again.ID != p.ID {
			t.Errorf("upload again: %d %s", res.status, res.body)
		}
	}

	res = f.do("GET", "/v1/pipelines/"+p.ID, ownerKey, nil)
	var got pipelineJSON
	res.json(t, &got)
	if res.status != 200 || got.ID != p.ID || got.Manifest.Model != "stories260K" || len(got.Manifest.Pre) != 1 {
		t.Errorf("GET: %d %s", res.status, res.body)
	}
	var list listJSON[pipelineJSON]
	f.do("GET", "/v1/pipelines", otherKey, nil).json(t, &list)
	if list.Object != "list" || len(list.Data) != 1 || list.Data[0].ID != p.ID {
		t.Errorf("list: %+v", list)
	}
}

func TestUploadErrors(t *testing.T) {
	f := newFixture(t, func(c *Config, _ *recorder) { c.MaxUploadBytes = 1 << 20 })
	guard := plugin(t, "output-guard/c/output-guard.wasm")
	junk := []byte("\x00asm\x01\x00\x00\x00\x05junk")
	g := hashOf(guard)
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
		want   string
	}{
		{"not JSON", `{"manifest":`, 400, "invalid_request", "upload: invalid JSON"},
		{"unknown member", `{"manifest":` + emptyPipeline + `,"wasm":{}}`, 400, "invalid_request", `upload: unknown member "wasm"`},
		{"trailing data", `{"manifest":` + emptyPipeline + `} {}`, 400, "invalid_request", "unexpected data after the JSON value"},
		{"no manifest", `{"modules":{}}`, 400, "invalid_request", `no "manifest" member`},
		{"bad manifest", upload(`{"abi_version":2,"model":"stories260K"}`), 400, "invalid_pipeline", "manifest: abi_version: 2 is not supported"},
		{"model not served", upload(`{"abi_version":1,"model":"gpt-4"}`), 400, "invalid_request",
			`manifest: model: "gpt-4" is not served by this host; it serves "stories260K"`},
		{"module not in manifest", upload(`{"abi_version":1,"model":"stories260K"}`, guard), 400, "invalid_request", "modules: " + g + " is not in the manifest"},
		{"bad hash key", map[string]any{"manifest": map[string]any{"abi_version": 1, "model": "stories260K"}, "modules": map[string]string{"md5:1": ""}},
			400, "invalid_request", `modules: module "md5:1" is not a module hash`},
		{"bytes do not match", map[string]any{
			"manifest": map[string]any{"abi_version": 1, "model": "stories260K", "post": []any{map[string]any{"module": g}}},
			"modules":  map[string]string{g: base64.StdEncoding.EncodeToString(junk)}},
			400, "invalid_request", "modules: the bytes given for " + g + " hash to " + hashOf(junk)},
		{"bad base64", map[string]any{
			"manifest": map[string]any{"abi_version": 1, "model": "stories260K", "post": []any{map[string]any{"module": g}}},
			"modules":  map[string]string{g: "!!"}},
			400, "invalid_request", "modules: " + g + " is not standard base64"},
		{"invalid module", upload(`{"abi_version":1,"model":"stories260K","pre":[{"module":"`+hashOf(junk)+`"}]}`, junk), 400, "invalid_module",
			"module " + hashOf(junk) + ": "},
		{"wrong stage", upload(`{"abi_version":1,"model":"stories260K","pre":[{"module":"`+g+`"}]}`, guard), 400, "invalid_pipeline",
			"pre module 1: " + g + " implements post+stream but not cocoon_pre"},
		{"missing bytes", upload(`{"abi_version":1,"model":"stories260K","pre":[{"module":"sha256:` + strings.Repeat("0", 64) + `"}]}`), 400, "invalid_pipeline",
			"pre module 1: sha256:" + strings.Repeat("0", 64) + " is not stored on this host"},
		{"too large", `{"manifest":{},"modules":{"x":"` + strings.Repeat("A", 1<<20) + `"}}`, 413, "body_too_large", "over the limit of 1048576 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := f.do("POST", "/v1/pipelines", ownerKey, tc.body)
			e := res.apiErr(t)
			if res.status != tc.status || e.Code != tc.code || !strings.Contains(e.Message, tc.want) {
				t.Errorf("%d %+v\nwant %d %s %q", res.status, e, tc.status, tc.code, tc.want)
			}
		})
	}
	if list := f.do("GET", "/v1/pipelines", ownerKey, nil); !strings.Contains(string(list.body), `"data":[]`) {
		t.Errorf("a refused upload registered a pipeline: %s", list.body)
	}
}

func TestDeletePipeline(t *testing.T) {
	f := newFixture(t)
	id := f.push(emptyPipeline)
	for _, tc := range []struct {
		name, key string
		status    int
		want      string
	}{
		{"another key", otherKey, 403, `"code":"not_owner"`},
		{"a Mini App user", telegramAuth(t), 403, `"code":"not_an_owner_credential"`},
		{"unknown id", ownerKey, 404, "pipeline_not_found"},
		{"the owner", ownerKey, 200, `"deleted":true`},
	} {
		path := "/v1/pipelines/" + id
		if tc.name == "unknown id" {
			path = "/v1/pipelines/nope"
		}
		res := f.do("DELETE", path, tc.key, nil)
		if res.status != tc.status || !strings.Contains(string(res.body), tc.want) {
			t.Errorf("%s: %d %s", tc.name, res.status, res.body)
		}
	}
	if res := f.do("GET", "/v1/pipelines/"+id, ownerKey, nil); res.status != 404 {
		t.Errorf("GET after DELETE: %d %s", res.status, res.body)
	}
	if res := f.do("POST", "/p/"+id+"/v1/chat/completions", ownerKey, greedy200); res.status != 404 {
		t.Errorf("chat after DELETE: %d %s", res.status, res.body)
	}
}
