package web

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/cocoonhost/cocoon/web/e2e"
)

// TestSealedSessionsPerPrincipal performs the red team's attack on a real host's
// session table, made small (4 sessions, 2 per principal): one Telegram account
// establishes three times the table's capacity in sessions, each from a new client,
// and an honest user's session, established first, still opens; each of the
// attacker's requests still got its session, so the bound costs the attacker nothing
// it was owed. Then the bound's price: as many principals as the table holds over
// the bound (2), each establishing that many sessions after the honest user's last
// request, push the honest user out, who gets e2e_session_unknown and establishes a
// new session with its retry. The principal is the replay quota's
// (principal.ID), so a host that granted sessions to a principal of another kind
// (all requests alike, say) fails the first part.
func TestSealedSessionsPerPrincipal(t *testing.T) {
	defer func(capacity, perPrincipal int) { e2eSessions, e2eSessionsPerPrincipal = capacity, perPrincipal }(e2eSessions, e2eSessionsPerPrincipal)
	e2eSessions, e2eSessionsPerPrincipal = 4, 2
	f, _ := attested(t)
	path := "/v1/chat/completions"
	pub := f.server.cfg.Attestation.BootEvidence().E2EKeys.Public()
	// send seals e2eChat with auth through p and posts it: the envelope's version, the
	// answer's status, its sealed session grant, or its error code when refused.
	send := func(p *e2e.Sessions, auth string) (version byte, status int, grant, code string, c *e2e.Client) {
		t.Helper()
		env, c, err := p.Seal(e2e.X25519, pub.X25519, http.MethodPost, path,
			e2e.Request{Header: http.Header{"Authorization": {auth}}, Body: []byte(e2eChat)})
		if err != nil {
			t.Fatal(err)
		}
		resp := postEnvelope(t, f, path, env)
		if resp.Header.Get("Content-Type") != e2e.ContentType {
			var refused errorBody
			b, _ := io.ReadAll(resp.Body)
			json.Unmarshal(b, &refused)
			return env[0], resp.StatusCode, "", refused.Error.Code, c
		}
		if err := c.OpenResponse(resp, 1<<20); err != nil {
			t.Fatal(err)
		}
		return env[0], resp.StatusCode, resp.Header.Get(e2e.SessionHeader), "", c
	}
	ann, mallory := e2e.NewSessions(), telegramAuthAs(t, 666)
	if v, status, grant, code, _ := send(ann, telegramAuthAs(t, 42)); v != e2e.Version || status != http.StatusOK || grant != "3600" {
		t.Fatalf("Ann establishing: version %d, %d %q %s", v, status, grant, code)
	}
	for i := range 3 * e2eSessions {
		if v, status, grant, code, _ := send(e2e.NewSessions(), mallory); v != e2e.Version || status != http.StatusOK || grant != "3600" {
			t.Fatalf("the attacker's session %d: version %d, %d %q %s", i, v, status, grant, code)
		}
	}
	if v, status, _, code, _ := send(ann, telegramAuthAs(t, 42)); v != e2e.SessionVersion || status != http.StatusOK {
		t.Fatalf("Ann's session after one attacker established %d: version %d, %d %s", 3*e2eSessions, v, status, code)
	}
	if n := f.server.e2e.sessions.Len(); n != 1+e2eSessionsPerPrincipal {
		t.Fatalf("%d sessions held, want Ann's and %d of the attacker's", n, e2eSessionsPerPrincipal)
	}
	// Two principals (capacity over the bound) establishing their sessions after Ann's
	// last request fill the table with sessions more recent than hers.
	for _, attacker := range []string{mallory, telegramAuthAs(t, 667)} {
		for range e2eSessionsPerPrincipal {
			send(e2e.NewSessions(), attacker)
		}
	}
	v, status, _, code, c := send(ann, telegramAuthAs(t, 42))
	if v != e2e.SessionVersion || status != http.StatusBadRequest || code != "e2e_session_unknown" || !c.Retry(code) {
		t.Fatalf("Ann after %d attacking principals filled the table: version %d, %d %s", e2eSessions/e2eSessionsPerPrincipal, v, status, code)
	}
	if v, status, grant, code, _ := send(ann, telegramAuthAs(t, 42)); v != e2e.Version || status != http.StatusOK || grant != "3600" {
		t.Fatalf("Ann's retry: version %d, %d %q %s", v, status, grant, code)
	}
}
