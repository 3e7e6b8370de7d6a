// Package e2e is the end-to-end encryption of Cocoon's chat requests (web/E2E.md,
// versions 1 and 2): a client seals a request's body and credentials with HPKE (RFC
// 9180) to the host's attested key, and the host seals its answer, whole or one stream
// record at a time, under keys exported from the same HPKE context, so that only that
// client reads it. A first request may establish a session (version 2): the client's
// next requests to that key are sealed under a secret exported from that context, with
// no KEM. Whatever sits between them sees the method, the path, sizes and timing, and a
// session's id.
//
// Both sides are here: a client calls Sessions.Seal (or SealRequest, always version 1)
// and opens the answer with the returned *Client; a host calls (*HostKeys).Open with
// its SessionTable, grants sessions with SessionTable.Grant, and seals its answer with
// the returned *Opened. The package does no I/O but reading an answer the caller
// hands it, and runs no goroutine.
//
// Costs (BenchmarkSealOpen, BenchmarkSessionSealOpen, BenchmarkAnswer): an X25519
// request costs two X25519 operations on the client and one on the host (tens of µs);
// an ML-KEM-768+X25519 one adds an ML-KEM encapsulation or decapsulation (about 0.1 ms
// each); a session request costs neither, only HKDF-SHA256 and an AES-256-GCM pass on
// each side. Everything else is small beside them: every record costs one AES-256-GCM
// seal or open of its bytes and, in a stream, a base64 encoding; a stream of 19
// records costs both sides together a few tens of µs and 39 allocations (`go test
// -run '^$' -bench 'SealOpen|Answer' ./web/e2e/`).
//
// Every failure wraps ErrE2E, with a message safe to show a client: it names what was
// wrong with the envelope, never a plaintext byte.
package e2e

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// ErrE2E is wrapped by every error of this package.
var ErrE2E = errors.New("e2e")

// Version is the first byte of an HPKE request envelope (version 1); a session
// envelope's is SessionVersion.
const Version = 1

// ContentType marks an encrypted request body and an encrypted whole answer.
const ContentType = "application/vnd.cocoon.e2e"

// Suite is one of the two HPKE suites of version 1. Both use HKDF-SHA256 and
// AES-256-GCM; they differ in the KEM.
type Suite struct {
	Name string
	kem  hpke.KEM
}

// The suites of version 1. X25519 is what browsers have (@hpke/core); the hybrid is
// the default of Go clients: it stays confidential against an adversary who records
// today and has a quantum computer later, as long as ML-KEM-768 holds.
var (
	X25519         = Suite{"x25519", hpke.DHKEM(ecdh.X25519())}
	MLKEM768X25519 = Suite{"mlkem768x25519", hpke.MLKEM768X25519()}
)

// KEMID is the suite's HPKE KEM identifier: 0x0020 or 0x647a.
func (s Suite) KEMID() uint16 { return s.kem.ID() }

var (
	kdf  = hpke.HKDFSHA256()
	aead = hpke.AES256GCM()
)

// CheckPublicKey fails unless pub is a public key of suite s.
func (s Suite) CheckPublicKey(pub []byte) error {
	_, err := s.publicKey(pub)
	return err
}

// suiteOf returns the suite of a KEM id.
func suiteOf(id uint16) (Suite, bool) {
	for _, s := range []Suite{X25519, MLKEM768X25519} {
		if s.KEMID() == id {
			return s, true
		}
	}
	return Suite{}, false
}

// PublicKeys are a host's two HPKE public keys, as its evidence carries them.
type PublicKeys struct {
	X25519         []byte `json:"x25519"`
	MLKEM768X25519 []byte `json:"mlkem768x25519"`
}

// Key returns the public key of suite s.
func (p PublicKeys) Key(s Suite) []byte {
	if s.KEMID() == X25519.KEMID() {
		return p.X25519
	}
	return p.MLKEM768X25519
}

// HostKeys are a host's two HPKE private keys. They never leave the process.
type HostKeys struct {
	x25519, hybrid hpke.PrivateKey
}

// GenerateHostKeys makes a fresh pair of keys, one per suite.
func GenerateHostKeys() (*HostKeys, error) {
	x, err := X25519.kem.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("%w: X25519 key: %v", ErrE2E, err)
	}
	h, err := MLKEM768X25519.kem.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("%w: ML-KEM-768+X25519 key: %v", ErrE2E, err)
	}
	return &HostKeys{x25519: x, hybrid: h}, nil
}

