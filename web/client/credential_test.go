package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/cocoonhost/cocoon/attest"
)

// TestChatKeepsCredentialsOffPlainHTTP: Chat sends no credential (the API key, an
// escrow signature) in a plaintext header over http to a host off this machine, as the
// README says ("cocoon chat sends its API key in a plaintext header only over RA-TLS").
// The host is reached as http://0.0.0.0:port, which dials this machine's test server
// but is not a loopback name, so it stands for a remote host behind a recording relay.
// Before, an http host without a trust (the key went as a bearer token with the
// request), or one whose answer was asked in plaintext (WithPlaintext), had the
// credential in the clear; a loopback host still gets it (the quickstart's
// `cocoon chat` to 127.0.0.1), and a sealed request to a remote one hides it.
func TestChatKeepsCredentialsOffPlainHTTP(t *testing.T) {
	clientKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	settlement := []attest.Event{attest.SettlementKeyEvent(settlementKey.Public().(ed25519.PublicKey)),
		attest.SettlementKeyOriginEvent(attest.SettlementKeyGenerated)}
	req := ChatRequest{Messages: []ChatMessage{{Role: "user", Content: "hello world"}}, MaxTokens: 4}
	for _, tc := range []struct {
		name      string
		remote    bool // reached as 0.0.0.0 rather than 127.0.0.1
		trust     bool
		plaintext bool
		signed    bool
		refused   bool   // Chat refuses before sending
		leak      string // what the relay must not see
	}{
		{name: "API key, http, no trust", remote: true, refused: true, leak: testKey},
		{name: "API key, http, trusted, plaintext", remote: true, trust: true, plaintext: true, refused: true, leak: testKey},
		{name: "escrow signature, http, trusted, plaintext", remote: true, trust: true, plaintext: true, signed: true, refused: true, leak: "Cocoon-Client-Signature"},
		{name: "API key, http, trusted, sealed", remote: true, trust: true, leak: testKey},
		{name: "escrow signature, http, trusted, sealed", remote: true, trust: true, signed: true, leak: "Cocoon-Client-Signature"},
		{name: "API key, loopback, no trust"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newBilledHost(t, clientKey.Public().(ed25519.PublicKey), settlement...)
			base := h.url
			if tc.remote {
				base = strings.Replace(h.url, "127.0.0.1", "0.0.0.0", 1)
			}
			opts := []Option{WithAPIKey(testKey)}
			if tc.trust {
				opts = append(opts, WithTrust(attest.Policy{}, attest.EvidenceOptions{SimRoot: h.root}))
			}
			c, err := New(base, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if tc.plaintext {
				c = c.WithPlaintext()
			}
			var s *Signer
			if tc.signed {
				s = NewSigner(account, clientKey)
			}
			_, err = c.Chat(context.Background(), "", req, s, func(string) error { return nil })
			seen := h.Headers()
			var cerr *Error
			switch {
			case tc.refused && (!errors.As(err, &cerr) || cerr.Code != CodeInvalid || !strings.Contains(cerr.Message, "plaintext")):
				t.Errorf("Chat = %v, want CodeInvalid refusing plaintext", err)
			case !tc.refused && errors.As(err, &cerr) && cerr.Code == CodeInvalid:
				t.Errorf("Chat refused: %v", err)
			case tc.refused && strings.Contains(seen, "/chat/completions"):
				t.Errorf("the relay saw a chat request:\n%s", seen)
			}
			if tc.leak != "" && strings.Contains(seen, tc.leak) {
				t.Errorf("the relay read %q in the clear:\n%s", tc.leak, seen)
			}
			if !tc.remote && !strings.Contains(seen, "Bearer "+testKey) {
				t.Errorf("the loopback host got no API key:\n%s", seen)
			}
		})
	}
}

