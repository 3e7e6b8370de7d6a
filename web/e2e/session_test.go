package e2e

import (
	"bytes"
	"container/list"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// establish runs a session's first request: p seals the test request to k's key of
// suite s, the host opens it, grants the session at now in table to principal and answers with the
// grant in its sealed head (or, with relay set, as relay rewrites the answer), and the
// client opens the answer.
func establish(t *testing.T, p *Sessions, k *HostKeys, table *SessionTable, principal string, s Suite, now time.Time, relay func(*http.Response)) *Opened {
	t.Helper()
	env, c := sealNext(t, p, k, s)
	if env[0] != Version {
		t.Fatalf("a first request sealed as version %d", env[0])
	}
	o, err := k.Open(table, http.MethodPost, testPath, env, now)
	if err != nil || !o.Session {
		t.Fatalf("opened %+v, %v: want a request asking for a session", o, err)
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if ttl, ok := table.Grant(o, principal, now); ok {
		h.Set(SessionHeader, strconv.Itoa(int(ttl.Seconds())))
	}
	resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {ContentType}},
		Body: io.NopCloser(bytes.NewReader(o.SealBody(200, h, []byte(`{"answer":"the secret answer"}`))))}
	if relay != nil {
		relay(resp)
	}
	if err := c.OpenResponse(resp, 1<<20); err != nil && relay == nil {
		t.Fatal(err)
	}
	return o
}

// testPrincipal is the principal that establishes sessions in tests where who holds
// them does not matter.
const testPrincipal = "key:test"

// sealNext seals the test request with p to k's key of suite s.
func sealNext(t *testing.T, p *Sessions, k *HostKeys, s Suite) ([]byte, *Client) {
	t.Helper()
	env, c, err := p.Seal(s, k.Public().Key(s), http.MethodPost, testPath, testRequest())
	if err != nil {
		t.Fatal(err)
	}
	return env, c
}

