package attest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// SavedEvidenceFormat names the format of a saved evidence file; it changes only with
// the format.
const SavedEvidenceFormat = "cocoon-saved-evidence/v1"

// MaxSavedEvidenceBytes bounds a saved evidence file: two pieces of evidence and a few
// members around them.
const MaxSavedEvidenceBytes = 2*MaxEvidenceBytes + 64<<10

// ErrSavedEvidence is wrapped by every error of ParseSavedEvidence.
var ErrSavedEvidence = errors.New("saved evidence")

// SavedEvidence is what a client fetched from a host to verify it, kept to verify again
// later, on another machine, without the network (`cocoon verify --save-evidence FILE`
// writes it, `--evidence FILE` reads it):
//
//	{"format": "cocoon-saved-evidence/v1", "host": "https://host:8443", "fetched_at": "2026-12-04T10:00:00Z",
//	 "boot": {"nonce": "<hex>", "evidence": {<Evidence>}},
//	 "pipeline": {"pipeline_id": "<64 hex>", "nonce": "<hex>", "evidence": {<Evidence>}}}
//
// Each nonce is the one the client sent with that request, in hex (a boot request
// without one has none), and each evidence is exactly what the host answered. pipeline
// is absent when the client asked for boot evidence only. fetched_at is when the client
// fetched it: a verifier checks certificates and collateral as of then, and the report
// is not fresh (EvidenceOptions.Archived), since the nonces were chosen then, by
// whoever saved the file.
type SavedEvidence struct {
	Format    string        `json:"format"`
	Host      string        `json:"host"`
	FetchedAt time.Time     `json:"fetched_at"`
	Boot      SavedRequest  `json:"boot"`
	Pipeline  *SavedRequest `json:"pipeline,omitempty"`
}

// SavedRequest is one evidence request and its answer.
type SavedRequest struct {
	// PipelineID is the pipeline asked for, "" for boot evidence.
	PipelineID string `json:"pipeline_id,omitempty"`
	// Nonce is the hex of the nonce sent, "" for none.
	Nonce    string   `json:"nonce,omitempty"`
	Evidence Evidence `json:"evidence"`
}

// NonceBytes returns the nonce sent, nil for none. ParseSavedEvidence checked it.
func (s SavedRequest) NonceBytes() []byte {
	b, _ := hex.DecodeString(s.Nonce)
	if len(b) == 0 {
		return nil
	}
	return b
}

// Encode returns s as a saved evidence file: compact JSON without HTML escaping, so
// that every evidence keeps the bytes its quote covers. An indenting or HTML-escaping
// encoder (json.MarshalIndent, or json.Marshal with a config holding "<" or "&") would
// rewrite a pipeline's canonical manifest, whose sha256 is the pipeline id, and the
// saved evidence would no longer verify. It fails only for an Evidence that cannot be
// encoded at all (a raw member that is not JSON).
func (s *SavedEvidence) Encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ParseSavedEvidence decodes a saved evidence file strictly: at most
// MaxSavedEvidenceBytes, no unknown member or trailing data, the format
// SavedEvidenceFormat, a fetch time, nonces of MinNonceBytes to MaxNonceBytes in
// lowercase hex (required for pipeline evidence), a pipeline id of 64 lowercase hex
// digits. Errors wrap ErrSavedEvidence. It checks nothing of the evidence itself:
// VerifyEvidence does.
func ParseSavedEvidence(b []byte) (*SavedEvidence, error) {
	var s SavedEvidence
	if err := decodeStrict(b, MaxSavedEvidenceBytes, &s, ErrSavedEvidence, "saved evidence"); err != nil {
		return nil, err
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSavedEvidence, err)
	}
	return &s, nil
}

func (s *SavedEvidence) check() error {
	if s.Format != SavedEvidenceFormat {
		return fmt.Errorf("format %q, want %q", s.Format, SavedEvidenceFormat)
	}
	if s.FetchedAt.IsZero() {
		return errors.New("fetched_at: missing")
	}
	if s.Boot.PipelineID != "" {
		return errors.New("boot: a pipeline id in the boot request")
	}
	if err := checkSavedNonce("boot", s.Boot.Nonce); err != nil {
		return err
	}
	if s.Pipeline == nil {
		return nil
	}
	if _, err := decodeHex(s.Pipeline.PipelineID, 32); err != nil {
		return fmt.Errorf("pipeline: pipeline_id %q: want 64 lowercase hex digits", s.Pipeline.PipelineID)
	}
	if s.Pipeline.Nonce == "" {
		return errors.New("pipeline: nonce: missing; pipeline evidence is always asked with one")
	}
	return checkSavedNonce("pipeline", s.Pipeline.Nonce)
}

func checkSavedNonce(what, nonce string) error {
	if nonce == "" {
		return nil
	}
	b, err := decodeHex(nonce, -1)
	if err == nil {
		err = checkNonce(b)
	}
	if err != nil {
		return fmt.Errorf("%s: nonce: %v", what, err)
	}
	return nil
}
