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
// serving each account within the deposit it last saw, and settles later. It also
// remembers for a TTL that an address holds no escrow, so a client naming one costs at
// most one chain read (three liteserver queries) per address per TTL; concurrent reads
// of one address share one chain read. Both caches are bounded (65,536 escrows and
// 4,096 addresses with none; the one read longest ago is forgotten first). It is safe
// for concurrent use.
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
}

type cachedEscrow struct {
	state EscrowState
	err   *Error
	read  time.Time
}

// escrowRead is a chain read in progress, which concurrent callers wait for.
type escrowRead struct {
	done  chan struct{}
	state EscrowState
	err   error
}

// NewChainEscrows reads escrows through api, re-reading one (or an address found to
// hold none) when what it knows is older than ttl.
func NewChainEscrows(api ton.APIClientWrapped, ttl time.Duration) *ChainEscrows {
	return &ChainEscrows{api: api, ttl: ttl, now: time.Now, maxCached: maxCachedEscrows, maxUnknown: maxUnknownEscrows,
		cache: map[string]cachedEscrow{}, unknown: map[string]cachedEscrow{}, inflight: map[string]*escrowRead{}}
}

// Escrow implements EscrowSource. Cost: three liteserver queries when what is known of
// the address is older than the TTL, else a map lookup.
func (c *ChainEscrows) Escrow(ctx context.Context, account string) (EscrowState, error) {
	addr, err := address.ParseRawAddr(account)
	if err != nil {
		return EscrowState{}, errorf(settle.CodeUnknownAccount, "%q is not a TON address in raw form", account)
	}
	c.mu.Lock()
	now := c.now()
	if cached, ok := c.cache[account]; ok && now.Sub(cached.read) < c.ttl {
		c.mu.Unlock()
		return cached.state, nil
	}
	if gone, ok := c.unknown[account]; ok && now.Sub(gone.read) < c.ttl {
		c.mu.Unlock()
		return EscrowState{}, gone.err
	}
	if r, ok := c.inflight[account]; ok {
		c.mu.Unlock()
		select {
		case <-r.done:
			return r.state, r.err
		case <-ctx.Done():
			return EscrowState{}, errorf(settle.CodeUnavailable, "escrow %s cannot be read now: %v", account, ctx.Err())
		}
	}
	r := &escrowRead{done: make(chan struct{})}
	c.inflight[account] = r
	c.mu.Unlock()

	st, err := c.read(ctx, addr)
	r.state, r.err = c.record(account, st, err)
	c.mu.Lock()
	delete(c.inflight, account)
	c.mu.Unlock()
	close(r.done)
	return r.state, r.err
}

// Stale implements StaleEscrows: what is cached of account is kept for when the chain
// is unreachable, but no longer served without a read.
func (c *ChainEscrows) Stale(account string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cached, ok := c.cache[account]; ok {
		cached.read = time.Time{}
		c.cache[account] = cached
	}
}

// record files the outcome of a chain read of account and returns what Escrow answers.
func (c *ChainEscrows) record(account string, st EscrowState, err error) (EscrowState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	var gone *Error
	switch {
	case err == nil:
		delete(c.unknown, account)
		insertBounded(c.cache, account, cachedEscrow{state: st, read: now}, c.maxCached)
		return st, nil
	case errors.Is(err, escrow.ErrNotDeployed):
		gone = errorf(settle.CodeUnknownAccount, "there is no escrow at %s (never deployed, or already closed)", account)
	case errors.Is(err, escrow.ErrWrongCode), errors.Is(err, escrow.ErrWrongAddress):
		gone = errorf(settle.CodeUnknownAccount, "the contract at %s is not a Cocoon escrow", account)
	}
	if gone != nil {
		delete(c.cache, account)
		insertBounded(c.unknown, account, cachedEscrow{err: gone, read: now}, c.maxUnknown)
		return EscrowState{}, gone
	}
	if cached, ok := c.cache[account]; ok {
		// The chain is unreachable: serve within what was seen, and try the chain
		// again after another TTL rather than on every request.
		cached.read = now
		c.cache[account] = cached
		return cached.state, nil
	}
	return EscrowState{}, errorf(settle.CodeUnavailable, "escrow %s cannot be read now: the host cannot reach the TON network", account)
}

// insertBounded sets m[key] to v, first forgetting the entry read longest ago when m
// already holds limit entries. The scan for it costs O(limit), only when m is full.
func insertBounded(m map[string]cachedEscrow, key string, v cachedEscrow, limit int) {
	if _, ok := m[key]; !ok && len(m) >= limit {
		var oldest string
		var at time.Time
		for k, e := range m {
			if oldest == "" || e.read.Before(at) {
				oldest, at = k, e.read
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
	return EscrowState{ClientKey: st.ClientKey, HostKey: st.HostKey, HostAddr: st.HostAddr.StringRaw(),
		Deposited: clampUint64(st.Deposited.Uint64(), st.Deposited.IsUint64()),
		Charged:   clampUint64(st.Charged.Uint64(), st.Charged.IsUint64()), Closing: st.CheckOpen() != nil, Timeout: st.Timeout}, nil
}

// clampUint64 is v, or the largest uint64 when the amount did not fit (Coins are up to
// 120 bits; no real deposit comes near 2⁶⁴ nanoTON).
func clampUint64(v uint64, fits bool) uint64 {
	if !fits {
		return math.MaxUint64
	}
	return v
}
