package client

import (
	"net/http"
	"testing"
	"time"
)

// TestRetryAfter: a wait is honoured only on a 429 or a 503, in seconds or as an HTTP
// date, and only when at most MaxRetryWait; a host asking for longer, or for a wait
// that does not parse, is not waited for.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		status int
		value  string
		wait   time.Duration
		ok     bool
	}{
		{429, "2", 2 * time.Second, true},
		{503, "0", 0, true},
		{429, now.Add(10 * time.Second).Format(http.TimeFormat), 10 * time.Second, true},
		{429, now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{429, "31", 0, false},
		{429, "99999999999999999999", 0, false},
		{429, "-1", 0, false},
		{429, "soon", 0, false},
		{429, "", 0, false},
		{500, "1", 0, false},
		{200, "1", 0, false},
	} {
		resp := &http.Response{StatusCode: tt.status, Header: http.Header{"Retry-After": {tt.value}}}
		if wait, ok := RetryAfter(resp, now); ok != tt.ok || (ok && wait != tt.wait) {
			t.Errorf("%d Retry-After %q: %v %v, want %v %v", tt.status, tt.value, wait, ok, tt.wait, tt.ok)
		}
	}
}
