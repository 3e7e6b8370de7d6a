package main

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	webclient "github.com/cocoonhost/cocoon/web/client"
)

// What proxy.go and proxy_test.go use of the host client, forwarded to package
// web/client until the proxy moves to its own package (web/proxy), which then calls
// web/client itself and this file goes.

// client is a web/client Client with the fields proxy.go reads and sets.
type client struct {
	*webclient.Client
	base  string
	http  *http.Client
	ratls *attest.RATLSVerifier
	log   io.Writer // the waits the host asks for are reported here
}

func newClient(base, key string, p *attest.Policy, opts attest.EvidenceOptions) (*client, error) {
	c, err := webclient.New(base, webclient.WithAPIKey(key), webclient.WithTrust(*p, opts))
	if err != nil {
		return nil, err
	}
	return &client{Client: c, base: c.BaseURL(), http: c.HTTPClient(), ratls: c.RATLS()}, nil
}

func (c *client) evidence(ctx context.Context, path string) (*attest.Evidence, error) {
	return c.WithRetryLog(c.log).Evidence(ctx, path)
}

func (c *client) doError(err error) error { return c.TransportError(err) }

func ratlsCheck(v *attest.RATLSVerifier, boot *attest.Evidence) attest.Check {
	return webclient.RATLSCheck(v, boot)
}

const maxRetries = webclient.MaxRetries

func retryAfter(resp *http.Response, now time.Time) (time.Duration, bool) {
	return webclient.RetryAfter(resp, now)
}
