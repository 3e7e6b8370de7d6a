package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cocoonhost/cocoon/host/backend"
	"github.com/cocoonhost/cocoon/host/backend/plugin/pb"
)

// Options tune Launch. The zero value is ready to use.
type Options struct {
	// Logger receives the plugin's standard error and output line by line, go-plugin's
	// messages, and process exits and restarts. Nil means slog.Default().
	Logger *slog.Logger
	// StartTimeout bounds how long a new process may take until it serves (loading a
	// model counts); 0 means one minute.
	StartTimeout time.Duration
}

// The restart policy (see Launch): the n-th failure in a row (n ≥ 2) holds off the next
// start for minBackoff·2^(n-2), at most maxBackoff; a process that ran for stableUptime
// ends a run of failures.
const (
	stableUptime = time.Minute
	minBackoff   = 250 * time.Millisecond
	maxBackoff   = 30 * time.Second
)

// SelfCommand returns a command that runs this program again with args, the way the host
// runs its built-in backends as plugins (cocoon-host backend ...). If the path of the
// running executable cannot be found, starting the command fails with that error.
func SelfCommand(args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		return &exec.Cmd{Args: append([]string{os.Args[0]}, args...), Err: fmt.Errorf("plugin: finding this program's executable: %w", err)}
	}
	return exec.Command(exe, args...)
}

// Launch starts the backend program that cmd describes and returns a backend.Backend
// that forwards to it. cmd is a template, not run itself: each start (the first, and
// every restart) runs a copy of its Path, Args, Env, Dir and SysProcAttr. As with
// exec.Cmd, a nil Env means the host's environment.
//
// Launch waits until the first process serves, so a program that cannot start (a wrong
// path, a missing model, a crash) is reported here, with its exit status and the end of
// its standard error, rather than on the first request.
//
// The returned backend is safe for concurrent use. When its process dies, calls in
// flight fail promptly with a backend.CodeUnavailable error, and the next call starts a
// new process. A process that dies within a minute of its start, or fails to start,
// counts as a failure in a row; from the second on, the next start waits 250ms,
// doubling up to 30s, and calls fail at once with CodeUnavailable meanwhile, so a
// binary that crashes at start is not restarted in a loop. Close shuts the process
// down: it asks the plugin to stop and kills it if it has not exited two seconds later.
func Launch(cmd *exec.Cmd, opts *Options) (backend.Backend, error) {
	if opts == nil {
		opts = &Options{}
	}
	c := &client{tmpl: cmd, log: opts.Logger, startTimeout: opts.StartTimeout}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.startTimeout == 0 {
		c.startTimeout = time.Minute
	}
	p, err := c.start()
	if err != nil {
		return nil, err
	}
	c.cur = p
	return c, nil
}

// client is the backend.Backend that Launch returns: a supervisor of one plugin process
// at a time.
type client struct {
	tmpl         *exec.Cmd
	log          *slog.Logger
	startTimeout time.Duration

	mu       sync.Mutex
	cur      *process      // the serving process; nil when none is
	starting chan struct{} // while a start is under way; closed when it ends
	fails    int           // failures in a row (see the restart policy)
	retryAt  time.Time     // no start before this
	closed   bool
	bg       sync.WaitGroup // starts and kills under way, which Close waits for
}

// process is one running plugin process.
type process struct {
	*conn
	gp      *goplugin.Client
	cmd     *exec.Cmd
	pid     int
	started time.Time
}

var errClosed = backend.Errorf(backend.CodeUnavailable, "backend is closed")

