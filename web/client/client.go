package client

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/web/e2e"
)

// DefaultHost is where `cocoon-host serve` listens by default.
const DefaultHost = "http://127.0.0.1:8080"

// Client calls the web API of one host. It is safe for concurrent use and immutable:
// WithRetryLog returns a copy. For an https host every TLS handshake verifies the
// host's RA-TLS certificate against the client's trust (WithTrust), and the first
// verified TLS key is pinned for the client's life, so that every request of one
// Client reaches the host that was verified; it follows no redirect (refuseRedirect),
// which would send a request elsewhere. Each Client has a transport of its own
// (its copies share it): HTTPClient().CloseIdleConnections closes its idle connections
// and no other Client's, as a router does for a host that restarted.
type Client struct {
	base string // without a trailing slash
	key  string
	http *http.Client
	// ratls verifies an https host inside each TLS handshake and pins its key; it is
	// nil for an http host, which nothing verifies.
	ratls *attest.RATLSVerifier
	// loopback is set when the host URL names this machine, so that a request to it
	// crosses no network (inClearError); New decides it once.
	loopback bool
	// policy and evidence are what the host's evidence is verified against; trusted
	// is set when they were given (WithTrust) rather than the defaults.
	policy   attest.Policy
	evidence attest.EvidenceOptions
	trusted  bool
	// retryLog, when set, is told of the waits the host asks for (do).
	retryLog io.Writer
	// maxIdle bounds the idle connections kept to the host (WithMaxIdleConns); 0 is
	// net/http's default, 2.
	maxIdle int
	// plaintext sends chat requests unsealed to a host whose verified evidence has
	// end-to-end keys (Client.WithPlaintext).
	plaintext bool
	// sessions seals chat requests, under the end-to-end session the host granted when
	// there is one (web/E2E.md §8); shared by the client's copies.
	sessions *e2e.Sessions
	// dialControl, when set, vets each connection's address (WithDialControl).
	dialControl func(network, address string, c syscall.RawConn) error
}

// Option configures a Client built by New.
type Option func(*Client)

// WithAPIKey sends key as the bearer token of every request not signed for an escrow
// (Signer). Evidence and price-list requests send it only over RA-TLS (GetBytes), so
// a client may verify a host before it has a key; every other request sends it to an
// http host only sealed (Chat), or to this machine, and is refused before it is sent
// otherwise (plaintextCredentialError), but for Get, which relays and goes without it.
func WithAPIKey(key string) Option { return func(c *Client) { c.key = key } }

// WithTrust is what the host's evidence is verified against: the measurements policy
// p accepts, and opts's simulator root and Intel collateral. Without it the policy
// allows any measurement, simulated evidence is refused and the TCB status is not
// evaluated. For an https host it is what each TLS handshake checks; for any host it is
// what VerifyBoot, AttestedSettlementKey, VerifiedPriceList and Chat check.
func WithTrust(p attest.Policy, opts attest.EvidenceOptions) Option {
	return func(c *Client) { c.policy, c.evidence, c.trusted = p, opts, true }
}

// WithMaxIdleConns keeps up to n idle connections to the host for reuse (net/http keeps
// 2), for a client that sends many requests at once, such as a router in front of the
// host: above n, each request that finds no idle connection dials a new one. Cost: up
// to n open sockets while idle, each closed after 90 s unused.
func WithMaxIdleConns(n int) Option { return func(c *Client) { c.maxIdle = n } }

// WithDialControl has control vet every connection the client makes, after the name is
// resolved and before the connection is made: it gets the network and the "ip:port"
// dialed (net.Dialer.Control), and an error refuses that connection (the request fails
// as TransportError words it, wrapping the error). Every connection is vetted, a
// reconnection's included (the client follows no redirect), at the address actually dialed, so a name
// whose DNS answer changes after an earlier check cannot bypass it. Such a client
// ignores HTTP_PROXY and its kin: through a proxy only the proxy's address would be
// vetted.
func WithDialControl(control func(network, address string, c syscall.RawConn) error) Option {
	return func(c *Client) { c.dialControl = control }
}

