package web

import (
	"container/list"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Connection limits. A silent client costs the server a file descriptor, a goroutine and
// about 25 KiB of memory for as long as its connection stays open
// (BenchmarkSilentConnection); these bound how many it may hold.
const (
	// maxDefaultConnections bounds the default of Config.MaxConnections however high
	// RLIMIT_NOFILE is: 16,384 silent connections hold about 400 MiB.
	maxDefaultConnections = 16384
	// minConnections is the least default of Config.MaxConnections, for a process whose
	// RLIMIT_NOFILE is tiny.
	minConnections = 16
	// maxRefusing bounds the refused connections waiting for their request (see
	// refuse); more are closed after their answer without waiting.
	maxRefusing = 32
	// refuseWait is how long a refused connection that has sent nothing yet may take to
	// send its request before it is closed.
	refuseWait = 100 * time.Millisecond
)

// defaultMaxConnections is the default of Config.MaxConnections: three quarters of the
// file descriptors the process may open (the soft RLIMIT_NOFILE), the rest left to the
// ledger, the module store, the backend's and the chain's connections and the
// connections being refused; within [minConnections, maxDefaultConnections].
func defaultMaxConnections() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 1024 * 3 / 4 // the usual soft limit
	}
	return connectionsFor(rl.Cur)
}

// connectionsFor is the connection cap for a process that may open nofile descriptors.
func connectionsFor(nofile uint64) int {
	return int(max(minConnections, min(nofile-nofile/4, maxDefaultConnections)))
}

// connTracker counts and tracks a server's connections across its listeners, so that
// a cap on them holds, idle ones can be closed to make room, and Shutdown can cut and
// wait for the rest. Its state follows http.Server.ConnState.
type connTracker struct {
	max int

	mu    sync.Mutex
	open  int                       // connections holding a slot: accepted and not closed
	conns map[*trackedConn]struct{} // accepted and not yet reported closed by the server
	idle  list.List                 // *trackedConn between requests, idle longest first
	ended chan struct{}             // closed and replaced when conns becomes empty

	refused, evicted prometheus.Counter
}

func newConnTracker(max int) *connTracker {
	return &connTracker{max: max, conns: map[*trackedConn]struct{}{}, ended: make(chan struct{}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cocoon_http_connections_refused_total",
			Help: "Connections answered 503 and closed at once because Config.MaxConnections were open and none was idle.",
		}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cocoon_http_connections_idle_closed_total",
			Help: "Idle keep-alive connections closed to make room for a new connection at Config.MaxConnections.",
		}),
	}
}

// collectors are the tracker's metrics.
func (t *connTracker) collectors() []prometheus.Collector {
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cocoon_http_connections", Help: "HTTP connections open (at most Config.MaxConnections).",
	}, func() float64 {
		t.mu.Lock()
		defer t.mu.Unlock()
		return float64(t.open)
	})
	return []prometheus.Collector{open, t.refused, t.evicted}
}

// trackedConn is an accepted connection that holds a slot until it is closed.
type trackedConn struct {
	net.Conn
	t *connTracker
	// Under t.mu:
	idle     *list.Element // set while the server waits for its next request
	active   bool          // a request is being read or answered
	released bool          // its slot is free (closed, or handed to a new connection)
}

// Close closes the connection and frees its slot.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	t := c.t
	t.mu.Lock()
	if !c.released {
		c.released = true
		t.open--
	}
	t.mu.Unlock()
	return err
}

// admit gives a new connection a slot. At the cap it takes the slot of the connection
// idle longest, which the caller must close, and with none idle it refuses (nil, false).
func (t *connTracker) admit(c net.Conn) (admitted *trackedConn, evict *trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open >= t.max {
		front := t.idle.Front()
		if front == nil {
			return nil, nil
		}
		evict = front.Value.(*trackedConn)
		t.idle.Remove(front)
		evict.idle = nil
		evict.released = true // the new connection takes its slot
		t.open--
	}
	t.open++
	tc := &trackedConn{Conn: c, t: t}
	t.conns[tc] = struct{}{}
	return tc, evict
}

