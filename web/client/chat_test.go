package client

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/attest"
)

// TestReadStream: an unverified stream's text is its deltas in order; a stream that
// ends without "data: [DONE]", or with an error event, fails; the receipt event of a
// billed stream is returned.
func TestReadStream(t *testing.T) {
	chunk := func(s string) string { return `data: {"choices":[{"delta":{"content":"` + s + `"}}]}` + "\n\n" }
	for _, tt := range []struct {
		name, stream, text string
		code               Code // "" for none
		receipt            bool
	}{
		{"deltas", chunk("Hel") + chunk("lo") + "data: [DONE]\n\n", "Hello", "", false},
		{"comments and other fields", ": ping\nevent: x\n" + chunk("a") + "data:[DONE]\n", "a", "", false},
		{"cut short", chunk("Hel"), "Hel", CodeBadAnswer, false},
		{"error midway", chunk("Hel") + `data: {"error":{"message":"the GPU went away","code":"upstream"}}` + "\n\ndata: [DONE]\n\n", "Hel", CodeRefused, false},
		{"not JSON", "data: {\n\n", "", CodeBadAnswer, false},
		{"receipt", chunk("a") + `data: {"choices":[],"cocoon_receipt":{"seq":7}}` + "\n\ndata: [DONE]\n\n", "a", "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var text strings.Builder
			r, err := readStream(streamEvents(strings.NewReader(tt.stream), nil), func(s string) error { text.WriteString(s); return nil })
			var e *Error
			switch {
			case tt.code == "" && err != nil, tt.code != "" && (!errors.As(err, &e) || e.Code != tt.code):
				t.Fatalf("err %v, want code %q", err, tt.code)
			case text.String() != tt.text:
				t.Errorf("text %q, want %q", text.String(), tt.text)
			case tt.receipt != (r != nil):
				t.Errorf("receipt %v, want one: %v", r, tt.receipt)
			}
		})
	}
}

// TestReadStreamReceiptOrder: a stream the host key signed whole, whose receipt event
// is out of place (settle.StreamReceipt: a second receipt, more of the answer after
// it, an event after the error that ends the stream), is CodeBadAnswer after the text
// before it, not an answer billed by its last receipt (before: the signature passed and
// the second receipt replaced the first). A receipt a relay adds to a signed stream is
// CodeNotVerified: the stream is read to its signature before it is called the host's.
// The orders a host sends pass.
func TestReadStreamReceiptOrder(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))
	request := []byte(`{"messages":[{"role":"user","content":"hi"}],"stream":true}`)
	v := &attest.ResponseVerifier{HostKey: key.Public().(ed25519.PublicKey), Request: request}
	chunk := `{"choices":[{"delta":{"content":"hel"}}]}`
	receipt := func(seq int) string { return fmt.Sprintf(`{"choices":[],"cocoon_receipt":{"seq":%d}}`, seq) }
	failure := `{"error":{"message":"shutting down","code":"shutting_down"}}`
	for _, tc := range []struct {
		name     string
		events   []string
		injected string // an event a relay adds after the host signed
		code     Code   // "" for an answer
		seq      uint64
	}{
		{"a receipt after the answer", []string{chunk, receipt(1)}, "", "", 1},
		{"a receipt, then the error that ends a cut stream", []string{chunk, receipt(1), failure}, "", CodeRefused, 0},
		{"a second receipt", []string{chunk, receipt(1), receipt(2)}, "", CodeBadAnswer, 0},
		{"a second receipt after the error", []string{chunk, receipt(1), failure, receipt(2)}, "", CodeBadAnswer, 0},
		{"text after the receipt", []string{chunk, receipt(1), chunk}, "", CodeBadAnswer, 0},
		{"text after the error", []string{chunk, failure, chunk}, "", CodeBadAnswer, 0},
		{"a second receipt a relay added", []string{chunk, receipt(1)}, receipt(2), CodeNotVerified, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sb strings.Builder
			for _, e := range tc.events {
				sb.WriteString("data: " + e + "\n\n")
			}
			req := sha256.Sum256(request)
			signed := attest.SignedResponse{Kind: attest.ResponseStream, RequestSHA256: &req, Status: 200, BodySHA256: sha256.Sum256([]byte(sb.String()))}
			if tc.injected != "" {
				sb.WriteString("data: " + tc.injected + "\n\n")
			}
			sb.Write(attest.SignatureEvent("ed25519=" + base64.StdEncoding.EncodeToString(signed.Sign(key))))
			if !strings.HasPrefix(tc.events[len(tc.events)-1], `{"error":`) { // a failed stream ends without [DONE]
				sb.WriteString("data: [DONE]\n\n")
			}
			var text strings.Builder
			r, err := readStream(streamEvents(strings.NewReader(sb.String()), v), func(s string) error { text.WriteString(s); return nil })
			var e *Error
			switch {
			case tc.code == "" && (err != nil || r == nil || r.Seq != tc.seq):
				t.Fatalf("receipt %+v, err %v; want seq %d", r, err, tc.seq)
			case tc.code != "" && (!errors.As(err, &e) || e.Code != tc.code):
				t.Fatalf("err %v, want code %q", err, tc.code)
			case tc.code == CodeBadAnswer && !strings.Contains(e.Message, "not an answer a host sends"):
				t.Fatalf("err %v: want it to say the stream is not an answer a host sends", err)
			case text.String() != "hel" && tc.code != "":
				t.Fatalf("text %q: want the text before the refusal, and no more", text.String())
			}
		})
	}
}

// FuzzReadStream: any bytes a host sends as a stream end in an answer or an error,
// never a panic or a hang, and the text given out is only what the stream carried.
func FuzzReadStream(f *testing.F) {
	f.Add(`data: {"choices":[{"delta":{"content":"hi"}}]}` + "\n\ndata: [DONE]\n\n")
	f.Add(`data: {"error":{"message":"x"}}` + "\n\n")
	f.Add("data: [DONE]")
	f.Add(": comment\r\ndata:{}\r\n\r\n")
	f.Fuzz(func(t *testing.T, stream string) {
		n := 0
		readStream(streamEvents(strings.NewReader(stream), nil), func(s string) error { n += len(s); return nil })
		if n > len(stream) {
			t.Fatalf("%d bytes of text out of a %d-byte stream", n, len(stream))
		}
	})
}

// BenchmarkReadStream reads a 1000-chunk unverified stream, the path of every answer
// of an http host without a trust.
func BenchmarkReadStream(b *testing.B) {
	var sb strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&sb, `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"w%d "}}]}`+"\n\n", i)
	}
	sb.WriteString("data: [DONE]\n\n")
	stream := sb.String()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		if _, err := readStream(streamEvents(strings.NewReader(stream), nil), func(string) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