// New returns a client of the host at baseURL, an http:// or https:// URL. For https
// it builds the RA-TLS verifier of the client's trust; it fails with CodeInvalid when
// baseURL is not http or https, carries a user name or password (net/http would send
// it as a Basic credential with every request, over http in the clear, and every
// error quotes the URL; the message does not repeat it), or the trust is not usable (a
// policy that does not parse). It makes no request.
func New(baseURL string, opts ...Option) (*Client, error) {
	if !strings.HasPrefix(baseURL, "http://") && !strings.HasPrefix(baseURL, "https://") {
		return nil, &Error{Code: CodeInvalid, Message: fmt.Sprintf("%q is not a host URL: want one such as %s", baseURL, DefaultHost)}
	}
	u, err := url.Parse(baseURL)
	if err == nil && u.User != nil {
		return nil, &Error{Code: CodeInvalid, Message: fmt.Sprintf("the host URL %s://…@%s carries a user name or password, which would go with every request as a credential: "+
			"give the host without it, and an API key as such (--api-key)", u.Scheme, u.Host)}
	}
	c := &Client{base: strings.TrimSuffix(baseURL, "/"), sessions: e2e.NewSessions(), loopback: err == nil && loopbackName(u.Hostname())}
	for _, o := range opts {
		o(c)
	}
	// A transport of its own, so that its idle connections are this client's alone;
	// dial bounds as net/http's default transport. No TLS handshake timeout: an RA-TLS
	// handshake verifies a quote, with Intel's collateral fetched online if asked.
	t := &http.Transport{Proxy: http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: c.dialControl}).DialContext,
		MaxIdleConnsPerHost: c.maxIdle, IdleConnTimeout: 90 * time.Second}
	if c.dialControl != nil {
		t.Proxy = nil
	}
	c.http = &http.Client{Transport: t, CheckRedirect: refuseRedirect}
	if strings.HasPrefix(baseURL, "https://") {
		v, err := attest.NewRATLSVerifier(c.policy, c.evidence)
		if err != nil {
			return nil, err
		}
		c.ratls, t.TLSClientConfig = v, v.TLSConfig()
	}
	return c, nil
}

// redirectError is what refuseRedirect stops a redirect with.
type redirectError struct {
	status   string // the redirect's, "307 Temporary Redirect"
	location string // where it sends the request
}

func (e *redirectError) Error() string {
	return fmt.Sprintf("answered %s with a redirect to %s", e.status, e.location)
}

// refuseRedirect is the client's CheckRedirect: it follows no redirect. A 3xx from a
// relay, or a misconfigured or hostile host, would have net/http send the request
// again to its Location: a 307 or 308 with its body (a sealed envelope, a signed
// request) and, to the same host name, its Authorization (the API key); an https host
// could send it to an http URL, or any host to another. No flow of the host's API
// redirects. TransportError words the refusal as CodeBadAnswer, naming the Location.
func refuseRedirect(req *http.Request, _ []*http.Request) error {
	status := "a 3xx"
	if req.Response != nil {
		status = req.Response.Status
	}
	return &redirectError{status: status, location: req.URL.Redacted()}
}

// WithRetryLog returns a copy of c that reports to w each wait a host asks for
// (Retry-After). The copy shares c's connections and pinned key.
func (c *Client) WithRetryLog(w io.Writer) *Client {
	copied := *c
	copied.retryLog = w
	return &copied
}

// WithPlaintext returns a copy of c, sharing its connections and pinned key, that sends
// chat requests in plaintext even where Chat would seal them to the host's attested
// end-to-end key (web/E2E.md): whatever relays them then reads the prompt, the answer
// and the credential.
func (c *Client) WithPlaintext() *Client {
	copied := *c
	copied.plaintext = true
	return &copied
}

// Close closes the client's idle connections, c's copies' alike, as they share them.
// The client still works after Close. It does not fail.
func (c *Client) Close() {
	c.http.CloseIdleConnections()
}

// BaseURL is the host's base URL, without a trailing slash.
func (c *Client) BaseURL() string { return c.base }

// HTTPClient is the http.Client the client sends with: for an https host, its
// handshakes verify the host's RA-TLS certificate and accept only the pinned key. Use
// it for requests this package does not make, and TransportError to word its errors.
func (c *Client) HTTPClient() *http.Client { return c.http }

// RATLS is the verifier of an https host's TLS handshakes, nil for an http host.
func (c *Client) RATLS() *attest.RATLSVerifier { return c.ratls }

// Trusted reports whether the client was given a trust (WithTrust), so that it can
// verify an http host's evidence itself.
func (c *Client) Trusted() bool { return c.trusted }

// TransportError words an error of HTTPClient().Do: a handshake the RA-TLS verifier
// refused is CodeNotVerified ("refusing the host"), a redirect (which the client never
// follows) CodeBadAnswer naming where it pointed, anything else CodeUnreachable.
func (c *Client) TransportError(err error) error {
	cause := cmp.Or(errors.Unwrap(err), err) // the url.Error's cause, or a context's error
	if errors.Is(err, attest.ErrRATLS) {
		return &Error{Code: CodeNotVerified, Message: fmt.Sprintf("refusing the host at %s: %v", c.base, cause), Err: cause}
	}
	if r := (*redirectError)(nil); errors.As(err, &r) {
		return &Error{Code: CodeBadAnswer, Err: r, Message: fmt.Sprintf("the host at %s %v: refused, and nothing was sent there: "+
			"a Cocoon host's API routes do not redirect, and following it would send the request, its credential or its envelope to another URL than the host's", c.base, r)}
	}
	return &Error{Code: CodeUnreachable, Err: cause,
		Message: fmt.Sprintf("cannot reach the host at %s (is cocoon-host serve running there? see --host and COCOON_HOST): %v", c.base, cause)}
}

// call sends a request with body as JSON (none if nil) and the API key, and decodes
// the JSON of a 2xx answer into out. Any other status is a CodeRefused error that
// carries the host's message.
func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return err
		}
	}
	resp, err := c.send(ctx, method, path, b, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeAnswer(resp.Body, method, path, out)
}