// connState follows the server's connections: idle ones become candidates to be closed
// at the cap; closed ones leave the tracker.
func (t *connTracker) connState(c net.Conn, state http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	tc, ok := c.(*trackedConn)
	if !ok {
		return // not accepted through Serve
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if tc.idle != nil {
		t.idle.Remove(tc.idle)
		tc.idle = nil
	}
	tc.active = state == http.StateActive
	switch state {
	case http.StateIdle:
		if !tc.released {
			tc.idle = t.idle.PushBack(tc)
		}
	case http.StateClosed, http.StateHijacked:
		delete(t.conns, tc)
		if len(t.conns) == 0 {
			close(t.ended)
			t.ended = make(chan struct{})
		}
	}
}

// active is the number of connections reading or answering a request.
func (t *connTracker) active() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for c := range t.conns {
		if c.active {
			n++
		}
	}
	return n
}

// expireReads makes every pending and future read of the open connections fail at
// once: a request still sending its body or headers ends, and so does a connection
// waiting for its next request. Writes are untouched, so that a request cut at
// shutdown can still send its last events.
func (t *connTracker) expireReads() {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for c := range t.conns {
		c.SetReadDeadline(now)
	}
}

// wait returns when the server has finished with every connection (each handler has
// returned and its connection is closed), or with ctx's error.
func (t *connTracker) wait(ctx context.Context) error {
	for {
		t.mu.Lock()
		n, ended := len(t.conns), t.ended
		t.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ended:
		case <-ctx.Done():
			return fmt.Errorf("%d connections still open: %w", n, ctx.Err())
		}
	}
}

// limitListener accepts connections for a Server within its tracker's cap. Over the cap
// it never blocks Accept (a full kernel backlog would leave every new client hanging,
// health checks included): it closes the connection idle longest to make room, and with
// none idle it refuses the new one: a plain HTTP listener answers it 503 with
// Retry-After, a TLS one closes it (an answer would need a handshake first).
type limitListener struct {
	net.Listener
	t     *connTracker
	plain bool
	// refusal is the 503 a plain listener answers over the cap.
	refusal []byte

	mu       sync.Mutex
	closed   bool
	refusing int
	wg       sync.WaitGroup // the refusing goroutines
	close    sync.Once
	closeErr error
}

func newLimitListener(l net.Listener, t *connTracker, plain bool) *limitListener {
	body := fmt.Sprintf(`{"error":{"message":"the host has %d connections open, its limit: retry shortly","type":"server_error","param":null,"code":"too_many_connections"}}`+"\n", t.max)
	refusal := fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	return &limitListener{Listener: l, t: t, plain: plain, refusal: []byte(refusal)}
}

// Accept returns the next connection that fits under the cap.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		admitted, evict := l.t.admit(c)
		if evict != nil {
			evict.Conn.Close() // its slot is already the new connection's
			l.t.evicted.Inc()
		}
		if admitted != nil {
			return admitted, nil
		}
		l.t.refused.Inc()
		l.refuse(c)
	}
}

// refuse answers c with the 503 and closes it, without ever holding up Accept. The
// answer must follow the client's request: an HTTP client drops a connection that
// speaks first (Go's logs "Unsolicited response received on idle HTTP channel"), and
// closing a connection whose request is unread resets it, which can destroy the answer
// before the client reads it. So refuse takes in what the client has sent already (an
// attacker's request, usually: it is sent at once, and the backlog holds the
// connection a while) and answers at once; a client that has sent nothing yet gets
// refuseWait to send its request head, in the background, at most maxRefusing at
// once, beyond which it is closed without an answer. A TLS listener closes c at once.
func (l *limitListener) refuse(c net.Conn) {
	if !l.plain {
		c.Close()
		return
	}
	var head [4 << 10]byte
	if readNow(c, head[:]) > 0 {
		writeNow(c, l.refusal) // a new connection's send buffer is empty: it takes the answer whole
		c.Close()
		return
	}
	l.mu.Lock()
	if l.closed || l.refusing >= maxRefusing {
		l.mu.Unlock()
		c.Close()
		return
	}
	l.refusing++
	l.wg.Add(1)
	l.mu.Unlock()
	go func() {
		defer func() {
			c.Close()
			l.mu.Lock()
			l.refusing--
			l.mu.Unlock()
			l.wg.Done()
		}()
		c.SetDeadline(time.Now().Add(refuseWait))
		if n, _ := c.Read(head[:]); n > 0 {
			c.Write(l.refusal)
		}
	}()
}

