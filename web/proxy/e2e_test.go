package proxy

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/cocoonhost/cocoon/web/e2e"
	"github.com/cocoonhost/cocoon/web/proxy/proxytest"
)

const secretPrompt = "the-secret-prompt-7f3a"

// TestRelaySeesNoPlaintext is issue 15's first acceptance line: a recording relay
// between the proxy (default options) and a real host over plain http sees neither the
// prompt, nor the answer's text, nor the API key, streaming and not, and the app still
// gets the host's signed answer.
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