// HostKeysFromSeeds derives the keys from seeds (RFC 9180 DeriveKeyPair), for test
// vectors only: a host generates its keys.
func HostKeysFromSeeds(x25519Seed, hybridSeed []byte) (*HostKeys, error) {
	x, err := X25519.kem.DeriveKeyPair(x25519Seed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrE2E, err)
	}
	h, err := MLKEM768X25519.kem.DeriveKeyPair(hybridSeed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrE2E, err)
	}
	return &HostKeys{x25519: x, hybrid: h}, nil
}

// Public returns the public keys.
func (k *HostKeys) Public() PublicKeys {
	return PublicKeys{X25519: k.x25519.PublicKey().Bytes(), MLKEM768X25519: k.hybrid.PublicKey().Bytes()}
}

func (k *HostKeys) key(s Suite) hpke.PrivateKey {
	if s.KEMID() == X25519.KEMID() {
		return k.x25519
	}
	return k.hybrid
}

// SealedHeaders are the request headers that travel inside the envelope, and only
// there: credentials, the escrow's signature, the idempotency key, the body's type.
var SealedHeaders = []string{"Authorization", "Content-Type", "Idempotency-Key",
	"Cocoon-Account", "Cocoon-Timestamp", "Cocoon-Nonce", "Cocoon-Client-Signature"}

// Request is a request's plaintext: what the envelope seals.
type Request struct {
	// ID is 16 random bytes, fresh per request: the host runs a request id once.
	ID [16]byte
	// Time is when the client sealed the request; the host refuses one outside its
	// replay window.
	Time time.Time
	// Header holds SealedHeaders only, one value each.
	Header http.Header
	Body   []byte
	// Session asks the host for a session (web/E2E.md §8): the head's "session": true.
	// A version 1 envelope only: a session envelope's is ignored.
	Session bool
}

// requestMeta is the JSON head of a request's plaintext.
type requestMeta struct {
	ID      string            `json:"id"`
	Time    int64             `json:"time"`
	Headers map[string]string `json:"headers"`
	Session bool              `json:"session,omitempty"`
}

// responseMeta is the JSON head of an answer's plaintext.
type responseMeta struct {
	Headers map[string]string `json:"headers"`
}

// Limits of the envelope. maxMeta bounds the JSON head of a plaintext, which holds a
// few headers.
const (
	maxMeta    = 16 << 10
	headerSize = 5 // version, KEM id, enc length
)

// info is the HPKE info of a request: it binds the protocol, the method and the path
// (query included), so that a relay cannot move a ciphertext to another route or
// pipeline.
//
//	lp("cocoon-host e2e request v1") || lp(method) || lp(path)
func info(method, path string) []byte {
	var b bytes.Buffer
	writeFields(&b, []byte("cocoon-host e2e request v1"), []byte(method), []byte(path))
	return b.Bytes()
}

func writeFields(b *bytes.Buffer, fields ...[]byte) {
	for _, f := range fields {
		b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(f))))
		b.Write(f)
	}
}

// frame is uint32be(len(meta)) || meta || body.
func frame(meta any, body []byte) []byte {
	m, err := json.Marshal(meta)
	if err != nil {
		panic("e2e: " + err.Error()) // strings and integers
	}
	out := make([]byte, 0, 4+len(m)+len(body))
	out = binary.BigEndian.AppendUint32(out, uint32(len(m)))
	return append(append(out, m...), body...)
}

// unframe splits a plaintext into its JSON head, decoded into meta, and its body.
func unframe(p []byte, meta any) ([]byte, error) {
	if len(p) < 4 {
		return nil, fmt.Errorf("%w: plaintext of %d bytes has no head", ErrE2E, len(p))
	}
	n := binary.BigEndian.Uint32(p)
	if n > maxMeta || int(n) > len(p)-4 {
		return nil, fmt.Errorf("%w: head of %d bytes is over %d or past the plaintext", ErrE2E, n, maxMeta)
	}
	d := json.NewDecoder(bytes.NewReader(p[4 : 4+n]))
	d.DisallowUnknownFields()
	if err := d.Decode(meta); err != nil || d.More() {
		return nil, fmt.Errorf("%w: head is not the JSON object of version 1", ErrE2E)
	}
	return p[4+n:], nil
}

