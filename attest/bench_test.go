package attest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/attest/nvidia"
)

// BenchmarkVerifyEvidence is what a client pays to verify a pipeline before it trusts
// it: quote chain, event-log replay, REPORTDATA, manifest and modules. Sim evidence has
// no collateral (TCB status is not evaluated); BenchmarkVerifyQuoteWithCollateral
// measures what a TDX quote's TCB evaluation adds. No network is in either figure.
//
// The cases, each with exactly what it includes:
//
//   - "no-GPU": the evidence of a host without GPUs (serve --gpu none), the baseline.
//   - "one-GPU-new": a GPU this client has never seen, RIMs already loaded
//     (EvidenceOptions.GPURIMs, verified once by LoadGPURIMs: BenchmarkLoadGPURIMs):
//     its device chain (one P-384 verification by x509 for the simulator) and its
//     report (parsing, one P-384 verification by circl, the nonce, firmware ID,
//     versions and measurements against the loaded RIMs). Issue 16's figure: under 2x
//     "no-GPU" in the same run.
//   - "one-GPU-seen": a GPU seen before, its chain remembered in a GPUCache, RIMs
//     loaded: the report alone, as from the second verification of the same GPU on
//     (cocoon verify's boot then pipeline evidence, a proxy's re-verification).
//   - "one-GPU-new-RIMs-from-policy": a new GPU and the policy's RIM files verified in
//     the call, with no GPURIMs nor GPUCache: what a one-off VerifyEvidence pays.
//   - "one-GPU-new-RIMs-from-collateral": the same, the RIMs replayed from a saved
//     collateral file (the RIM service's JSON) rather than given by the policy.
func BenchmarkVerifyEvidence(b *testing.B) {
	h := newTestHost(b)
	nonce := testNonce(1)
	opts := EvidenceOptions{SimRoot: h.sim.Root(), PipelineID: testPipelineID(), Nonce: nonce, ExpectModules: []string{testModuleA}}
	g := newGPUHost(b)
	gpuEv, filesOpts := g.pipeline(b, nonce)
	filesOpts.ExpectModules = opts.ExpectModules
	rims, err := LoadGPURIMs(&g.policy, filesOpts)
	if err != nil {
		b.Fatal(err)
	}
	newOpts := filesOpts
	newOpts.GPURIMs = rims
	seenOpts := newOpts
	seenOpts.GPUCache = nvidia.NewCache()
	collateralOpts := filesOpts
	collateralOpts.Collateral = simRIMCollateral(b, g.dir)
	for _, c := range []struct {
		name   string
		ev     Evidence
		policy Policy
		opts   EvidenceOptions
	}{
		{"no-GPU", h.pipeline(b, testManifest, nonce), Policy{}, opts},
		{"one-GPU-new", gpuEv, g.policy, newOpts},
		{"one-GPU-seen", gpuEv, g.policy, seenOpts},
		{"one-GPU-new-RIMs-from-policy", gpuEv, g.policy, filesOpts},
		{"one-GPU-new-RIMs-from-collateral", gpuEv, Policy{}, collateralOpts},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				r, err := VerifyEvidence(c.ev, c.policy, c.opts)
				if err != nil || !r.OK() {
					b.Fatalf("%v\n%s", err, r)
				}
			}
		})
	}
}