// TestSessionRoundTrip: after a granted first request, the client's requests are
// session envelopes that the host opens under the session (same suite, fresh ids,
// the sealed credential), whose answers, whole and streamed, open only with that
// request's client; the envelope bears no plaintext.
func TestSessionRoundTrip(t *testing.T) {
	k := testKeys(t)
	for _, s := range suites {
		t.Run(s.Name, func(t *testing.T) {
			p, table, now := NewSessions(), NewSessionTable(SessionCapacity, SessionsPerPrincipal), time.Now()
			establish(t, p, k, table, testPrincipal, s, now, nil)
			seen := map[[16]byte]bool{}
			for range 3 {
				env, c := sealNext(t, p, k, s)
				if env[0] != SessionVersion || bytes.Contains(env, []byte("secret")) {
					t.Fatalf("version %d, %q", env[0], env)
				}
				o, err := k.Open(table, http.MethodPost, testPath, env, now)
				if err != nil {
					t.Fatal(err)
				}
				if o.Suite.Name != s.Name || o.Header.Get("Authorization") != "Bearer secret-key" || seen[o.ID] || o.ID != [16]byte(env[17:33]) {
					t.Fatalf("opened suite %s, header %v, id %x", o.Suite.Name, o.Header, o.ID)
				}
				seen[o.ID] = true
				sealed := o.SealBody(200, http.Header{"Content-Type": {"application/json"}}, []byte("the secret answer"))
				if _, body, err := c.OpenBody(200, sealed); err != nil || string(body) != "the secret answer" {
					t.Fatalf("OpenBody: %q %v", body, err)
				}
				st, err := c.OpenStream(bytes.NewReader(streamOf(o, []string{"data: one\n\n", "data: [DONE]\n\n"})), 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				if b, err := io.ReadAll(st); err != nil || string(b) != "data: one\n\ndata: [DONE]\n\n" {
					t.Fatalf("stream %q %v", b, err)
				}
			}
		})
	}
}

// TestSessionAttacks: what a relay, or another client, can do with a session envelope:
// move it to another route or pipeline, swap its session id for another client's,
// alter any byte, send one whose rid is not its head's id, or a session id the host
// does not hold. Each is refused, e2e_invalid or ErrSessionUnknown.
func TestSessionAttacks(t *testing.T) {
	k := testKeys(t)
	table, now := NewSessionTable(SessionCapacity, SessionsPerPrincipal), time.Now()
	alice, bob := NewSessions(), NewSessions()
	establish(t, alice, k, table, "key:alice", MLKEM768X25519, now, nil)
	establish(t, bob, k, table, "key:bob", MLKEM768X25519, now, nil)
	env, _ := sealNext(t, alice, k, MLKEM768X25519)
	bobEnv, _ := sealNext(t, bob, k, MLKEM768X25519)
	open := func(path string, env []byte) error {
		_, err := k.Open(table, http.MethodPost, path, env, now)
		return err
	}
	if err := open(testPath, env); err != nil {
		t.Fatal(err)
	}
	swapped := bytes.Clone(env)
	copy(swapped[1:17], bobEnv[1:17])
	unknown := bytes.Clone(env)
	unknown[1] ^= 0xff
	// One with its rid not its head's id, sealed correctly under Alice's session: only
	// a holder of the session secret can make it.
	cs := alice.current[sessionSlot{MLKEM768X25519.KEMID(), string(k.Public().MLKEM768X25519)}]
	req := testRequest()
	req.ID = [16]byte{1}
	otherRID, _, err := sealSession(&cs.key, http.MethodPost, testPath, &req)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := requestPlaintext(&Request{ID: [16]byte{2}, Header: req.Header, Body: req.Body})
	sch := newSessionSchedule(&cs.key.Secret, [16]byte{1}, http.MethodPost, testPath)
	gcm, nonce := sch.requestAEAD()
	otherRID = gcm.Seal(otherRID[:sessionHeaderSize], nonce, plain, otherRID[:sessionHeaderSize])
	for _, c := range []struct {
		name, path string
		env        []byte
		want       error
	}{
		{"another route", "/v1/chat/completions", env, ErrE2E},
		{"another pipeline", "/p/" + string(bytes.Repeat([]byte("ab"), 32)) + "/v1/chat/completions", env, ErrE2E},
		{"another client's session id", testPath, swapped, ErrE2E},
		{"rid not the head's id", testPath, otherRID, ErrE2E},
		{"a session the host does not hold", testPath, unknown, ErrSessionUnknown},
		{"truncated header", testPath, env[:20], ErrE2E},
		{"version 3", testPath, append([]byte{3}, env[1:]...), ErrE2E},
	} {
		err := open(c.path, c.env)
		if !errors.Is(err, c.want) || (c.want != ErrSessionUnknown && errors.Is(err, ErrSessionUnknown)) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	for i := 33; i < len(env); i += 7 {
		bad := bytes.Clone(env)
		bad[i] ^= 1
		if err := open(testPath, bad); !errors.Is(err, ErrE2E) || errors.Is(err, ErrSessionUnknown) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	for i := 17; i < 33; i++ { // the rid: the AAD and the key's salt
		bad := bytes.Clone(env)
		bad[i] ^= 1
		if err := open(testPath, bad); !errors.Is(err, ErrE2E) || errors.Is(err, ErrSessionUnknown) {
			t.Fatalf("rid byte %d flipped: %v", i, err)
		}
	}
}

// TestSessionGrantIsSealed: a client uses a session only when the answer's sealed head
// grants it. A relay that adds the header in the clear to an answer that grants none,
// or strips or alters the sealed grant (any byte of the answer), leaves the client on
// version 1; an answer that grants a session only to the client whose request asked.
func TestSessionGrantIsSealed(t *testing.T) {
	k := testKeys(t)
	now := time.Now()
	version := func(p *Sessions) byte {
		env, _ := sealNext(t, p, k, X25519)
		return env[0]
	}
	// The host grants none (a full... any reason), a relay adds the header in the clear.
	p, table := NewSessions(), NewSessionTable(SessionCapacity, SessionsPerPrincipal)
	env, c := sealNext(t, p, k, X25519)
	o, err := k.Open(table, http.MethodPost, testPath, env, now)
	if err != nil {
		t.Fatal(err)
	}
	resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {ContentType}, SessionHeader: {"3600"}},
		Body: io.NopCloser(bytes.NewReader(o.SealBody(200, http.Header{}, []byte("{}"))))}
	if err := c.OpenResponse(resp, 1<<20); err != nil || resp.Header.Get(SessionHeader) != "" {
		t.Fatalf("%v %v", resp.Header, err)
	}
	if v := version(p); v != Version {
		t.Fatalf("a session used from a plaintext header: version %d", v)
	}
	// The host grants one; the relay flips a byte of the sealed answer: it does not
	// open, and no session is used.
	for _, flip := range []int{0, 10, 40} {
		p := NewSessions()
		establish(t, p, k, table, testPrincipal, X25519, now, func(r *http.Response) {
			b, _ := io.ReadAll(r.Body)
			b[flip] ^= 1
			r.Body = io.NopCloser(bytes.NewReader(b))
		})
		if v := version(p); v != Version {
			t.Fatalf("byte %d flipped: a session used from an answer that did not open", flip)
		}
	}
	// The grant, unaltered, is used.
	p = NewSessions()
	establish(t, p, k, table, testPrincipal, X25519, now, nil)
	if v := version(p); v != SessionVersion {
		t.Fatalf("a granted session not used: version %d", v)
	}
}

// grantVectors are the cases of testdata/grants.json, which web/e2e/js/test.mjs runs on
// the browser library too.
type grantVectors struct {
	Cases []struct {
		Why     string `json:"why"`
		Head    string `json:"head"`
		Opens   bool   `json:"opens"`
		Seconds int    `json:"seconds"`
	} `json:"cases"`
}

// TestGrantVectors: each head of testdata/grants.json, sealed as a whole answer to a
// request that asked for a session, opens or is refused, and grants the session for
// the seconds the file says (0: none), as the browser library reads it. A grant in any
// other spelling than E2E.md §8's (leading zeros, ten digits and more, a sign,
// surrounding space) grants nothing; a head a browser's Headers would trim or merge
// does not open.
func TestGrantVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/grants.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors grantVectors
	if err := json.Unmarshal(raw, &vectors); err != nil || len(vectors.Cases) == 0 {
		t.Fatalf("testdata/grants.json: %v", err)
	}
	k, table := testKeys(t), NewSessionTable(SessionCapacity, SessionsPerPrincipal)
	now := time.Unix(1_800_000_000, 0)
	for _, v := range vectors.Cases {
		t.Run(v.Why, func(t *testing.T) {
			p := NewSessions()
			p.now = func() time.Time { return now }
			env, c := sealNext(t, p, k, X25519)
			o, err := k.Open(table, http.MethodPost, testPath, env, now)
			if err != nil {
				t.Fatal(err)
			}
			plain := binary.BigEndian.AppendUint32(nil, uint32(len(v.Head)))
			_, _, err = c.OpenBody(200, o.sealRecord(nil, 0, 200, true, append(plain, v.Head...)))
			if opened := err == nil; opened != v.Opens {
				t.Fatalf("head %s: opened %v (%v), want %v", v.Head, opened, err, v.Opens)
			}
			var got int
			if cs := p.current[c.slot]; cs != nil {
				got = int((cs.usableUntil.Sub(now) + SessionMargin) / time.Second)
			}
			if got != v.Seconds {
				t.Fatalf("head %s grants %d s, want %d", v.Head, got, v.Seconds)
			}
		})
	}
}

