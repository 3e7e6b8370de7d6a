package tonemu

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
)

// ready reports why an API call cannot be served: a done context or an
// offline chain. The caller holds c.mu.
func (c *Chain) ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.offline {
		return ErrOffline
	}
	return nil
}

// CurrentMasterchainInfo returns the id of the newest block.
func (c *Chain) CurrentMasterchainInfo(ctx context.Context) (*ton.BlockIDExt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	id := *c.head().id
	return &id, nil
}

// GetMasterchainInfo returns the id of the newest block.
func (c *Chain) GetMasterchainInfo(ctx context.Context) (*ton.BlockIDExt, error) {
	return c.CurrentMasterchainInfo(ctx)
}

// GetTime returns the chain's clock as unix seconds.
func (c *Chain) GetTime(ctx context.Context) (uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(ctx); err != nil {
		return 0, err
	}
	return uint32(c.clock().Unix()), nil
}

// WaitForBlock returns the chain itself: every block the chain has is
// already there, and asking for a later one fails in the call that uses it.
func (c *Chain) WaitForBlock(uint32) ton.APIClientWrapped { return c }

// WithRetry returns the chain itself: calls never fail transiently.
func (c *Chain) WithRetry(...int) ton.APIClientWrapped { return c }

// WithRetryTimeout returns the chain itself: calls never fail transiently.
func (c *Chain) WithRetryTimeout(int, time.Duration) ton.APIClientWrapped { return c }

// WithTimeout returns the chain itself: calls never block.
func (c *Chain) WithTimeout(time.Duration) ton.APIClientWrapped { return c }

// WithLSInfoInErrors returns the chain itself.
func (c *Chain) WithLSInfoInErrors() ton.APIClientWrapped { return c }

// lockAt locks the chain and returns the block id names; on error (the chain is
// offline, or the block unknown) the chain is left unlocked.
func (c *Chain) lockAt(ctx context.Context, id *ton.BlockIDExt) (*block, error) {
	c.mu.Lock()
	if err := c.ready(ctx); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	b, err := c.blockAt(id)
	if err != nil {
		c.mu.Unlock()
		return nil, err
	}
	return b, nil
}

// GetAccount returns addr's state as of block. An account that does not
// exist comes back with IsActive false, as from a liteserver.
func (c *Chain) GetAccount(ctx context.Context, block *ton.BlockIDExt, addr *address.Address) (*tlb.Account, error) {
	b, err := c.lockAt(ctx, block)
	if err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	acc := b.accounts[key(addr)]
	if acc == nil || !acc.prepared.State().IsValid {
		return &tlb.Account{IsActive: false}, nil
	}
	st := *acc.prepared.State()
	shard := acc.prepared.ShardAccount()
	out := &tlb.Account{
		IsActive:   true,
		State:      &st,
		LastTxLT:   shard.LastTransLT,
		LastTxHash: append([]byte(nil), shard.LastTransHash...),
	}
	if st.Status == tlb.AccountStatusActive && st.StateInit != nil {
		out.Code, out.Data = st.StateInit.Code, st.StateInit.Data
	}
	return out, nil
}

// SendExternalMessage executes msg in a new block together with every
// internal message it causes. If the contract does not accept it, the error
// wraps ErrNotAccepted and the chain is unchanged; so it is after any other
// error.
func (c *Chain) SendExternalMessage(ctx context.Context, msg *tlb.ExternalMessage) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(ctx); err != nil {
		return err
	}
	_, _, err := c.sendExternal(msg)
	return err
}

// SendExternalMessageWaitTransaction is SendExternalMessage that also
// returns the transaction the message made on its destination, the block
// holding it and the hash of the message body (as tonutils-go's client does).
func (c *Chain) SendExternalMessageWaitTransaction(ctx context.Context, msg *tlb.ExternalMessage) (*tlb.Transaction, *ton.BlockIDExt, []byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(ctx); err != nil {
		return nil, nil, nil, err
	}
	tx, block, err := c.sendExternal(msg)
	if err != nil {
		return nil, nil, nil, err
	}
	return tx.Tx, block, msg.Body.Hash(), nil
}

func (c *Chain) sendExternal(msg *tlb.ExternalMessage) (*Transaction, *ton.BlockIDExt, error) {
	if msg == nil || msg.DstAddr == nil {
		return nil, nil, fmt.Errorf("tonemu: external message without destination")
	}
	msgCell, err := tlb.ToCell(msg)
	if err != nil {
		return nil, nil, fmt.Errorf("tonemu: serialize external message: %w", err)
	}
	st := c.newStage()
	tx, err := c.cascade(st, msgCell)
	if err != nil {
		return nil, nil, err
	}
	c.commit(st)
	id := *c.head().id
	return tx, &id, nil
}

// ListTransactions returns up to num transactions of addr, oldest first,
// ending with the one at logical time lt whose hash is txHash.
func (c *Chain) ListTransactions(ctx context.Context, addr *address.Address, num uint32, lt uint64, txHash []byte) ([]*tlb.Transaction, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	list := c.txs[key(addr)]
	end := -1
	for i, tx := range list {
		if tx.Tx.LT == lt && bytes.Equal(tx.Tx.Hash, txHash) {
			end = i
			break
		}
	}
	if end < 0 {
		return nil, ton.ErrNoTransactionsWereFound
	}
	start := max(0, end+1-int(num))
	out := make([]*tlb.Transaction, 0, end+1-start)
	for _, tx := range list[start : end+1] {
		out = append(out, tx.Tx)
	}
	return out, nil
}

// GetTransaction returns addr's transaction at logical time lt, if it is in
// block or an earlier one.
func (c *Chain) GetTransaction(ctx context.Context, block *ton.BlockIDExt, addr *address.Address, lt uint64) (*tlb.Transaction, error) {
	b, err := c.lockAt(ctx, block)
	if err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	for _, tx := range c.txs[key(addr)] {
		if tx.Tx.LT == lt && tx.Block <= b.id.SeqNo {
			return tx.Tx, nil
		}
	}
	return nil, ton.ErrNoTransactionsWereFound
}

// FindLastTransactionByInMsgHash returns addr's newest transaction whose
// inbound message matches msgHash: the normalized hash of an external
// message, or the hash of the message body (as in tonutils-go). It scans at
// most maxTxNumToScan transactions (default 60).
func (c *Chain) FindLastTransactionByInMsgHash(ctx context.Context, addr *address.Address, msgHash []byte, maxTxNumToScan ...int) (*tlb.Transaction, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	limit := 60
	if len(maxTxNumToScan) > 0 {
		limit = maxTxNumToScan[0]
	}
	list := c.txs[key(addr)]
	for i := len(list) - 1; i >= 0 && len(list)-i <= limit; i-- {
		in := list[i].Tx.IO.In
		if in == nil {
			continue
		}
		if ext, ok := in.Msg.(*tlb.ExternalMessage); ok && bytes.Equal(ext.NormalizedHash(), msgHash) {
			return list[i].Tx, nil
		}
		if bytes.Equal(in.Msg.Payload().Hash(), msgHash) {
			return list[i].Tx, nil
		}
	}
	return nil, ton.ErrTxWasNotFound
}