// decodeAnswer decodes the JSON answer to method path into out.
func decodeAnswer(body io.Reader, method, path string, out any) error {
	if err := json.NewDecoder(body).Decode(out); err != nil {
		return &Error{Code: CodeBadAnswer, Err: err, Message: fmt.Sprintf("the host's answer to %s %s is not the expected JSON: %v", method, path, err)}
	}
	return nil
}

// send makes a request with body (nil for none), signed by s, or with the API key when
// s is nil, and returns the response when its status is 2xx; any other status is a
// CodeRefused error that carries the host's message.
func (c *Client) send(ctx context.Context, method, path string, body []byte, s *Signer) (*http.Response, error) {
	resp, err := c.request(ctx, method, path, body, s)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, responseError(resp)
	}
	return resp, nil
}

// request makes a request as send does and returns the host's answer, whatever its
// status. It refuses to send a credential in the clear (plaintextCredentialError).
func (c *Client) request(ctx context.Context, method, path string, body []byte, s *Signer) (*http.Response, error) {
	if err := c.plaintextCredentialError(s); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, &Error{Code: CodeInvalid, Err: err, Message: fmt.Sprintf("--host %q: %v", c.base, err)}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.do(req, func(r *http.Request) {
		if s != nil {
			s.Sign(r, body)
		} else if c.key != "" {
			r.Header.Set("Authorization", "Bearer "+c.key)
		}
	})
	if err != nil {
		return nil, c.TransportError(err)
	}
	return resp, nil
}

// Get sends GET path (with its query) to the host once, with authorization as its
// Authorization header, or the client's API key when authorization is empty and the
// client has one and may send it (inClearError: else the request goes without it, as
// evidence needs none; the host then lists no pipelines, 401), and returns the answer
// whatever its status. It does not retry: it relays for another client (the reviewer's
// page), which decides. It fails as TransportError words it, and with CodeInvalid,
// before anything is sent, when authorization is set and would cross the network in
// plaintext (inClearError): the other client's credential is not the relay's to drop
// or leak.
func (c *Client) Get(ctx context.Context, pathAndQuery, authorization string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+pathAndQuery, nil)
	if err != nil {
		return nil, &Error{Code: CodeInvalid, Err: err, Message: err.Error()}
	}
	if authorization != "" {
		if err := c.inClearError("Authorization header"); err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", authorization)
	} else if c.key != "" && c.inClearError("API key") == nil {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.TransportError(err)
	}
	return resp, nil
}

// plaintextCredentialError refuses to send a request's credential (the API key,
// or s's signature headers when s is set) outside an end-to-end envelope where it
// would cross the network in plaintext (inClearError); a request with no credential
// is nil.
func (c *Client) plaintextCredentialError(s *Signer) error {
	switch {
	case s != nil:
		return c.inClearError("escrow signature")
	case c.key != "":
		return c.inClearError("API key")
	}
	return nil
}

// inClearError refuses to send credential, unsealed, over plain http to a host that is
// not on this machine: whatever relays it would read the key (and use it, until its
// owner revokes it) or the escrow signature. An https host's connection is RA-TLS, and
// a loopback host is reached without a network (and never through HTTP_PROXY, which
// net/http bypasses for it), so both are nil; a host URL that does not parse is not
// loopback. The error is CodeInvalid, before anything is sent, and names the ways
// out: https, or a trust so that a chat request is sealed.
func (c *Client) inClearError(credential string) error {
	if c.ratls != nil || c.loopback {
		return nil
	}
	return &Error{Code: CodeInvalid, Message: fmt.Sprintf("refusing to send the %s in plaintext to the http host at %s, where whatever relays it reads it: "+
		"use an https host, or, for a chat request, verify it (--trust-sim-root, --policy or --collateral) so that the request is sealed to its attested end-to-end key, without --plaintext", credential, c.base)}
}

// loopbackName reports whether a URL's host, as written, names this machine, with no
// name resolved: "localhost" or an IP literal net.ParseIP reads as loopback
// (127.0.0.0/8, ::1, ::ffff:127.x.y.z). Anything else ("localhost.", "127.1",
// "0x7f.0.0.1", "127.0.0.1.example") is not, whatever it resolves to.
func loopbackName(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// apiError is the OpenAI error shape the host answers with.
type apiError struct {
	Error *struct {
		Message string `json:"message"`
		Code    string `json:"code"`
	} `json:"error"`
}

// responseError words a failed response: the host's own message when it sent one.
func responseError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e apiError
	if json.Unmarshal(b, &e) == nil && e.Error != nil && e.Error.Message != "" {
		return &Error{Code: CodeRefused, Status: resp.StatusCode, HostCode: e.Error.Code,
			Message: fmt.Sprintf("the host refused (%s): %s", resp.Status, e.Error.Message)}
	}
	return &Error{Code: CodeBadAnswer, Status: resp.StatusCode,
		Message: fmt.Sprintf("the host answered %s (%s %s), not an API error: is --host a Cocoon host?", resp.Status, resp.Request.Method, resp.Request.URL.Path)}
}
