package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/web/e2e"
	"github.com/cocoonhost/cocoon/web/proxy/proxytest"
)

const secretPrompt = "the-secret-prompt-7f3a"

// TestRelaySeesNoPlaintext is issue 15's first acceptance line: a recording relay
// between the proxy (default options) and a real host over plain http sees neither the
// prompt, nor the answer's text, nor the API key, streaming and not, and the app still
// gets the host's signed answer. Each proxy's first request is sealed to the host's key
// and its next under the session it establishes (web/E2E.md §8).
func TestRelaySeesNoPlaintext(t *testing.T) {
	h := proxytest.NewHost(t, nil)
	for _, mode := range modes {
		url, p, _ := startProxy(t, []*proxytest.Host{h}, WithRelease(mode))
		for _, body := range []string{
			`{"messages":[{"role":"user","content":"` + secretPrompt + `"}]}`,
			`{"messages":[{"role":"user","content":"` + secretPrompt + `"}],"stream":true}`,
		} {
			got := postChat(t, url, body)
			if got.status != 200 || !strings.Contains(got.body, "world") {
				t.Fatalf("%s: the app got %d %s", mode, got.status, got.body)
			}
			if err := verifyAsApp(hostKey(p, h.URL), body, h.ID, got); err != nil {
				t.Fatalf("%s: the answer does not verify: %v", mode, err)
			}
		}
	}
	if v := h.Versions(); !bytes.Equal(v, []byte{1, 2, 1, 2}) {
		t.Errorf("envelope versions %v, want 1 2 for each proxy: a session after the first", v)
	}
	capture := h.Captured()
	if !bytes.Contains(capture, []byte(e2e.ContentType)) {
		t.Fatal("the relay saw no sealed request")
	}
	for _, secret := range []string{secretPrompt, "Hello", "world", proxytest.APIKey} {
		if bytes.Contains(capture, []byte(secret)) {
			t.Errorf("the relay saw %q", secret)
		}
	}
}

// TestRelaySeesNoAppCredential: a proxy without an API key of its own passes each
// app request's own Authorization on to the host, and a recording relay between the
// proxy and the host over plain http never sees it: it travels inside the sealed
// request, as the proxy's own key does (TestRelaySeesNoPlaintext). The host reads it:
// the app's key is what admits the request.
func TestRelaySeesNoAppCredential(t *testing.T) {
	h := proxytest.NewHost(t, nil)
	url, _, _ := startProxy(t, []*proxytest.Host{h}, WithAPIKey(""))
	for _, auth := range []string{"", "Bearer " + proxytest.APIKey} {
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if ok := resp.StatusCode == http.StatusOK; ok != (auth != "") {
			t.Errorf("the app's request with Authorization %q: %d; want 200 with the key only (the host reads the app's own key)", auth, resp.StatusCode)
		}
	}
	if capture := h.Captured(); bytes.Contains(capture, []byte(proxytest.APIKey)) || !bytes.Contains(capture, []byte(e2e.ContentType)) {
		t.Errorf("the relay saw the app's API key, or no sealed request:\n%.2000s", capture)
	}
}

// TestE2EAlteredAnswers: a relay that flips a byte of a sealed answer, whole or
// streamed, at positions all along it, or of a sealed request, makes the app get a
// clean error, never other text. The answers are to session envelopes (the proxy's
// default once the host granted it a session); an answer that does not open grants
// none.
func TestE2EAlteredAnswers(t *testing.T) {
	h := proxytest.NewHost(t, nil)
	for _, mode := range modes {
		url, _, _ := startProxy(t, []*proxytest.Host{h}, WithRelease(mode))
		for _, body := range []string{chatBody, streamBody} {
			var size int
			h.Rewrite(func(a *proxytest.Answer) { size = len(a.Body) })
			postChat(t, url, body) // establishes a session: its answer's head is longer
			postChat(t, url, body)
			for i := 0; i < size; i += 11 {
				h.Rewrite(func(a *proxytest.Answer) {
					b := []byte(a.Body)
					b[i] ^= 0x01
					a.Body = string(b)
				})
				got := postChat(t, url, body)
				// In live release the events before the altered record reach the app (they
				// opened, and may include the signed end of the stream); the stream then
				// ends with the proxy's error event.
				events := strings.SplitAfter(strings.TrimSuffix(got.body, "\n\n"), "\n\n")
				clean := got.status == http.StatusBadGateway ||
					(got.status == 200 && mode == ReleaseLive && strings.Contains(events[len(events)-1], `"code":"unverified_response"`))
				if !clean || (mode == ReleaseVerified && strings.Contains(got.body, "world")) {
					t.Fatalf("%s: byte %d of %d flipped: %d %s", mode, i, size, got.status, got.body)
				}
			}
		}
	}
	h.Rewrite(nil)
}

