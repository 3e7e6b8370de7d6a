package web

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestConnectionsFor(t *testing.T) {
	for _, tc := range []struct {
		nofile uint64
		want   int
	}{
		{0, minConnections},
		{20, minConnections},
		{256, 192},
		{1024, 768},
		{20000, 15000},
		{1 << 20, maxDefaultConnections},
		{^uint64(0), maxDefaultConnections}, // RLIM_INFINITY
	} {
		if got := connectionsFor(tc.nofile); got != tc.want {
			t.Errorf("connectionsFor(%d) = %d, want %d", tc.nofile, got, tc.want)
		}
	}
}

// serve runs f's server on a loopback listener (tlsConfig: over TLS) until the test
// ends, and returns its address.
func (f *fixture) serve() string {
	f.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- f.server.Serve(l) }()
	f.t.Cleanup(func() {
		f.server.http.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			f.t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

// silentClient opens a connection and sends the head of a request whose body it then
// withholds: headers announcing a body and one byte of it.
func silentClient(addr, path, key string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	auth := ""
	if key != "" {
		auth = "Authorization: Bearer " + key + "\r\n"
	}
	_, err = fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: cocoon\r\n%sContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", path, auth)
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// readAnswer reads one HTTP answer from c within d.
func readAnswer(c net.Conn, d time.Duration) (*http.Response, []byte, error) {
	c.SetReadDeadline(time.Now().Add(d))
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res, body, err
}

// closedWithin reports whether the server closes c (EOF or reset, after whatever it
// answers) within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// get sends GET path on a fresh connection and returns the status, within d.
func get(addr, path string, d time.Duration) (int, http.Header, error) {
	c := &http.Client{Timeout: d, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, nil, err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, res.Header, nil
}

// envFloodHelper makes TestConnectionFloodHelper serve, with RLIMIT_NOFILE lowered to
// its value, for TestConnectionFlood.
const envFloodHelper = "COCOON_WEB_TEST_FLOOD_NOFILE"

// TestConnectionFloodHelper is the server TestConnectionFlood attacks: a process that
// may open few files, with a default Config but a short read timeout.
func TestConnectionFloodHelper(t *testing.T) {
	nofile := os.Getenv(envFloodHelper)
	if nofile == "" {
		t.Skip("run by TestConnectionFlood")
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	fmt.Sscan(nofile, &rl.Cur)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *Config, _ *recorder) { c.RequestReadTimeout = time.Second })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("listening on %s with at most %d connections\n", l.Addr(), f.server.cfg.MaxConnections)
	f.server.Serve(l) // until the test kills the process
}

// TestConnectionFlood performs the attack of issue 10 item 7 on a host process whose
// RLIMIT_NOFILE is 256: 1,000 connections that send headers and one byte of body, then
// nothing. The host keeps the files it needs (its cap, from RLIMIT_NOFILE, is 192
// connections), /healthz on a fresh connection answers within 10 seconds (within
// milliseconds, but the host first refuses the connections queued before it, which
// takes seconds under the race detector on a loaded machine), the silent connections
// are closed once the read timeout (1 s) has passed, and then the host serves again.
// Without the cap, /healthz never answers: the silent connections hold every
// descriptor for good.
func TestConnectionFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 connections")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestConnectionFloodHelper$", "-test.v")
	cmd.Env = append(os.Environ(), envFloodHelper+"=256")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var addr string
	var max int
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		if _, err := fmt.Sscanf(lines.Text(), "listening on %s with at most %d connections", &addr, &max); err == nil {
			break
		}
	}
	go io.Copy(io.Discard, out)
	if addr == "" {
		cmd.Wait()
		t.Fatalf("the host did not start: %s", logs.String())
	}
	if max != connectionsFor(256) {
		t.Errorf("the host's cap is %d connections, want %d from RLIMIT_NOFILE 256", max, connectionsFor(256))
	}

	const attackers = 1000
	var silent []net.Conn
	for range attackers {
		c, err := silentClient(addr, "/v1/chat/completions", ownerKey)
		if err != nil {
			continue // a host out of files stops accepting: the backlog fills
		}
		silent = append(silent, c)
	}
	t.Cleanup(func() {
		for _, c := range silent {
			c.Close()
		}
	})
	opened := time.Now()
	status, header, err := get(addr, "/healthz", 10*time.Second)
	switch {
	case err != nil:
		t.Fatalf("/healthz during the flood: %v", err)
	case status == http.StatusServiceUnavailable && header.Get("Retry-After") == "":
		t.Errorf("/healthz during the flood: 503 without Retry-After")
	case status != http.StatusOK && status != http.StatusServiceUnavailable:
		t.Errorf("/healthz during the flood: %d", status)
	}
	t.Logf("%d silent connections opened; /healthz answered %d in %s", len(silent), status, time.Since(opened))

	// Every silent connection is answered or closed by the host: at once when over the
	// cap, after the read timeout otherwise; the clients never close them.
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := 0
	for _, c := range silent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !closedWithin(c, time.Until(opened.Add(15*time.Second))) {
				mu.Lock()
				open++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if open > 0 {
		t.Errorf("%d of %d silent connections still open 15 s after the flood, with a read timeout of 1 s", open, len(silent))
	}
	if status, _, err := get(addr, "/healthz", 10*time.Second); err != nil || status != http.StatusOK {
		t.Errorf("/healthz after the flood: %d, %v", status, err)
	}
}

// tlsConfig is a self-signed certificate for 127.0.0.1.
func tlsConfig(t *testing.T) *tls.Config {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}}}
}