// BenchmarkLoadGPURIMs is the one-time cost of a policy's GPU RIMs: reading the
// simulated GPU's driver and VBIOS RIM files and verifying them (two canonicalizations
// and one XML-DSig signature each, their shared signing chain once), which a verifier
// pays when it loads its policy, not per evidence.
func BenchmarkLoadGPURIMs(b *testing.B) {
	g := newGPUHost(b)
	opts := g.opts()
	for b.Loop() {
		if _, err := LoadGPURIMs(&g.policy, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// chatAnswer is a chat.completion of about size bytes, as a host sends it.
func chatAnswer(size int) []byte {
	return []byte(`{"id":"chatcmpl-0123456789abcdef01234567","object":"chat.completion","created":1767225600,"model":"stories260K",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":"` + answerText(size) + `"},"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":12,"completion_tokens":200,"total_tokens":212}}` + "\n")
}

// answerText is the assistant's text of chatAnswer(size).
func answerText(size int) string { return strings.Repeat("Once upon a time. ", size/18) }

// streamDelta is the text of each chunk of chatStream.
const streamDelta = " time"

// chatStream is a stream of events chunks of a few characters each, framed as a host
// frames them.
func chatStream(events int) [][]byte {
	out := make([][]byte, events)
	for i := range out {
		out[i] = []byte(`data: {"id":"chatcmpl-0123456789abcdef01234567","object":"chat.completion.chunk","created":1767225600,` +
			`"model":"stories260K","choices":[{"index":0,"delta":{"content":"` + streamDelta + `"},"finish_reason":null}]}` + "\n\n")
	}
	return out
}

// v1Message is the message of the response signature before issue 11 ("cocoon-host
// response v1": the request, the assistant's text and the usage), kept here as the
// baseline of BenchmarkSignResponse.
func v1Message(request, content [32]byte, pipelineID string, prompt, completion uint64) []byte {
	var p, c [8]byte
	binary.BigEndian.PutUint64(p[:], prompt)
	binary.BigEndian.PutUint64(c[:], completion)
	var b bytes.Buffer
	writeFields(&b, []byte("cocoon-host response v1"), request[:], content[:], []byte(pipelineID), p[:], c[:])
	return b.Bytes()
}

// BenchmarkSignResponse is the host's cost of signing one chat answer, the work added
// to every request. "v1" is today's benchmark before issue 11, unchanged: the ed25519
// signature of the v1 message, whose text hash was taken as the text was written. Each
// "v2-" case signs a whole answer, hashing every byte of it: a 1 KiB answer (a
// stories260K answer of 256 tokens), a 16 KiB one (a long GPU answer), and a stream of
// 256 events, hashed as they are written. Beside each, its "v1-" twin does what v1 did
// for the same answer: hash the assistant's text, then sign. The figures are ratios in
// the same run: v2-body-1KiB to v1 (issue 11: at most 1.2x), and each v2 to its twin.
func BenchmarkSignResponse(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(nil)
	request := sha256.Sum256([]byte("request"))
	pipeline := testPipelineID()
	signV1 := func(content [32]byte) []byte {
		return ed25519.Sign(key, v1Message(request, content, pipeline, 12, 200))
	}
	b.Run("v1", func(b *testing.B) {
		content := sha256.Sum256([]byte("answer"))
		for b.Loop() {
			signV1(content)
		}
	})
	for _, size := range []int{1 << 10, 16 << 10} {
		body, text := chatAnswer(size), []byte(answerText(size))
		b.Run(fmt.Sprintf("v1-body-%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				signV1(sha256.Sum256(text))
			}
		})
		b.Run(fmt.Sprintf("v2-body-%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				SignedResponse{Kind: ResponseBody, RequestSHA256: &request, PipelineID: pipeline, Status: 200,
					BodySHA256: sha256.Sum256(body)}.Sign(key)
			}
		})
	}
	const events = 256
	stream := chatStream(events)
	b.Run("v1-stream-256-events", func(b *testing.B) {
		for b.Loop() {
			digest := sha256.New()
			for range events {
				digest.Write([]byte(streamDelta))
			}
			signV1([32]byte(digest.Sum(nil)))
		}
	})
	b.Run("v2-stream-256-events", func(b *testing.B) {
		for b.Loop() {
			digest := sha256.New()
			for _, e := range stream {
				digest.Write(e)
			}
			SignatureEvent("ed25519=" + base64.StdEncoding.EncodeToString(SignedResponse{Kind: ResponseStream, RequestSHA256: &request,
				PipelineID: pipeline, Status: 200, BodySHA256: [32]byte(digest.Sum(nil))}.Sign(key)))
		}
	})
}

// BenchmarkVerifyResponse is a client's cost of checking an answer: v1 as before issue
// 11 (the signature only), a 1 KiB answer, and a stream of 256 events read, framed and
// hashed by SignedStream.
func BenchmarkVerifyResponse(b *testing.B) {
	pub, key, _ := ed25519.GenerateKey(nil)
	request := []byte("request")
	pipeline := testPipelineID()
	b.Run("v1", func(b *testing.B) {
		m := v1Message(sha256.Sum256(request), sha256.Sum256([]byte("answer")), pipeline, 12, 200)
		sig := ed25519.Sign(key, m)
		for b.Loop() {
			if !ed25519.Verify(pub, m, sig) {
				b.Fatal("the signature does not verify")
			}
		}
	})
	v := ResponseVerifier{HostKey: pub, Request: request, PipelineID: pipeline}
	body := chatAnswer(1 << 10)
	header := "ed25519=" + base64.StdEncoding.EncodeToString(v.signed(ResponseBody, 200, "", sha256.Sum256(body)).Sign(key))
	b.Run("body-1KiB", func(b *testing.B) {
		for b.Loop() {
			if err := v.VerifyBody(200, "", body, header); err != nil {
				b.Fatal(err)
			}
		}
	})
	stream := bytes.Join(chatStream(256), nil)
	r := v.signed(ResponseStream, 200, "", sha256.Sum256(stream))
	stream = append(append(stream, SignatureEvent("ed25519="+base64.StdEncoding.EncodeToString(r.Sign(key)))...), "data: [DONE]\n\n"...)
	b.Run("stream-256-events", func(b *testing.B) {
		b.SetBytes(int64(len(stream)))
		for b.Loop() {
			s := v.ReadStream(bytes.NewReader(stream), 1<<20)
			for {
				if _, err := s.Next(); err == io.EOF {
					break
				} else if err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
