package attest

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestE2EKeysBinding: boot and pipeline evidence carry the host's end-to-end keys,
// signed by the host key the quote binds, and the report says so on its own line; a
// key swapped in the evidence (a relay's own, to read the requests), or a signature
// by another key, fails that line and the report.
func TestE2EKeysBinding(t *testing.T) {
	sim, _ := newTestSim(t)
	h, err := Boot(context.Background(), sim, "embedded", "sha256:"+strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	otherSim, _ := newTestSim(t)
	other, err := Boot(context.Background(), otherSim, "embedded", "sha256:"+strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	root := sim.Root()
	nonce := bytes.Repeat([]byte{7}, MinNonceBytes)
	pipeline, err := h.PipelineEvidence(context.Background(), nonce, []byte(`{"abi_version":1,"model":"m","pre":[],"post":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	swapped := func(ev Evidence) Evidence {
		k := *ev.E2EKeys
		k.X25519 = other.BootEvidence().E2EKeys.X25519
		ev.E2EKeys = &k
		return ev
	}
	foreign := func(ev Evidence) Evidence { ev.E2EKeys = other.BootEvidence().E2EKeys; return ev }
	opts := EvidenceOptions{SimRoot: root}
	popts := EvidenceOptions{SimRoot: root, PipelineID: pipeline.PipelineID, Nonce: nonce}
	for _, tt := range []struct {
		name string
		ev   Evidence
		opts EvidenceOptions
		ok   bool
	}{
		{"boot", h.BootEvidence(), opts, true},
		{"pipeline", pipeline, popts, true},
		{"boot, a key swapped", swapped(h.BootEvidence()), opts, false},
		{"pipeline, a key swapped", swapped(pipeline), popts, false},
		{"boot, another host's keys", foreign(h.BootEvidence()), opts, false},
	} {
		r, err := VerifyEvidence(tt.ev, Policy{}, tt.opts)
		if err != nil {
			t.Fatal(err)
		}
		var line *Check
		for i := range r.Checks {
			if r.Checks[i].Name == "e2e keys" {
				line = &r.Checks[i]
			}
		}
		if line == nil || line.OK != tt.ok || r.OK() != tt.ok {
			t.Errorf("%s: e2e keys line %+v, report OK %v, want %v\n%s", tt.name, line, r.OK(), tt.ok, r)
		}
	}
}
