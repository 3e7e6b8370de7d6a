package attest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"testing"
)

// BenchmarkVerifyEvidence is what a client pays to verify a pipeline before it trusts
// it: quote chain, event-log replay, REPORTDATA, manifest and modules. Sim evidence has
// no collateral (TCB status is not evaluated); BenchmarkVerifyQuoteWithCollateral
// measures what a TDX quote's TCB evaluation adds. No network is in either figure.
func BenchmarkVerifyEvidence(b *testing.B) {
	h := newTestHost(b)
	nonce := testNonce(1)
	ev := h.pipeline(b, testManifest, nonce)
	opts := EvidenceOptions{SimRoot: h.sim.Root(), PipelineID: testPipelineID(), Nonce: nonce, ExpectModules: []string{testModuleA}}
	for b.Loop() {
		r, err := VerifyEvidence(ev, Policy{}, opts)
		if err != nil || !r.OK() {
			b.Fatalf("%v\n%s", err, r)
		}
	}
}

// BenchmarkSignResponse is the host's cost of signing one chat response, the work added
// to every request; BenchmarkVerifyResponse is a client's cost of checking it.
func BenchmarkSignResponse(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(nil)
	r := SignedResponse{RequestSHA256: sha256.Sum256([]byte("request")), ContentSHA256: sha256.Sum256([]byte("answer")),
		PipelineID: testPipelineID(), PromptTokens: 12, CompletionTokens: 200}
	for b.Loop() {
		r.Sign(key)
	}
}

func BenchmarkVerifyResponse(b *testing.B) {
	pub, key, _ := ed25519.GenerateKey(nil)
	r := SignedResponse{RequestSHA256: sha256.Sum256([]byte("request")), ContentSHA256: sha256.Sum256([]byte("answer")),
		PipelineID: testPipelineID(), PromptTokens: 12, CompletionTokens: 200}
	sig := r.Sign(key)
	for b.Loop() {
		if !r.Verify(pub, sig) {
			b.Fatal("the signature does not verify")
		}
	}
}
