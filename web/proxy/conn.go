package proxy

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/web/client"
)

// maxIdlePerHost is how many idle connections the proxy keeps to each host, so that
// concurrent requests reuse them rather than dial (net/http keeps 2).
const maxIdlePerHost = 64

// conn reaches one host through a web/client Client of its own: the evidence and
// price list GETs, their Retry-After waits and their errors are web/client's. For an
// https host every handshake verifies the host's RA-TLS certificate and pins the first
// verified TLS key; an http host is verified only by the evidence it serves and the
// signatures on its answers. Its transport is its own, so that closing its idle
// connections (when the host restarted) touches no other host's. Chat requests are
// the proxy's own (chat.go), sent once on http.
type conn struct {
	*client.Client
	base  string                // the host's base URL, without a trailing slash
	http  *http.Client          // the client's, which chat requests go through
	ratls *attest.RATLSVerifier // nil for an http host
}

// dial returns a conn to base that sends key (when set, to an https host) with its GETs and verifies an
// https host's handshakes against p and opts; each wait a host asks for is logged to
// log, and each connection's address is vetted by control when it is set
// (client.WithDialControl). It makes no request; it fails as client.New does.
func dial(base, key string, p attest.Policy, opts attest.EvidenceOptions, log io.Writer, control func(network, address string, c syscall.RawConn) error) (*conn, error) {
	if !strings.HasPrefix(base, "https://") {
		// The API key goes over RA-TLS only: over http a relay would read it, and
		// evidence and prices need no credential (chat requests seal theirs).
		key = ""
	}
	c, err := client.New(base, client.WithAPIKey(key), client.WithTrust(p, opts), client.WithMaxIdleConns(maxIdlePerHost), client.WithDialControl(control))
	if err != nil {
		return nil, err
	}
	c = c.WithRetryLog(log)
	return &conn{Client: c, base: c.BaseURL(), http: c.HTTPClient(), ratls: c.RATLS()}, nil
}

// close drops the conn's idle connections.
func (c *conn) close() { c.http.CloseIdleConnections() }

// notFound reports whether err is a host's 404: it lacks what was asked (a pipeline,
// or billing).
func notFound(err error) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}
