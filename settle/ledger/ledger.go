// Package ledger is the durable billing.Store on bbolt: one file holds every account's
// receipt chain, the request hashes it has billed, the idempotency records and what has
// been settled on-chain.
//
// # File layout
//
// The file has five buckets. Keys of the per-account buckets start with the account's
// length (big-endian uint16) and the account, so one account's keys are contiguous.
//
//	ledger       "version" → schema version (big-endian uint32, currently 2);
//	             "pruned_before" → just after the latest record Prune forgot (Unix ns), tag
//	accounts     account → last seq, cumulative, settled (uint64 each), settled-at (Unix ns), tag
//	receipts     account, seq (big-endian uint64) → the receipt's JSON, tag
//	requests     account, request or signature hash → when the request was made (Unix ns), tag
//	idempotency  account, key → time, seq (uint64 each), request hash, response bytes, tag
//
// The file is on a disk the machine's owner can write, so every record but the version
// ends with a 32-byte tag, an HMAC-SHA256 under a key only the host has (see records):
// a record altered on disk is never used; what needs it fails with billing.ErrIntegrity,
// so that nothing is charged or answered from it. Schema 1, written by earlier versions,
// had no tags; Open upgrades it once its receipts verify (see WithReceiptKey).
//
// Holds, and the request hashes and idempotency keys of requests between Reserve and
// Commit, live in memory only (see billing.Store).
//
// # Pruning and the clock
//
// Prune forgets the request hashes and idempotency records older than a cutoff the
// host takes from its clock, which the machine's owner sets. A clock moved a day ahead
// would make the host forget requests it billed minutes ago, and moved back, accept
// them again within their signed window: a second charge. So the ledger keeps the
// time just after the latest record it has forgotten ("pruned_before", authenticated
// like every record) and Reserve refuses a reservation whose time is before it
// (billing.ErrPruned): every request that has a time at or after it still has its
// hashes and keys on record, whatever the clock did. It is the records' time, not the
// cutoff, so that a clock once far ahead by mistake refuses nothing signed after the
// requests the host had seen. billing.Service gives a signed request's reservation the
// time its client signed, so that a captured request keeps its own time however late
// it is sent.
//
// # Crash safety
//
// Commit is one bbolt read-write transaction that re-reads the account, writes the
// receipt, its request hash, its idempotency record and the account's new totals, and
// returns only after bbolt has fsynced them: bbolt makes a transaction visible by
// writing a new meta page after the data it points to is on disk, so a crash leaves
// either the whole receipt or nothing. The chain therefore never has a gap or a receipt
// whose hashes are unrecorded (but for the request hash of a cancelled request under an
// idempotency key, left free on purpose for its retry), and a receipt that Commit
// returned survives. A crash loses only holds, whose requests returned no receipt and
// so are charged nothing. Reserve checks the durable hashes and idempotency records
// while holding the mutex that guards the in-memory ones, and Commit drops a request's
// in-memory state only after its transaction committed, so every hash is either in
// memory or on disk from Reserve on: no request, and no signed attempt of one, can be
// billed twice.
package ledger

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cocoonhost/cocoon/settle"
	"github.com/cocoonhost/cocoon/settle/billing"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// schemaVersion is the layout this package reads and writes. A file with another
// version is refused rather than misread, except schema 1, which Open upgrades.
const schemaVersion = 2

// maxField bounds an account, request hash and idempotency key, so that every key fits
// bbolt's key size limit with room to spare.
const maxField = 1024

var (
	bucketLedger      = []byte("ledger")
	bucketAccounts    = []byte("accounts")
	bucketReceipts    = []byte("receipts")
	bucketRequests    = []byte("requests")
	bucketIdempotency = []byte("idempotency")
	keyVersion        = []byte("version")
	keyPrunedBefore   = []byte("pruned_before")
)

// ErrClosed is returned by every call after Close.
var ErrClosed = errors.New("ledger: closed")

var _ billing.Store = (*Ledger)(nil)

