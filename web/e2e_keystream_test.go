package web

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cocoonhost/cocoon/attest"
	"github.com/cocoonhost/cocoon/web/e2e"
)

// An answer's key and base nonce are derived from the request's envelope alone (its
// HPKE context, or its session and rid), so every copy of one envelope is answered
// under the same (key, nonce): two sealed answers to copies of one envelope are two
// plaintexts under one AES-GCM keystream, and a relay that knows one of them (a
// refusal is mostly fixed text) reads the other (web/E2E.md §5). These tests are the
// relay: it passes the client's envelope on, then sends copies of it, and reads the
// first answer's plaintext as ciphertext XOR ciphertext XOR the refusal it can guess.

// keystreamShared reports whether the sealed whole answers a and b of client c were
// sealed under one keystream over their common length, and returns what a relay that
// knows b's plaintext recovers of a's.
func keystreamShared(t *testing.T, c *e2e.Client, a, b *http.Response) (bool, []byte) {
	t.Helper()
	rawA, _ := io.ReadAll(a.Body)
	rawB, _ := io.ReadAll(b.Body)
	a.Body, b.Body = io.NopCloser(bytes.NewReader(rawA)), io.NopCloser(bytes.NewReader(rawB))
	if a.Header.Get("Content-Type") != e2e.ContentType || b.Header.Get("Content-Type") != e2e.ContentType {
		return false, nil // an answer in plaintext shares no keystream
	}
	hA, bodyA, errA := c.OpenBody(a.StatusCode, rawA)
	hB, bodyB, errB := c.OpenBody(b.StatusCode, rawB)
	if errA != nil || errB != nil {
		t.Fatalf("the sealed answers do not open: %v %v", errA, errB)
	}
	// The record's plaintext is the head, then the body (web/E2E.md §5).
	plainA, plainB := append(e2e.ResponseHead(hA), bodyA...), append(e2e.ResponseHead(hB), bodyB...)
	// Whole answers are one record: ciphertext = frame XOR keystream, then the tag.
	n := min(len(plainA), len(plainB))
	recovered := make([]byte, n)
	for i := range n {
		recovered[i] = rawA[i] ^ rawB[i] ^ plainB[i] // what the relay computes
	}
	return bytes.Equal(recovered, plainA[:n]), recovered
}

