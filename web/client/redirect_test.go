package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cocoonhost/cocoon/attest"
)

// TestRefusesRedirects: a relay (or a misconfigured host) that answers a request with a
// redirect to another server gets nothing sent there: not a sealed chat's envelope, not
// a loopback chat's API key, not an evidence or price-list request. Each is a
// CodeBadAnswer naming the Location. Before, net/http followed the 307 and sent the
// request again, body and API key included, to the other server.
func TestRefusesRedirects(t *testing.T) {
	h := newTestHost(t)
	var elsewhereAsked atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhereAsked.Add(1)
		w.WriteHeader(http.StatusTeapot)
	}))
	t.Cleanup(elsewhere.Close)
	target, err := url.Parse(h.url)
	if err != nil {
		t.Fatal(err)
	}
	var redirected atomic.Pointer[string] // the path the relay redirects, with 307
	proxy := httputil.NewSingleHostReverseProxy(target)
	relay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := redirected.Load(); p != nil && r.URL.Path == *p {
			http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(relay.Close)
	trust := WithTrust(attest.Policy{}, attest.EvidenceOptions{SimRoot: h.root})
	sealed, err := New(relay.URL, WithAPIKey(testKey), trust)
	if err != nil {
		t.Fatal(err)
	}
	loopback, err := New(relay.URL, WithAPIKey(testKey)) // the key in a header: a loopback host
	if err != nil {
		t.Fatal(err)
	}
	req := ChatRequest{Messages: []ChatMessage{{Role: "user", Content: "hello"}}, MaxTokens: 4}
	chat := func(c *Client) func() error {
		return func() error {
			_, err := c.Chat(context.Background(), "", req, nil, func(string) error { return nil })
			return err
		}
	}
	for _, tc := range []struct {
		name, path string
		call       func() error
	}{
		{"a sealed chat", "/v1/chat/completions", chat(sealed)},
		{"a chat with the API key in a header", "/v1/chat/completions", chat(loopback)},
		{"the boot evidence", "/v1/attestation", func() error { _, _, err := sealed.VerifyBoot(context.Background()); return err }},
		{"the price list", "/v1/pricing", func() error { _, err := sealed.PriceList(context.Background()); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err != nil && tc.path != "/v1/pricing" {
				t.Fatalf("before the redirect: %v", err) // the host (without billing) serves no price list
			}
			redirected.Store(&tc.path)
			defer redirected.Store(nil)
			err := tc.call()
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeBadAnswer || !strings.Contains(e.Message, "redirect to "+elsewhere.URL+tc.path) {
				t.Fatalf("err %v, want CodeBadAnswer naming the redirect's Location", err)
			}
			if n := elsewhereAsked.Load(); n != 0 {
				t.Fatalf("the other server got %d requests: the redirect was followed", n)
			}
		})
	}
}
