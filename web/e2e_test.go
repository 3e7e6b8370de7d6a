package web

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/web/e2e"
)

const e2eChat = `{"model":"stories260K","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":8}`

// sealedPost seals body with the Authorization key to the host's X25519 key for path,
// posts it and returns the answer, and the client that opens it.
func sealedPost(t *testing.T, f *fixture, path, key string, body string, alter func([]byte)) (*http.Response, *e2e.Client) {
	t.Helper()
	return sealedPostAs(t, f, path, "Bearer "+key, body, alter)
}

// sealedPostAs is sealedPost with the sealed Authorization value given whole.
func sealedPostAs(t *testing.T, f *fixture, path, authorization string, body string, alter func([]byte)) (*http.Response, *e2e.Client) {
	t.Helper()
	pub := f.server.cfg.Attestation.BootEvidence().E2EKeys.Public()
	env, c, err := e2e.SealRequest(e2e.X25519, pub.X25519, http.MethodPost, path,
		e2e.Request{Header: http.Header{"Authorization": {authorization}, "Content-Type": {"application/json"}}, Body: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	if alter != nil {
		alter(env)
	}
	return postEnvelope(t, f, path, env), c
}

// postEnvelope posts a sealed request; the test closes the answer's body.
func postEnvelope(t testing.TB, f *fixture, path string, env []byte) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.http.URL+path, bytes.NewReader(env))
	req.Header.Set("Content-Type", e2e.ContentType)
	resp, err := f.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestSealedChat: a sealed request runs with its sealed credential; its answer, whole
// or streamed, opens to a signed plaintext answer that verifies with the host key
// over the plaintext request, and nothing of the prompt or the answer is readable on
// the wire.
func TestSealedChat(t *testing.T) {
	f, _ := attested(t)
	hostKey := f.server.cfg.Attestation.PublicKey()
	for _, stream := range []bool{false, true} {
		body := e2eChat
		if stream {
			body = strings.Replace(body, `"max_tokens":8`, `"max_tokens":8,"stream":true`, 1)
		}
		resp, c := sealedPost(t, f, "/v1/chat/completions", ownerKey, body, nil)
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || bytes.Contains(raw, []byte("chat.completion")) || bytes.Contains(raw, []byte(ownerKey)) {
			t.Fatalf("stream %v: %d %q", stream, resp.StatusCode, raw)
		}
		v := attest.ResponseVerifier{HostKey: hostKey, Request: []byte(body)}
		if !stream {
			h, plain, err := c.OpenBody(resp.StatusCode, raw)
			if err != nil || !bytes.Contains(plain, []byte(`"chat.completion"`)) {
				t.Fatalf("OpenBody: %q %v", plain, err)
			}
			if err := v.VerifyBody(200, h.Get("Retry-After"), plain, h.Get(attest.ResponseSignatureHeader)); err != nil {
				t.Fatalf("the opened answer does not verify: %v", err)
			}
			continue
		}
		st, err := c.OpenStream(bytes.NewReader(raw), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(st)
		if err != nil || st.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("stream: %v %v", st.Header, err)
		}
		events := v.ReadStream(bytes.NewReader(plain), 1<<20)
		for {
			if _, err := events.Next(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("the opened stream does not verify: %v\n%s", err, plain)
			}
		}
	}
}

// TestSealedRequestRefusals: a replayed envelope, a flipped byte, an envelope moved to
// another route, a bad sealed credential, and a plaintext request on a host that
// requires encryption: each gets its clear 4xx, and none runs the model.
func TestSealedRequestRefusals(t *testing.T) {
	f, _ := attested(t)
	path := "/v1/chat/completions"
	pub := f.server.cfg.Attestation.BootEvidence().E2EKeys.Public()
	env, _, err := e2e.SealRequest(e2e.MLKEM768X25519, pub.MLKEM768X25519, http.MethodPost, path,
		e2e.Request{Header: http.Header{"Authorization": {"Bearer " + ownerKey}}, Body: []byte(e2eChat)})
	if err != nil {
		t.Fatal(err)
	}
	if resp := postEnvelope(t, f, path, env); resp.StatusCode != 200 {
		t.Fatalf("first: %d", resp.StatusCode)
	}
	ran := generations(f)
	// A copy of an envelope that ran is refused in plaintext: a sealed refusal would
	// share the first answer's keystream (TestSealedAnswerKeystreamUsedOnce).
	replay := postEnvelope(t, f, path, env)
	if raw, _ := io.ReadAll(replay.Body); replay.StatusCode != http.StatusConflict || !bytes.Contains(raw, []byte(`"replayed_request"`)) {
		t.Fatalf("replay: %d %q", replay.StatusCode, raw)
	}
	for i := 0; i < len(env); i += 97 {
		bad := bytes.Clone(env)
		bad[i] ^= 0x01
		resp := postEnvelope(t, f, path, bad)
		if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusBadRequest || !bytes.Contains(b, []byte(`"e2e_invalid"`)) {
			t.Fatalf("byte %d flipped: %d %s", i, resp.StatusCode, b)
		}
	}
	moved := postEnvelope(t, f, "/p/"+strings.Repeat("ab", 32)+"/v1/chat/completions", env)
	if b, _ := io.ReadAll(moved.Body); moved.StatusCode != http.StatusBadRequest || !bytes.Contains(b, []byte(`"e2e_invalid"`)) {
		t.Fatalf("moved to a pipeline: %d %s", moved.StatusCode, b)
	}
	if n := generations(f); n != ran {
		t.Fatalf("refused requests ran the model %d times", n-ran)
	}
	// A credential refused before the id is recorded: a plaintext refusal, its code
	// and no detail.
	resp, _ := sealedPost(t, f, path, "not-a-key", e2eChat, nil)
	if raw, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusUnauthorized || !bytes.Contains(raw, []byte(`"invalid_credentials"`)) || bytes.Contains(raw, []byte("API key")) {
		t.Fatalf("a refused sealed credential: %d %q", resp.StatusCode, raw)
	}
	// A credential outside the envelope (a relay's own) never counts: this one seals none.
	env, _, _ = e2e.SealRequest(e2e.X25519, pub.X25519, http.MethodPost, path,
		e2e.Request{Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(e2eChat)})
	req, _ := http.NewRequest(http.MethodPost, f.http.URL+path, bytes.NewReader(env))
	req.Header.Set("Content-Type", e2e.ContentType)
	req.Header.Set("Authorization", "Bearer "+ownerKey)
	if resp, err := f.http.Client().Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("an outer credential beside a sealed one: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// The envelope's size is bounded before any work.
	small, _ := attested(t, func(c *Config, _ *recorder) { c.MaxRequestBytes = 1024 })
	big := bytes.Repeat([]byte{1}, 1024+e2eOverhead+1)
	if resp := postEnvelope(t, small, path, big); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("an envelope over the limit: %d", resp.StatusCode)
	}
	required, _ := attested(t, func(c *Config, _ *recorder) { c.RequireE2E = true })
	if r := required.do(http.MethodPost, path, ownerKey, e2eChat); r.status != http.StatusBadRequest || r.apiErr(t).Code != "encryption_required" {
		t.Fatalf("plaintext on a host that requires encryption: %d %s", r.status, r.body)
	}
}

// TestReplayCacheNeedsACredential: anyone can seal to the host's public key, so
// requests without a valid credential must not fill the replay cache (which would
// turn every sealed request away, 503, for up to 20 minutes); and a Telegram user,
// whose init data any Telegram account gets, records at most a quota of ids.
func TestReplayCacheNeedsACredential(t *testing.T) {
	defer func(ids, telegram int) { e2eReplayIDs, e2eTelegramIDs = ids, telegram }(e2eReplayIDs, e2eTelegramIDs)
	e2eReplayIDs, e2eTelegramIDs = 5, 2
	f, _ := attested(t)
	path := "/v1/chat/completions"
	status := func(resp *http.Response, c *e2e.Client) (int, string) {
		t.Helper()
		raw, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("Content-Type") != e2e.ContentType {
			return resp.StatusCode, string(raw) // refused before its id was recorded
		}
		_, plain, err := c.OpenBody(resp.StatusCode, raw)
		if err != nil {
			t.Fatalf("%d: %v", resp.StatusCode, err)
		}
		return resp.StatusCode, string(plain)
	}
	for i := range 3 * e2eReplayIDs {
		if code, body := status(sealedPostAs(t, f, path, "Bearer not-a-key", e2eChat, nil)); code != http.StatusUnauthorized {
			t.Fatalf("stranger %d: %d %s", i, code, body)
		}
	}
	if code, body := status(sealedPost(t, f, path, ownerKey, e2eChat, nil)); code != http.StatusOK {
		t.Fatalf("the owner after strangers sealed %d requests: %d %s", 3*e2eReplayIDs, code, body)
	}
	ann, bob := telegramAuthAs(t, 42), telegramAuthAs(t, 43)
	for i := range e2eTelegramIDs {
		if code, body := status(sealedPostAs(t, f, path, ann, e2eChat, nil)); code != http.StatusOK {
			t.Fatalf("a Telegram user's request %d: %d %s", i, code, body)
		}
	}
	resp, c := sealedPostAs(t, f, path, ann, e2eChat, nil)
	if code, body := status(resp, c); code != http.StatusTooManyRequests || !strings.Contains(body, "too_many_sealed_requests") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a Telegram user over the quota: %d %s (Retry-After %q)", code, body, resp.Header.Get("Retry-After"))
	}
	if code, body := status(sealedPostAs(t, f, path, bob, e2eChat, nil)); code != http.StatusOK {
		t.Fatalf("another Telegram user: %d %s", code, body)
	}
}

