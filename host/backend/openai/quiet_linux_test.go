package openai

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/host/backend"
)

// lowWater is the receive low-water mark of conn's socket.
func lowWater(t *testing.T, conn net.Conn) int {
	t.Helper()
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var gerr error
	raw.Control(func(fd uintptr) { n, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	return n
}

// TestQuietSocket checks what quiet.go promises of a paced stream: its socket is
// quieted (low-water mark readBufferSize) for the length of every idle call on an
// HTTP/1 connection, plain or under TLS, and never on HTTP/2, whose connection
// carries other streams; a token that arrives while the hook sleeps is read once it
// returns, and one that arrives after it, while the reader waits on the socket,
// wakes the reader at once (were the socket left quiet, the reader would wait for
// 64 KiB and the stream would end in the idle timeout); and the connection goes back
// to the transport's pool with its low-water mark at one byte.
func TestQuietSocket(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tls     bool
		http2   bool
		quieted bool
	}{
		{"http/1.1", false, false, true},
		{"http/1.1 over tls", true, false, true},
		{"http/2", true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			second, third := make(chan struct{}), make(chan struct{})
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				for i, ev := range []string{sseChunk("Once", ""), sseChunk(" upon", ""), sseChunk(" a time", "stop") + "data: [DONE]\n\n"} {
					if i > 0 {
						select {
						case <-[]chan struct{}{second, third}[i-1]:
						case <-r.Context().Done():
							return
						}
					}
					flush(w, ev)
				}
			}))
			srv.EnableHTTP2 = tc.http2
			if tc.tls {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			t.Cleanup(srv.Close)
			b, err := New(srv.URL+"/v1", WithHTTPClient(srv.Client()), WithIdleTimeout(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })

			var conn net.Conn
			ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { conn = i.Conn }})
			var deltas []string
			ctx = backend.WithIdle(ctx, func(bool) error {
				want := 1
				if tc.quieted && len(deltas) < 3 { // the call after [DONE] precedes no read
					want = readBufferSize
				}
				if got := lowWater(t, conn); got != want {
					t.Errorf("low-water mark in the idle hook after %q: %d, want %d", deltas, got, want)
				}
				switch len(deltas) {
				case 1: // the server's next token comes once the reader waits on the socket
					time.AfterFunc(100*time.Millisecond, func() { close(second) })
				case 2: // the last ones come while the hook sleeps
					close(third)
					time.Sleep(100 * time.Millisecond)
				}
				return nil
			})
			start := time.Now()
			res, err := b.Generate(ctx, storyRequest(), func(d string) error {
				deltas = append(deltas, d)
				return nil
			})
			if err != nil || len(deltas) != 3 || res.FinishReason != "stop" {
				t.Fatalf("Generate: %q, %+v, %v", deltas, res, err)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("the stream took %s: a token waited in a quiet socket", took)
			}
			if got := lowWater(t, conn); got != 1 {
				t.Errorf("low-water mark of the connection back in the pool: %d, want 1", got)
			}
		})
	}
}
