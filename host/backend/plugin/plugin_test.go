package plugin

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/host/backend"
)

// The test binary doubles as the plugin program: TestMain serves a backend instead of
// running the tests when envMode says so.
const (
	envMode  = "COCOON_PLUGIN_TEST_MODE"  // serve, exit, once or host
	envDelay = "COCOON_PLUGIN_TEST_DELAY" // pause between deltas, a time.Duration
	envFile  = "COCOON_PLUGIN_TEST_FILE"  // for once: the file that counts starts
)

func TestMain(m *testing.M) {
	switch os.Getenv(envMode) {
	case "":
		os.Exit(m.Run())
	case "serve":
		delay, _ := time.ParseDuration(os.Getenv(envDelay))
		Serve(&scripted{delay: delay, announce: true})
	case "exit":
		// A backend that cannot start, as one with a missing model does.
		fmt.Fprintln(os.Stderr, "loading model: open /models/x.bin: no such file or directory")
		os.Exit(3)
	case "once":
		// Serves on its first start, then fails at every start.
		f, err := os.OpenFile(os.Getenv(envFile), os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			panic(err)
		}
		fi, _ := f.Stat()
		f.WriteString("start\n")
		f.Close()
		if fi.Size() > 0 {
			fmt.Fprintln(os.Stderr, "model is gone")
			os.Exit(3)
		}
		Serve(&scripted{announce: true})
	case "host":
		// A host that launches a plugin, prints its pid and waits to be killed.
		b, err := Launch(testCommand("serve", 0), nil)
		if err != nil {
			panic(err)
		}
		fmt.Println(b.(*client).cur.pid)
		select {}
	}
}

// scripted is a deterministic backend for the plumbing tests. The last message says what
// it does:
//
//	words N        stream N deltas "w0", " w1", ...
//	fail CODE MSG  stream 2 deltas, then fail with a *backend.Error (CODE is a
//	               backend.Code, or a number for an HTTP status with CodeUnavailable)
//	plain          fail with an error that is not a *backend.Error
//	timeout        fail with context.DeadlineExceeded
//	panic          stream 2 deltas, then crash the process
//
// It logs to its standard error when a generation ends early and, if announce is set,
// prints each request to its standard output, so tests can see both reach the host's
// log.
type scripted struct {
	delay    time.Duration
	announce bool
}

func (s *scripted) Generate(ctx context.Context, req *backend.Request, emit func(string) error) (backend.Result, error) {
	if s.announce {
		fmt.Printf("request %q\n", req.Messages[len(req.Messages)-1].Content)
	}
	f := strings.Fields(req.Messages[len(req.Messages)-1].Content)
	n := 2
	if f[0] == "words" {
		n, _ = strconv.Atoi(f[1])
	}
	for i := range n {
		delta := fmt.Sprintf(" w%d", i)
		if i == 0 {
			delta = delta[1:]
		}
		if err := emit(delta); err != nil {
			slog.Error("generation stopped", "after", i, "error", err)
			return backend.Result{}, err
		}
		if s.delay > 0 {
			select {
			case <-time.After(s.delay):
			case <-ctx.Done():
				slog.Error("generation stopped", "after", i+1, "error", ctx.Err())
				return backend.Result{}, ctx.Err()
			}
		}
	}
	switch f[0] {
	case "fail":
		if status, err := strconv.Atoi(f[1]); err == nil {
			return backend.Result{}, &backend.Error{Code: backend.CodeUnavailable, Message: strings.Join(f[2:], " "), Status: status}
		}
		return backend.Result{}, backend.Errorf(backend.Code(f[1]), "%s", strings.Join(f[2:], " "))
	case "plain":
		return backend.Result{}, errors.New("open /secret/path: permission denied")
	case "timeout":
		return backend.Result{}, fmt.Errorf("calling upstream: %w", context.DeadlineExceeded)
	case "panic":
		panic("scripted crash")
	}
	return backend.Result{FinishReason: "length", Model: "scripted",
		Usage: backend.Usage{PromptTokens: len(req.Messages), CompletionTokens: n}}, nil
}

func (s *scripted) Models(context.Context) ([]backend.Model, error) {
	return []backend.Model{{ID: "scripted", OwnedBy: "cocoon-tests", ContextLength: 512}, {ID: "other"}}, nil
}

func (s *scripted) Health(context.Context) error { return nil }
func (s *scripted) Close() error                 { return nil }