// TestSessionSealRefusesUnsealedHeaders: a header outside SealedHeaders is refused
// under a session as in version 1, with an error, not a crash.
func TestSessionSealRefusesUnsealedHeaders(t *testing.T) {
	k := testKeys(t)
	p := NewSessions()
	establish(t, p, k, NewSessionTable(SessionCapacity, SessionsPerPrincipal), testPrincipal, X25519, time.Now(), nil)
	req := testRequest()
	req.Header.Set("Cookie", "c")
	if _, _, err := p.Seal(X25519, k.Public().X25519, http.MethodPost, testPath, req); !errors.Is(err, ErrE2E) {
		t.Fatalf("Seal = %v, want ErrE2E", err)
	}
}

// TestSessionExpiry: the host forgets a session SessionLifetime after its creation,
// however much it is used (ErrSessionUnknown); the client stops using it SessionMargin
// before, and asks for a new one.
func TestSessionExpiry(t *testing.T) {
	k := testKeys(t)
	start := time.Now()
	p, table := NewSessions(), NewSessionTable(SessionCapacity, SessionsPerPrincipal)
	clock := start
	p.now = func() time.Time { return clock }
	establish(t, p, k, table, testPrincipal, X25519, start, nil)
	env, _ := sealNext(t, p, k, X25519)
	for _, at := range []time.Duration{time.Minute, 30 * time.Minute, SessionLifetime - time.Second} {
		if _, err := k.Open(table, http.MethodPost, testPath, env, start.Add(at)); err != nil {
			t.Fatalf("at %s: %v", at, err)
		}
	}
	if _, err := k.Open(table, http.MethodPost, testPath, env, start.Add(SessionLifetime)); !errors.Is(err, ErrSessionUnknown) {
		t.Fatalf("at the lifetime: %v, want ErrSessionUnknown", err)
	}
	if table.Len() != 0 {
		t.Fatalf("an expired session kept: %d", table.Len())
	}
	clock = start.Add(SessionLifetime - SessionMargin - time.Second)
	if env, _ := sealNext(t, p, k, X25519); env[0] != SessionVersion {
		t.Fatal("the session was not used before its margin")
	}
	clock = start.Add(SessionLifetime - SessionMargin)
	if env, _ := sealNext(t, p, k, X25519); env[0] != Version {
		t.Fatal("the session was used within its margin of the expiry")
	}
}

