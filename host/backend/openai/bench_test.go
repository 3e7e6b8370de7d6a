package openai

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cocoonhost/cocoon/host/backend"
)

// benchTranscript is a vLLM stream of n one-token chunks, as in testdata/vllm.sse.
func benchTranscript(n int) []byte {
	var buf bytes.Buffer
	words := []string{" Once", " upon", " a", " time", ",", " été", " 😀"}
	for i := range n {
		c, _ := json.Marshal(map[string]any{
			"id": "chatcmpl-8e3c1a2f6b7d4e0f9a1b2c3d4e5f6a7b", "object": "chat.completion.chunk", "created": 1730000000,
			"model":   "meta-llama/Meta-Llama-3.1-8B-Instruct",
			"choices": []any{map[string]any{"index": 0, "delta": map[string]string{"content": words[i%len(words)]}, "logprobs": nil, "finish_reason": nil}},
		})
		buf.WriteString("data: ")
		buf.Write(c)
		buf.WriteString("\n\n")
	}
	buf.WriteString(`data: {"choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}]}` + "\n\n")
	buf.WriteString(`data: {"choices":[],"usage":{"prompt_tokens":42,"total_tokens":1042,"completion_tokens":1000}}` + "\n\n")
	buf.WriteString("data: [DONE]\n\n")
	return buf.Bytes()
}

// BenchmarkStream measures the cost of one streamed token: "parse" is the event stream
// parser and chunk decoder on a body in memory, "loopback" a whole Generate against a
// server on loopback, HTTP included.
func BenchmarkStream(b *testing.B) {
	const tokens = 1000
	body := benchTranscript(tokens)
	emit := func(string) error { return nil }
	b.Run("parse", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			s := &stream{emit: emit}
			if err := readStream(bytes.NewReader(body), DefaultMaxLineSize, s); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*tokens), "ns/token")
	})
	b.Run("loopback", func(b *testing.B) {
		h := func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write(body)
		}
		srv := httptest.NewServer(http.HandlerFunc(h))
		defer srv.Close()
		be, err := New(srv.URL + "/v1")
		if err != nil {
			b.Fatal(err)
		}
		defer be.Close()
		req := &backend.Request{Messages: []backend.Message{{Role: "user", Content: "Tell me a story."}}}
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := be.Generate(b.Context(), req, emit); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*tokens), "ns/token")
	})
}
