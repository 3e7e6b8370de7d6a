package e2e

import (
	"bytes"
	"container/list"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Sessions (web/E2E.md §8): a client's first request to a host key is a version 1
// envelope whose head asks for a session; the host, once it accepted the request's
// credential and id, exports a session id and secret from the request's HPKE context,
// keeps them for SessionLifetime and says so in the answer's sealed head
// (SessionHeader). The client's next requests to that key are session envelopes
// (version 2): no KEM, one HKDF and one AES-256-GCM pass. A session inherits the
// confidentiality of the HPKE context that made it, post-quantum with the hybrid suite.
const (
	// SessionVersion is the first byte of a session envelope.
	SessionVersion = 2
	// SessionLifetime is how long a host keeps a session from its creation (never
	// extended by use). A client uses one until SessionLifetime - SessionMargin.
	SessionLifetime = time.Hour
	// SessionMargin is how long before its expiry a client stops using a session, so
	// that a request sealed just before the expiry does not arrive just after it.
	SessionMargin = time.Minute
	// SessionCapacity bounds the sessions a host keeps; the least recently used is
	// forgotten to make room for a new one (SessionTable).
	SessionCapacity = 1 << 16
	// SessionsPerPrincipal bounds the sessions one principal (the credential of the
	// requests that established them) holds in a host's table; its least recently used
	// is forgotten to make room for its next one. A client keeps one session per host
	// key and suite (two suites: two sessions), a browser one per tab, an app server
	// or a proxy one per process: 16 covers eight such clients behind one credential,
	// and makes evicting the whole table take SessionCapacity/16 = 4,096 principals.
	SessionsPerPrincipal = 16
	// SessionHeader is the answer header, sealed in its head, that grants the session
	// its request asked for: the seconds until the host forgets it.
	SessionHeader = "Cocoon-E2E-Session"
	// sessionHeaderSize is a session envelope's header: version, session id, rid. It is
	// the AAD of the request's ciphertext.
	sessionHeaderSize = 1 + 16 + 16
)

// Labels of the session's derivation (web/E2E.md §8).
const (
	sessionSecretLabel  = "cocoon-host e2e session secret v1"
	sessionIDLabel      = "cocoon-host e2e session id v1"
	sessionRequestLabel = "cocoon-host e2e session request v1"
	sessionKeyLabel     = "request key"
	sessionNonceLabel   = "request nonce"
)

// ErrSessionUnknown is a session envelope's session id the host does not hold:
// never granted, expired, forgotten to make room, or the host restarted. The client
// drops the session and sends the request again as a version 1 envelope.
var ErrSessionUnknown = fmt.Errorf("%w: unknown session: send the request again sealed to the host's key (version 1)", ErrE2E)

// SessionKey is a session as both sides export it from the establishing request's
// HPKE context, and the suite of that context.
type SessionKey struct {
	ID     [16]byte
	Secret [32]byte
	Suite  Suite
}

// exportSessionKey exports a session's id and secret from an establishing request's
// context of suite s.
//
//	session_secret = Export("cocoon-host e2e session secret v1", 32)
//	session_id     = Export("cocoon-host e2e session id v1", 16)
func exportSessionKey(ctx exporter, s Suite) (SessionKey, error) {
	secret, err := ctx.Export(sessionSecretLabel, 32)
	if err != nil {
		return SessionKey{}, fmt.Errorf("%w: %v", ErrE2E, err)
	}
	id, err := ctx.Export(sessionIDLabel, 16)
	if err != nil {
		return SessionKey{}, fmt.Errorf("%w: %v", ErrE2E, err)
	}
	return SessionKey{ID: [16]byte(id), Secret: [32]byte(secret), Suite: s}, nil
}

// sessionSchedule is the key schedule of one session request: an exporter whose
// Export(label, L) is E(label, L) of web/E2E.md §8,
//
//	prk        = HKDF-Extract(salt = rid, ikm = session_secret)
//	E(label, L) = HKDF-Expand(prk, lp("cocoon-host e2e session request v1") || lp(method) || lp(path) || lp(label), L)
//
// so that the request's key and nonce and its answer's are bound to the session, the
// request id, the method and the path.
type sessionSchedule struct {
	prk []byte
	ctx []byte
}

func newSessionSchedule(secret *[32]byte, rid [16]byte, method, path string) sessionSchedule {
	prk, err := hkdf.Extract(sha256.New, secret[:], rid[:])
	if err != nil {
		panic("e2e: " + err.Error()) // SHA-256 takes any input
	}
	var b bytes.Buffer
	writeFields(&b, []byte(sessionRequestLabel), []byte(method), []byte(path))
	return sessionSchedule{prk: prk, ctx: b.Bytes()}
}

// Export is E(label, length).
func (s sessionSchedule) Export(label string, length int) ([]byte, error) {
	info := bytes.NewBuffer(bytes.Clone(s.ctx))
	writeFields(info, []byte(label))
	return hkdf.Expand(sha256.New, s.prk, info.String(), length)
}

// requestAEAD returns the AES-256-GCM of a session request and its nonce.
func (s sessionSchedule) requestAEAD() (cipher.AEAD, []byte) {
	key, _ := s.Export(sessionKeyLabel, 32) // lengths far below HKDF's bound
	nonce, _ := s.Export(sessionNonceLabel, 12)
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	return gcm, nonce
}

// sealSession seals req (its ID the envelope's rid) under session k for method and
// path: the envelope and the Client that opens the answer.
func sealSession(k *SessionKey, method, path string, req *Request) ([]byte, *Client, error) {
	req.Session = false // ignored in a session envelope: not sent
	plain, err := requestPlaintext(req)
	if err != nil {
		return nil, nil, err
	}
	sch := newSessionSchedule(&k.Secret, req.ID, method, path)
	gcm, nonce := sch.requestAEAD()
	out := make([]byte, 0, sessionHeaderSize+len(plain)+gcm.Overhead())
	out = append(out, SessionVersion)
	out = append(out, k.ID[:]...)
	out = append(out, req.ID[:]...)
	out = gcm.Seal(out, nonce, plain, out[:sessionHeaderSize])
	c := &Client{}
	if err := c.derive(sch); err != nil {
		return nil, nil, err
	}
	return out, c, nil
}

// SessionTable is a host's sessions, in its memory only (never persisted): at most
// capacity in all and perPrincipal per principal, each kept SessionLifetime from its
// creation. A grant to a principal that holds perPrincipal sessions forgets that
// principal's least recently used one, never another principal's; otherwise a grant
// to a full table forgets the table's least recently used. So one principal, however
// many sessions it asks for, holds at most perPrincipal and pushes out only its own,
// and pushing every other client out of a full table takes capacity/perPrincipal
// principals with accepted credentials (SessionCapacity/SessionsPerPrincipal = 4,096
// Telegram accounts, API keys or escrows on a host), each making or using its
// sessions more recently than the clients it pushes out. A full table never refuses a
// session: it pushes its least active client back to version 1 envelopes. Nothing
// runs in the background: an expired session is dropped when looked up, or forgotten
// as the least recently used.
//
// Memory is bounded by capacity, the per-principal index included, since a principal
// is indexed only while it holds a session: about 410 bytes a session when every
// session has a principal of its own, the index's worst case (BenchmarkSessionTable:
// 27 MB for SessionCapacity; 213 bytes without the index). Safe for concurrent use; a
// lookup or a grant is a few map accesses and list moves under one mutex, O(1)
// whatever the table holds (a few hundred ns: BenchmarkSessionTable). Both figures:
// `go test -run '^$' -bench 'SessionTable$' ./web/e2e/`.
type SessionTable struct {
	capacity, perPrincipal int

	mu          sync.Mutex
	byID        map[[16]byte]*list.Element // of *hostSession, in lru
	lru         list.List                  // front: the most recently used
	byPrincipal map[string]*principalSessions
}

type hostSession struct {
	key     SessionKey
	expires time.Time
	owner   *principalSessions
	inOwner *list.Element // of this session's element in lru, in owner.lru
}

// principalSessions is the sessions one principal holds, the most recently used first.
type principalSessions struct {
	principal string
	lru       list.List // of *list.Element of SessionTable.lru
}

// NewSessionTable returns an empty table of at most capacity sessions in all and
// perPrincipal per principal (SessionCapacity and SessionsPerPrincipal for a host). It
// panics unless both are at least 1.
func NewSessionTable(capacity, perPrincipal int) *SessionTable {
	if capacity < 1 || perPrincipal < 1 {
		panic(fmt.Sprintf("e2e: a session table of capacity %d, %d per principal", capacity, perPrincipal))
	}
	return &SessionTable{capacity: capacity, perPrincipal: perPrincipal,
		byID: map[[16]byte]*list.Element{}, byPrincipal: map[string]*principalSessions{}}
}

// Len returns how many sessions the table holds, expired ones not yet dropped included.
func (t *SessionTable) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}