// TestSessionUnknownRetry: a session envelope refused e2e_session_unknown makes the
// client drop the session and seal the request once more as version 1, asking anew;
// any other refusal is not retried here, and e2e_invalid drops the session too.
func TestSessionUnknownRetry(t *testing.T) {
	k := testKeys(t)
	now := time.Now()
	for _, c := range []struct {
		code      string
		retry     bool
		nextIsNew bool // the next request is version 1
	}{{"e2e_session_unknown", true, true}, {"e2e_invalid", false, true}, {"stale_request", false, false}, {"", false, false}} {
		p := NewSessions()
		establish(t, p, k, NewSessionTable(SessionCapacity, SessionsPerPrincipal), testPrincipal, X25519, now, nil)
		env, cl := sealNext(t, p, k, X25519)
		if env[0] != SessionVersion {
			t.Fatal("no session")
		}
		if got := cl.Retry(c.code); got != c.retry {
			t.Errorf("%q: Retry %v, want %v", c.code, got, c.retry)
		}
		if next, _ := sealNext(t, p, k, X25519); (next[0] == Version) != c.nextIsNew {
			t.Errorf("%q: the next request is version %d", c.code, next[0])
		}
	}
	// A version 1 request is never retried: the refusal could be forged for one that ran.
	_, cl := sealNext(t, NewSessions(), k, X25519)
	if cl.Retry("e2e_session_unknown") {
		t.Fatal("a version 1 request retried")
	}
}