// start runs a new process and waits until it serves. The error holds details for the
// operator (exit status, the end of standard error); it is never shown to clients.
func (c *client) start() (*process, error) {
	cmd := &exec.Cmd{Path: c.tmpl.Path, Args: c.tmpl.Args, Env: c.tmpl.Env, Dir: c.tmpl.Dir,
		SysProcAttr: c.tmpl.SysProcAttr, Err: c.tmpl.Err}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	name := cmd.Path
	if len(cmd.Args) > 0 {
		name = cmd.Args[0]
	}
	log := c.log.With("cmd", name)
	stderr := &tailWriter{max: 512}
	gp := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          goplugin.PluginSet{pluginName: &grpcPlugin{}},
		Cmd:              cmd,
		SkipHostEnv:      true, // cmd.Env is the whole environment, as exec.Cmd has it
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     c.startTimeout,
		Stderr:           stderr,
		SyncStdout:       &lineLogger{log: func(l string) { log.Info(l, "stream", "stdout") }},
		SyncStderr:       &lineLogger{log: func(l string) { log.Info(l, "stream", "stderr") }},
		Logger:           newHCLogAdapter(log),
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes))},
	})
	var raw any
	rpc, err := gp.Client()
	if err == nil {
		raw, err = rpc.Dispense(pluginName)
	}
	if err != nil {
		gp.Kill() // after it returns, the process has been waited for
		var msg string
		if st := cmd.ProcessState; st != nil && st.Exited() && !st.Success() {
			// It failed by itself (not killed by go-plugin after the error). go-plugin's
			// error would guess at causes; the exit status and standard error say what
			// happened.
			msg = fmt.Sprintf("plugin: backend %s exited before it was ready (%s)", name, st)
		} else {
			first, _, _ := strings.Cut(err.Error(), "\n")
			msg = fmt.Sprintf("plugin: starting backend %s: %s", name, first)
		}
		if tail := strings.TrimSpace(stderr.String()); tail != "" {
			msg += fmt.Sprintf("; its standard error ends with: %q", tail)
		}
		return nil, errors.New(msg)
	}
	p := &process{conn: raw.(*conn), gp: gp, cmd: cmd, pid: cmd.Process.Pid, started: time.Now()}
	log.Info("backend process started", "pid", p.pid)
	return p, nil
}

// process returns the serving process, starting one if none serves. Concurrent callers
// share one start; each waits for it only as long as its ctx allows.
func (c *client) process(ctx context.Context) (*process, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errClosed
	}
	if p := c.cur; p != nil {
		if p.exited.Err() == nil {
			c.mu.Unlock()
			return p, nil
		}
		c.retireLocked(p)
	}
	if c.starting == nil {
		if wait := time.Until(c.retryAt); wait > 0 {
			c.mu.Unlock()
			return nil, backend.Errorf(backend.CodeUnavailable,
				"backend process keeps failing; next restart in %v", wait.Round(time.Millisecond))
		}
		c.starting = make(chan struct{})
		c.bg.Add(1)
		go c.restart(c.starting)
	}
	starting := c.starting
	c.mu.Unlock()

	select {
	case <-starting:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return nil, errClosed
	case c.cur == nil:
		return nil, backend.Errorf(backend.CodeUnavailable, "backend process failed to start")
	}
	return c.cur, nil
}

// restart starts a process in the background and installs it, then closes done.
func (c *client) restart(done chan struct{}) {
	defer c.bg.Done()
	p, err := c.start()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.starting = nil
	close(done)
	switch {
	case err != nil:
		c.failedLocked()
		c.log.Error("backend process failed to start", "error", err, "failures_in_a_row", c.fails)
	case c.closed:
		c.killLocked(p)
	default:
		c.cur = p
	}
}

// retire takes p out of service because it died (or its connection broke, which for a
// local process amounts to the same), and kills what is left of it.
func (c *client) retire(p *process) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.retireLocked(p)
}

func (c *client) retireLocked(p *process) {
	if c.cur != p {
		return // already retired
	}
	c.cur = nil
	up := time.Since(p.started)
	if up >= stableUptime {
		c.fails = 0
	}
	c.failedLocked()
	c.log.Warn("backend process exited", "pid", p.pid, "uptime", up.Round(time.Millisecond), "failures_in_a_row", c.fails)
	c.killLocked(p)
}

// failedLocked counts a failure and holds off the next start as the policy says.
func (c *client) failedLocked() {
	c.fails++
	var wait time.Duration
	if c.fails >= 2 {
		wait = maxBackoff
		if shift := c.fails - 2; shift < 16 {
			wait = min(minBackoff<<shift, maxBackoff)
		}
	}
	c.retryAt = time.Now().Add(wait)
}