// Grant stores the session o asked for (a version 1 request whose head has
// "session": true), created now and held by principal, and returns its lifetime; false
// for a request that asked for none. principal is who made the request, as its
// credential names it: the same string the replay cache counts a principal's ids by
// (ReplayGuard.Check). The caller grants only once it accepted o's credential and
// recorded its id (web/E2E.md §4 step 4), and sets SessionHeader on the answer. Room
// is made first among principal's own sessions, and only then, with principal under
// its bound, in the whole table.
func (t *SessionTable) Grant(o *Opened, principal string, now time.Time) (time.Duration, bool) {
	if o.grant == nil {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.byID[o.grant.ID]; ok { // an id exported from another context: never in practice
		t.remove(e)
	}
	if owner := t.byPrincipal[principal]; owner != nil && owner.lru.Len() >= t.perPrincipal {
		t.remove(owner.lru.Back().Value.(*list.Element))
	}
	for len(t.byID) >= t.capacity {
		t.remove(t.lru.Back())
	}
	owner := t.byPrincipal[principal] // after the removals, which drop a principal left with none
	if owner == nil {
		owner = &principalSessions{principal: principal}
		t.byPrincipal[principal] = owner
	}
	s := &hostSession{key: *o.grant, expires: now.Add(SessionLifetime), owner: owner}
	e := t.lru.PushFront(s)
	s.inOwner = owner.lru.PushFront(e)
	t.byID[o.grant.ID] = e
	return SessionLifetime, true
}

// remove forgets the session of e, and its principal once it holds none.
func (t *SessionTable) remove(e *list.Element) {
	s := e.Value.(*hostSession)
	delete(t.byID, s.key.ID)
	t.lru.Remove(e)
	if s.owner.lru.Remove(s.inOwner); s.owner.lru.Len() == 0 {
		delete(t.byPrincipal, s.owner.principal)
	}
}

// lookup returns session id's key, marked used now, or false when the table does not
// hold it (an expired session is dropped).
func (t *SessionTable) lookup(id [16]byte, now time.Time) (SessionKey, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byID[id]
	if !ok {
		return SessionKey{}, false
	}
	s := e.Value.(*hostSession)
	if !now.Before(s.expires) {
		t.remove(e)
		return SessionKey{}, false
	}
	t.lru.MoveToFront(e)
	s.owner.lru.MoveToFront(s.inOwner)
	return s.key, true
}

// Open opens a request envelope of either version sent with method to path (query
// included): version 1 with k (HostKeys.OpenRequest), a session envelope with the
// session table t at time now. It fails, wrapping ErrE2E, as OpenRequest does, with
// ErrSessionUnknown for a session t does not hold, and for a session envelope that is
// malformed, does not open under its session for this method and path, or whose head's
// id is not its rid.
func (k *HostKeys) Open(t *SessionTable, method, path string, envelope []byte, now time.Time) (*Opened, error) {
	switch {
	case len(envelope) == 0 || envelope[0] == Version:
		return k.OpenRequest(method, path, envelope)
	case envelope[0] != SessionVersion:
		return nil, fmt.Errorf("%w: envelope version %d, this host speaks %d and %d (sessions)", ErrE2E, envelope[0], Version, SessionVersion)
	}
	if len(envelope) < sessionHeaderSize {
		return nil, fmt.Errorf("%w: session envelope of %d bytes is shorter than its %d-byte header", ErrE2E, len(envelope), sessionHeaderSize)
	}
	key, ok := t.lookup([16]byte(envelope[1:17]), now)
	if !ok {
		return nil, ErrSessionUnknown
	}
	rid := [16]byte(envelope[17:33])
	sch := newSessionSchedule(&key.Secret, rid, method, path)
	gcm, nonce := sch.requestAEAD()
	p, err := gcm.Open(nil, nonce, envelope[sessionHeaderSize:], envelope[:sessionHeaderSize])
	if err != nil {
		return nil, fmt.Errorf("%w: the session request does not open for %s %s: altered, of another session, or for another route", ErrE2E, method, path)
	}
	o, err := openedOf(key.Suite, p)
	if err != nil {
		return nil, err
	}
	if o.ID != rid {
		return nil, fmt.Errorf("%w: the session request's head id is not its envelope's rid", ErrE2E)
	}
	o.Session = false // ignored in a session envelope
	if err := o.derive(sch); err != nil {
		return nil, err
	}
	return o, nil
}

// Sessions seals a client's requests, keeping one current session per host key and
// suite: a version 1 envelope asking for a session until an answer that opened grants
// one (SessionHeader in its sealed head), then session envelopes until SessionMargin
// before the session's expiry. It never uses a session an answer did not grant
// through its sealed head, and forgets one the host does not hold (Client.Retry).
// Safe for concurrent use; the zero value is not usable, NewSessions is. It runs
// nothing in the background; a session is a few hundred bytes, one per key and suite.
type Sessions struct {
	mu      sync.Mutex
	current map[sessionSlot]*clientSession
	now     func() time.Time // time.Now; tests move it
}

// sessionSlot is what a session belongs to: the host's key and its suite.
type sessionSlot struct {
	kem uint16
	pub string
}

// clientSession is a session a host granted, usable before usableUntil.
type clientSession struct {
	key         SessionKey
	usableUntil time.Time
}

// maxSessions bounds the host keys a Sessions keeps a session for: a client talks to
// a few hosts, and a restarted host has new keys (the old one's session stays until
// dropped). Beyond it, the sessions are forgotten and established anew.
const maxSessions = 1024

// NewIdempotencyKey returns an Idempotency-Key for a client to seal with a request
// billed without a nonce (an API key that bills an escrow) when its caller gave none,
// from the request's first sending on: the request sent again after an
// e2e_session_unknown, which a relay can forge for a request that ran, is then answered
// with the first answer and charged once (§8). It is "cocoon-", sender (which client
// made it: "proxy", "client"), "-" and 32 lowercase hex digits of 128 random bits.
// It cannot fail (crypto/rand does not).
func NewIdempotencyKey(sender string) string {
	var b [16]byte
	rand.Read(b[:])
	return "cocoon-" + sender + "-" + hex.EncodeToString(b[:])
}

// NewSessions returns a Sessions that holds no session yet.
func NewSessions() *Sessions {
	return &Sessions{current: map[sessionSlot]*clientSession{}, now: time.Now}
}

// Seal seals req for method and path (query included) to the host's key pub of suite
// s: as a session envelope under the current session for pub and s, else as
// SealRequest with req.Session set. It returns the envelope and the Client that opens
// the answer (and keeps the session the answer grants). It fails as SealRequest does.
// Cost: with a session, an HKDF-SHA256 schedule and an AES-256-GCM pass over the
// request (BenchmarkSessionSealOpen: sealing and opening together about 30 µs here,
// most of it the four HKDF-Expand of each side, against 170-320 µs with a KEM:
// `go test -run '^$' -bench 'SealOpen' ./web/e2e/`); without, SealRequest's.
func (p *Sessions) Seal(s Suite, pub []byte, method, path string, req Request) ([]byte, *Client, error) {
	slot := sessionSlot{s.KEMID(), string(pub)}
	p.mu.Lock()
	cs := p.current[slot]
	if cs != nil && !p.now().Before(cs.usableUntil) {
		delete(p.current, slot)
		cs = nil
	}
	p.mu.Unlock()
	var env []byte
	var c *Client
	var err error
	if cs != nil {
		env, c, err = sealSession(&cs.key, method, path, &req)
	} else {
		req.Session = true
		env, c, err = SealRequest(s, pub, method, path, req)
	}
	if err != nil {
		return nil, nil, err
	}
	c.session, c.sessions, c.slot = cs, p, slot
	return env, c, nil
}

// keep makes k, granted for ttl from now, the current session of slot.
func (p *Sessions) keep(slot sessionSlot, k SessionKey, ttl time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.current[slot]; !ok && len(p.current) >= maxSessions {
		clear(p.current)
	}
	p.current[slot] = &clientSession{key: k, usableUntil: p.now().Add(ttl - SessionMargin)}
}

// drop forgets cs, if it is still slot's current session.
func (p *Sessions) drop(slot sessionSlot, cs *clientSession) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current[slot] == cs {
		delete(p.current, slot)
	}
}