// TestSessionTableCapacity: a full table forgets its least recently used session to
// grant a new one, and never refuses a grant; a session in use stays. Each client is
// a principal of its own, under its bound.
func TestSessionTableCapacity(t *testing.T) {
	k := testKeys(t)
	const capacity = 4
	table, now := NewSessionTable(capacity, SessionsPerPrincipal), time.Now()
	var clients []*Sessions
	establishNew := func() {
		p := NewSessions()
		establish(t, p, k, table, "key:client"+strconv.Itoa(len(clients)), X25519, now, nil)
		clients = append(clients, p)
	}
	for range capacity {
		establishNew()
	}
	// Client 0 is the oldest but in use: client 1 is the least recently used.
	env, _ := sealNext(t, clients[0], k, X25519)
	if _, err := k.Open(table, http.MethodPost, testPath, env, now); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		establishNew()
		if env, _ := sealNext(t, clients[len(clients)-1], k, X25519); env[0] != SessionVersion {
			t.Fatal("a grant refused by a full table")
		}
	}
	if table.Len() != capacity {
		t.Fatalf("%d sessions, capacity %d", table.Len(), capacity)
	}
	for i, p := range clients {
		env, _ := sealNext(t, p, k, X25519)
		_, err := k.Open(table, http.MethodPost, testPath, env, now)
		if forgotten := i == 1 || i == 2; forgotten != errors.Is(err, ErrSessionUnknown) {
			t.Errorf("client %d: %v (forgotten: %v)", i, err, forgotten)
		}
	}
}

// grantN grants principal the session whose id is n at now, as Grant does once the
// host accepted an establishing request: what an attacker with that principal's
// credential gets from each of its requests.
func grantN(table *SessionTable, principal string, n uint64, now time.Time) {
	o := Opened{grant: &SessionKey{Suite: X25519}}
	binary.BigEndian.PutUint64(o.grant.ID[8:], n)
	table.Grant(&o, principal, now)
}

// holds reports whether table holds the session whose id is n at now, and uses it.
func holds(table *SessionTable, n uint64, now time.Time) bool {
	var id [16]byte
	binary.BigEndian.PutUint64(id[8:], n)
	_, ok := table.lookup(id, now)
	return ok
}

// checkPrincipalIndex checks the per-principal index against the table: every session
// in its principal's list and no other, no principal over its bound, and no principal
// indexed that holds none, which bounds the index by the table's capacity.
func checkPrincipalIndex(t *testing.T, table *SessionTable) {
	t.Helper()
	table.mu.Lock()
	defer table.mu.Unlock()
	indexed := 0
	for principal, owner := range table.byPrincipal {
		if n := owner.lru.Len(); n == 0 || n > table.perPrincipal || owner.principal != principal {
			t.Fatalf("principal %q indexed with %d sessions (bound %d) as %q", principal, n, table.perPrincipal, owner.principal)
		}
		for e := owner.lru.Front(); e != nil; e = e.Next() {
			s := e.Value.(*list.Element).Value.(*hostSession)
			if s.owner != owner || s.inOwner != e || table.byID[s.key.ID] != e.Value {
				t.Fatalf("session %x of %q indexed inconsistently", s.key.ID, principal)
			}
		}
		indexed += owner.lru.Len()
	}
	if indexed != len(table.byID) || table.lru.Len() != len(table.byID) {
		t.Fatalf("%d sessions indexed by principal, %d by id, %d in the table's list", indexed, len(table.byID), table.lru.Len())
	}
}

