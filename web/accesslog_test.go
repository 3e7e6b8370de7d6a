package web

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// syncBuffer is a log destination that requests write to from their goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// accessLines are the access log lines (message "request") of a JSON log.
func accessLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == "request" {
			lines = append(lines, m)
		}
	}
	return lines
}

// TestAccessLog: every request gets one access log line with its method, route
// pattern, status, latency, bytes, pipeline and request id (the id the answer carries
// in X-Request-Id), and no line holds the prompt, the API key or a query string. A
// level above info turns the lines off.
func TestAccessLog(t *testing.T) {
	const prompt = "my secret prompt about zebras"
	var log syncBuffer
	f := newFixture(t, func(c *Config, _ *recorder) {
		c.Logger = slog.New(slog.NewJSONHandler(&log, nil))
	})
	id := f.push(emptyPipeline)
	chat := f.do("POST", "/p/"+id+"/v1/chat/completions", ownerKey,
		`{"model":"stories260K","messages":[{"role":"user","content":"`+prompt+`"}],"max_tokens":3}`)
	if chat.status != http.StatusOK {
		t.Fatalf("chat: %d %s", chat.status, chat.body)
	}
	denied := f.do("GET", "/v1/models?token="+ownerKey, "Bearer wrong-key-"+ownerKey, nil)
	missing := f.do("GET", "/no/such/route", "", nil)

	lines := accessLines(t, log.String())
	if len(lines) != 4 {
		t.Fatalf("%d access log lines for 4 requests:\n%s", len(lines), log.String())
	}
	for i, want := range []struct {
		res                   response
		method, route, status string
		pipeline              string
	}{
		{chat, "POST", "/p/{id}/v1/chat/completions", "200", id},
		{denied, "GET", "/v1/models", "401", ""},
		{missing, "GET", "unmatched", "404", ""},
	} {
		got := lines[i+1]
		if got["method"] != want.method || got["route"] != want.route || jsonNumber(got["status"]) != want.status ||
			got["request_id"] != want.res.header.Get("X-Request-Id") || want.res.header.Get("X-Request-Id") == "" {
			t.Errorf("line %d: %v; want %s %s %s with the answer's X-Request-Id %q", i+1, got, want.method, want.route, want.status, want.res.header.Get("X-Request-Id"))
		}
		if p, _ := got["pipeline"].(string); p != want.pipeline {
			t.Errorf("line %d: pipeline %q, want %q", i+1, p, want.pipeline)
		}
		if jsonNumber(got["bytes"]) != jsonNumber(float64(len(want.res.body))) {
			t.Errorf("line %d: bytes %v, want %d", i+1, got["bytes"], len(want.res.body))
		}
		if _, ok := got["latency"].(float64); !ok {
			t.Errorf("line %d: no latency: %v", i+1, got)
		}
	}
	for _, secret := range []string{"zebras", ownerKey, "token="} {
		if strings.Contains(log.String(), secret) {
			t.Errorf("the log holds %q:\n%s", secret, log.String())
		}
	}

	var quiet syncBuffer
	g := newFixture(t, func(c *Config, _ *recorder) {
		c.Logger = slog.New(slog.NewJSONHandler(&quiet, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	g.do("GET", "/healthz", "", nil)
	if quiet.String() != "" {
		t.Errorf("level warn logs %q", quiet.String())
	}
}

// jsonNumber prints a decoded JSON number without a fraction.
func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// BenchmarkAccessLog is the access log's cost per request against the same handler
// without it (baseline), logging JSON to io.Discard.
func BenchmarkAccessLog(b *testing.B) {
	s := &Server{log: slog.New(slog.NewJSONHandler(io.Discard, nil)), requestIDs: newRequestIDs()}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	req := httptest.NewRequest("GET", "/healthz", nil)
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{{"baseline", ok}, {"logged", s.accessLog(ok)}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bc.h.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
