package client

import (
	"context"
	"testing"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/web/proxy/proxytest"
)

// TestChatForgedSessionRefusalChargesOnce performs the attack a session's unsigned
// refusal invites on a host that bills an API key to an escrow: a relay passes a
// session envelope on (the host runs and charges it) and answers the client with a
// forged plaintext e2e_session_unknown, so that Chat sends it again. Chat seals an
// Idempotency-Key of its own with every API-key request, so the second is answered
// with the first's answer, charged once.
func TestChatForgedSessionRefusalChargesOnce(t *testing.T) {
	m := proxytest.NewMarket(t)
	h := m.NewHost(100_000_000, proxytest.MarketModel)
	c, err := New(h.URL, WithAPIKey(proxytest.APIKey), WithTrust(attest.Policy{}, attest.EvidenceOptions{SimRoot: h.RootCert(t)}))
	if err != nil {
		t.Fatal(err)
	}
	chat := func() *ChatAnswer {
		t.Helper()
		a, err := c.Chat(context.Background(), h.ID, ChatRequest{Messages: []ChatMessage{{Role: "user", Content: "hi"}}}, nil, func(string) error { return nil })
		if err != nil || a.Receipt == nil {
			t.Fatalf("%+v %v", a, err)
		}
		return a
	}
	first := chat() // establishes the session
	forged := h.ForgeRefusal("e2e_session_unknown")
	chats := h.Asked("/chat/completions")
	chat()
	h.Rewrite(nil)
	if n := h.Asked("/chat/completions") - chats; n != 2 || !forged() {
		t.Fatalf("the request reached the host %d times, want 2 (run, then sent again)", n)
	}
	if v := h.Versions(); len(v) != 3 || v[1] != 2 || v[2] != 1 {
		t.Fatalf("envelope versions %v, want 1 2 1", v)
	}
	receipts, err := h.Billing.Receipts(context.Background(), first.Receipt.Account, 0, 100)
	if err != nil || len(receipts) != 2 {
		t.Fatalf("%d receipts, want 2 (the first request, and the second once): %v", len(receipts), err)
	}
}