// TestSessionTableEvictionOrder: which session a grant forgets. A principal at its
// bound forgets its own least recently used session (not its oldest, not another
// principal's, even the table's least recently used); a principal under its bound, in
// a full table, forgets the table's least recently used. Ops: "a 3" grants principal a
// the session 3, "use 3" looks it up, "late use 3" looks it up after its lifetime.
func TestSessionTableEvictionOrder(t *testing.T) {
	for _, c := range []struct {
		name                   string
		capacity, perPrincipal int
		ops                    string
		held, forgotten        []uint64
		principals             int // indexed at the end
	}{
		{"at its bound, a principal forgets its own, not the table's least recently used", 3, 2,
			"b 1, a 2, a 3, a 4", []uint64{1, 3, 4}, []uint64{2}, 2},
		{"its own least recently used, not its oldest", 8, 2,
			"a 1, a 2, use 1, a 3", []uint64{1, 3}, []uint64{2}, 1},
		{"a full table forgets its least recently used, of a principal under its bound", 3, 2,
			"a 1, b 2, c 3, d 4", []uint64{2, 3, 4}, []uint64{1}, 3},
		{"a session in use stays in a full table", 3, 2,
			"a 1, b 2, c 3, use 1, d 4", []uint64{1, 3, 4}, []uint64{2}, 3},
		{"at its bound in a full table: its own, and nothing else", 4, 2,
			"b 1, a 2, c 3, a 4, a 5", []uint64{1, 3, 4, 5}, []uint64{2}, 3},
		{"one session per principal", 4, 1,
			"a 1, b 2, a 3, a 4", []uint64{2, 4}, []uint64{1, 3}, 2},
		{"a principal whose sessions all expired is no longer indexed", 4, 2,
			"a 1, a 2, b 3, late use 1, late use 2", []uint64{3}, []uint64{1, 2}, 1},
		{"a principal whose sessions were all forgotten is no longer indexed", 2, 2,
			"a 1, b 2, b 3", []uint64{2, 3}, []uint64{1}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			table, now := NewSessionTable(c.capacity, c.perPrincipal), time.Unix(1_800_000_000, 0)
			for op := range strings.SplitSeq(c.ops, ", ") {
				verb, arg, _ := strings.Cut(op, " ")
				switch n, _ := strconv.ParseUint(arg[strings.LastIndex(arg, " ")+1:], 10, 64); verb {
				case "use":
					if !holds(table, n, now) {
						t.Fatalf("%s: session %d not held", op, n)
					}
				case "late":
					holds(table, n, now.Add(SessionLifetime))
				default:
					grantN(table, "telegram:"+verb, n, now)
				}
				checkPrincipalIndex(t, table)
			}
			if len(table.byPrincipal) != c.principals {
				t.Errorf("%d principals indexed, want %d", len(table.byPrincipal), c.principals)
			}
			for _, n := range c.forgotten {
				if holds(table, n, now) {
					t.Errorf("session %d held, want it forgotten", n)
				}
			}
			for _, n := range c.held {
				if !holds(table, n, now) {
					t.Errorf("session %d forgotten, want it held", n)
				}
			}
		})
	}
}

