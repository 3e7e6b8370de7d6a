package attest

import (
	"slices"
	"strings"
	"testing"
)

// TestVerifyRefusesManifestsNoHostTakes: a host chooses the manifest its pipeline
// evidence carries, and the pipeline id is only its hash. A verifier reads it with the
// parser a host checks an upload with (host/manifest), so a manifest no host would
// take (limits over the ceilings or unknown, a config over the bound, a model name
// that is not text) fails the "manifest" check instead of being shown as what runs.
func TestVerifyRefusesManifestsNoHostTakes(t *testing.T) {
	h := newTestHost(t)
	nonce := testNonce(3)
	for _, tt := range []struct {
		name, old, new string
	}{
		{"limits over the ceiling", `"memory_pages":256`, `"memory_pages":4294967295`},
		{"an unknown limit", `"memory_pages":256`, `"memory_pages":256,"cpu_share":100`},
		{"a model that is not text", `"model":"m"`, `"model":"m\u001b[2K"`},
		{"an unsupported ABI version", `"abi_version":1`, `"abi_version":99`},
		{"a config over the bound", `{"x":1}`, `{"x":"` + strings.Repeat("a", 70<<10) + `"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := []byte(strings.Replace(string(testManifest), tt.old, tt.new, 1))
			if string(m) == string(testManifest) {
				t.Fatalf("%q is not in the test manifest", tt.old)
			}
			r := mustVerify(t, h.pipeline(t, m, nonce), Policy{}, EvidenceOptions{SimRoot: h.sim.Root(), PipelineID: pipelineIDOf(m), Nonce: nonce})
			if !slices.Contains(failed(r), "manifest") {
				t.Fatalf("the manifest check passed:\n%s", r)
			}
		})
	}
	r := mustVerify(t, h.pipeline(t, testManifest, nonce), Policy{}, EvidenceOptions{SimRoot: h.sim.Root(), PipelineID: testPipelineID(), Nonce: nonce})
	if slices.Contains(failed(r), "manifest") {
		t.Fatalf("the test manifest does not verify:\n%s", r)
	}
}