// TestConnectionCap: at the cap the server closes the connection idle longest for a new
// one; with none idle it refuses the new one at once, with a 503 and Retry-After over
// plain HTTP and by closing it over TLS, and serves again when a connection closes.
func TestConnectionCap(t *testing.T) {
	const cap = 3
	for _, secure := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "tls"}[secure], func(t *testing.T) {
			f := newFixture(t, func(c *Config, _ *recorder) {
				c.MaxConnections = cap
				if secure {
					c.TLS = tlsConfig(t)
				}
			})
			addr := f.serve()
			dial := func() (net.Conn, error) {
				if secure {
					return tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
				}
				return net.DialTimeout("tcp", addr, 2*time.Second)
			}
			// send opens a connection that the test closes at its end, and sends head.
			send := func(head string) net.Conn {
				c, err := dial()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				io.WriteString(c, head)
				return c
			}
			// Keep-alive connections, idle after one request each.
			var idle []net.Conn
			for range cap {
				c := send("GET /healthz HTTP/1.1\r\nHost: cocoon\r\n\r\n")
				if res, _, err := readAnswer(c, 2*time.Second); err != nil || res.StatusCode != 200 {
					t.Fatalf("keep-alive request: %v", err)
				}
				idle = append(idle, c)
				// The server marks a connection idle after it has sent the answer: wait for
				// it, so that the order of the connections is known.
				for f.server.conns.idleCount() < len(idle) {
					time.Sleep(time.Millisecond)
				}
			}
			// A new connection is served; the one idle longest is closed for it.
			c, err := dial()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: cocoon\r\nConnection: close\r\n\r\n")
			if res, _, err := readAnswer(c, 2*time.Second); err != nil || res.StatusCode != 200 {
				t.Fatalf("a new connection at the cap with idle ones: %v", err)
			}
			c.Close()
			if !closedWithin(idle[0], 2*time.Second) {
				t.Error("the connection idle longest was not closed for the new one")
			}
			if closedWithin(idle[1], 100*time.Millisecond) {
				t.Error("another idle connection was closed too")
			}
			for _, c := range idle {
				c.Close()
			}
			for f.server.conns.openCount() > 0 {
				time.Sleep(time.Millisecond)
			}

			// Busy connections: requests whose bodies are still coming.
			var busy []net.Conn
			for range cap {
				busy = append(busy, send("POST /v1/chat/completions HTTP/1.1\r\nHost: cocoon\r\nAuthorization: Bearer "+ownerKey+"\r\nContent-Length: 1000\r\n\r\n{"))
			}
			time.Sleep(100 * time.Millisecond) // the server reads their heads and starts waiting
			start := time.Now()
			c, err = dial()
			switch {
			case secure && err == nil:
				c.Close()
				t.Error("a TLS connection over the cap completed its handshake")
			case secure:
			case err != nil:
				t.Fatal(err)
			default:
				// A request sent right after connecting (the answer follows it), and one
				// sent by a client that has sent its request long before it was accepted.
				io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: cocoon\r\n\r\n")
				res, body, err := readAnswer(c, 2*time.Second)
				c.Close()
				if err != nil || res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") != "1" ||
					!strings.Contains(string(body), `"code":"too_many_connections"`) {
					t.Fatalf("over the cap: %v, %v %s", err, res, body)
				}
				status, header, err := get(addr, "/healthz", time.Second)
				if err != nil || status != http.StatusServiceUnavailable || header.Get("Retry-After") != "1" {
					t.Errorf("over the cap, through net/http: %d, %v", status, err)
				}
				// A client that sends nothing is closed without an answer.
				c, err = dial()
				if err != nil {
					t.Fatal(err)
				}
				if res, _, err := readAnswer(c, 2*time.Second); res != nil || !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("over the cap, a silent client: %v, %v; want it closed", res, err)
				}
				c.Close()
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("refusing took %s", d)
			}
			busy[0].Close()
			// The slot is free once the server has seen the close.
			deadline := time.Now().Add(5 * time.Second)
			for {
				var status int
				var err error
				if secure {
					status, err = tlsGet(addr)
				} else {
					status, _, err = get(addr, "/healthz", time.Second)
				}
				if err == nil && status == http.StatusOK {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("a slot closed by its client is not free again: %d %v", status, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			// Refusals: the one above, and those of the loop until the server saw the close.
			m := string(f.do("GET", "/metrics", "", nil).body)
			if !strings.Contains(m, "cocoon_http_connections_idle_closed_total 1\n") || !regexp.MustCompile(`cocoon_http_connections_refused_total [1-9]`).MatchString(m) {
				t.Errorf("metrics do not count one idle connection closed and the refusals:\n%s", m)
			}
		})
	}
}