func generations(f *fixture) int {
	f.backend.mu.Lock()
	defer f.backend.mu.Unlock()
	return len(f.backend.requests)
}

// TestSealedBilledRequest: an escrow-signed request sealed whole (the signature
// headers and the idempotency key inside) is billed, its receipt travels sealed and
// verifies, and a retry with the same idempotency key in a new envelope gets the same
// answer replayed, charged once.
func TestSealedBilledRequest(t *testing.T) {
	b := newBilling(t, 1e9, func(c *Config, _ *recorder) { c.Attestation = simAttestation(t) })
	path := "/v1/chat/completions"
	pub := b.server.cfg.Attestation.BootEvidence().E2EKeys.Public()
	send := func() (*http.Response, []byte, http.Header, []byte) {
		sr := settle.SignedRequest{Account: b.account, Timestamp: time.Now().Unix(), Nonce: settle.NewNonce(), Method: "POST", Path: path, Body: []byte(chatBody), IdempotencyKey: "sealed-retry-1"}
		h := http.Header{}
		sr.Sign(h, b.clientKey)
		env, c, err := e2e.SealRequest(e2e.X25519, pub.X25519, http.MethodPost, path, e2e.Request{Header: h, Body: []byte(chatBody)})
		if err != nil {
			t.Fatal(err)
		}
		resp := postEnvelope(t, b.fixture, path, env)
		raw, _ := io.ReadAll(resp.Body)
		sealedHeader, plain, err := c.OpenBody(resp.StatusCode, raw)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d %v %s", resp.StatusCode, err, plain)
		}
		return resp, raw, sealedHeader, plain
	}
	resp, raw, h, plain := send()
	if resp.Header.Get(settle.ReceiptHeader) != "" || bytes.Contains(raw, []byte(b.account[2:])) {
		t.Fatal("the receipt crossed the wire in the clear")
	}
	first := b.receipt(t, response{resp.StatusCode, h, plain})
	if first.Cost == 0 || first.Account != b.account {
		t.Fatalf("receipt %+v", first)
	}
	_, _, h2, plain2 := send()
	again := b.receipt(t, response{200, h2, plain2})
	if h2.Get(IdempotentReplayHeader) != "true" || again.Seq != first.Seq || !bytes.Equal(plain, plain2) {
		t.Fatalf("the retry was not the replay of the first answer: %v seq %d, %d", h2, again.Seq, first.Seq)
	}
}