// Ledger is a billing.Store in a bbolt file. It is safe for concurrent use. Its methods
// ignore their context: each is one short transaction, and a Commit must not be
// abandoned because the client of the request it bills went away.
type Ledger struct {
	db  *bolt.DB
	rec records

	// mu guards the in-memory state. Reserve holds it across its read of the durable
	// state, so that a request's hash moves from memory to disk atomically for it.
	mu       sync.Mutex
	closed   bool
	lastHold billing.HoldID
	holds    map[billing.HoldID]*billing.Reservation
	pending  map[string]*pending
	// prunedBefore is just after the latest record Prune has forgotten: what is older
	// may have been forgotten, so Reserve refuses it.
	prunedBefore time.Time
}

// pending is an account's requests between Reserve and Commit.
type pending struct {
	held     uint64
	holds    int
	requests map[string]struct{} // request and signature hashes
	keys     map[string]string   // idempotency key → request hash
}

// seen reports whether hash (a request or signature hash, "" for none) is pending.
func (p *pending) seen(hash string) bool {
	_, ok := p.requests[hash]
	return ok && hash != ""
}

// Option configures Open.
type Option func(*options)

type options struct {
	lockTimeout   time.Duration
	logger        *slog.Logger
	settlementKey ed25519.PublicKey
}

// WithLockTimeout sets how long Open waits for another process to release the file
// (default 1 s). bbolt locks the file for the life of the Ledger, so two hosts cannot
// share it.
func WithLockTimeout(d time.Duration) Option {
	return func(o *options) { o.lockTimeout = d }
}

// WithLogger sets where integrity failures are logged, at error level (default
// slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithReceiptKey gives the settlement key the ledger's receipts are signed with. Open
// needs it only to upgrade a schema-1 file, whose records carry no tags: it then checks
// every account's receipt chain (signatures, sequence, cumulative totals) against its
// record before it authenticates them, drops the stored idempotency answers (nothing
// vouches for them; a retry of such a request is refused as a replay instead of
// answered), and refuses the file if anything does not verify.
func WithReceiptKey(key ed25519.PublicKey) Option {
	return func(o *options) { o.settlementKey = key }
}

// Open opens the ledger at path, creating it (mode 0600) if it does not exist. macKey,
// at least MinMACKey bytes that only the host knows, authenticates every record (see
// records); the same key must open the file again. It refuses a file that is not a
// ledger or whose schema version this package does not know, upgrades schema 1 (see
// WithReceiptKey), and returns an error wrapping bbolt's ErrTimeout if another process
// holds the file. Opening an existing file costs one fsync'd transaction.
func Open(path string, macKey []byte, opts ...Option) (*Ledger, error) {
	o := options{lockTimeout: time.Second, logger: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	if len(macKey) < MinMACKey {
		return nil, fmt.Errorf("ledger: a MAC key of at least %d bytes is required, got %d", MinMACKey, len(macKey))
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.lockTimeout})
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", path, err)
	}
	l := &Ledger{
		db:      db,
		rec:     records{key: bytes.Clone(macKey), log: o.logger.With("ledger", path)},
		holds:   make(map[billing.HoldID]*billing.Reservation),
		pending: make(map[string]*pending),
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := l.initSchema(tx, o.settlementKey); err != nil {
			return err
		}
		v, err := l.rec.get(tx, bucketLedger, keyPrunedBefore)
		switch {
		case err != nil:
			return err
		case v != nil && len(v) != 8:
			return fmt.Errorf("corrupt %s record of %d bytes", keyPrunedBefore, len(v))
		case v != nil:
			l.prunedBefore = decodeTime(v)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger: %s: %w", path, err)
	}
	return l, nil
}

