package attest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// ErrResponseSignature is the error of VerifyResponse.
var ErrResponseSignature = errors.New("response signature")

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

// VerifyResponse checks the signature a host put on a chat response: header is the
// value of the Cocoon-Signature header (or the cocoon_signature member of a stream's
// last chunk), "ed25519=<base64>"; requestBody the bytes the client sent; content the
// assistant's text as received; pipelineID and the token counts as the response
// reported them. Errors wrap ErrResponseSignature. Cost: one ed25519 verification.
func VerifyResponse(hostKey ed25519.PublicKey, requestBody []byte, content, pipelineID string, promptTokens, completionTokens uint64, header string) error {
	b64, ok := strings.CutPrefix(header, "ed25519=")
	if !ok {
		return fmt.Errorf("%w: %q is not \"ed25519=<base64>\"", ErrResponseSignature, header)
	}
	sig, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: not a base64 %d-byte ed25519 signature", ErrResponseSignature, ed25519.SignatureSize)
	}
	r := SignedResponse{
		RequestSHA256:    sha256.Sum256(requestBody),
		ContentSHA256:    sha256.Sum256([]byte(content)),
		PipelineID:       pipelineID,
		PromptTokens:     promptTokens,
		CompletionTokens: completionTokens,
	}
	if !r.Verify(hostKey, sig) {
		return fmt.Errorf("%w: does not verify with the attested host key over this request, answer, pipeline and usage", ErrResponseSignature)
	}
	return nil
}
