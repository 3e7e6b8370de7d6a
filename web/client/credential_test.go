package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
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
