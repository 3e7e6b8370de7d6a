package openai_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/host/backend/embedded"
	"github.com/cocoonhost/cocoon/host/backend/openai"
)

// The end-to-end tests serve the real embedded engine over HTTP on loopback, the way
// llama.cpp's server does (SSE chunks, a usage chunk when asked, [DONE]), and drive it
// through the adapter: what the adapter reports must be what the engine produced.

func modelDir() string {
	if dir := os.Getenv("COCOON_MODEL_DIR"); dir != "" {
		return dir
	}
	return filepath.Join("..", "..", "..", "..", "shared", "models", "stories260K")
}

// serveOpenAI is a minimal OpenAI-compatible server in front of b. generations counts
// the generations that returned, and how: the test checks that a client that goes
// away stops the engine.
func serveOpenAI(t *testing.T, b backend.Backend, cancelled *atomic.Int64) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		models, _ := b.Models(r.Context())
		var data []map[string]any
		for _, m := range models {
			data = append(data, map[string]any{"id": m.ID, "object": "model", "owned_by": m.OwnedBy, "max_model_len": m.ContextLength})
		}
		json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data})
	})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model    string `json:"model"`
			Messages []struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"messages"`
			MaxTokens     int      `json:"max_tokens"`
			Temperature   *float64 `json:"temperature"`
			Seed          *int64   `json:"seed"`
			Stop          []string `json:"stop"`
			StreamOptions struct {
				IncludeUsage bool `json:"include_usage"`
			} `json:"stream_options"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"error":{"message":%q,"type":"invalid_request_error"}}`, err.Error())
			return
		}
		breq := &backend.Request{Model: req.Model, MaxTokens: req.MaxTokens, Temperature: req.Temperature, Seed: req.Seed, Stop: req.Stop}
		for _, m := range req.Messages {
			breq.Messages = append(breq.Messages, backend.Message{Role: m.Role, Content: m.Content})
		}
		w.Header().Set("Content-Type", "text/event-stream")
		chunk := func(v any) {
			b, _ := json.Marshal(v)
			fmt.Fprintf(w, "data: %s\n\n", b)
			w.(http.Flusher).Flush()
		}
		res, err := b.Generate(r.Context(), breq, func(delta string) error {
			chunk(map[string]any{"object": "chat.completion.chunk", "choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": delta}}}})
			return nil
		})
		if errors.Is(err, context.Canceled) {
			cancelled.Add(1)
			return
		}
		var be *backend.Error
		if errors.As(err, &be) {
			chunk(map[string]any{"error": map[string]any{"message": be.Message, "type": "invalid_request_error", "code": be.Status}})
			return
		}
		chunk(map[string]any{"object": "chat.completion.chunk", "model": res.Model, "choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": res.FinishReason}}})
		if req.StreamOptions.IncludeUsage {
			chunk(map[string]any{"object": "chat.completion.chunk", "choices": []any{},
				"usage": map[string]any{"prompt_tokens": res.Usage.PromptTokens, "completion_tokens": res.Usage.CompletionTokens, "total_tokens": res.Usage.PromptTokens + res.Usage.CompletionTokens}})
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestEndToEndWithEmbeddedEngine(t *testing.T) {
	engine, err := embedded.New(modelDir())
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	var cancelled atomic.Int64
	srv := serveOpenAI(t, engine, &cancelled)
	adapter, err := openai.New(srv.URL + "/v1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	if err := adapter.Health(ctx); err != nil {
		t.Fatal(err)
	}
	models, err := adapter.Models(ctx)
	if err != nil || len(models) != 1 || models[0].ID != "stories260K" || models[0].ContextLength != 512 {
		t.Fatalf("models = %+v, %v", models, err)
	}

	zero := 0.0
	for _, req := range []*backend.Request{
		{Model: "stories260K", Messages: []backend.Message{{Role: "user", Content: "Once upon a time"}}, MaxTokens: 100, Temperature: &zero},
		{Model: "stories260K", Messages: []backend.Message{{Role: "user", Content: "The cat"}}, MaxTokens: 300, Temperature: &zero, Stop: []string{"."}},
	} {
		var direct, remote strings.Builder
		want, err := engine.Generate(ctx, req, func(d string) error { direct.WriteString(d); return nil })
		if err != nil {
			t.Fatal(err)
		}
		got, err := adapter.Generate(ctx, req, func(d string) error { remote.WriteString(d); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if remote.String() != direct.String() || got.FinishReason != want.FinishReason || got.Usage != want.Usage || got.Model != want.Model {
			t.Errorf("through the adapter: %q %+v\ndirect: %q %+v", remote.String(), got, direct.String(), want)
		}
	}

	// A client that goes away mid-stream stops the engine on the server.
	ctx, cancel := context.WithCancel(ctx)
	n := 0
	_, err = adapter.Generate(ctx, &backend.Request{Model: "stories260K", Messages: []backend.Message{{Role: "user", Content: "Once"}}, MaxTokens: 500},
		func(string) error {
			if n++; n == 3 {
				cancel()
			}
			return nil
		})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for cancelled.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if cancelled.Load() != 1 {
		t.Fatal("the server's generation did not stop when the client went away")
	}

	// The engine's refusal reaches the caller as the upstream's message.
	long := strings.Repeat("once upon a time ", 200)
	_, err = adapter.Generate(context.Background(), &backend.Request{Model: "stories260K", Messages: []backend.Message{{Role: "user", Content: long}}}, func(string) error { return nil })
	var be *backend.Error
	if !errors.As(err, &be) || !strings.Contains(be.Message, "context") {
		t.Fatalf("err = %v, want the engine's message about the context window", err)
	}
}