// initSchema creates the buckets in an empty file, checks the version of any other,
// and upgrades schema 1 with settlementKey.
func (l *Ledger) initSchema(tx *bolt.Tx, settlementKey ed25519.PublicKey) error {
	if b := tx.Bucket(bucketLedger); b != nil {
		v := b.Get(keyVersion)
		if len(v) != 4 {
			return errors.New("not a ledger: no schema version")
		}
		switch n := binary.BigEndian.Uint32(v); {
		case n == 1:
			return l.upgrade1(tx, settlementKey)
		case n != schemaVersion:
			return fmt.Errorf("schema version %d, this build reads version %d", n, schemaVersion)
		}
	} else {
		empty := true
		tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		if !empty {
			return errors.New("not a ledger: a bbolt file without a schema version")
		}
		b, err := tx.CreateBucket(bucketLedger)
		if err != nil {
			return err
		}
		if err := b.Put(keyVersion, binary.BigEndian.AppendUint32(nil, schemaVersion)); err != nil {
			return err
		}
	}
	for _, name := range [][]byte{bucketAccounts, bucketReceipts, bucketRequests, bucketIdempotency} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// Close makes every later call fail with ErrClosed and closes the file. It does not
// wait for open holds: their requests can no longer commit, and are charged nothing.
// A call already in a transaction finishes first.
func (l *Ledger) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	return l.db.Close()
}

// view and update run fn in a read-only or read-write transaction, mapping bbolt's
// error for a closed database (a call that raced with Close) to ErrClosed.
func (l *Ledger) view(fn func(*bolt.Tx) error) error {
	return closedErr(l.db.View(fn))
}

func (l *Ledger) update(fn func(*bolt.Tx) error) error {
	return closedErr(l.db.Update(fn))
}