// tlsGet sends GET /healthz over TLS on a fresh connection.
func tlsGet(addr string) (int, error) {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	res, err := c.Get("https://" + addr + "/healthz")
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

// TestUnreadBody: a request refused before its body is read is answered at once and
// its connection closed, without waiting for a body the server does not want (the read
// timeout here is a minute); a request whose body is read keeps its connection.
func TestUnreadBody(t *testing.T) {
	f := newFixture(t)
	addr := f.serve()
	for _, tc := range []struct {
		name, path, key string
		status          int
	}{
		{"no credential", "/v1/chat/completions", "", http.StatusUnauthorized},
		{"bad key", "/v1/chat/completions", "sk-wrong", http.StatusUnauthorized},
		{"bad Telegram data", "/v1/pipelines", "tma x", http.StatusUnauthorized},
		{"no route", "/v2/nothing", ownerKey, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := silentClient(addr, tc.path, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			res, _, err := readAnswer(c, 2*time.Second)
			if err != nil || res.StatusCode != tc.status || !res.Close {
				t.Fatalf("answer %v, %v; want %d with Connection: close at once", res, err, tc.status)
			}
			if !closedWithin(c, 2*time.Second) {
				t.Error("the connection stays open after the answer")
			}
		})
	}
	t.Run("body read", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		const body = `{"messages":[{"role":"user","content":"x"}],"max_tokens":2}`
		for i := range 2 {
			fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: cocoon\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", ownerKey, len(body), body)
			res, _, err := readAnswer(c, 5*time.Second)
			if err != nil || res.StatusCode != 200 || res.Close {
				t.Fatalf("request %d on one connection: %v, %v", i+1, res, err)
			}
		}
	})
}

