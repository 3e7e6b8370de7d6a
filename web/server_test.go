package web

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/settle"
)

func TestModels(t *testing.T) {
	f := newFixture(t)
	id := f.push(emptyPipeline)
	for _, path := range []string{"/v1/models", "/p/" + id + "/v1/models"} {
		var list listJSON[modelJSON]
		res := f.do("GET", path, ownerKey, nil)
		res.json(t, &list)
		if res.status != 200 || list.Object != "list" || len(list.Data) != 1 ||
			list.Data[0] != (modelJSON{ID: "stories260K", Object: "model", OwnedBy: "cocoon", ContextLength: 512}) {
			t.Errorf("%s: %d %s", path, res.status, res.body)
		}
	}
}

func TestHealthAndRoutes(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		method, path string
		status       int
		want         string
	}{
		{"GET", "/healthz", 200, `"ok"`},
		{"GET", "/readyz", 200, `"ready"`},
		{"GET", "/nope", 404, `"code":"not_found"`},
		{"PUT", "/v1/pipelines", 405, `"code":"method_not_allowed"`},
	} {
		if res := f.do(tc.method, tc.path, "", nil); res.status != tc.status || !strings.Contains(string(res.body), tc.want) {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, res.status, res.body)
		}
	}
}

func TestReadyzFollowsTheBackend(t *testing.T) {
	f := newFixture(t, func(c *Config, r *recorder) { r.Backend = closedBackend{r.Backend} })
	res := f.do("GET", "/readyz", "", nil)
	if e := res.apiErr(t); res.status != 503 || e.Code != "unavailable" || res.header.Get("Retry-After") != "5" {
		t.Errorf("readyz with a closed backend: %d %s", res.status, res.body)
	}
}

// closedBackend fails health checks as a backend that is down does.
type closedBackend struct{ backend.Backend }

func (closedBackend) Health(context.Context) error {
	return backend.Errorf(backend.CodeUnavailable, "the GPU server is restarting")
}

func TestMetrics(t *testing.T) {
	f := newFixture(t)
	id := f.push(emptyPipeline)
	var c completion
	f.do("POST", "/p/"+id+"/v1/chat/completions", ownerKey, `{"messages":[{"role":"user","content":"x"}],"max_tokens":7,"temperature":0}`).json(t, &c)
	if c.Usage.PromptTokens < 2 || c.Usage.CompletionTokens != 7 {
		t.Fatalf("usage %+v", c.Usage)
	}
	f.do("POST", "/p/"+id+"/v1/chat/completions", "", `{}`)
	m := string(f.do("GET", "/metrics", "", nil).body)
	for _, want := range []string{
		`cocoon_http_requests_total{route="/p/{id}/v1/chat/completions",status="200"} 1`,
		`cocoon_http_requests_total{route="/p/{id}/v1/chat/completions",status="401"} 1`,
		`cocoon_http_requests_total{route="/v1/pipelines",status="201"} 1`,
		`cocoon_http_request_duration_seconds_count{route="/p/{id}/v1/chat/completions"} 2`,
		`cocoon_stage_duration_seconds_count{stage="pre"} 1`,
		`cocoon_stage_duration_seconds_count{stage="backend_first_token"} 1`,
		`cocoon_stage_duration_seconds_count{stage="backend"} 1`,
		`cocoon_stage_duration_seconds_count{stage="post"} 1`,
		fmt.Sprintf(`cocoon_tokens_total{direction="in"} %d`, c.Usage.PromptTokens),
		`cocoon_tokens_total{direction="out"} 7`,
		`cocoon_generations_in_flight 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// Shutdown lets a stream in flight finish before it returns.
func TestShutdownFinishesStreams(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	f := newFixture(t, func(_ *Config, r *recorder) {
		r.hook = func(ctx context.Context, n int, d string, emit func(string) error) error {
			if n == 2 {
				close(started)
				<-release
			}
			return emit(d)
		}
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- f.server.Serve(l) }()
	got := make(chan streamed, 1)
	go func() {
		req, _ := http.NewRequest("POST", "http://"+l.Addr().String()+"/v1/chat/completions",
			strings.NewReader(`{"messages":[{"role":"user","content":""}],"max_tokens":10,"temperature":0,"stream":true}`))
		setAuth(req, ownerKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			got <- streamed{}
			return
		}
		defer res.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := res.Body.Read(buf)
			b.WriteString(string(buf[:n]))
			if err != nil {
				break
			}
		}
		got <- parseSSE(t, []byte(b.String()))
	}()
	<-started
	shut := make(chan error, 1)
	go func() { shut <- f.server.Shutdown(context.Background()) }()
	select {
	case <-shut:
		t.Fatal("Shutdown returned with a stream in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if s := <-got; !s.done || s.text() == "" {
		t.Errorf("stream cut by Shutdown: %+v", s)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Errorf("Serve: %v", err)
	}
}

// TestShutdownCutsRequests: requests still running when Shutdown's drain ends are cut:
// a stream ends with the error event "shutting_down" (after its receipt, on a billing
// host, which charges what was sent), a body still arriving stops being read, and
// Shutdown returns nil once they have all ended, well before its 10 s bound.
func TestShutdownCutsRequests(t *testing.T) {
	// hold keeps a generation going, one delta every 20 ms, until its request is cut.
	hold := func(_ *Config, r *recorder) {
		r.hook = func(ctx context.Context, n int, d string, emit func(string) error) error {
			for n > 2 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(20 * time.Millisecond):
					if err := emit("."); err != nil {
						return err
					}
				}
			}
			return emit(d)
		}
	}
	const stream = `{"messages":[{"role":"user","content":"x"}],"max_tokens":500,"stream":true}`
	cutStream := func(t *testing.T, got <-chan streamed) streamed {
		var s streamed
		select {
		case s = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("the stream still runs 10 s after Shutdown")
		}
		if s.done || s.err == nil || s.err.Code != "shutting_down" || s.err.Type != typeServer || s.text() == "" {
			t.Errorf("a stream cut at shutdown: %+v, error %+v", s, s.err)
		}
		return s
	}
	for _, tc := range []struct {
		name   string
		billed bool
		start  func(t *testing.T, f *fixture, addr string) func() // starts the request; the func checks its end
	}{
		{"stream", false, func(t *testing.T, f *fixture, addr string) func() {
			got := make(chan streamed, 1)
			go func() { got <- f.streamOver(t, addr, ownerKey, stream) }()
			return func() { cutStream(t, got) }
		}},
		{"billed stream", true, func(t *testing.T, f *fixture, addr string) func() {
			got := make(chan streamed, 1)
			go func() { got <- f.streamOver(t, addr, billedKey, stream) }()
			return func() {
				if r := cutStream(t, got).receipt; r == nil || r.Status != settle.StatusCancelled || r.Usage.CompletionTokens == 0 {
					t.Errorf("the receipt of a stream cut at shutdown: %+v", r)
				}
			}
		}},
		{"silent body", false, func(t *testing.T, f *fixture, addr string) func() {
			c, err := silentClient(addr, "/v1/chat/completions", ownerKey)
			if err != nil {
				t.Fatal(err)
			}
			return func() {
				defer c.Close()
				if !closedWithin(c, time.Second) {
					t.Error("a body still arriving holds its connection after Shutdown")
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, hold)
			if tc.billed {
				f = newBilling(t, 1e9, hold).fixture
			}
			addr := f.serve()
			check := tc.start(t, f, addr)
			for f.server.conns.active() == 0 {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond) // the stream is under way
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			if err := f.server.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Shutdown took %s with a drain of 200 ms", d)
			}
			check()
		})
	}
}