func closedErr(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Reserve implements billing.Store. It costs a map lookup and one read-only transaction
// (no disk write) under the ledger's mutex. A zero r.Time is taken as now; it is what
// Prune compares with, and one before a record Prune forgot is refused with
// billing.ErrPruned (see "Pruning and the clock").
func (l *Ledger) Reserve(_ context.Context, r billing.Reservation) (billing.HoldID, error) {
	if err := checkField("account", r.Account, true); err != nil {
		return 0, err
	}
	if err := checkField("request hash", r.RequestHash, true); err != nil {
		return 0, err
	}
	if err := checkField("signature hash", r.SignatureHash, false); err != nil {
		return 0, err
	}
	if err := checkField("idempotency key", r.IdempotencyKey, false); err != nil {
		return 0, err
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	if r.Time.Before(l.prunedBefore) {
		return 0, billing.ErrPruned
	}
	p := l.pending[r.Account]
	if p == nil {
		// Stored only if the hold is made.
		p = &pending{requests: make(map[string]struct{}), keys: make(map[string]string)}
	}
	if h, ok := p.keys[r.IdempotencyKey]; ok && r.IdempotencyKey != "" {
		if h == r.RequestHash {
			return 0, &billing.IdempotentError{Err: billing.ErrInProgress}
		}
		return 0, &billing.IdempotentError{Err: billing.ErrIdempotencyMismatch}
	}
	if p.seen(r.RequestHash) || p.seen(r.SignatureHash) {
		return 0, billing.ErrReplay
	}

	var cumulative uint64
	err := l.view(func(tx *bolt.Tx) error {
		if r.IdempotencyKey != "" {
			v, err := l.rec.get(tx, bucketIdempotency, stringKey(r.Account, r.IdempotencyKey))
			if err != nil {
				return err
			}
			if v != nil {
				return l.completed(tx, r, v)
			}
		}
		for _, hash := range []string{r.RequestHash, r.SignatureHash} {
			if hash == "" {
				continue
			}
			switch v, err := l.rec.get(tx, bucketRequests, stringKey(r.Account, hash)); {
			case err != nil:
				return err
			case v != nil:
				return billing.ErrReplay
			}
		}
		m, err := l.meta(tx, r.Account)
		if err == nil && m.settled > r.Charged {
			return billing.ErrReopened
		}
		cumulative = m.cumulative
		return err
	})
	if err != nil {
		return 0, err
	}

	available := subSat(subSat(r.Limit, cumulative), p.held)
	if r.MaxCost > available {
		return 0, &billing.InsufficientError{Available: available, Needed: r.MaxCost}
	}

	l.pending[r.Account] = p
	p.held += r.MaxCost
	p.holds++
	p.requests[r.RequestHash] = struct{}{}
	if r.SignatureHash != "" {
		p.requests[r.SignatureHash] = struct{}{}
	}
	if r.IdempotencyKey != "" {
		p.keys[r.IdempotencyKey] = r.RequestHash
	}
	l.lastHold++
	l.holds[l.lastHold] = &r
	return l.lastHold, nil
}

// completed is Reserve's answer to an idempotency key with a durable record v: the
// earlier request's receipt and response, or a mismatch.
func (l *Ledger) completed(tx *bolt.Tx, r billing.Reservation, v []byte) error {
	rec, err := decodeIdemRecord(v)
	if err != nil {
		return err
	}
	if rec.requestHash != r.RequestHash {
		return &billing.IdempotentError{Err: billing.ErrIdempotencyMismatch}
	}
	b, err := l.rec.get(tx, bucketReceipts, receiptKey(r.Account, rec.seq))
	if err != nil {
		return err
	}
	if b == nil {
		return fmt.Errorf("ledger: idempotency record of account %s points to missing receipt %d", r.Account, rec.seq)
	}
	var receipt settle.Receipt
	if err := json.Unmarshal(b, &receipt); err != nil {
		return fmt.Errorf("ledger: receipt %d of account %s: %w", rec.seq, r.Account, err)
	}
	return &billing.IdempotentError{Receipt: &receipt, Response: rec.response}
}

func checkField(name, v string, required bool) error {
	if required && v == "" {
		return fmt.Errorf("ledger: empty %s", name)
	}
	if len(v) > maxField {
		return fmt.Errorf("ledger: %s of %d bytes (at most %d)", name, len(v), maxField)
	}
	return nil
}

// subSat is a-b, or 0 if b > a.
func subSat(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// Commit implements billing.Store. r.Account and r.RequestHash must be the hold's. It
// costs one read-write transaction (an fsync) plus sign. On error the hold stays, and
// r's Seq, Cumulative and signature are meaningless; the caller may Commit again or
// Release the hold.
func (l *Ledger) Commit(_ context.Context, id billing.HoldID, r *settle.Receipt, response []byte, sign func(*settle.Receipt)) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	h, ok := l.holds[id]
	if !ok {
		l.mu.Unlock()
		return billing.ErrUnknownHold
	}
	if err := checkReceipt(id, h, r); err != nil {
		l.mu.Unlock()
		return err
	}
	// Taking the hold out of the map makes a concurrent Commit or Release of it fail,
	// while its amount, request hash and key stay pending until the transaction is
	// durable.
	delete(l.holds, id)
	l.mu.Unlock()

	err := l.update(func(tx *bolt.Tx) error { return l.commit(tx, h, r, response, sign) })

	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.holds[id] = h
		return err
	}
	l.release(h)
	return nil
}

// checkReceipt refuses a receipt that does not bill hold h.
func checkReceipt(id billing.HoldID, h *billing.Reservation, r *settle.Receipt) error {
	switch {
	case r.Account != h.Account:
		return fmt.Errorf("ledger: receipt for account %s, hold %d is for %s", r.Account, id, h.Account)
	case r.RequestHash != h.RequestHash:
		return fmt.Errorf("ledger: receipt for request %s, hold %d is for %s", r.RequestHash, id, h.RequestHash)
	case r.Cost > h.MaxCost:
		return fmt.Errorf("ledger: receipt costs %d nanoTON, hold %d is for at most %d", r.Cost, id, h.MaxCost)
	}
	return nil
}

// commit writes r as h's account's next receipt, with its request hash, idempotency
// record and the account's new totals.
func (l *Ledger) commit(tx *bolt.Tx, h *billing.Reservation, r *settle.Receipt, response []byte, sign func(*settle.Receipt)) error {
	m, err := l.meta(tx, h.Account)
	if err != nil {
		return err
	}
	if m.cumulative+r.Cost < m.cumulative {
		return fmt.Errorf("ledger: account %s: cumulative %d + cost %d overflows", h.Account, m.cumulative, r.Cost)
	}
	m.lastSeq++
	m.cumulative += r.Cost
	r.Seq, r.Cumulative = m.lastSeq, m.cumulative
	key := receiptKey(h.Account, r.Seq)
	if tx.Bucket(bucketReceipts).Get(key) != nil {
		// An account record rolled back to an earlier authentic value: writing on
		// would overwrite a receipt a client holds.
		l.rec.log.Error("ledger account record is behind its receipts: rolled back on disk; the account is refused service", "account", h.Account, "seq", r.Seq)
		return fmt.Errorf("%w: account %s already has receipt %d, its record says %d is next", billing.ErrIntegrity, h.Account, r.Seq, r.Seq)
	}
	sign(r)
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := l.rec.put(tx, bucketReceipts, key, b); err != nil {
		return err
	}
	// A cancelled request's idempotency key stays free for a retry (see billing.Store):
	// neither the key's record nor its request hash, which names the key, is kept.
	retryable := h.IdempotencyKey != "" && r.Status == settle.StatusCancelled
	at := binary.BigEndian.AppendUint64(nil, encodeTime(h.Time))
	for _, hash := range []string{h.RequestHash, h.SignatureHash} {
		if hash == "" || retryable && hash == h.RequestHash {
			continue
		}
		if err := l.rec.put(tx, bucketRequests, stringKey(h.Account, hash), at); err != nil {
			return err
		}
	}
	if h.IdempotencyKey != "" && !retryable {
		rec := idemRecord{time: h.Time, seq: r.Seq, requestHash: h.RequestHash, response: response}
		if err := l.rec.put(tx, bucketIdempotency, stringKey(h.Account, h.IdempotencyKey), rec.encode()); err != nil {
			return err
		}
	}
	return l.rec.put(tx, bucketAccounts, []byte(h.Account), m.encode())
}

// meta reads account's record, its tag checked; an unknown account has the zero meta.
func (l *Ledger) meta(tx *bolt.Tx, account string) (meta, error) {
	v, err := l.rec.get(tx, bucketAccounts, []byte(account))
	if err != nil {
		return meta{}, err
	}
	return decodeMeta(v)
}

// release drops h's amount, request hash and idempotency key from its account's pending
// state. l.mu must be held.
func (l *Ledger) release(h *billing.Reservation) {
	p := l.pending[h.Account]
	if p.holds == 1 {
		delete(l.pending, h.Account)
		return
	}
	p.holds--
	p.held -= h.MaxCost
	delete(p.requests, h.RequestHash)
	delete(p.requests, h.SignatureHash)
	if h.IdempotencyKey != "" {
		delete(p.keys, h.IdempotencyKey)
	}
}

// Release drops a hold without a receipt, for a request that the host refused after
// admission without serving anything: its amount is available again, and its request
// and signature hashes and idempotency key are free as if Reserve had never seen them. It returns
// billing.ErrUnknownHold for a hold that is committed, released or being committed. It
// costs no disk I/O.
func (l *Ledger) Release(id billing.HoldID) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	h, ok := l.holds[id]
	if !ok {
		return billing.ErrUnknownHold
	}
	delete(l.holds, id)
	l.release(h)
	return nil
}