// TestRequestReadTimeout: a body that stops arriving ends its request with a 408 and
// its connection after Config.RequestReadTimeout; an owner's upload has
// Config.UploadReadTimeout instead; and the timeout never cuts an answer, such as a
// stream that outlasts it.
func TestRequestReadTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	f := newFixture(t, func(c *Config, r *recorder) {
		c.RequestReadTimeout = timeout
		c.UploadReadTimeout = time.Minute
		r.hook = func(ctx context.Context, n int, d string, emit func(string) error) error {
			time.Sleep(100 * time.Millisecond) // 8 deltas: a stream of 0.8 s
			return emit(d)
		}
	})
	addr := f.serve()

	t.Run("silent body", func(t *testing.T) {
		c, err := silentClient(addr, "/v1/chat/completions", ownerKey)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		res, body, err := readAnswer(c, 5*time.Second)
		if err != nil || res.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), `"code":"request_timeout"`) {
			t.Fatalf("a body that stops: %v, %v %s", err, res, body)
		}
		if d := time.Since(start); d < timeout/2 || d > 3*time.Second {
			t.Errorf("answered after %s, with a read timeout of %s", d, timeout)
		}
		if !closedWithin(c, 2*time.Second) {
			t.Error("the connection stays open")
		}
	})

	// A body in two halves 0.7 s apart: slower than RequestReadTimeout allows.
	slowBody := func(path, key, body string) (*http.Response, []byte, error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		defer c.Close()
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: cocoon\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", path, key, len(body), body[:len(body)/2])
		time.Sleep(700 * time.Millisecond)
		io.WriteString(c, body[len(body)/2:])
		return readAnswer(c, 5*time.Second)
	}
	t.Run("slow upload", func(t *testing.T) {
		body := fmt.Sprintf(`{"manifest":%s}`, emptyPipeline)
		res, b, err := slowBody("/v1/pipelines", ownerKey, body)
		if err != nil || res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusOK {
			t.Errorf("an owner's slow upload: %v, %v %s", err, res, b)
		}
		res, b, err = slowBody("/v1/chat/completions", ownerKey, `{"messages":[{"role":"user","content":"x"}],"max_tokens":2}`)
		if err != nil || res.StatusCode != http.StatusRequestTimeout {
			t.Errorf("a chat request as slow: %v, %v %s", err, res, b)
		}
	})

	t.Run("long stream", func(t *testing.T) {
		res := f.streamOver(t, addr, ownerKey, `{"messages":[{"role":"user","content":"x"}],"max_tokens":8,"stream":true}`)
		if !res.done || len(res.chunks) < 8 {
			t.Errorf("a stream longer than the read timeout was cut: %+v", res)
		}
	})
}

// streamOver sends a streaming chat request with key to addr and reads the whole
// stream. It may run in a goroutine of its own.
func (f *fixture) streamOver(t *testing.T, addr, key, body string) streamed {
	req, err := http.NewRequest("POST", "http://"+addr+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return streamed{}
	}
	setAuth(req, key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return streamed{}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Errorf("stream: %v after %s", err, b)
	}
	return parseSSE(t, b)
}

// openCount is the number of connections holding a slot.
func (t *connTracker) openCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.open
}

// idleCount is the number of idle connections.
func (t *connTracker) idleCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.idle.Len()
}

// BenchmarkKeepAlive is a keep-alive GET /healthz through Serve, whose connection cap
// follows every request's state changes, against the same handler under a bare
// http.Server, in the same run.
func BenchmarkKeepAlive(b *testing.B) {
	f := newFixture(b)
	for _, tc := range []struct {
		name  string
		serve func(net.Listener) error
	}{
		{"bare", (&http.Server{Handler: f.server.Handler()}).Serve},
		{"capped", f.server.Serve},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			go tc.serve(l)
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for b.Loop() {
				io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: cocoon\r\n\r\n")
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		})
	}
}

// BenchmarkSilentConnection reports the memory a silent connection holds (a request
// head and one byte of body, then nothing) in heap and stacks, server and client side
// together, per connection. Run it with a fixed count: -benchtime 2000x.
func BenchmarkSilentConnection(b *testing.B) {
	f := newFixture(b, func(c *Config, _ *recorder) { c.MaxConnections = 1 << 20 })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go f.server.Serve(l)
	b.Cleanup(func() { f.server.http.Close() })
	inUse := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse + m.StackInuse
	}
	before := inUse()
	conns := make([]net.Conn, 0, b.N)
	for b.Loop() {
		c, err := silentClient(l.Addr().String(), "/v1/chat/completions", ownerKey)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	for f.server.conns.active() < len(conns) {
		time.Sleep(10 * time.Millisecond) // every request is waiting for its body
	}
	b.ReportMetric(float64(inUse()-before)/float64(len(conns)), "B/conn")
	for _, c := range conns {
		c.Close()
	}
}
