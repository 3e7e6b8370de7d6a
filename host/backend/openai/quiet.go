package openai

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptrace"
	"syscall"
)

// A caller that paces a stream (backend.WithIdle) sleeps in its idle hook while the
// server's tokens gather in the socket. The kernel still tells the runtime's network
// poller of each of them, and the poller wakes a thread for each, for nothing: the
// reader is asleep in the hook, not waiting on the socket; with a fast server that is
// a wake-up per token, the cost pacing exists to avoid. So, where the platform allows
// it, the socket is quieted for the length of the hook: its receive low-water mark
// (SO_RCVLOWAT, Linux) is raised to a full read buffer, so that nothing is reported
// until one has gathered, and lowered back to one byte before the next read, so that
// a reader waiting on a slow server still wakes at its first byte. Two system calls
// per hook, against one wake-up per token: BenchmarkStreamRelay's host costs about
// 0.5 µs less per relayed token (README, "The streaming relay").

// readBufferSize is what the Backend's own transport reads from the server at once,
// and the low-water mark of a quieted socket: what one read takes.
const readBufferSize = 64 << 10

// traceConn returns ctx with a trace that stores in *conn the connection the request
// is sent on.
func traceConn(ctx context.Context, conn *net.Conn) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { *conn = i.Conn }})
}

// socket is the server's end of a connection, as the kernel knows it.
type socket struct{ raw syscall.RawConn }

// quiet raises the socket's low-water mark to readBufferSize; it reports whether it
// did, and then wake must follow before the socket is read again.
func (s *socket) quiet() bool { return s.setLowWater(readBufferSize) == nil }

// wake lowers the socket's low-water mark back to one byte. If it fails, a read that
// waits for the server could wait for readBufferSize bytes: the stream must end.
func (s *socket) wake() error { return s.setLowWater(1) }

func (s *socket) setLowWater(n int) error {
	var err error
	if cerr := s.raw.Control(func(fd uintptr) { err = setLowWater(fd, n) }); cerr != nil {
		return cerr
	}
	return err
}

// quietable is the socket of a response that can be quieted: an HTTP/1 response (an
// HTTP/2 connection carries other streams, which must not wait for this one's
// reader) on TCP, plain or under TLS, on a platform with SO_RCVLOWAT; else nil.
func quietable(resp *http.Response, conn net.Conn) *socket {
	if !canQuiet || conn == nil || resp.ProtoMajor != 1 {
		return nil
	}
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return nil
	}
	return &socket{raw}
}