// testCommand runs this test binary as a plugin in mode, with delay between deltas.
func testCommand(mode string, delay time.Duration, env ...string) *exec.Cmd {
	cmd := SelfCommand()
	cmd.Env = append(os.Environ(), envMode+"="+mode, envDelay+"="+delay.String(),
		// Under -race, a process otherwise waits a second before it exits.
		"GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// recorder is a log that tests can search.
type recorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

// waitFor reports whether the log holds s within a few seconds.
func (r *recorder) waitFor(s string) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		ok := strings.Contains(r.buf.String(), s)
		r.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// launch starts a plugin in mode and closes it when the test ends.
func launch(t testing.TB, mode string, delay time.Duration, env ...string) (*client, *recorder) {
	t.Helper()
	rec := &recorder{}
	log := slog.New(slog.NewTextHandler(rec, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := Launch(testCommand(mode, delay, env...), &Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.(*client), rec
}

func request(text string) *backend.Request {
	return &backend.Request{Model: "scripted", Messages: []backend.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: text}}}
}

// generate runs one request and returns the text it streamed.
func generate(ctx context.Context, b backend.Backend, text string) (string, backend.Result, error) {
	var out strings.Builder
	res, err := b.Generate(ctx, request(text), func(d string) error {
		out.WriteString(d)
		return nil
	})
	return out.String(), res, err
}

func (c *client) pid(t testing.TB) int {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		t.Fatal("no process serves")
	}
	return c.cur.pid
}

// gone reports whether process pid has exited (a zombie counts: only its parent can reap
// it, and the orphan test's parent is not this process).
func gone(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z'
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !gone(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs", pid)
		}
	}
}

func TestGenerateStreams(t *testing.T) {
	b, rec := launch(t, "serve", 0)
	var deltas []string
	res, err := b.Generate(context.Background(), request("words 5"), func(d string) error {
		deltas = append(deltas, d)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(deltas, "|"), "w0| w1| w2| w3| w4"; got != want {
		t.Errorf("deltas %q, want %q", got, want)
	}
	want := backend.Result{FinishReason: "length", Model: "scripted", Usage: backend.Usage{PromptTokens: 2, CompletionTokens: 5}}
	if res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	// The plugin's standard output reaches the host's log.
	if !rec.waitFor(`request \"words 5\"`) {
		t.Errorf("the plugin's output is not in the log:\n%s", rec)
	}
}

func TestModelsAndHealth(t *testing.T) {
	b, _ := launch(t, "serve", 0)
	ms, err := b.Models(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []backend.Model{{ID: "scripted", OwnedBy: "cocoon-tests", ContextLength: 512}, {ID: "other"}}
	if fmt.Sprint(ms) != fmt.Sprint(want) {
		t.Errorf("models %+v, want %+v", ms, want)
	}
	if err := b.Health(context.Background()); err != nil {
		t.Errorf("health: %v", err)
	}
}

func TestConcurrentGenerations(t *testing.T) {
	b, _ := launch(t, "serve", time.Millisecond)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			n := 10 + i
			text, res, err := generate(context.Background(), b, fmt.Sprintf("words %d", n))
			if err != nil {
				t.Error(err)
				return
			}
			if got := len(strings.Fields(text)); got != n || res.Usage.CompletionTokens != n {
				t.Errorf("request %d: %d words, usage %d; want %d", i, got, res.Usage.CompletionTokens, n)
			}
		})
	}
	wg.Wait()
}

func TestBackendErrorsCrossTheBoundary(t *testing.T) {
	b, rec := launch(t, "serve", 0)
	pid := b.pid(t)
	for _, tc := range []struct {
		text string
		want backend.Error
	}{
		{"fail invalid_request unknown model x", backend.Error{Code: backend.CodeInvalidRequest, Message: "unknown model x", Status: 400}},
		{"fail upstream_error upstream said no", backend.Error{Code: backend.CodeUpstream, Message: "upstream said no", Status: 502}},
		{"fail 429 too many requests", backend.Error{Code: backend.CodeUnavailable, Message: "too many requests", Status: 429}},
		{"fail made_up_code odd", backend.Error{Code: backend.CodeUpstream, Message: "odd", Status: 502}},
		{"plain", backend.Error{Code: backend.CodeUpstream, Message: "the backend failed", Status: 502}},
		{"timeout", backend.Error{Code: backend.CodeTimeout, Message: "the backend timed out", Status: 504}},
	} {
		t.Run(tc.text, func(t *testing.T) {
			_, _, err := generate(context.Background(), b, tc.text)
			var be *backend.Error
			if !errors.As(err, &be) {
				t.Fatalf("error %v (%T), want a *backend.Error", err, err)
			}
			if *be != tc.want {
				t.Errorf("error %+v, want %+v", *be, tc.want)
			}
		})
	}
	// The detail of an error that is not a *backend.Error stays in the log.
	if !rec.waitFor("/secret/path") {
		t.Errorf("the plain error's detail is not in the log:\n%s", rec)
	}
	if b.pid(t) != pid {
		t.Error("a backend error restarted the process")
	}
}

func TestCancelStopsRemoteGeneration(t *testing.T) {
	b, rec := launch(t, "serve", 5*time.Millisecond)
	pid := b.pid(t)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	start := time.Now()
	_, err := b.Generate(ctx, request("words 10000"), func(string) error {
		if n++; n == 3 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancelled generation took %v", d)
	}
	if !rec.waitFor("generation stopped") {
		t.Fatalf("the plugin did not stop generating:\n%s", rec)
	}
	if b.pid(t) != pid {
		t.Error("cancelling restarted the process")
	}

	// An emit error stops the remote generation too, and comes back as is.
	errFull := errors.New("client buffer full")
	_, err = b.Generate(context.Background(), request("words 10000"), func(string) error { return errFull })
	if !errors.Is(err, errFull) {
		t.Fatalf("error %v, want %v", err, errFull)
	}
	if !rec.waitFor("generation stopped after=1") {
		t.Fatalf("the plugin did not stop generating after emit failed:\n%s", rec)
	}
}

func TestProcessDeathMidStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		text string
		kill bool
	}{
		{"SIGKILL", "words 100000", true},
		{"panic", "panic", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, rec := launch(t, "serve", 2*time.Millisecond)
			pid := b.pid(t)
			n := 0
			var killed time.Time
			_, _, err := generate(context.Background(), b, "words 3") // warm up
			if err != nil {
				t.Fatal(err)
			}
			_, err = b.Generate(context.Background(), request(tc.text), func(string) error {
				if n++; n == 2 && tc.kill {
					killed = time.Now()
					if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
						t.Error(err)
					}
				}
				return nil
			})
			if tc.kill {
				if d := time.Since(killed); d > 3*time.Second {
					t.Errorf("the request failed %v after the kill", d)
				}
			}
			var be *backend.Error
			if !errors.As(err, &be) || be.Code != backend.CodeUnavailable || !strings.HasPrefix(be.Message, "backend process exited") {
				t.Fatalf("error %v, want a CodeUnavailable error saying the process exited", err)
			}
			waitGone(t, pid)

			text, _, err := generate(context.Background(), b, "words 4")
			if err != nil {
				t.Fatalf("the request after the crash: %v", err)
			}
			if text != "w0 w1 w2 w3" {
				t.Errorf("text after the crash %q", text)
			}
			if b.pid(t) == pid {
				t.Error("the same process serves after the crash")
			}
			if !tc.kill && !rec.waitFor("scripted crash") {
				t.Errorf("the panic is not in the log:\n%s", rec)
			}
		})
	}
}