// TestRequestsKeepCredentialsOffPlainHTTP: every request of the client that carries a
// credential, not only a chat request, is refused before it is sent over http to a
// host off this machine (http://0.0.0.0:port, as in TestChatKeepsCredentialsOffPlainHTTP),
// and goes to a loopback host. Before, the operator's commands on pipelines (cocoon push,
// list, logs) sent the API key as a bearer token to any http host, and an escrow's
// account and receipts their signature headers. Get, which relays the reviewer's page,
// sends its request without the key instead: the evidence it relays needs none.
func TestRequestsKeepCredentialsOffPlainHTTP(t *testing.T) {
	clientKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	h := newBilledHost(t, clientKey.Public().(ed25519.PublicKey))
	signer := NewSigner(account, clientKey)
	ctx := context.Background()
	for _, op := range []struct {
		name string
		leak string // what the relay must not see from a remote host
		call func(*Client) error
	}{
		{"list pipelines", testKey, func(c *Client) error { _, err := c.Pipelines(ctx); return err }},
		{"show a pipeline", testKey, func(c *Client) error { _, err := c.Pipeline(ctx, strings.Repeat("0", 64)); return err }},
		{"delete a pipeline", testKey, func(c *Client) error { _, err := c.DeletePipeline(ctx, strings.Repeat("0", 64)); return err }},
		{"failed requests", testKey, func(c *Client) error { _, err := c.FailedRequests(ctx, strings.Repeat("0", 64)); return err }},
		{"first model", testKey, func(c *Client) error { _, err := c.FirstModel(ctx); return err }},
		{"account", "Cocoon-Client-Signature", func(c *Client) error { _, err := c.Account(ctx, signer); return err }},
		{"receipts", "Cocoon-Client-Signature", func(c *Client) error { _, err := c.Receipts(ctx, signer, 0); return err }},
	} {
		for _, remote := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s, remote %v", op.name, remote), func(t *testing.T) {
				base := h.url
				if remote {
					base = strings.Replace(h.url, "127.0.0.1", "0.0.0.0", 1)
				}
				c, err := New(base, WithAPIKey(testKey))
				if err != nil {
					t.Fatal(err)
				}
				before := len(h.Headers())
				err = op.call(c)
				seen := h.Headers()[before:]
				var cerr *Error
				refused := errors.As(err, &cerr) && cerr.Code == CodeInvalid && strings.Contains(cerr.Message, "plaintext")
				switch {
				case remote && !refused:
					t.Errorf("%s over http to a remote host = %v, want CodeInvalid refusing plaintext", op.name, err)
				case remote && seen != "":
					t.Errorf("the relay saw a request:\n%s", seen)
				case !remote && refused:
					t.Errorf("%s to a loopback host refused: %v", op.name, err)
				case !remote && !strings.Contains(seen, op.leak):
					t.Errorf("the loopback host got no %s:\n%s", op.leak, seen)
				}
			})
		}
	}

	c, err := New(strings.Replace(h.url, "127.0.0.1", "0.0.0.0", 1), WithAPIKey(testKey))
	if err != nil {
		t.Fatal(err)
	}
	before := len(h.Headers())
	resp, err := c.Get(ctx, "/v1/attestation?nonce="+strings.Repeat("00", 32), "")
	if err != nil {
		t.Fatalf("Get over http to a remote host: %v", err)
	}
	resp.Body.Close()
	if seen := h.Headers()[before:]; !strings.Contains(seen, "/v1/attestation") || strings.Contains(seen, testKey) {
		t.Errorf("Get over http to a remote host: the relay saw\n%s\nwant the request without the API key", seen)
	}
}

// TestGetKeepsTheRelayedCredentialOffPlainHTTP: Get with another client's
// Authorization (the reviewer's page's API key, which the page relay passes on) is
// refused before anything is sent over http to a host off this machine, and goes to a
// loopback host. Before, the relay sent the page's key as it came to any http host: a
// relay on the path read it.
func TestGetKeepsTheRelayedCredentialOffPlainHTTP(t *testing.T) {
	h := newBilledHost(t, nil)
	const pageKey = "Bearer the-page-s-key"
	for _, remote := range []bool{true, false} {
		t.Run(fmt.Sprintf("remote %v", remote), func(t *testing.T) {
			base := h.url
			if remote {
				base = strings.Replace(h.url, "127.0.0.1", "0.0.0.0", 1)
			}
			c, err := New(base) // no key of its own: the relay of `cocoon verify --web` without --api-key
			if err != nil {
				t.Fatal(err)
			}
			before := len(h.Headers())
			resp, err := c.Get(context.Background(), "/v1/pipelines", pageKey)
			if err == nil {
				resp.Body.Close()
			}
			seen := h.Headers()[before:]
			var cerr *Error
			refused := errors.As(err, &cerr) && cerr.Code == CodeInvalid && strings.Contains(cerr.Message, "plaintext")
			switch {
			case remote && !refused:
				t.Errorf("Get with an Authorization over http to a remote host = %v, want CodeInvalid refusing plaintext", err)
			case remote && seen != "":
				t.Errorf("the relay saw a request:\n%s", seen)
			case !remote && err != nil:
				t.Errorf("Get to a loopback host: %v", err)
			case !remote && !strings.Contains(seen, pageKey):
				t.Errorf("the loopback host got no Authorization:\n%s", seen)
			}
		})
	}
}

