package billing

import (
	"github.com/cocoonhost/cocoon/settle"

	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/ton"

	"github.com/cocoonhost/cocoon/settle/escrow"
)

// Bounds of ChainEscrows' memory: clients name the addresses it reads, so it must not
// remember an unbounded number of them.
const (
	// maxCachedEscrows bounds the escrows remembered (about 300 bytes each): more than
	// a host has clients. The one read longest ago is forgotten first.
	maxCachedEscrows = 1 << 16
	// maxUnknownEscrows bounds the addresses remembered to hold no escrow: enough to
	// spare the chain a flood of one address, not to remember every made-up one.
	maxUnknownEscrows = 1 << 12
)

// ChainEscrows reads escrows from TON through a tonutils-go API (a liteclient
// connection, or any other implementation). It caches each escrow for a TTL, and keeps
// the last state it read for when the chain is unreachable: the host then goes on
// serving each account within the deposit it last saw (marked EscrowState.Outdated),
// and settles later. It also remembers for a TTL that an address holds no escrow, so a
// client naming one costs at most one chain read (three liteserver queries) per address
// per TTL; concurrent reads of one address share one chain read. Both caches are
// bounded (65,536 escrows and 4,096 addresses with none; the one read longest ago is
// forgotten first). A Settler given it (SettlerConfig.Escrows) files each state it
// reads before it records a settlement from it, and a chain read begun earlier does not
// replace that state: an outage right after a settlement does not leave cached a state
// charged less than the ledger settled, which admission could not tell from a
// reopened escrow's (see FreshEscrows). It is safe for concurrent use.
type ChainEscrows struct {
	api ton.APIClientWrapped
	ttl time.Duration
	now func() time.Time
	// maxCached and maxUnknown are maxCachedEscrows and maxUnknownEscrows (smaller
	// in tests).
	maxCached, maxUnknown int

	mu       sync.Mutex
	cache    map[string]cachedEscrow
	unknown  map[string]cachedEscrow // addresses with no escrow: err says why
	inflight map[string]*escrowRead
	// version counts what was filed in cache, so that a chain read does not replace
	// a state filed after it began (by the settler, from a later read).
	version uint64
}

type cachedEscrow struct {
	state EscrowState
	err   *Error
	// tried is when the chain was last read for the address, successfully or not: the
	// TTL runs from it.
	tried   time.Time
	version uint64
}

// escrowRead is a chain read in progress, which concurrent callers wait for.
type escrowRead struct {
	done chan struct{}
	// since is ChainEscrows.version when the read began.
	since uint64
	state EscrowState
	err   error
	// unreachable is set when the chain could not be read: state or err is then what
	// Escrow answers without the chain, which Fresh does not.
	unreachable bool
	// abandoned is set when the read's caller went away before it ended: it has no
	// outcome.
	abandoned bool
}

// NewChainEscrows reads escrows through api, re-reading one (or an address found to
// hold none) when what it knows is older than ttl.
func NewChainEscrows(api ton.APIClientWrapped, ttl time.Duration) *ChainEscrows {
	return &ChainEscrows{api: api, ttl: ttl, now: time.Now, maxCached: maxCachedEscrows, maxUnknown: maxUnknownEscrows,
		cache: map[string]cachedEscrow{}, unknown: map[string]cachedEscrow{}, inflight: map[string]*escrowRead{}}
}

// Escrow implements EscrowSource. Cost: three liteserver queries when what is known of
// the address is older than the TTL, else a map lookup. When the chain cannot be read
// it answers the last state it read, with Outdated set, and tries the chain again
// after another TTL; CodeUnavailable if it has read none.
func (c *ChainEscrows) Escrow(ctx context.Context, account string) (EscrowState, error) {
	return c.escrow(ctx, account, false)
}

// Fresh implements FreshEscrows: it reads account's escrow from the chain whatever is
// cached (sharing a read under way, or answering a state the settler filed since that
// read began), and files what it reads. When the chain cannot be read it answers
// CodeUnavailable, never the cached state, which it keeps for Escrow. Cost: three
// liteserver queries.
func (c *ChainEscrows) Fresh(ctx context.Context, account string) (EscrowState, error) {
	return c.escrow(ctx, account, true)
}

// escrow is Escrow, or Fresh when fresh is set.
func (c *ChainEscrows) escrow(ctx context.Context, account string, fresh bool) (EscrowState, error) {
	addr, err := address.ParseRawAddr(account)
	if err != nil {
		return EscrowState{}, errorf(settle.CodeUnknownAccount, "%q is not a TON address in raw form", account)
	}
	for {
		c.mu.Lock()
		now := c.now()
		if cached, ok := c.cache[account]; ok && !fresh && now.Sub(cached.tried) < c.ttl {
			c.mu.Unlock()
			return cached.state, nil
		}
		if gone, ok := c.unknown[account]; ok && !fresh && now.Sub(gone.tried) < c.ttl {
			c.mu.Unlock()
			return EscrowState{}, gone.err
		}
		r, shared := c.inflight[account]
		if !shared {
			r = &escrowRead{done: make(chan struct{}), since: c.version}
			c.inflight[account] = r
			c.mu.Unlock()
			return c.readInto(ctx, account, addr, r, fresh)
		}
		c.mu.Unlock()
		select {
		case <-r.done:
			if !r.abandoned {
				return r.answer(account, fresh)
			}
			// Its caller went away mid-read: start again, sharing or making the
			// next read.
		case <-ctx.Done():
			return EscrowState{}, cancelled(ctx, account)
		}
	}
}

