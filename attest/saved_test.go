package attest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// savedTestEvidence is a saved file of a test host's fresh boot and pipeline evidence.
func savedTestEvidence(t testing.TB, h *testHost) *SavedEvidence {
	t.Helper()
	bootNonce, pipelineNonce := testNonce(8), testNonce(9)
	return &SavedEvidence{Format: SavedEvidenceFormat, Host: "https://host.example:8443", FetchedAt: time.Now().Truncate(time.Second),
		Boot:     SavedRequest{Nonce: hex.EncodeToString(bootNonce), Evidence: h.freshBoot(t, bootNonce)},
		Pipeline: &SavedRequest{PipelineID: testPipelineID(), Nonce: hex.EncodeToString(pipelineNonce), Evidence: h.pipeline(t, testManifest, pipelineNonce)}}
}

// A saved file verifies later as it did when fetched, but not as fresh.
func TestSavedEvidenceVerifiesLater(t *testing.T) {
	h := newTestHost(t)
	b, err := json.Marshal(savedTestEvidence(t, h))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSavedEvidence(b)
	if err != nil {
		t.Fatal(err)
	}
	opts := EvidenceOptions{SimRoot: h.sim.Root(), Nonce: s.Boot.NonceBytes(), Archived: true, Now: s.FetchedAt}
	r := mustVerify(t, s.Boot.Evidence, pinnedPolicy(), opts)
	if !r.OK() || r.Fresh {
		t.Fatalf("saved boot evidence: ok %t, fresh %t:\n%s", r.OK(), r.Fresh, r)
	}
	opts.PipelineID, opts.Nonce = s.Pipeline.PipelineID, s.Pipeline.NonceBytes()
	if r := mustVerify(t, s.Pipeline.Evidence, pinnedPolicy(), opts); !r.OK() || r.Fresh {
		t.Fatalf("saved pipeline evidence: ok %t, fresh %t:\n%s", r.OK(), r.Fresh, r)
	}
	// A file whose nonce was changed no longer verifies: the quote binds the one sent.
	s.Boot.Nonce = hex.EncodeToString(testNonce(1))
	opts = EvidenceOptions{SimRoot: h.sim.Root(), Nonce: s.Boot.NonceBytes(), Archived: true, Now: s.FetchedAt}
	if r := mustVerify(t, s.Boot.Evidence, pinnedPolicy(), opts); r.OK() {
		t.Fatalf("a saved file with another nonce verifies:\n%s", r)
	}
}

// Encode keeps a pipeline's canonical manifest byte for byte, even when a config holds
// what an HTML-escaping or indenting encoder rewrites, so the saved file still verifies.
func TestSavedEvidenceEncodeKeepsManifestBytes(t *testing.T) {
	h := newTestHost(t)
	manifest := []byte(`{"abi_version":1,"model":"m","pre":[{"module":"` + testModuleA + `","config":{"mask":"<b>&amp;</b>"},"limits":` + testLimits + `}],"post":[]}`)
	nonce := testNonce(9)
	s := savedTestEvidence(t, h)
	ev := h.pipeline(t, manifest, nonce)
	ev.Manifest = manifest // as a host serves it (web.writeJSON does not escape HTML); the test host's round trip does
	s.Pipeline = &SavedRequest{PipelineID: pipelineIDOf(manifest), Nonce: hex.EncodeToString(nonce), Evidence: ev}
	indented, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	encoded, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		file []byte
		ok   bool
	}{{"Encode", encoded, true}, {"json.MarshalIndent", indented, false}} {
		back, err := ParseSavedEvidence(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		opts := EvidenceOptions{SimRoot: h.sim.Root(), PipelineID: back.Pipeline.PipelineID, Nonce: back.Pipeline.NonceBytes(), Archived: true, Now: back.FetchedAt}
		if r := mustVerify(t, back.Pipeline.Evidence, pinnedPolicy(), opts); r.OK() != tt.ok {
			t.Errorf("%s: saved pipeline evidence verifies %t, want %t:\n%s", tt.name, r.OK(), tt.ok, r)
		}
	}
}

func TestParseSavedEvidenceRefuses(t *testing.T) {
	h := newTestHost(t)
	good, err := json.Marshal(savedTestEvidence(t, h))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(s *SavedEvidence)) string {
		s := savedTestEvidence(t, h)
		f(s)
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for name, bad := range map[string]string{
		"other format":               edit(func(s *SavedEvidence) { s.Format = "cocoon-saved-evidence/v2" }),
		"no fetch time":              edit(func(s *SavedEvidence) { s.FetchedAt = time.Time{} }),
		"short boot nonce":           edit(func(s *SavedEvidence) { s.Boot.Nonce = "00" }),
		"uppercase nonce":            edit(func(s *SavedEvidence) { s.Boot.Nonce = strings.Repeat("AB", 16) }),
		"boot with a pipeline id":    edit(func(s *SavedEvidence) { s.Boot.PipelineID = testPipelineID() }),
		"pipeline without nonce":     edit(func(s *SavedEvidence) { s.Pipeline.Nonce = "" }),
		"pipeline id not hex":        edit(func(s *SavedEvidence) { s.Pipeline.PipelineID = "xyz" }),
		"unknown member":             strings.Replace(string(good), `"host":`, `"extra":1,"host":`, 1),
		"unknown member of evidence": strings.Replace(string(good), `"mode":`, `"debug":true,"mode":`, 1),
		"trailing data":              string(good) + " {}",
		"not an object":              `[]`,
		"oversized":                  `{"host":"` + strings.Repeat("a", MaxSavedEvidenceBytes) + `"}`,
	} {
		if _, err := ParseSavedEvidence([]byte(bad)); !errors.Is(err, ErrSavedEvidence) {
			t.Errorf("%s: err %v, want ErrSavedEvidence", name, err)
		}
	}
	bootOnly := edit(func(s *SavedEvidence) { s.Pipeline, s.Boot.Nonce = nil, "" })
	if s, err := ParseSavedEvidence([]byte(bootOnly)); err != nil || s.Boot.NonceBytes() != nil {
		t.Errorf("boot evidence without a nonce: %v", err)
	}
}

// FuzzParseSavedEvidence: a saved file is outside bytes. The parser never panics, and
// what it accepts has the nonces and ids it promises.
func FuzzParseSavedEvidence(f *testing.F) {
	h := newTestHost(f)
	good, err := json.Marshal(savedTestEvidence(f, h))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"format":"cocoon-saved-evidence/v1","host":"","fetched_at":"2026-01-01T00:00:00Z","boot":{"evidence":{}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSavedEvidence(b)
		if err != nil {
			if !errors.Is(err, ErrSavedEvidence) {
				t.Fatalf("error %v does not wrap ErrSavedEvidence", err)
			}
			return
		}
		for _, r := range []*SavedRequest{&s.Boot, s.Pipeline} {
			if r == nil {
				continue
			}
			if n := r.NonceBytes(); r.Nonce != "" && (len(n) < MinNonceBytes || len(n) > MaxNonceBytes || !bytes.Equal([]byte(hex.EncodeToString(n)), []byte(r.Nonce))) {
				t.Fatalf("accepted nonce %q", r.Nonce)
			}
		}
		if s.Pipeline != nil && (len(s.Pipeline.PipelineID) != 64 || s.Pipeline.Nonce == "") {
			t.Fatalf("accepted pipeline request %+v", s.Pipeline)
		}
	})
}