// readNow reads what c has received already, without waiting; it returns how many
// bytes it read. (A read deadline in the past would not read at all.)
func readNow(c net.Conn, p []byte) int {
	n := 0
	rawOnce(c, false, func(fd int) { n, _ = syscall.Read(fd, p) })
	return max(n, 0)
}

// writeNow writes what c's send buffer takes of p, without waiting.
func writeNow(c net.Conn, p []byte) {
	rawOnce(c, true, func(fd int) { syscall.Write(fd, p) })
}

// rawOnce runs op once on c's socket, which is non-blocking: op's read or write does
// what it can at once.
func rawOnce(c net.Conn, write bool, op func(fd int)) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	once := func(fd uintptr) bool { op(int(fd)); return true }
	if write {
		rc.Write(once)
	} else {
		rc.Read(once)
	}
}

// Close stops accepting and waits for the connections being refused (at most
// refuseWait). Connections already accepted are the server's to close.
func (l *limitListener) Close() error {
	l.close.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		l.closeErr = l.Listener.Close()
		l.wg.Wait()
	})
	return l.closeErr
}

// closeUnreadBody ends the connection of a request answered without its body read to
// the end, such as a 401 before authentication reads anything. net/http would otherwise
// read up to 256 KiB of that body, before it writes the answer (to keep the connection)
// and again when the request ends, under the request's read deadline: a client that
// sends headers, a bad credential and a trickle of body would hold its connection, and
// wait for its own 401, until the deadline. The connection is kept when the handler
// reads the body to its end.
func closeUnreadBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Connection", "close") // no read before the answer
		// A shallow copy: the server keeps its own view of the body, so that its check
		// after the handler still sees whether the body was read.
		body := &keepOnEOF{ReadCloser: r.Body, header: h}
		r = r.WithContext(r.Context())
		r.Body = body
		next.ServeHTTP(w, r)
		if body.header != nil {
			// What is left of the body is not wanted: net/http reads at most
			// 256 KiB of it, now within unreadBodyGrace. A client that sends that
			// much in time gets a lingering close (FIN, then a pause before the
			// close), so it reads the answer instead of a reset while it still
			// sends; one that trickles is closed when the grace ends.
			http.NewResponseController(w).SetReadDeadline(time.Now().Add(unreadBodyGrace))
		}
	})
}

// unreadBodyGrace bounds how long the server reads what is left of a body it did not
// want, before it closes the connection.
const unreadBodyGrace = 250 * time.Millisecond

// keepOnEOF takes back closeUnreadBody's "Connection: close" once the body is read to
// its end.
type keepOnEOF struct {
	io.ReadCloser
	header http.Header // nil once the body has ended
}

func (b *keepOnEOF) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && b.header != nil {
		b.header.Del("Connection")
		b.header = nil
	}
	return n, err
}

// readDeadline gives the request until d from now to send its body, in place of
// Config.RequestReadTimeout; a route with larger bodies mounts it after authentication,
// so that only a caller allowed to send them gets the time.
func readDeadline(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Only while the body is unread (closeUnreadBody's wrapper, short of its end):
			// net/http lifts the deadline when the body ends, and one set after that would
			// fail the connection's wait for its next request, cancelling this request's
			// context when it passes.
			if b, ok := r.Body.(*keepOnEOF); ok && b.header != nil {
				http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
			}
			next.ServeHTTP(w, r)
		})
	}
}