func TestCloseKillsTheProcess(t *testing.T) {
	b, _ := launch(t, "serve", 5*time.Millisecond)
	pid := b.pid(t)
	started := make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := b.Generate(context.Background(), request("words 100000"), func(string) error {
			select {
			case <-started:
			default:
				close(started)
			}
			return nil
		})
		done <- err
	}()
	<-started
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if !gone(pid) {
		t.Error("the process runs after Close")
	}
	select {
	case err := <-done:
		var be *backend.Error
		if !errors.As(err, &be) || be.Code != backend.CodeUnavailable {
			t.Errorf("the generation in flight returned %v, want a CodeUnavailable error", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the generation in flight did not end")
	}
	if err := b.Health(context.Background()); err != errClosed {
		t.Errorf("health after Close: %v, want %v", err, errClosed)
	}
}

func TestStartFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  *exec.Cmd
		want []string
	}{
		{"exits at start", testCommand("exit", 0), []string{"exited before it was ready (exit status 3)", "loading model: open /models/x.bin"}},
		{"not a plugin", exec.Command("/bin/sh", "-c", "echo hello"), []string{"Unrecognized remote plugin message: hello"}},
		{"never ready", exec.Command("/bin/sh", "-c", "echo waiting >&2; exec sleep 60"), []string{"timeout while waiting for plugin to start", "waiting"}},
		{"no such binary", exec.Command("/nonexistent/backend"), []string{"/nonexistent/backend"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			b, err := Launch(tc.cmd, &Options{Logger: slog.New(slog.DiscardHandler), StartTimeout: time.Second})
			if err == nil {
				b.Close()
				t.Fatal("Launch succeeded")
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Launch took %v to fail", d)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestRestartBacksOff(t *testing.T) {
	starts := t.TempDir() + "/starts"
	b, rec := launch(t, "once", 0, envFile+"="+starts)
	p := b.cur
	syscall.Kill(p.pid, syscall.SIGKILL)
	<-p.exited.Done()
	// The first restart is immediate and fails; the next one is held off.
	for i, want := range []string{"backend process failed to start", "backend process keeps failing; next restart in"} {
		err := b.Health(context.Background())
		var be *backend.Error
		if !errors.As(err, &be) || be.Code != backend.CodeUnavailable || !strings.HasPrefix(be.Message, want) {
			t.Fatalf("call %d: %v, want a CodeUnavailable error saying %q", i, err, want)
		}
	}
	data, _ := os.ReadFile(starts)
	if n := strings.Count(string(data), "start"); n != 2 {
		t.Errorf("%d starts, want 2 (the first and one restart)", n)
	}
	if !rec.waitFor("model is gone") {
		t.Errorf("the failed start's standard error is not in the log:\n%s", rec)
	}
}

func TestOrphanedPluginExits(t *testing.T) {
	host := testCommand("host", 0)
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	defer host.Wait()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		host.Process.Kill()
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		host.Process.Kill()
		t.Fatalf("host printed %q", line)
	}
	if gone(pid) {
		t.Fatal("the plugin is not running")
	}
	host.Process.Kill()
	waitGone(t, pid)
}
