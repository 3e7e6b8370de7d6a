package attest

import (
	"crypto/sha256"
	"encoding/json"

	"github.com/cocoonhost/cocoon/attest/nvidia"
)

// Evidence is what a host serves for a client to verify, as JSON:
//
//   - GET /v1/attestation returns the boot evidence: the quote taken at boot, whose
//     REPORTDATA is BootReportData(HostKey, TLSKey, replay of EventLog).
//   - GET /v1/attestation?nonce=<hex> returns fresh boot evidence: the same with a
//     quote taken now, whose REPORTDATA is FreshBootReportData(Nonce, HostKey, TLSKey,
//     replay of EventLog), and the Nonce.
//   - GET /v1/pipelines/{id}/attestation?nonce=<hex> returns pipeline evidence: a fresh
//     quote whose REPORTDATA is PipelineReportData(Nonce, sha256(Manifest), HostKey),
//     with the same event log and keys, and the pipeline's canonical manifest.
//
// A verifier checks the quote (VerifyQuote), replays EventLog against the quote's
// RTMR3 (VerifyLog), recomputes REPORTDATA from the fields here, and for pipeline
// evidence recomputes the pipeline id from Manifest and checks the module hashes it
// lists; with GPU reports, it verifies each over GPUNonce of the quote's REPORTDATA and
// compares the GPU it establishes with the gpus event. []byte fields are base64 in JSON.
type Evidence struct {
	// Mode is ModeTDX or ModeSim.
	Mode string `json:"mode"`
	// Quote is the TDX quote (v4) bytes.
	Quote []byte `json:"quote"`
	// EventLog is the runtime event log, as EncodeEventLog writes it.
	EventLog json.RawMessage `json:"event_log"`
	// HostKey is the host's ed25519 public key, which signs every response.
	HostKey []byte `json:"host_key"`
	// TLSKey is the DER SubjectPublicKeyInfo of the host's TLS key. It is always set:
	// the host makes a TLS key at boot whether or not it serves TLS.
	TLSKey []byte `json:"tls_key,omitempty"`
	// E2EKeys are the host's HPKE public keys that clients seal requests to
	// (web/E2E.md), signed by HostKey (E2EKeysMessage): they are bound by every quote
	// that binds HostKey. Unset in the evidence of hosts older than end-to-end
	// encryption.
	E2EKeys *E2EKeys `json:"e2e_keys,omitempty"`

	// PipelineID and Manifest are set in pipeline evidence only. PipelineID is the
	// lowercase hex sha256 of Manifest, the pipeline's canonical manifest.
	PipelineID string          `json:"pipeline_id,omitempty"`
	Manifest   json.RawMessage `json:"manifest,omitempty"`
	// Nonce is the client's nonce that the quote binds: set in pipeline evidence and in
	// fresh boot evidence.
	Nonce []byte `json:"nonce,omitempty"`
	// GPUs are the attestation reports of the GPUs the gpus event measures, in its
	// order, each over GPUNonce of this quote's REPORTDATA; absent for a host that
	// attests no GPU.
	GPUs []nvidia.Evidence `json:"gpus,omitempty"`
}

// ManifestHash returns sha256 of a canonical manifest: the pipeline id's bytes.
func ManifestHash(canonical []byte) [32]byte { return sha256.Sum256(canonical) }