// TestSessionTableOnePrincipalCannotEvictOthers performs the red team's attack on a
// host's table (SessionCapacity, SessionsPerPrincipal): honest clients establish their
// sessions, then one principal (a Telegram account) establishes twice the table's
// capacity, using each as it goes so that they are the most recently used. The
// honest sessions still open, and the attacker holds SessionsPerPrincipal; before the
// bound, the attacker's grants forgot every honest session. Then the bound's price:
// SessionCapacity/SessionsPerPrincipal principals push an honest client out, one fewer
// cannot (on a small table, the same arithmetic).
func TestSessionTableOnePrincipalCannotEvictOthers(t *testing.T) {
	k := testKeys(t)
	table, now := NewSessionTable(SessionCapacity, SessionsPerPrincipal), time.Now()
	honest := map[string]*Sessions{"key:app": NewSessions(), "telegram:1": NewSessions(), "account:0:aa": NewSessions()}
	for principal, p := range honest {
		establish(t, p, k, table, principal, MLKEM768X25519, now, nil)
	}
	for n := range uint64(2 * SessionCapacity) {
		grantN(table, "telegram:666", n, now)
		holds(table, n, now)
	}
	for principal, p := range honest {
		env, _ := sealNext(t, p, k, MLKEM768X25519)
		if _, err := k.Open(table, http.MethodPost, testPath, env, now); err != nil {
			t.Errorf("%s's session after one principal granted %d: %v", principal, 2*SessionCapacity, err)
		}
	}
	if n := table.Len(); n != len(honest)+SessionsPerPrincipal {
		t.Errorf("%d sessions held, want %d honest and %d of the attacker", n, len(honest), SessionsPerPrincipal)
	}
	checkPrincipalIndex(t, table)

	const capacity, perPrincipal = 64, 4
	for _, attackers := range []int{capacity/perPrincipal - 1, capacity / perPrincipal} {
		table := NewSessionTable(capacity, perPrincipal)
		p := NewSessions()
		establish(t, p, k, table, "telegram:1", X25519, now, nil)
		for a := range attackers {
			for n := range uint64(4 * perPrincipal) {
				grantN(table, "telegram:"+strconv.Itoa(1000+a), uint64(a)<<32|n, now)
			}
		}
		env, _ := sealNext(t, p, k, X25519)
		_, err := k.Open(table, http.MethodPost, testPath, env, now)
		if pushedOut := attackers*perPrincipal >= capacity; pushedOut != errors.Is(err, ErrSessionUnknown) {
			t.Errorf("%d attacking principals of %d sessions each in a table of %d: %v", attackers, perPrincipal, capacity, err)
		}
	}
}