// TestForgedSessionRefusalChargesOnce performs the attack a session's unsigned refusal
// invites on a billing host: a relay passes a session envelope on (the host runs and
// charges it) and answers the proxy with a forged plaintext e2e_session_unknown, so
// that the proxy sends the request again. The proxy seals an idempotency key of its
// own with every request to a billing host, so the second is answered with the first's
// answer, charged once, and the app gets it.
func TestForgedSessionRefusalChargesOnce(t *testing.T) {
	m := proxytest.NewMarket(t)
	h := m.NewHost(100_000_000, proxytest.MarketModel)
	url, _, log := startProxy(t, []*proxytest.Host{h.Host})
	first := postChat(t, url, chatBody) // establishes the session
	var receipt settle.Receipt
	if err := json.Unmarshal([]byte(first.header.Get(settle.ReceiptHeader)), &receipt); first.status != 200 || err != nil {
		t.Fatalf("first: %d %v %s", first.status, err, first.body)
	}
	forged := h.ForgeRefusal("e2e_session_unknown")
	chats := h.Asked("/chat/completions")
	got := postChat(t, url, chatBody)
	h.Rewrite(nil)
	if got.status != 200 || !forged() {
		t.Fatalf("after a forged refusal: %d %s\nlog:\n%s", got.status, got.body, log)
	}
	if n := h.Asked("/chat/completions") - chats; n != 2 {
		t.Fatalf("the request reached the host %d times, want 2 (run, then sent again)", n)
	}
	receipts, err := h.Billing.Receipts(context.Background(), receipt.Account, 0, 100)
	if err != nil || len(receipts) != 2 {
		t.Fatalf("%d receipts, want 2 (the first request, and the second once): %v", len(receipts), err)
	}
}

// TestForgedRefusalThenHangUpChargesOnce performs that attack with a second step: the
// relay forges e2e_session_unknown for a session envelope the host ran and charged, and
// then refuses the proxy's next connection, so that the request sent again never
// reaches the host. Before, the proxy judged the attempt by that last sending alone
// (nothing sent) and gave the request to another billing host, which charged it a
// second time (3 receipts for 2 requests); the same held for a forged e2e_invalid
// followed by a host verified again. Now a request its host received whole once stays
// there: the app gets a 502 host_error, and the request is charged once.
func TestForgedRefusalThenHangUpChargesOnce(t *testing.T) {
	m := proxytest.NewMarket(t)
	first := m.NewHost(100_000_000, proxytest.MarketModel)
	other := m.NewHost(900_000_000, proxytest.MarketModel)
	url, _, log := startProxy(t, []*proxytest.Host{first.Host, other.Host})
	if a := postChat(t, url, chatBody); a.status != http.StatusOK || a.header.Get(HostHeader) != first.URL { // establishes the session
		t.Fatalf("first: %d from %q: %s", a.status, a.header.Get(HostHeader), a.body)
	}
	forged := first.ForgeRefusalAndHangUp("e2e_session_unknown")
	got := postChat(t, url, chatBody)
	if !forged() {
		t.Fatal("the relay forged nothing")
	}
	if n := receipts(t, first, other); n != 2 {
		t.Fatalf("%d receipts for 2 requests: the one whose resending the relay cut was charged again (answered %d by %q)\nlog:\n%s",
			n, got.status, got.header.Get(HostHeader), log)
	}
	if got.status != http.StatusBadGateway || !strings.Contains(got.body, CodeHostError) || other.Asked("/chat/completions") != 0 {
		t.Fatalf("the app got %d %s, and the other host saw %d chat requests; want a 502 %s and none", got.status, got.body, other.Asked("/chat/completions"), CodeHostError)
	}
}