// Account implements billing.Store with one read-only transaction.
func (l *Ledger) Account(_ context.Context, account string) (billing.AccountTotals, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return billing.AccountTotals{}, ErrClosed
	}
	var held uint64
	if p := l.pending[account]; p != nil {
		held = p.held
	}
	l.mu.Unlock()

	var m meta
	err := l.view(func(tx *bolt.Tx) (err error) {
		m, err = l.meta(tx, account)
		return err
	})
	if err != nil {
		return billing.AccountTotals{}, err
	}
	return m.totals(account, held), nil
}

func (m meta) totals(account string, held uint64) billing.AccountTotals {
	return billing.AccountTotals{
		Account:    account,
		LastSeq:    m.lastSeq,
		Cumulative: m.cumulative,
		Held:       held,
		Settled:    m.settled,
		SettledAt:  m.settledAt,
	}
}

// Receipts implements billing.Store with one read-only transaction that decodes each
// receipt it returns. A limit of 0 or less returns none.
func (l *Ledger) Receipts(_ context.Context, account string, fromSeq uint64, limit int) ([]settle.Receipt, error) {
	if err := l.checkOpen(); err != nil || limit <= 0 {
		return nil, err
	}
	var out []settle.Receipt
	prefix := accountPrefix(account, 0)
	err := l.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketReceipts).Cursor()
		for k, v := c.Seek(receiptKey(account, fromSeq)); k != nil && len(out) < limit && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			v, err := l.rec.open(bucketReceipts, k, v)
			if err != nil {
				return err
			}
			var r settle.Receipt
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("ledger: receipt %x: %w", k[len(prefix):], err)
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// checkOpen returns ErrClosed after Close.
func (l *Ledger) checkOpen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	return nil
}

