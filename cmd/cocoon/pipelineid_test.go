package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/host"
)

// pipeline-id computes, without a host, the id a real host gives the same modules,
// configs and limits that push uploads, and a different one for any other config or
// limits.
func TestPipelineIDMatchesPush(t *testing.T) {
	base := testHost(t)
	t.Setenv("COCOON_HOST", base)
	t.Setenv("COCOON_API_KEY", testKey)
	pii := examplePlugin(t, "pii-redactor/go/pii-redactor.wasm")
	guard := examplePlugin(t, "output-guard/c/output-guard.wasm")
	dir := t.TempDir()
	write := func(name, content string) string { return writeTestFile(t, dir, name, content) }
	guardConfig := write("guard.json", `{"words": ["the"], "replacement": "***"}`)
	limits := write("limits.json", `{"memory_pages": 64, "time_ms": 500}`)
	unknownLimit := write("unknown-limit.json", `{"memory": 64}`)
	overCeiling := write("over.json", `{"memory_pages": 1000000}`)
	disabling := write("roles.json", `{"roles": ["tool"]}`)

	ids := map[string]string{} // id → the case that gave it
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"config", []string{"--pre", pii, "--post", guard + ":" + guardConfig}},
		{"config and limits", []string{"--pre", pii + "::" + limits, "--post", guard + ":" + guardConfig + ":" + limits}},
		{"another config", []string{"--pre", pii + ":" + disabling, "--post", guard + ":" + guardConfig}},
		{"no config", []string{"--pre", pii, "--post", guard}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, pushed, stderr := cocoon(t, "", append([]string{"push", "--model", "stories260K"}, tt.args...)...)
			if code != 0 {
				t.Fatalf("push: exit %d, stderr %q", code, stderr)
			}
			code, computed, stderr := cocoon(t, "", append([]string{"pipeline-id", "--model", "stories260K"}, tt.args...)...)
			if code != 0 || computed != pushed {
				t.Fatalf("pipeline-id: exit %d, id %q, stderr %q; want the id %q the host gave", code, computed, stderr, pushed)
			}
			if other, ok := ids[computed]; ok {
				t.Errorf("the same id as %q", other)
			}
			ids[computed] = tt.name
		})
	}

	for _, tt := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no module", []string{"--model", "m"}, 2, "no module given"},
		{"no model", []string{"--pre", pii}, 2, "no --model given"},
		{"missing file", []string{"--pre", "none.wasm", "--model", "m"}, 1, "none.wasm: no such file"},
		{"unknown limit", []string{"--pre", pii + "::" + unknownLimit, "--model", "m"}, 1, `limits ` + unknownLimit + ` of ` + pii + `: unknown member "memory"`},
		{"limits over the ceiling", []string{"--pre", pii + "::" + overCeiling, "--model", "m"}, 1, "manifest: pre module 1: limits: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := cocoon(t, "", append([]string{"pipeline-id"}, tt.args...)...)
			if code != tt.code || stdout != "" || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stderr containing %q", code, stdout, stderr, tt.code, tt.stderr)
			}
		})
	}
}

// Probe 3 of issue 11: the redactor a reviewer expects, run with a config that scans no
// user message. --expect-module pins only its code and passes; the manifest written by
// pipeline-id pins its config too and fails, saying what differs.
func TestExpectManifestRefusesDisablingConfig(t *testing.T) {
	h, url := newAttestHost(t)
	pii, wasm := exampleRedactor(t)
	redactor := host.HashOf(wasm)
	dir := t.TempDir()
	expected := filepath.Join(dir, "expected.json")
	code, honestID, stderr := cocoon(t, "", "pipeline-id", "--pre", pii, "--model", "m", "--write-manifest", expected)
	honestID = strings.TrimSpace(honestID)
	if code != 0 {
		t.Fatalf("pipeline-id: exit %d, stderr %q", code, stderr)
	}
	served := func(config string) *host.Manifest {
		m, err := host.ParseManifest([]byte(`{"abi_version":1,"model":"m","pre":[{"module":"` + redactor + `","config":` + config + `}]}`))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	disabled := served(`{"roles":["tool"]}`)
	honest := served(`null`)
	if honest.ID() != honestID {
		t.Fatalf("pipeline-id %s, the host's id of the same manifest %s", honestID, honest.ID())
	}
	trust := []string{"verify", "--host", url, "--trust-sim-root", h.rootPath}
	tests := []struct {
		name   string
		serve  *host.Manifest
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"disabled, module pinned", disabled, []string{"--pipeline", disabled.ID(), "--expect-module", redactor}, 0,
			"ok   expected modules: the pipeline runs all 1", ""},
		{"disabled, manifest pinned", disabled, []string{"--pipeline", disabled.ID(), "--expect-manifest", expected}, 1,
			"FAIL expected manifest: the pipeline is not the one expected: ", "verification failed"},
		{"disabled, manifest pinned, its id asked", disabled, []string{"--expect-manifest", expected}, 1,
			"", "the host refused (404 Not Found)"},
		{"honest, manifest pinned", honest, []string{"--expect-manifest", expected}, 0,
			"ok   expected manifest: the pipeline is exactly the one expected", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.manifest = tt.serve
			code, stdout, stderr := cocoon(t, "", append(trust, tt.args...)...)
			if code != tt.code || !strings.Contains(stdout, tt.stdout) || !strings.Contains(stderr, tt.stderr) {
				t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr: %s\nwant stdout containing %q, stderr containing %q",
					code, tt.code, stdout, stderr, tt.stdout, tt.stderr)
			}
		})
	}
	// The report shows the config that disables the redactor.
	h.manifest = disabled
	_, stdout, _ := cocoon(t, "", append(trust, "--pipeline", disabled.ID(), "--expect-manifest", expected)...)
	if !strings.Contains(stdout, `{"roles":["tool"]}`) {
		t.Errorf("the report does not show the served config:\n%s", stdout)
	}
}