// Client is a client's side of one request: it opens the answer.
type Client struct {
	response
	// offered is the session key of a version 1 request that asked for a session;
	// session the session a session envelope was sealed under. Both nil otherwise.
	offered *SessionKey
	session *clientSession
	// sessions, when set, keeps a session the answer grants (Sessions.Seal).
	sessions *Sessions
	slot     sessionSlot
}

// SealRequest seals req to the host's public key pub of suite s for method and path
// (the request's path with its query, as sent) and returns the body to send (with
// Content-Type ContentType) and the Client that opens the answer. A zero req.ID or
// req.Time is filled in fresh. It fails for a header outside SealedHeaders or a key
// that is not one of suite s. Cost: one encapsulation (the suite's KEM) and an
// AES-256-GCM pass over the body; Sessions.Seal spares later requests the KEM.
func SealRequest(s Suite, pub []byte, method, path string, req Request) ([]byte, *Client, error) {
	plain, err := requestPlaintext(&req)
	if err != nil {
		return nil, nil, err
	}
	pk, err := s.publicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	snd, err := newSender(s, pk, method, path)
	if err != nil {
		return nil, nil, err
	}
	return snd.seal(plain, req.Session)
}

// requestPlaintext checks req's headers, fills in a zero ID or Time, and returns the
// plaintext an envelope seals: uint32be(len(head)) || head || body.
func requestPlaintext(req *Request) ([]byte, error) {
	if req.ID == [16]byte{} {
		rand.Read(req.ID[:])
	}
	if req.Time.IsZero() {
		req.Time = time.Now()
	}
	meta := requestMeta{ID: hex.EncodeToString(req.ID[:]), Time: req.Time.Unix(), Headers: make(map[string]string, len(req.Header)), Session: req.Session}
	for name, v := range req.Header {
		if !slices.Contains(SealedHeaders, name) || len(v) != 1 {
			return nil, fmt.Errorf("%w: header %q cannot be sealed (one value of %v)", ErrE2E, name, SealedHeaders)
		}
		meta.Headers[name] = v[0]
	}
	return frame(meta, req.Body), nil
}

// sender is an HPKE sender context set up for one request to one key and route, and
// its encapsulated key. It seals exactly one request: its AEAD sequence and its
// exported answer keys belong to that request alone.
type sender struct {
	suite Suite
	enc   []byte
	ctx   *hpke.Sender
}

// publicKey parses pub, a public key of suite s. For ML-KEM-768 this expands the
// key's matrix: about a fifth of an encapsulation's cost.
func (s Suite) publicKey(pub []byte) (hpke.PublicKey, error) {
	pk, err := s.kem.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: not a %s public key", ErrE2E, s.Name)
	}
	return pk, nil
}

// newSender encapsulates to pk, a public key of suite s, for a request of method to
// path: the cost of the suite's KEM (ML-KEM-768+X25519: about 0.1 ms).
func newSender(s Suite, pk hpke.PublicKey, method, path string) (*sender, error) {
	enc, ctx, err := hpke.NewSender(pk, kdf, aead, info(method, path))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrE2E, err)
	}
	return &sender{suite: s, enc: enc, ctx: ctx}, nil
}

// seal seals a request's plaintext into its envelope and returns the Client that
// opens the answer; when the plaintext asks for a session, the Client holds the
// session key exported for it, which a Sessions keeps once the answer grants it. The
// caller drops snd afterwards.
func (snd *sender) seal(plain []byte, askSession bool) ([]byte, *Client, error) {
	ct, err := snd.ctx.Seal(nil, plain) // empty AAD (web/E2E.md §3)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrE2E, err)
	}
	out := make([]byte, 0, headerSize+len(snd.enc)+len(ct))
	out = append(out, Version)
	out = binary.BigEndian.AppendUint16(out, snd.suite.KEMID())
	out = binary.BigEndian.AppendUint16(out, uint16(len(snd.enc)))
	out = append(append(out, snd.enc...), ct...)
	c := &Client{}
	if err := c.derive(snd.ctx); err != nil {
		return nil, nil, err
	}
	if askSession {
		k, err := exportSessionKey(snd.ctx, snd.suite)
		if err != nil {
			return nil, nil, err
		}
		c.offered = &k
	}
	return out, c, nil
}

// Opened is a host's side of one opened request: its plaintext, and the sealing of
// the answer.
type Opened struct {
	Request
	Suite Suite
	response
	// grant is the session key of a version 1 request that asked for a session,
	// exported from its context; a SessionTable stores it once the request's credential
	// and id were accepted (SessionTable.Grant).
	grant *SessionKey
}

