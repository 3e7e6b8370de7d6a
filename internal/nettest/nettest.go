// Package nettest helps tests that need network addresses.
package nettest

import (
	"net"
	"testing"
)

// FreeLoopback returns a loopback address (127.0.0.1:PORT) with a port nothing listens
// on now, for a server that listens by address rather than taking a listener. Another
// process may take the port before the server does; the server's listen then fails.
func FreeLoopback(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