// readInto reads account's escrow from the chain for r, registered as the read under
// way, files the outcome and ends r.
func (c *ChainEscrows) readInto(ctx context.Context, account string, addr *address.Address, r *escrowRead, fresh bool) (EscrowState, error) {
	defer close(r.done)
	st, err := c.read(ctx, addr)
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		// The caller went away: the failed read tells nothing of the chain, and must
		// neither postpone the next read nor mark what is cached as outdated.
		c.abandon(account, r)
		return EscrowState{}, cancelled(ctx, account)
	}
	c.record(account, r, st, err)
	return r.answer(account, fresh)
}

// cancelled is the refusal of a caller whose ctx ended before its escrow was read.
func cancelled(ctx context.Context, account string) *Error {
	return errorf(settle.CodeUnavailable, "escrow %s cannot be read now: %v", account, ctx.Err())
}

// answer is what r tells a caller of Escrow, or of Fresh when fresh is set.
func (r *escrowRead) answer(account string, fresh bool) (EscrowState, error) {
	if fresh && r.unreachable {
		return EscrowState{}, unreachable(account)
	}
	return r.state, r.err
}

// unreachable is the refusal of an escrow the host cannot read.
func unreachable(account string) *Error {
	return errorf(settle.CodeUnavailable, "escrow %s cannot be read now: the host cannot reach the TON network", account)
}

// observe files st, which the settler has just read from the chain, as account's
// state, before the settler records a settlement on it: a state cached before that
// settlement would otherwise look charged less than the ledger settled, as a reopened
// escrow does, and with the chain unreachable the host could not tell the two apart.
func (c *ChainEscrows) observe(account string, st *escrow.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.file(account, escrowState(st, now), now)
}

// file caches st as account's state, the chain tried at now, newer than all filed
// before (version), with c.mu held.
func (c *ChainEscrows) file(account string, st EscrowState, now time.Time) {
	c.version++
	delete(c.unknown, account)
	insertBounded(c.cache, account, cachedEscrow{state: st, tried: now, version: c.version}, c.maxCached)
}

// abandon ends r, a read of account whose caller went away, without an outcome: its
// waiters start again.
func (c *ChainEscrows) abandon(account string, r *escrowRead) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, account)
	r.abandoned = true
}

// record files the outcome r of a chain read of account (st or err) and ends r.
func (c *ChainEscrows) record(account string, r *escrowRead, st EscrowState, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, account)
	now := c.now()
	cached, isCached := c.cache[account]
	if isCached && cached.version > r.since {
		// The settler filed a state it read after this read began: it is the newer.
		r.state = cached.state
		return
	}
	var gone *Error
	switch {
	case err == nil:
		c.file(account, st, now)
		r.state = st
		return
	case errors.Is(err, escrow.ErrNotDeployed):
		gone = errorf(settle.CodeUnknownAccount, "there is no escrow at %s (never deployed, or already closed)", account)
	case errors.Is(err, escrow.ErrWrongCode), errors.Is(err, escrow.ErrWrongAddress):
		gone = errorf(settle.CodeUnknownAccount, "the contract at %s is not a Cocoon escrow", account)
	}
	if gone != nil {
		delete(c.cache, account)
		insertBounded(c.unknown, account, cachedEscrow{err: gone, tried: now}, c.maxUnknown)
		r.err = gone
		return
	}
	r.unreachable = true
	if !isCached {
		r.err = unreachable(account)
		return
	}
	// The chain is unreachable: serve within what was seen, and try the chain again
	// after another TTL rather than on every request.
	cached.tried = now
	cached.state.Outdated = true
	c.cache[account] = cached
	r.state = cached.state
}

// insertBounded sets m[key] to v, first forgetting the entry read longest ago when m
// already holds limit entries. The scan for it costs O(limit), only when m is full.
func insertBounded(m map[string]cachedEscrow, key string, v cachedEscrow, limit int) {
	if _, ok := m[key]; !ok && len(m) >= limit {
		var oldest string
		var at time.Time
		for k, e := range m {
			if oldest == "" || e.tried.Before(at) {
				oldest, at = k, e.tried
			}
		}
		delete(m, oldest)
	}
	m[key] = v
}

func (c *ChainEscrows) read(ctx context.Context, addr *address.Address) (EscrowState, error) {
	st, err := escrow.GetState(ctx, c.api, addr)
	if err != nil {
		return EscrowState{}, err
	}
	return escrowState(st, c.now()), nil
}

// escrowState is what the host needs of st, read from the chain at readAt.
func escrowState(st *escrow.State, readAt time.Time) EscrowState {
	return EscrowState{ClientKey: st.ClientKey, HostKey: st.HostKey, HostAddr: st.HostAddr.StringRaw(),
		Deposited: clampUint64(st.Deposited.Uint64(), st.Deposited.IsUint64()),
		Charged:   clampUint64(st.Charged.Uint64(), st.Charged.IsUint64()), Closing: st.CheckOpen() != nil, Timeout: st.Timeout,
		ReadAt: readAt}
}

// clampUint64 is v, or the largest uint64 when the amount did not fit (Coins are up to
// 120 bits; no real deposit comes near 2⁶⁴ nanoTON).
func clampUint64(v uint64, fits bool) uint64 {
	if !fits {
		return math.MaxUint64
	}
	return v
}
