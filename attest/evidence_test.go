package attest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

func TestSignedResponse(t *testing.T) {
	r := SignedResponse{RequestSHA256: sha256.Sum256([]byte("req")), ContentSHA256: sha256.Sum256([]byte("Once")),
		PipelineID: "ab", PromptTokens: 5, CompletionTokens: 9}
	// Golden: the documented encoding, field by field.
	want := "00000017" + hex.EncodeToString([]byte("cocoon-host response v1")) +
		"00000020" + hex.EncodeToString(r.RequestSHA256[:]) +
		"00000020" + hex.EncodeToString(r.ContentSHA256[:]) +
		"00000002" + hex.EncodeToString([]byte("ab")) +
		"00000008" + "0000000000000005" + "00000008" + "0000000000000009"
	if got := hex.EncodeToString(r.Message()); got != want {
		t.Fatalf("message\n got %s\nwant %s", got, want)
	}
	pub, key, _ := ed25519.GenerateKey(nil)
	sig := r.Sign(key)
	if !r.Verify(pub, sig) {
		t.Fatal("a good signature does not verify")
	}
	for name, changed := range map[string]SignedResponse{
		"content":  {RequestSHA256: r.RequestSHA256, ContentSHA256: sha256.Sum256([]byte("Twice")), PipelineID: "ab", PromptTokens: 5, CompletionTokens: 9},
		"pipeline": {RequestSHA256: r.RequestSHA256, ContentSHA256: r.ContentSHA256, PipelineID: "ac", PromptTokens: 5, CompletionTokens: 9},
		"usage":    {RequestSHA256: r.RequestSHA256, ContentSHA256: r.ContentSHA256, PipelineID: "ab", PromptTokens: 5, CompletionTokens: 8},
	} {
		if changed.Verify(pub, sig) {
			t.Errorf("a signature verifies over a changed %s", name)
		}
	}
	if r.Verify(pub[:31], sig) {
		t.Error("a short key verifies")
	}
}