// Unsettled implements billing.Store. It reads every account's record in one read-only
// transaction. An account whose record fails its integrity check is left out (and
// logged), so that it is never charged while the others are.
func (l *Ledger) Unsettled(_ context.Context) ([]billing.AccountTotals, error) {
	if err := l.checkOpen(); err != nil {
		return nil, err
	}
	var out []billing.AccountTotals
	err := l.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAccounts).ForEach(func(k, v []byte) error {
			v, err := l.rec.open(bucketAccounts, k, v)
			if errors.Is(err, billing.ErrIntegrity) {
				return nil
			}
			m, err := decodeMeta(v)
			if err != nil {
				return fmt.Errorf("account %s: %w", k, err)
			}
			if m.cumulative > m.settled {
				out = append(out, m.totals(string(k), 0))
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	for i := range out {
		if p := l.pending[out[i].Account]; p != nil {
			out[i].Held = p.held
		}
	}
	l.mu.Unlock()
	return out, nil
}

// RecordSettlement implements billing.Store with one read-write transaction. It refuses
// a cumulative above the account's own: the host charges only what its receipts add
// up to, so that would mean the ledger lost receipts.
func (l *Ledger) RecordSettlement(_ context.Context, account string, cumulative uint64, at time.Time) error {
	if err := l.checkOpen(); err != nil {
		return err
	}
	return l.update(func(tx *bolt.Tx) error {
		m, err := l.meta(tx, account)
		if err != nil {
			return err
		}
		if cumulative > m.cumulative {
			return fmt.Errorf("ledger: account %s settled up to %d nanoTON, but its receipts add up to %d", account, cumulative, m.cumulative)
		}
		if cumulative <= m.settled {
			return nil
		}
		m.settled, m.settledAt = cumulative, at
		return l.rec.put(tx, bucketAccounts, []byte(account), m.encode())
	})
}

// Prune implements billing.Store with one read-write transaction that reads every
// request hash and idempotency record. It records, with what it forgets, the time just
// after the latest record it forgot, from which on Reserve admits (see "Pruning and the
// clock"): every record at or after it is still there. Receipts are never pruned.
func (l *Ledger) Prune(_ context.Context, before time.Time) error {
	if err := l.checkOpen(); err != nil {
		return err
	}
	cutoff := encodeTime(before)
	return l.update(func(tx *bolt.Tx) error {
		// forgotten is the time just after the latest record forgotten, 0 for none.
		var forgotten uint64
		old := make([][][]byte, 2)
		for i, name := range [][]byte{bucketRequests, bucketIdempotency} {
			// Collected first (and copied: k belongs to the transaction's pages):
			// deleting under a cursor that then moves on is a pattern bbolt has had
			// bugs with.
			err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				if len(v) < 8 {
					return fmt.Errorf("ledger: corrupt %s record of %d bytes", name, len(v))
				}
				if t := binary.BigEndian.Uint64(v); t < cutoff {
					old[i] = append(old[i], bytes.Clone(k))
					forgotten = max(forgotten, t+1)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if forgotten == 0 {
			return nil
		}
		// Raised before the deletions can be seen (at commit): a Reserve from now on
		// is refused below it, and one under way holds l.mu, so it read its hashes
		// before. A transaction that then fails leaves it raised, which only refuses
		// what the ledger still remembers.
		l.mu.Lock()
		if t := time.Unix(0, int64(forgotten)); t.After(l.prunedBefore) {
			l.prunedBefore = t
		}
		watermark := encodeTime(l.prunedBefore)
		l.mu.Unlock()
		if err := l.rec.put(tx, bucketLedger, keyPrunedBefore, binary.BigEndian.AppendUint64(nil, watermark)); err != nil {
			return err
		}
		for i, name := range [][]byte{bucketRequests, bucketIdempotency} {
			for _, k := range old[i] {
				if err := tx.Bucket(name).Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