// TestLoopbackExemptionIsNotFooled: a credential goes unsealed over http only to a
// host the URL names as loopback, and no spelling of another host passes for one: a
// name that starts like a loopback address, a trailing dot, the short and hex IPv4
// forms a C resolver reads as 127.0.0.1 but net.ParseIP does not, a loopback address as
// userinfo (refused by New, TestHostURLCarriesNoCredential) or behind a backslash, a
// fragment or a query before another host, the unspecified address. Each case sends a
// pipeline listing with an API key; every
// connection is vetted by a dial control that records it and refuses it, so nothing
// leaves the machine: a refused case must be CodeInvalid with no dial, a loopback one
// must get as far as dialing.
func TestLoopbackExemptionIsNotFooled(t *testing.T) {
	for _, tc := range []struct {
		base     string
		loopback bool
	}{
		{"http://127.0.0.1:9", true},
		{"http://127.8.9.10:9", true},
		{"http://localhost:9", true},
		{"http://[::1]:9", true},
		{"http://[::ffff:127.0.0.1]:9", true}, // IPv4-mapped: dialed as 127.0.0.1
		{"http://127.0.0.1.evil.example:9", false},
		{"http://localhost.:9", false},
		{"http://localhost.evil.example:9", false},
		{"http://LOCALHOST:9", false}, // not as spelled: refused, which is safe
		{"http://127.1:9", false},
		{"http://0x7f.0.0.1:9", false},
		{"http://0177.0.0.1:9", false},
		{"http://2130706433:9", false},
		{"http://0.0.0.0:9", false},
		{"http://[::]:9", false},
		{"http://[::1%25lo]:9", false},
		{"http://127.0.0.1@evil.example:9", false},
		{"http://127.0.0.1:9@evil.example:9", false},
		{"http://evil.example\\@127.0.0.1:9", false},
		{"http://evil.example#@127.0.0.1:9", false},
		{"http://evil.example?@127.0.0.1:9", false},
	} {
		t.Run(tc.base, func(t *testing.T) {
			var dialed []string
			control := func(_, address string, _ syscall.RawConn) error {
				dialed = append(dialed, address)
				return errors.New("the test dials nothing")
			}
			c, err := New(tc.base, WithAPIKey(testKey), WithDialControl(control))
			if err == nil { // else refused at once: a URL with userinfo (TestHostURLCarriesNoCredential)
				_, err = c.Pipelines(context.Background())
			}
			var cerr *Error
			refused := errors.As(err, &cerr) && cerr.Code == CodeInvalid
			switch {
			case tc.loopback && (refused || len(dialed) == 0):
				t.Errorf("a loopback host: %v, dialed %q; want a dial", err, dialed)
			case !tc.loopback && (!refused || len(dialed) > 0):
				t.Errorf("not a loopback host: %v, dialed %q; want CodeInvalid, no dial", err, dialed)
			}
		})
	}
}

// TestHostURLCarriesNoCredential: a host URL with userinfo ("http://user:secret@host",
// or an API key put there as a user name) is refused by New, with a message that does
// not repeat it. Before, net/http sent the userinfo as an "Authorization: Basic"
// header with every request, evidence requests included, in the clear to an http host
// off this machine, whatever plaintextCredentialError said (it looks at the API key and
// the escrow signature only), and every error message quoted the URL, secret and all.
func TestHostURLCarriesNoCredential(t *testing.T) {
	h := newBilledHost(t, nil)
	remote := strings.Replace(h.url, "http://127.0.0.1", "0.0.0.0", 1)
	for _, base := range []string{
		"http://reviewer:sk-in-the-url@" + remote,
		"http://sk-in-the-url@" + remote,
		"https://reviewer:sk-in-the-url@" + remote,
	} {
		t.Run(base, func(t *testing.T) {
			before := len(h.Headers())
			c, err := New(base)
			if err == nil {
				_, err = c.GetBytes(context.Background(), "/v1/attestation?nonce="+strings.Repeat("00", 32), attest.MaxEvidenceBytes)
			}
			var cerr *Error
			if !errors.As(err, &cerr) || cerr.Code != CodeInvalid || !strings.Contains(cerr.Message, "user name or password") {
				t.Errorf("New(%q) = %v, want CodeInvalid refusing the URL's userinfo", base, err)
			}
			if err != nil && strings.Contains(err.Error(), "sk-in-the-url") {
				t.Errorf("the error repeats the secret: %v", err)
			}
			if seen := h.Headers()[before:]; seen != "" {
				t.Errorf("the relay saw a request:\n%s", seen)
			}
		})
	}
}
