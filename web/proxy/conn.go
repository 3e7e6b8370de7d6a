package proxy

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cocoonhost/cocoon/attest"
)

// Retries of an evidence or pricing GET the host asked to come back for later (429 or
// 503 with Retry-After); chat requests are never sent twice to the same host.
const (
	// maxRetries bounds the retries of one GET.
	maxRetries = 3
	// maxRetryWait bounds one wait: a host that asks for longer is not waited for.
	maxRetryWait = 30 * time.Second
)

// conn reaches one host. For an https host every handshake verifies the host's RA-TLS
// certificate and pins the first verified TLS key; an http host is verified only by
// the evidence it serves and the signatures on its answers.
type conn struct {
	base string // without a trailing slash
	// key is the API key for evidence and pricing, sent over RA-TLS only: over http a
	// relay would read it, and evidence and prices need no credential.
	key   string
	http  *http.Client
	ratls *attest.RATLSVerifier // nil for an http host
	log   io.Writer             // told of the waits the host asks for
}

// dial returns a conn to base that verifies an https host's handshakes against p and
// opts. Its transport is its own, so that closing its idle connections (when the host
// restarted) touches no other host's.
func dial(base, key string, p attest.Policy, opts attest.EvidenceOptions, log io.Writer) (*conn, error) {
	t := &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
		ForceAttemptHTTP2: false}
	c := &conn{base: strings.TrimSuffix(base, "/"), key: key, http: &http.Client{Transport: t}, log: log}
	if strings.HasPrefix(base, "https://") {
		v, err := attest.NewRATLSVerifier(p, opts)
		if err != nil {
			return nil, err
		}
		c.ratls, t.TLSClientConfig = v, v.TLSConfig()
	}
	return c, nil
}

// close drops the conn's idle connections.
func (c *conn) close() { c.http.CloseIdleConnections() }

// get sends a GET of path, with the API key over RA-TLS. A 429 or 503 with a Retry-After of at
// most maxRetryWait is asked again after that wait, at most maxRetries times, each wait
// logged. It fails when the host cannot be reached, or with ctx while it waits.
func (c *conn) get(ctx context.Context, path string) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
		if err != nil {
			return nil, fmt.Errorf("the host URL %q: %w", c.base, err)
		}
		if c.key != "" && c.ratls != nil {
			req.Header.Set("Authorization", "Bearer "+c.key)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, c.unreachable(err)
		}
		wait, ok := retryAfter(resp, time.Now())
		if !ok || attempt == maxRetries {
			return resp, nil
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so that the connection is reused
		resp.Body.Close()
		fmt.Fprintf(c.log, "the host at %s answered %s to GET %s: retrying in %s, as its Retry-After asks\n", c.base, resp.Status, req.URL.Path, wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
}

// retryAfter is how long resp asks to wait before the request is sent again: its
// Retry-After (seconds, or an HTTP date) on a 429 or a 503, when at most maxRetryWait.
func retryAfter(resp *http.Response, now time.Time) (time.Duration, bool) {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return 0, false
	}
	v := resp.Header.Get("Retry-After")
	var wait time.Duration
	if s, err := strconv.ParseUint(v, 10, 32); err == nil {
		wait = time.Duration(s) * time.Second
	} else if at, err := http.ParseTime(v); err == nil {
		wait = max(0, at.Sub(now))
	} else {
		return 0, false
	}
	return wait, wait <= maxRetryWait
}

// refusal is a host's non-2xx answer to a GET, worded with the host's message.
type refusal struct {
	status int
	msg    string
}

func (r *refusal) Error() string { return r.msg }

// notFound reports whether err is a host's 404: it lacks what was asked (a pipeline,
// or billing).
func notFound(err error) bool {
	var r *refusal
	return errors.As(err, &r) && r.status == http.StatusNotFound
}

// getJSON GETs path (get) and reads up to limit bytes of a 2xx answer. Any other
// status is a *refusal with the host's message.
func (c *conn) getJSON(ctx context.Context, path string, limit int64) ([]byte, error) {
	resp, err := c.get(ctx, path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("reading the host's answer to GET %s: %w", path, err)
	case resp.StatusCode/100 != 2:
		return nil, hostRefused(resp, b)
	case int64(len(b)) > limit:
		return nil, fmt.Errorf("the host's answer to GET %s exceeds %d bytes", path, limit)
	}
	return b, nil
}

// hostRefused words a non-2xx answer: the host's own message when it sent one.
func hostRefused(resp *http.Response, body []byte) *refusal {
	var e struct {
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != nil && e.Error.Message != "" {
		return &refusal{resp.StatusCode, fmt.Sprintf("the host refused (%s): %s", resp.Status, e.Error.Message)}
	}
	return &refusal{resp.StatusCode, fmt.Sprintf("the host answered %s to %s %s, not an API error: is it a Cocoon host?", resp.Status, resp.Request.Method, resp.Request.URL.Path)}
}

// evidence fetches and parses the evidence at path.
func (c *conn) evidence(ctx context.Context, path string) (*attest.Evidence, error) {
	// One byte over the limit, so that ParseEvidence reports oversized evidence.
	b, err := c.getJSON(ctx, path, attest.MaxEvidenceBytes+1)
	if err != nil {
		return nil, err
	}
	ev, err := attest.ParseEvidence(b)
	if err != nil {
		return nil, fmt.Errorf("the host's answer to GET %s is not evidence: %w", path, err)
	}
	return ev, nil
}

// ratlsCheck checks that the boot evidence served over an RA-TLS connection carries the
// keys of the evidence its handshake verified, so that what was verified is the host
// this connection reaches.
func (c *conn) ratlsCheck(boot *attest.Evidence) attest.Check {
	const name = "RA-TLS"
	pinned, _, ok := c.ratls.Pinned()
	switch {
	case !ok:
		return attest.Check{Name: name, Detail: "no TLS handshake verified the host's certificate"}
	case !bytes.Equal(pinned.TLSKey, boot.TLSKey) || !bytes.Equal(pinned.HostKey, boot.HostKey):
		return attest.Check{Name: name, Detail: "the evidence served names other keys than the evidence in the TLS certificate: it is not this connection's host"}
	default:
		return attest.Check{Name: name, OK: true, Detail: "the TLS handshake verified the certificate's evidence and pinned its key, the attested TLS key, and the evidence served names the same keys"}
	}
}

// unreachable words an error of c.http.Do: a handshake the RA-TLS verifier refused is
// a failed verification, anything else an unreachable host.
func (c *conn) unreachable(err error) error {
	cause := cmp.Or(errors.Unwrap(err), err) // the url.Error's cause, or a context's error
	if errors.Is(err, attest.ErrRATLS) {
		return fmt.Errorf("refusing the host at %s: %w", c.base, cause)
	}
	return fmt.Errorf("cannot reach the host at %s: %w", c.base, cause)
}