// TestSessionTableConcurrent: grants and lookups from many goroutines, more clients
// than the table holds and more per principal than a principal may hold, so that both
// kinds of eviction run concurrently (run with -race).
func TestSessionTableConcurrent(t *testing.T) {
	k := testKeys(t)
	table, now := NewSessionTable(6, 2), time.Now()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			p, principal := NewSessions(), "key:"+strconv.Itoa(g%3)
			for i := range 20 {
				env, c := sealNext(t, p, k, X25519)
				o, err := k.Open(table, http.MethodPost, testPath, env, now)
				if errors.Is(err, ErrSessionUnknown) {
					c.Retry("e2e_session_unknown")
					continue
				} else if err != nil {
					t.Errorf("goroutine %d request %d: %v", g, i, err)
					return
				}
				h := http.Header{}
				if ttl, ok := table.Grant(o, principal, now); ok {
					h.Set(SessionHeader, strconv.Itoa(int(ttl.Seconds())))
				}
				if _, _, err := c.OpenBody(200, o.SealBody(200, h, nil)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	checkPrincipalIndex(t, table)
}

func FuzzOpenSession(f *testing.F) {
	k, err := HostKeysFromSeeds(bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32))
	if err != nil {
		f.Fatal(err)
	}
	table, now := NewSessionTable(16, SessionsPerPrincipal), time.Unix(1_800_000_000, 0)
	p := NewSessions()
	env, c, _ := p.Seal(X25519, k.Public().X25519, http.MethodPost, testPath, testRequest())
	o, _ := k.Open(table, http.MethodPost, testPath, env, now)
	table.Grant(o, testPrincipal, now)
	c.OpenBody(200, o.SealBody(200, http.Header{SessionHeader: {"3600"}}, nil))
	sess, _, _ := p.Seal(X25519, k.Public().X25519, http.MethodPost, testPath, testRequest())
	f.Add(sess)
	f.Add(sess[:sessionHeaderSize])
	f.Add([]byte{SessionVersion})
	f.Fuzz(func(t *testing.T, env []byte) {
		o, err := k.Open(table, http.MethodPost, testPath, env, now)
		if err == nil && len(env) > 0 && env[0] == SessionVersion && o.ID != [16]byte(env[17:33]) {
			t.Fatal("a session request opened whose head id is not its rid")
		}
	})
}

// BenchmarkSessionSealOpen is a session request's cost on both sides, to set against
// BenchmarkSealOpen's KEM: the client's sealing and the host's opening, and the
// answer's keys.
func BenchmarkSessionSealOpen(b *testing.B) {
	k, _ := GenerateHostKeys()
	table, now := NewSessionTable(SessionCapacity, SessionsPerPrincipal), time.Now()
	p, pub := NewSessions(), k.Public().MLKEM768X25519
	env, c, _ := p.Seal(MLKEM768X25519, pub, http.MethodPost, testPath, testRequest())
	o, _ := k.Open(table, http.MethodPost, testPath, env, now)
	table.Grant(o, testPrincipal, now)
	c.OpenBody(200, o.SealBody(200, http.Header{SessionHeader: {"3600"}}, nil))
	for b.Loop() {
		env, _, err := p.Seal(MLKEM768X25519, pub, http.MethodPost, testPath, testRequest())
		if err != nil || env[0] != SessionVersion {
			b.Fatal(err)
		}
		if _, err := k.Open(table, http.MethodPost, testPath, env, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSessionTable is a full table's cost: lookups and grants from parallel
// goroutines, under its one mutex, and its memory per session (bytes/session). The
// table is filled with a principal per session, the per-principal index's worst case;
// the grants then go to 4,096 of those principals (SessionCapacity /
// SessionsPerPrincipal), so each forgets the table's least recently used session or,
// once its principal holds SessionsPerPrincipal, that principal's.
func BenchmarkSessionTable(b *testing.B) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	table, now := NewSessionTable(SessionCapacity, SessionsPerPrincipal), time.Now()
	for i := range SessionCapacity {
		o := Opened{grant: &SessionKey{Suite: X25519}}
		binary.BigEndian.PutUint64(o.grant.ID[:], uint64(i))
		table.Grant(&o, "telegram:"+strconv.Itoa(i), now)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	principals := make([]string, SessionCapacity/SessionsPerPrincipal)
	for i := range principals {
		principals[i] = "telegram:" + strconv.Itoa(i)
	}
	b.ResetTimer() // filling the table is not an operation
	b.RunParallel(func(pb *testing.PB) {
		var id [16]byte
		rand.Read(id[8:]) // this goroutine's grants are its own
		for i := 0; pb.Next(); i++ {
			if i%16 == 0 {
				binary.BigEndian.PutUint64(id[:], uint64(i))
				table.Grant(&Opened{grant: &SessionKey{ID: id, Suite: X25519}}, principals[i/16%len(principals)], now)
			} else {
				var old [16]byte
				binary.BigEndian.PutUint64(old[:], uint64(i%SessionCapacity))
				table.lookup(old, now)
			}
		}
	})
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/SessionCapacity, "bytes/session") // after ResetTimer, which drops metrics
}

// TestNewIdempotencyKey: a client's own key names its sender and carries 128 random
// bits as 32 lowercase hex digits (the wire format cocoon proxy and cocoon chat have
// always sent), and no two are alike.
func TestNewIdempotencyKey(t *testing.T) {
	for _, c := range []struct{ sender, prefix string }{
		{"proxy", "cocoon-proxy-"},
		{"client", "cocoon-client-"},
	} {
		t.Run(c.sender, func(t *testing.T) {
			seen := map[string]bool{}
			for range 64 {
				key := NewIdempotencyKey(c.sender)
				digits, ok := strings.CutPrefix(key, c.prefix)
				if !ok || len(digits) != 32 || strings.Trim(digits, "0123456789abcdef") != "" {
					t.Fatalf("NewIdempotencyKey(%q) = %q, want %q and 32 lowercase hex digits", c.sender, key, c.prefix)
				}
				if seen[key] {
					t.Fatalf("NewIdempotencyKey(%q) repeated %q", c.sender, key)
				}
				seen[key] = true
			}
		})
	}
}
