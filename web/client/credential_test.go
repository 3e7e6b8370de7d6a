package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
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
