package web

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/settle"
)

// smallBuffers is a listener whose connections have a small send buffer, so that a
// client that stops reading blocks the server's writes after a few kilobytes, as a
// far client on a slow link would after the kernel's buffers fill.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		err = c.(*net.TCPConn).SetWriteBuffer(16 << 10)
	}
	return c, err
}

// stalledClient sends a streaming chat request over a TCP connection with a small
// receive buffer, reads the response's status line, and then reads nothing more.
// serveSmallBuffers serves h on loopback with smallBuffers and returns its address.
func serveSmallBuffers(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(h)
	hs.Listener = smallBuffers{l}
	hs.Start()
	t.Cleanup(hs.Close)
	return l.Addr().String()
}

func stalledClient(t *testing.T, addr, body string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10) })
		return err
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: cocoon\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		billedKey, len(body), body)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	status, err := bufio.NewReaderSize(conn, 64).ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		t.Fatalf("status line %q, %v", status, err)
	}
	return conn
}

// TestStalledStreamIsCut performs the attack of a streaming client that stops reading
// to hold a generation slot: with every write under Config.WriteTimeout, the stream is
// cut once the socket buffers are full, the generation is cancelled, the slot is free
// again within a few seconds (it used to be held for as long as the client liked), and
// the receipt charges only the completion tokens whose text was written.
func TestStalledStreamIsCut(t *testing.T) {
	var written atomic.Int64 // backend deltas the server wrote to the client
	b := newBilling(t, 1e9, func(c *Config, r *recorder) {
		c.MaxGenerations = 1
		c.WriteTimeout = 300 * time.Millisecond
		r.hook = func(ctx context.Context, n int, d string, emit func(string) error) error {
			// Each token's text a thousand times over: far more than the buffers hold.
			err := emit(strings.Repeat(d, 1000))
			if err == nil {
				written.Add(1)
			}
			return err
		}
	})
	start := time.Now()
	stalledClient(t, serveSmallBuffers(t, b.server.Handler()), `{"messages":[{"role":"user","content":""}],"temperature":0,"stream":true}`)
	var end generationEnd
	select {
	case end = <-b.backend.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the generation still runs 10 s after its client stopped reading")
	}
	if !errors.Is(end.err, errClientGone) || end.result.FinishReason != "cancelled" {
		t.Fatalf("the generation ended with %+v, %v; want it cut for its client", end.result, end.err)
	}
	for len(b.server.slots) != 0 {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the slot is still held 10 s after the client stopped reading")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("cut after %v, %d deltas written of %d tokens generated", time.Since(start).Round(time.Millisecond), written.Load(), end.result.Usage.CompletionTokens)

	b.backend.hook = nil
	if res := b.do("POST", "/v1/chat/completions", billedKey, chatBody); res.status != http.StatusOK {
		t.Fatalf("the next request: %d %s", res.status, res.body)
	}
	receipts, err := b.service.Receipts(context.Background(), b.account, 1, 10)
	if err != nil || len(receipts) != 2 {
		t.Fatalf("%d receipts, %v", len(receipts), err)
	}
	r := receipts[0]
	if r.Status != settle.StatusCancelled || r.Usage.CompletionTokens != uint64(written.Load()) ||
		r.Usage.CompletionTokens == 0 || r.Usage.CompletionTokens >= uint64(end.result.Usage.CompletionTokens) {
		t.Fatalf("receipt of the cut stream: %+v; want cancelled, charging the %d tokens written of %d generated",
			r, written.Load(), end.result.Usage.CompletionTokens)
	}
}

// BenchmarkStreamWrites is the cost of the write deadline on the hot path of a stream:
// one SSE event of a typical token's chunk written and flushed to a loopback client,
// without and with writeDeadlines, in the same run.
func BenchmarkStreamWrites(b *testing.B) {
	s := &Server{cfg: Config{WriteTimeout: 30 * time.Second}}
	event := sseFrame([]byte(`{"id":"chatcmpl-0123456789abcdef01234567","object":"chat.completion.chunk","created":1796400000,"model":"stories260K","choices":[{"index":0,"delta":{"content":" there"},"finish_reason":null}]}`))
	stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", contentTypeSSE)
		for range n {
			if _, err := w.Write(event); err != nil {
				return
			}
			if err := flushError(w); err != nil {
				return
			}
		}
	})
	for _, tc := range []struct {
		name    string
		handler http.Handler
	}{
		{"without-deadline", stream},
		{"with-deadline", s.writeDeadlines(stream)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			hs := httptest.NewServer(tc.handler)
			defer hs.Close()
			b.ResetTimer()
			res, err := http.Get(hs.URL + "?n=" + strconv.Itoa(b.N))
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if err != nil || n != int64(b.N*len(event)) {
				b.Fatalf("read %d bytes, %v", n, err)
			}
		})
	}
}