// TestSealedAnswerKeystreamUsedOnce: a copy of an envelope that already ran (replayed
// at once, concurrently, or once its time went stale) and a copy refused before its
// id was recorded get their refusal in plaintext, never a second answer sealed under
// the first one's key and nonce; and only the one copy that recorded the id runs.
func TestSealedAnswerKeystreamUsedOnce(t *testing.T) {
	f, _ := attested(t)
	path := "/v1/chat/completions"
	pub := f.server.cfg.Attestation.BootEvidence().E2EKeys.Public()
	seal := func(sealedAt time.Time, authorization string) ([]byte, *e2e.Client) {
		env, c, err := e2e.SealRequest(e2e.X25519, pub.X25519, http.MethodPost, path, e2e.Request{Time: sealedAt,
			Header: http.Header{"Authorization": {authorization}, "Content-Type": {"application/json"}}, Body: []byte(e2eChat)})
		if err != nil {
			t.Fatal(err)
		}
		return env, c
	}
	plaintextRefusal := func(name string, resp *http.Response, status int, code string) {
		t.Helper()
		b, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(b))
		if resp.StatusCode != status || resp.Header.Get("Content-Type") == e2e.ContentType ||
			!bytes.Contains(b, []byte(`"`+code+`"`)) || resp.Header.Get(attest.ResponseSignatureHeader) != "" {
			t.Errorf("%s: %d %q %q, want a plaintext unsigned %d %s", name, resp.StatusCode, resp.Header, b, status, code)
		}
	}

	t.Run("replayed after it ran", func(t *testing.T) {
		env, c := seal(time.Time{}, "Bearer "+ownerKey)
		first := postEnvelope(t, f, path, env)
		replay := postEnvelope(t, f, path, env)
		if first.StatusCode != http.StatusOK {
			t.Fatalf("first: %d", first.StatusCode)
		}
		if shared, recovered := keystreamShared(t, c, first, replay); shared {
			t.Fatalf("the replay's refusal is sealed under the answer's key and nonce: the relay reads %q", recovered)
		}
		plaintextRefusal("replay", replay, http.StatusConflict, "replayed_request")
	})

	t.Run("concurrent copies", func(t *testing.T) {
		ran := generations(f)
		for round := range 4 {
			env, _ := seal(time.Time{}, "Bearer "+ownerKey)
			answers := make([]*http.Response, 3)
			var wg sync.WaitGroup
			for i := range answers {
				wg.Go(func() { answers[i] = postEnvelope(t, f, path, env) })
			}
			wg.Wait()
			var sealed []*http.Response
			for _, a := range answers {
				if a.Header.Get("Content-Type") == e2e.ContentType {
					sealed = append(sealed, a)
				} else {
					plaintextRefusal("a concurrent copy", a, http.StatusConflict, "replayed_request")
				}
			}
			if len(sealed) != 1 {
				t.Fatalf("round %d: %d of %d concurrent copies got a sealed answer, want 1", round, len(sealed), len(answers))
			}
			if sealed[0].StatusCode != http.StatusOK {
				t.Fatalf("round %d: the copy that ran got %d", round, sealed[0].StatusCode)
			}
		}
		if n := generations(f) - ran; n != 4 {
			t.Fatalf("4 envelopes sent 3 times each ran %d times", n)
		}
	})

	t.Run("replayed once stale", func(t *testing.T) {
		// Sealed 3 s inside the window's far edge: it runs now, and its copy 4 s later
		// is stale (the replay check looks at the time before the id).
		env, c := seal(time.Now().Add(-e2eWindow+3*time.Second), "Bearer "+ownerKey)
		first := postEnvelope(t, f, path, env)
		if first.StatusCode != http.StatusOK {
			t.Fatalf("first: %d", first.StatusCode)
		}
		time.Sleep(4 * time.Second)
		stale := postEnvelope(t, f, path, env)
		if shared, recovered := keystreamShared(t, c, first, stale); shared {
			t.Fatalf("the stale copy's refusal is sealed under the answer's key and nonce: the relay reads %q", recovered)
		}
		plaintextRefusal("stale copy", stale, http.StatusBadRequest, "stale_request")
	})

	t.Run("refused before its id was recorded", func(t *testing.T) {
		// A credential refused now may be accepted later (an escrow registered after,
		// a quota's generation over), when the relay sends the same envelope again: the
		// first answer must not have used the keystream.
		env, _ := seal(time.Time{}, "Bearer not-a-key")
		plaintextRefusal("a refused credential", postEnvelope(t, f, path, env), http.StatusUnauthorized, "invalid_credentials")
	})
}

// TestSealedRequestAtCapacity: a host at capacity refuses a sealed request after it
// recorded its id, sealed and signed (a router tells it from a relay's forgery and
// tries another host); the same envelope sent again once a slot is free does not run
// and get a second answer under the refusal's keystream: it is a replay.
func TestSealedRequestAtCapacity(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	f, _ := attested(t, atCapacity(started, release))
	first := f.running(started)
	var freeSlot sync.Once // also on failure: the fixture's shutdown waits for the slot
	t.Cleanup(func() { freeSlot.Do(func() { close(release) }) })
	path := "/v1/chat/completions"
	var env []byte
	resp, c := sealedPost(t, f, path, ownerKey, e2eChat, func(b []byte) { env = bytes.Clone(b) })
	raw, _ := io.ReadAll(resp.Body)
	h, plain, err := c.OpenBody(resp.StatusCode, raw)
	if resp.StatusCode != http.StatusTooManyRequests || err != nil || !bytes.Contains(plain, []byte(`"over_capacity"`)) || h.Get(attest.ResponseSignatureHeader) == "" {
		t.Fatalf("a sealed request at capacity: %d %q %v (sealed headers %v)", resp.StatusCode, plain, err, h)
	}
	freeSlot.Do(func() { close(release) })
	<-first
	ran := generations(f)
	again := postEnvelope(t, f, path, env)
	if b, _ := io.ReadAll(again.Body); again.StatusCode != http.StatusConflict || again.Header.Get("Content-Type") == e2e.ContentType {
		t.Fatalf("the refused envelope sent again once a slot is free: %d %q %q", again.StatusCode, again.Header, b)
	}
	if n := generations(f) - ran; n != 0 {
		t.Fatalf("the refused envelope ran %d times", n)
	}
}
