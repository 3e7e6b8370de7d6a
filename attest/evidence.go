package attest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
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
// lists. []byte fields are base64 in JSON.
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

	// PipelineID and Manifest are set in pipeline evidence only. PipelineID is the
	// lowercase hex sha256 of Manifest, the pipeline's canonical manifest.
	PipelineID string          `json:"pipeline_id,omitempty"`
	Manifest   json.RawMessage `json:"manifest,omitempty"`
	// Nonce is the client's nonce that the quote binds: set in pipeline evidence and in
	// fresh boot evidence.
	Nonce []byte `json:"nonce,omitempty"`
}

// ResponseSignatureHeader carries the signature of a non-streaming chat response:
// "ed25519=<base64 of the 64-byte signature>". A streaming response carries the same
// value in the member "cocoon_signature" of its last chunk before "data: [DONE]".
const ResponseSignatureHeader = "Cocoon-Signature"

// SignedResponse is what a host signs for every chat completion it answers.
type SignedResponse struct {
	// RequestSHA256 is the sha256 of the request body as the client sent it.
	RequestSHA256 [32]byte
	// ContentSHA256 is the sha256 of the assistant's text as the client received it
	// (choices[0].message.content, or the concatenated deltas of a stream).
	ContentSHA256 [32]byte
	// PipelineID is the lowercase hex pipeline id ("" for the bare endpoint).
	PipelineID string
	// PromptTokens and CompletionTokens are the usage billed.
	PromptTokens, CompletionTokens uint64
}

// Message returns the bytes the host key signs:
//
//	lp("cocoon-host response v1") || lp(RequestSHA256) || lp(ContentSHA256) ||
//	lp(PipelineID) || lp(uint64be(PromptTokens)) || lp(uint64be(CompletionTokens))
//
// where lp(x) is a 4-byte big-endian length followed by x. The message is itself the
// encoding, not a digest: ed25519 hashes what it signs.
func (r SignedResponse) Message() []byte {
	var prompt, completion [8]byte
	binary.BigEndian.PutUint64(prompt[:], r.PromptTokens)
	binary.BigEndian.PutUint64(completion[:], r.CompletionTokens)
	var b bytes.Buffer
	writeFields(&b, []byte("cocoon-host response v1"), r.RequestSHA256[:], r.ContentSHA256[:],
		[]byte(r.PipelineID), prompt[:], completion[:])
	return b.Bytes()
}

// Sign returns the signature of r by key.
func (r SignedResponse) Sign(key ed25519.PrivateKey) []byte { return ed25519.Sign(key, r.Message()) }

// Verify reports whether sig is hostKey's signature of r.
func (r SignedResponse) Verify(hostKey ed25519.PublicKey, sig []byte) bool {
	return len(hostKey) == ed25519.PublicKeySize && ed25519.Verify(hostKey, r.Message(), sig)
}

// ManifestHash returns sha256 of a canonical manifest: the pipeline id's bytes.
func ManifestHash(canonical []byte) [32]byte { return sha256.Sum256(canonical) }