// killLocked stops p in the background; Close waits for it.
func (c *client) killLocked(p *process) {
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		p.gp.Kill() // it has waited for the process, so ProcessState is set
		c.log.Info("backend process stopped", "pid", p.pid, "status", p.cmd.ProcessState.String())
	}()
}

// callContext returns a context for a call to p that is also cancelled when p exits, so
// that a call in flight ends as soon as go-plugin sees the process gone.
func callContext(ctx context.Context, p *process) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.exited, cancel)
	return ctx, func() { stop(); cancel() }
}

// callFailed turns an RPC's failure into the error the caller gets. ctx is the caller's.
// The contract carries backend errors in band, so a gRPC error means the process or
// the connection failed: the process is retired unless the caller merely gave up.
func (c *client) callFailed(ctx context.Context, p *process, method string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return errClosed
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled:
		c.log.Warn("backend call failed: the process is gone", "method", method, "pid", p.pid, "error", err)
		c.retire(p)
		return backend.Errorf(backend.CodeUnavailable, "backend process exited during the request; it is being restarted")
	case codes.Unimplemented:
		c.log.Error("backend plugin does not implement a method", "method", method, "pid", p.pid, "error", err)
		return backend.Errorf(backend.CodeUpstream, "backend plugin does not support %s", method)
	default:
		c.log.Error("backend call failed", "method", method, "pid", p.pid, "error", err)
		return backend.Errorf(backend.CodeUpstream, "backend plugin failed")
	}
}

func (c *client) Generate(ctx context.Context, req *backend.Request, emit func(delta string) error) (backend.Result, error) {
	p, err := c.process(ctx)
	if err != nil {
		return backend.Result{}, err
	}
	callCtx, cancel := callContext(ctx, p)
	defer cancel() // also stops the remote generation when emit fails
	stream, err := p.rpc.Generate(callCtx, requestToPB(req))
	if err != nil {
		return backend.Result{}, c.callFailed(ctx, p, "Generate", err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return backend.Result{}, c.callFailed(ctx, p, "Generate", err)
		}
		switch ev := ev.Event.(type) {
		case *pb.GenerateEvent_Delta:
			if err := emit(ev.Delta.GetText()); err != nil {
				return backend.Result{}, err
			}
		case *pb.GenerateEvent_Final:
			return resultFromPB(ev.Final), nil
		case *pb.GenerateEvent_Error:
			return backend.Result{}, errorFromPB(ev.Error)
		default:
			c.log.Error("backend plugin sent an event this host does not know", "pid", p.pid)
			return backend.Result{}, backend.Errorf(backend.CodeUpstream, "backend plugin sent an unknown event")
		}
	}
}

func (c *client) Models(ctx context.Context) ([]backend.Model, error) {
	p, err := c.process(ctx)
	if err != nil {
		return nil, err
	}
	callCtx, cancel := callContext(ctx, p)
	defer cancel()
	resp, err := p.rpc.Models(callCtx, &pb.ModelsRequest{})
	switch {
	case err != nil:
		return nil, c.callFailed(ctx, p, "Models", err)
	case resp.GetError() != nil:
		return nil, errorFromPB(resp.GetError())
	}
	return modelsFromPB(resp.GetModels()), nil
}

func (c *client) Health(ctx context.Context) error {
	p, err := c.process(ctx)
	if err != nil {
		return err
	}
	callCtx, cancel := callContext(ctx, p)
	defer cancel()
	resp, err := p.rpc.Health(callCtx, &pb.HealthRequest{})
	switch {
	case err != nil:
		return c.callFailed(ctx, p, "Health", err)
	case resp.GetError() != nil:
		return errorFromPB(resp.GetError())
	}
	return nil
}

// Close shuts the process down and waits until it has exited. Calls in flight fail with
// a backend.CodeUnavailable error.
func (c *client) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		if p := c.cur; p != nil {
			c.cur = nil
			c.killLocked(p)
		}
	}
	c.mu.Unlock()
	c.bg.Wait()
	return nil
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	max int

	mu  sync.Mutex
	buf []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	if over := len(w.buf) - w.max; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(p), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}