// OpenRequest opens a request envelope sent with method to path (query included). It
// checks nothing of the plaintext's freshness: a ReplayGuard does. It fails, wrapping
// ErrE2E, for an envelope of another version or suite, a malformed one, one that
// does not open with this host's key for this method and path (altered, sealed to
// another key or for another route), and a plaintext that is not version 1's.
func (k *HostKeys) OpenRequest(method, path string, envelope []byte) (*Opened, error) {
	if len(envelope) < headerSize {
		return nil, fmt.Errorf("%w: envelope of %d bytes is shorter than its %d-byte header", ErrE2E, len(envelope), headerSize)
	}
	if envelope[0] != Version {
		return nil, fmt.Errorf("%w: envelope version %d, this host speaks %d", ErrE2E, envelope[0], Version)
	}
	id := binary.BigEndian.Uint16(envelope[1:])
	s, ok := suiteOf(id)
	if !ok {
		return nil, fmt.Errorf("%w: KEM 0x%04x is not a suite of version 1 (0x%04x, 0x%04x)", ErrE2E, id, X25519.KEMID(), MLKEM768X25519.KEMID())
	}
	n := int(binary.BigEndian.Uint16(envelope[3:]))
	if len(envelope) < headerSize+n {
		return nil, fmt.Errorf("%w: encapsulated key of %d bytes runs past the envelope", ErrE2E, n)
	}
	enc, ct := envelope[headerSize:headerSize+n], envelope[headerSize+n:]
	r, err := hpke.NewRecipient(enc, k.key(s), kdf, aead, info(method, path))
	if err != nil {
		return nil, fmt.Errorf("%w: the encapsulated key is not one of %s", ErrE2E, s.Name)
	}
	p, err := r.Open(nil, ct)
	if err != nil {
		return nil, fmt.Errorf("%w: the request does not open with this host's %s key for %s %s: altered, sealed to another key (the host restarted?) or for another route", ErrE2E, s.Name, method, path)
	}
	o, err := openedOf(s, p)
	if err != nil {
		return nil, err
	}
	if err := o.derive(r); err != nil {
		return nil, err
	}
	if o.Session {
		k, err := exportSessionKey(r, s)
		if err != nil {
			return nil, err
		}
		o.grant = &k
	}
	return o, nil
}

// openedOf decodes an opened plaintext of suite s: its head and body.
func openedOf(s Suite, p []byte) (*Opened, error) {
	var meta requestMeta
	body, err := unframe(p, &meta)
	if err != nil {
		return nil, err
	}
	o := &Opened{Suite: s, Request: Request{Header: http.Header{}, Body: body, Time: time.Unix(meta.Time, 0), Session: meta.Session}}
	id16, err := hex.DecodeString(meta.ID)
	if err != nil || len(id16) != 16 {
		return nil, fmt.Errorf("%w: request id %q is not 32 hex digits", ErrE2E, meta.ID)
	}
	o.ID = [16]byte(id16)
	for name, v := range meta.Headers {
		if !slices.Contains(SealedHeaders, name) {
			return nil, fmt.Errorf("%w: sealed header %q is not one of %v", ErrE2E, name, SealedHeaders)
		}
		o.Header[name] = []string{v}
	}
	return o, nil
}

// response holds the answer's key and base nonce, exported from the request's context.
// A request's answer is sealed, or opened, by one goroutine at a time: its records
// are in order.
type response struct {
	gcm   cipher.AEAD
	nonce [12]byte
	// scratch holds the current record's nonce and AAD (recordParams): the AEAD is an
	// interface, so arrays on the stack would escape, two allocations per record.
	scratch [12 + 3]byte
}

// Exporter labels of the answer's key and base nonce.
const (
	responseKeyLabel   = "cocoon-host e2e response key v1"
	responseNonceLabel = "cocoon-host e2e response nonce v1"
)

// exporter is what answer keys and session keys are exported from: an HPKE context,
// or a session request's schedule (sessionSchedule).
type exporter interface {
	Export(label string, length int) ([]byte, error)
}

func (r *response) derive(ctx exporter) error {
	key, err := ctx.Export(responseKeyLabel, 32)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrE2E, err)
	}
	nonce, err := ctx.Export(responseNonceLabel, 12)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrE2E, err)
	}
	block, _ := aes.NewCipher(key) // 32 bytes
	r.gcm, _ = cipher.NewGCM(block)
	r.nonce = [12]byte(nonce)
	return nil
}

