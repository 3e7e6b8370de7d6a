package attest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"testing"
)

func TestVerifyResponse(t *testing.T) {
	h := newTestHost(t)
	body := []byte(`{"messages":[]}`)
	sig := SignedResponse{RequestSHA256: sha256.Sum256(body), ContentSHA256: sha256.Sum256([]byte("Once")),
		PipelineID: "ab", PromptTokens: 5, CompletionTokens: 9}.Sign(h.hostKey)
	header := "ed25519=" + base64.StdEncoding.EncodeToString(sig)
	if err := VerifyResponse(h.pub(), body, "Once", "ab", 5, 9, header); err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), sig...)
	flipped[0] ^= 1
	tests := []struct {
		name    string
		key     ed25519.PublicKey
		content string
		usage   uint64
		header  string
	}{
		{"changed content", h.pub(), "Twice", 9, header},
		{"changed usage", h.pub(), "Once", 10, header},
		{"another host key", newTestHost(t).pub(), "Once", 9, header},
		{"flipped signature bit", h.pub(), "Once", 9, "ed25519=" + base64.StdEncoding.EncodeToString(flipped)},
		{"short signature", h.pub(), "Once", 9, "ed25519=" + base64.StdEncoding.EncodeToString(sig[:63])},
		{"no scheme", h.pub(), "Once", 9, base64.StdEncoding.EncodeToString(sig)},
		{"not base64", h.pub(), "Once", 9, "ed25519=!!"},
		{"missing", h.pub(), "Once", 9, ""},
	}
	for _, tt := range tests {
		if err := VerifyResponse(tt.key, body, tt.content, "ab", 5, tt.usage, tt.header); !errors.Is(err, ErrResponseSignature) {
			t.Errorf("%s: err %v, want ErrResponseSignature", tt.name, err)
		}
	}
}
