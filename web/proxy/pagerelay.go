package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"time"

	"github.com/cocoonhost/cocoon/web/client"
)

// pageRelayTimeout bounds one relayed request: a fresh quote takes up to a second on
// TDX, and the host may be far.
const pageRelayTimeout = time.Minute

// The codes of the page relay's own answers, besides CodeInvalidRequest (400, a
// request the host URL cannot take).
const (
	// CodeNotLoopback (421): the relay listens on a loopback address and the request
	// names it by another name.
	CodeNotLoopback = "not_loopback"
	// CodeMethodNotAllowed (405): the page only reads evidence; nothing else is relayed.
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeHostUnreachable (502): the host could not be reached, or refused the TLS
	// handshake's verification.
	CodeHostUnreachable = "host_unreachable"
)

// relayedPath matches the host routes the reviewer's page reads.
var relayedPath = regexp.MustCompile(`^/v1/(attestation|pipelines|pipelines/[0-9a-f]{64}/attestation)$`)

// PageRelay is `cocoon verify --web`'s local server: it serves the reviewer's page
// from the reviewer's own build and relays the page's evidence requests (GET
// /v1/attestation, /v1/pipelines, /v1/pipelines/{id}/attestation) to one host, so
// that the page verifies the host in the browser and nothing the host serves runs
// there. It verifies nothing itself: the page does. The host's answer reaches the page
// as it is (status, Content-Type, Retry-After, at most MaxBody bytes), with the page's
// Authorization or else the client's API key; anything else is the page's, or
// refused. Neither credential crosses a network in plaintext (client.Client.Get): to
// an http host off this machine the page's Authorization is refused (400, nothing
// sent) and the client's key left off. Each relayed request is sent once and bounded
// by a minute.
type PageRelay struct {
	c    *client.Client
	page http.Handler
	// loopback is set when the relay listens on a loopback address: it then answers
	// only requests whose Host is a loopback name, so that a web site cannot rebind
	// its own name to this address (DNS rebinding) and read what the relay fetches
	// with the reviewer's API key.
	loopback bool
	port     string
}

// NewPageRelay returns the relay to the host of c that serves page for every path it
// does not relay, listening on addr.
func NewPageRelay(c *client.Client, page http.Handler, addr net.Addr) *PageRelay {
	r := &PageRelay{c: c, page: page}
	if tcp, ok := addr.(*net.TCPAddr); ok {
		r.loopback, r.port = tcp.IP.IsLoopback(), fmt.Sprint(tcp.Port)
	}
	return r
}

func (pr *PageRelay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if pr.loopback && !pr.loopbackHost(r.Host) {
		(&Error{http.StatusMisdirectedRequest, CodeNotLoopback,
			fmt.Sprintf("this page is served to loopback names only (http://127.0.0.1:%s/), not to %q", pr.port, r.Host)}).Write(w)
		return
	}
	if !relayedPath.MatchString(r.URL.Path) {
		pr.page.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodGet {
		(&Error{http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method + " " + r.URL.Path + ": the page only reads evidence"}).Write(w)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), pageRelayTimeout)
	defer cancel()
	resp, err := pr.c.Get(ctx, r.URL.Path+"?"+r.URL.RawQuery, r.Header.Get("Authorization"))
	var clientErr *client.Error
	switch {
	case errors.As(err, &clientErr) && clientErr.Code == client.CodeInvalid:
		(&Error{http.StatusBadRequest, CodeInvalidRequest, err.Error()}).Write(w)
		return
	case err != nil:
		(&Error{http.StatusBadGateway, CodeHostUnreachable, err.Error()}).Write(w)
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Cache-Control", "no-store")
	for _, name := range []string{"Content-Type", "Retry-After"} {
		if v := resp.Header.Get(name); v != "" {
			w.Header().Set(name, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, io.LimitReader(resp.Body, MaxBody))
}

// loopbackHost reports whether a request's Host names this relay by a loopback name.
func (pr *PageRelay) loopbackHost(h string) bool {
	name, port, err := net.SplitHostPort(h)
	if err != nil || port != pr.port {
		return false
	}
	if name == "localhost" {
		return true
	}
	ip := net.ParseIP(name)
	return ip != nil && ip.IsLoopback()
}