// recordParams returns record seq's nonce and AAD, in r.scratch. The nonce is the
// base nonce XOR the record's sequence number, big-endian in the last 8 bytes. The AAD
// is uint16be(status) || final (1 or 0): a relay can neither change the status an
// answer was sealed with nor end a stream early undetected.
func (r *response) recordParams(seq uint64, status int, final bool) (nonce, aad []byte) {
	nonce, aad = r.scratch[:12], r.scratch[12:]
	copy(nonce, r.nonce[:])
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], seq)
	for i := range s {
		nonce[4+i] ^= s[i]
	}
	binary.BigEndian.PutUint16(aad, uint16(status))
	aad[2] = 0
	if final {
		aad[2] = 1
	}
	return nonce, aad
}

// sealRecord seals record seq of an answer of status.
func (r *response) sealRecord(dst []byte, seq uint64, status int, final bool, plain []byte) []byte {
	nonce, aad := r.recordParams(seq, status, final)
	return r.gcm.Seal(dst, nonce, plain, aad)
}

// openRecord opens record seq and appends its plaintext to dst (ct[:0] opens in
// place); final says whether the caller takes it for the last.
func (r *response) openRecord(dst []byte, seq uint64, status int, final bool, ct []byte) ([]byte, error) {
	nonce, aad := r.recordParams(seq, status, final)
	p, err := r.gcm.Open(dst, nonce, ct, aad)
	if err != nil {
		return nil, fmt.Errorf("%w: answer record %d does not open: altered, reordered, dropped, or the status %d changed", ErrE2E, seq, status)
	}
	return p, nil
}

// ResponseHead returns the plaintext head of an answer: its sealed headers. The
// answer's plaintext is the head followed by the body's bytes.
func ResponseHead(h http.Header) []byte {
	meta := responseMeta{Headers: map[string]string{}}
	for name, v := range h {
		if len(v) > 0 {
			meta.Headers[name] = v[0]
		}
	}
	return frame(meta, nil)
}

// SealBody seals a whole answer of status: the head of its headers h and its body, as
// one final record. Cost: one copy of body and an AES-256-GCM pass over it.
func (o *Opened) SealBody(status int, h http.Header, body []byte) []byte {
	head := ResponseHead(h)
	plain := append(make([]byte, 0, len(head)+len(body)+o.gcm.Overhead()), head...)
	plain = append(plain, body...)
	return o.sealRecord(plain[:0], 0, status, true, plain) // in place: the buffer has room for the tag
}

// OpenBody opens a whole answer of status and returns its headers and body.
func (c *Client) OpenBody(status int, sealed []byte) (http.Header, []byte, error) {
	p, err := c.openRecord(nil, 0, status, true, sealed)
	if err != nil {
		return nil, nil, err
	}
	h, body, err := splitResponse(p)
	if err != nil {
		return nil, nil, err
	}
	c.granted(h)
	return h, body, nil
}

// splitResponse splits an answer's plaintext into its head's headers and its body. It
// refuses a head that names a header twice (case-insensitively) or holds a name or
// value HTTP cannot carry as sealed (web/E2E.md §5): a browser's Headers would trim,
// refuse or merge those, so the browser library refuses the same heads, and a header
// reads alike in both clients.
func splitResponse(p []byte) (http.Header, []byte, error) {
	var meta responseMeta
	body, err := unframe(p, &meta)
	if err != nil {
		return nil, nil, err
	}
	h := make(http.Header, len(meta.Headers))
	for name, v := range meta.Headers {
		key := http.CanonicalHeaderKey(name)
		if _, twice := h[key]; twice || !isToken(name) || !isFieldValue(v) {
			return nil, nil, fmt.Errorf("%w: the answer's head holds header %q twice or not as HTTP carries it", ErrE2E, name)
		}
		h[key] = []string{v}
	}
	return h, body, nil
}

// isToken reports whether name is an HTTP field name: one or more token characters
// (RFC 9110 §5.6.2).
func isToken(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range []byte(name) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// isFieldValue reports whether v is a field value as HTTP sends it: visible ASCII,
// spaces and tabs, neither first nor last a space or tab (which a receiver trims).
func isFieldValue(v string) bool {
	for i, c := range []byte(v) {
		blank := c == ' ' || c == '\t'
		if (c < 0x21 || c > 0x7e) && !blank || blank && (i == 0 || i == len(v)-1) {
			return false
		}
	}
	return true
}