// granted keeps the session an opened answer's sealed headers h grant, when c's
// request asked for one and c came from a Sessions. A value grantSeconds refuses is
// ignored.
func (c *Client) granted(h http.Header) {
	if c.offered == nil || c.sessions == nil {
		return
	}
	secs, ok := grantSeconds(h.Get(SessionHeader))
	if !ok {
		return
	}
	c.sessions.keep(c.slot, *c.offered, time.Duration(secs)*time.Second)
	c.offered = nil
}

// grantSeconds reads a SessionHeader value as web/E2E.md §8 spells it: the decimal
// integer of the seconds granted, ASCII digits only with no sign, space or leading
// zero, above SessionMargin and at most SessionLifetime. Anything else grants nothing
// (ok false). The browser library's sessionSeconds reads the same grammar, and both
// run web/e2e/testdata/grants.json, so that two clients read one grant alike. It
// gives up at the first digit that takes the value over SessionLifetime, so that no
// value is multiplied out of range, however many digits it has.
func grantSeconds(v string) (secs int, ok bool) {
	if v == "" || v[0] == '0' {
		return 0, false
	}
	for _, d := range []byte(v) {
		if d < '0' || d > '9' {
			return 0, false
		}
		if secs = secs*10 + int(d-'0'); secs > int(SessionLifetime/time.Second) {
			return 0, false
		}
	}
	return secs, secs > int(SessionMargin/time.Second)
}

// Retry reports whether the request c sealed must be sent once more, sealed anew by
// the same Sessions (same body and sealed headers, a new id), after the host refused
// it in plaintext with error code code (web/E2E.md §4): true for
// "e2e_session_unknown" to a session envelope, whose session it drops, so that the
// new envelope is version 1. A session envelope refused "e2e_invalid" drops its
// session too, but is not sent again here: the host may not speak sessions, or the
// request was altered on its way, and the caller handles it as for version 1.
func (c *Client) Retry(code string) bool {
	if c.session == nil || c.sessions == nil {
		return false
	}
	switch code {
	case "e2e_session_unknown":
		c.sessions.drop(c.slot, c.session)
		return true
	case "e2e_invalid":
		c.sessions.drop(c.slot, c.session)
	}
	return false
}