// TestSealedSessions performs the attacks on end-to-end sessions (web/E2E.md §8)
// against a real host: a session is granted, in the sealed head only, to a request
// whose credential was accepted, never to a refused or replayed one; a session
// envelope runs once (a replay is 409), only on its route and pipeline, and a session
// the host does not hold is a plaintext e2e_session_unknown that runs and charges
// nothing.
func TestSealedSessions(t *testing.T) {
	f, _ := attested(t)
	path := "/v1/chat/completions"
	pub := f.server.cfg.Attestation.BootEvidence().E2EKeys.Public()
	hostKey := f.server.cfg.Attestation.PublicKey()
	sessions := f.server.e2e.sessions
	p := e2e.NewSessions()
	// send seals e2eChat with auth through p (as a client does), posts it, and opens
	// the answer: the envelope, the answer's status and sealed headers and body.
	var opener *e2e.Client // of the last request sent
	send := func(p *e2e.Sessions, auth string) ([]byte, *http.Response, []byte) {
		t.Helper()
		env, c, err := p.Seal(e2e.MLKEM768X25519, pub.MLKEM768X25519, http.MethodPost, path,
			e2e.Request{Header: http.Header{"Authorization": {auth}}, Body: []byte(e2eChat)})
		if err != nil {
			t.Fatal(err)
		}
		opener = c
		resp := postEnvelope(t, f, path, env)
		if resp.Header.Get(e2e.SessionHeader) != "" {
			t.Fatalf("the session grant crossed the wire in the clear: %v", resp.Header)
		}
		if err := c.OpenResponse(resp, 1<<20); err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		return env, resp, b
	}
	// A refused credential asks for a session and gets none.
	if env, resp, b := send(p, "Bearer not-a-key"); env[0] != e2e.Version || resp.StatusCode != http.StatusUnauthorized || resp.Header.Get(e2e.SessionHeader) != "" || sessions.Len() != 0 {
		t.Fatalf("a refused credential: version %d, %d %v %s, %d sessions", env[0], resp.StatusCode, resp.Header, b, sessions.Len())
	}
	env, resp, _ := send(p, "Bearer "+ownerKey)
	if env[0] != e2e.Version || resp.StatusCode != 200 || resp.Header.Get(e2e.SessionHeader) != "3600" || sessions.Len() != 1 {
		t.Fatalf("establishing: version %d, %d %v, %d sessions", env[0], resp.StatusCode, resp.Header, sessions.Len())
	}
	// The establishing envelope replayed: refused in plaintext, and granted nothing.
	replayed := postEnvelope(t, f, path, env)
	if err := opener.OpenResponse(replayed, 1<<20); err != nil || replayed.StatusCode != http.StatusConflict || replayed.Header.Get("Content-Type") == e2e.ContentType || replayed.Header.Get(e2e.SessionHeader) != "" || sessions.Len() != 1 {
		t.Fatalf("the establishing request replayed: %d %v %v, %d sessions", replayed.StatusCode, replayed.Header, err, sessions.Len())
	}
	env, resp, b := send(p, "Bearer "+ownerKey)
	if env[0] != e2e.SessionVersion || resp.StatusCode != 200 || resp.Header.Get(e2e.SessionHeader) != "" {
		t.Fatalf("in the session: version %d, %d %v %s", env[0], resp.StatusCode, resp.Header, b)
	}
	v := attest.ResponseVerifier{HostKey: hostKey, Request: []byte(e2eChat)}
	if err := v.VerifyBody(200, "", b, resp.Header.Get(attest.ResponseSignatureHeader)); err != nil {
		t.Fatalf("a session answer does not verify: %v", err)
	}
	q := e2e.NewSessions() // another client
	send(q, "Bearer "+ownerKey)
	ran := generations(f)
	if r := postEnvelope(t, f, path, env); r.StatusCode != http.StatusConflict || r.Header.Get("Content-Type") == e2e.ContentType {
		t.Fatalf("a session envelope replayed: %d %v", r.StatusCode, r.Header)
	}
	refused := func(name, path string, env []byte, code string) {
		t.Helper()
		r := postEnvelope(t, f, path, env)
		if b, _ := io.ReadAll(r.Body); r.StatusCode != http.StatusBadRequest || !bytes.Contains(b, []byte(`"`+code+`"`)) {
			t.Errorf("%s: %d %s, want 400 %s", name, r.StatusCode, b, code)
		}
	}
	env, _, err := p.Seal(e2e.MLKEM768X25519, pub.MLKEM768X25519, http.MethodPost, path,
		e2e.Request{Header: http.Header{"Authorization": {"Bearer " + ownerKey}}, Body: []byte(e2eChat)})
	if err != nil || env[0] != e2e.SessionVersion {
		t.Fatal(err)
	}
	refused("moved to a pipeline", "/p/"+strings.Repeat("ab", 32)+"/v1/chat/completions", env, "e2e_invalid")
	// Another client's session id in place of this one's.
	other, _, _ := q.Seal(e2e.MLKEM768X25519, pub.MLKEM768X25519, http.MethodPost, path, e2e.Request{Body: []byte(e2eChat)})
	swapped := bytes.Clone(env)
	copy(swapped[1:17], other[1:17])
	refused("another client's session id", path, swapped, "e2e_invalid")
	rid := bytes.Clone(env)
	rid[20] ^= 1
	refused("its rid altered", path, rid, "e2e_invalid")
	unknown := bytes.Clone(env)
	unknown[1] ^= 1
	refused("a session the host does not hold", path, unknown, "e2e_session_unknown")
	if n := generations(f); n != ran {
		t.Fatalf("refused session envelopes ran the model %d times", n-ran)
	}
	if r := postEnvelope(t, f, path, env); r.StatusCode != 200 {
		t.Fatalf("the unaltered envelope after the refusals: %d", r.StatusCode)
	}
}
