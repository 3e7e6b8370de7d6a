package settle

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/ton"

	"github.com/cocoonhost/cocoon/settle/escrow"
)

// ChainEscrows reads escrows from TON through a tonutils-go API (a liteclient
// connection, or any other implementation). It caches each escrow for a short time, and
// keeps the last state it read for when the chain is unreachable: the host then goes on
// serving each account within the deposit it last saw, and settles later. It is safe for
// concurrent use.
type ChainEscrows struct {
	api ton.APIClientWrapped
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	cache map[string]cachedEscrow
}

type cachedEscrow struct {
	state EscrowState
	read  time.Time
}

// NewChainEscrows reads escrows through api, re-reading one when its state is older
// than ttl.
func NewChainEscrows(api ton.APIClientWrapped, ttl time.Duration) *ChainEscrows {
	return &ChainEscrows{api: api, ttl: ttl, now: time.Now, cache: map[string]cachedEscrow{}}
}

// Escrow implements EscrowSource. Cost: three liteserver queries when the cached state
// is older than the TTL, else none.
func (c *ChainEscrows) Escrow(ctx context.Context, account string) (EscrowState, error) {
	c.mu.Lock()
	cached, ok := c.cache[account]
	c.mu.Unlock()
	if ok && c.now().Sub(cached.read) < c.ttl {
		return cached.state, nil
	}
	addr, err := address.ParseRawAddr(account)
	if err != nil {
		return EscrowState{}, errorf(CodeUnknownAccount, "%q is not a TON address in raw form", account)
	}
	st, err := c.read(ctx, addr)
	switch {
	case err == nil:
		c.mu.Lock()
		c.cache[account] = cachedEscrow{state: st, read: c.now()}
		c.mu.Unlock()
		return st, nil
	case errors.Is(err, escrow.ErrNotDeployed):
		c.forget(account)
		return EscrowState{}, errorf(CodeUnknownAccount, "there is no escrow at %s (never deployed, or already closed)", account)
	case errors.Is(err, escrow.ErrWrongCode), errors.Is(err, escrow.ErrWrongAddress):
		c.forget(account)
		return EscrowState{}, errorf(CodeUnknownAccount, "the contract at %s is not a Cocoon escrow", account)
	case ok:
		// The chain is unreachable: serve within what was seen, and try the chain
		// again after another TTL rather than on every request.
		c.mu.Lock()
		c.cache[account] = cachedEscrow{state: cached.state, read: c.now()}
		c.mu.Unlock()
		return cached.state, nil
	default:
		return EscrowState{}, errorf(CodeUnavailable, "escrow %s cannot be read now: the host cannot reach the TON network", account)
	}
}

func (c *ChainEscrows) forget(account string) {
	c.mu.Lock()
	delete(c.cache, account)
	c.mu.Unlock()
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
