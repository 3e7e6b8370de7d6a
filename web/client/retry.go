package client

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Retries of a request the host asked to come back for later (429 or 503 with
// Retry-After). Every host 429 and 503 carries Retry-After; a client that retries at
// once, or gives up at once, serves nobody.
const (
	// MaxRetries bounds the retries of one request.
	MaxRetries = 3
	// MaxRetryWait bounds one wait: a host that asks for longer is not waited for, and
	// its answer is the request's.
	MaxRetryWait = 30 * time.Second
)

// do sends req and returns the host's answer. A GET (or HEAD) the host answers 429 or
// 503 with a Retry-After of at most MaxRetryWait is sent again after that wait, at most
// MaxRetries times; other requests are sent once, since the host may have acted on
// them. prepare, when set, is called on each attempt's copy before it is sent (a
// request signed with an escrow's client key is signed anew, with a fresh nonce). Each
// wait is logged to c.retryLog. It fails when the host cannot be reached, or with the
// request's context while it waits.
func (c *Client) do(req *http.Request, prepare func(*http.Request)) (*http.Response, error) {
	retries := MaxRetries
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		retries = 0
	}
	for attempt := 0; ; attempt++ {
		r := req
		if retries > 0 {
			r = req.Clone(req.Context())
		}
		if prepare != nil {
			prepare(r)
		}
		resp, err := c.http.Do(r)
		if err != nil {
			return nil, err
		}
		wait, ok := RetryAfter(resp, time.Now())
		if !ok || attempt == retries {
			return resp, nil
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so that the connection is reused
		resp.Body.Close()
		if c.retryLog != nil {
			fmt.Fprintf(c.retryLog, "the host at %s answered %s to %s %s: retrying in %s, as its Retry-After asks\n", c.base, resp.Status, req.Method, req.URL.Path, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-req.Context().Done():
			t.Stop()
			return nil, req.Context().Err()
		}
	}
}

// RetryAfter is how long resp asks to wait before the request is sent again, as of
// now: its Retry-After (seconds, or an HTTP date) on a 429 or a 503, when at most
// MaxRetryWait. It is false for any other answer, or a longer wait.
func RetryAfter(resp *http.Response, now time.Time) (time.Duration, bool) {
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
	return wait, wait <= MaxRetryWait
}
