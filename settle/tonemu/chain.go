// Package tonemu is an in-memory TON chain, backed by tonutils-go's Go
// implementation of the TVM and the transaction executor. It is what
// `cocoon-host devnet` serves over the liteserver protocol (Serve) and what the
// settlement tests run the real contracts on.
//
// A Chain implements the part of ton.APIClientWrapped that tonutils-go's
// wallet package and the settlement code use (see the method list on Chain),
// so code written against a liteserver runs unchanged against it. Every
// message is executed as a real ordinary transaction (storage, credit,
// compute, action and bounce phases, real fees) with a real mainnet
// blockchain config; outbound internal messages are delivered breadth first
// until none is left, deploying uninitialised accounts that receive a state
// init and bouncing what fails.
//
// What it does not model: shards and message routing delays (a whole cascade
// of messages lands in one block), validators and proofs, libraries, and
// anything about the masterchain beyond a block sequence number and time.
package tonemu

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/tvm"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

// configBOC is a real mainnet blockchain config root (global version 13),
// copied from tonutils-go v1.18.0's tvm/testdata/transaction_replay_regression.json
// (config.config_root_boc_base64, base64-decoded). Gas, forwarding and storage
// prices therefore match mainnet's at the time it was captured.
//
//go:embed testdata/config.boc
var configBOC []byte

// preparedConfig parses the config once per process: it is immutable and the
// executor shares it safely between chains.
var preparedConfig = sync.OnceValues(func() (*tvm.PreparedBlockchainConfig, error) {
	root, err := cell.FromBOC(configBOC)
	if err != nil {
		return nil, fmt.Errorf("tonemu: parse config BOC: %w", err)
	}
	cfg, err := tvm.PrepareBlockchainConfig(root)
	if err != nil {
		return nil, fmt.Errorf("tonemu: prepare config: %w", err)
	}
	return cfg, nil
})

// ErrOffline is returned by every API method while the chain is switched off
// with SetOffline, as a stand-in for an unreachable liteserver.
var ErrOffline = errors.New("tonemu: chain is offline")

// ErrNotAccepted is returned (wrapped, with the account and exit code) by
// SendExternalMessage when the destination contract does not accept the
// message; as on a real chain, nothing is recorded then.
var ErrNotAccepted = errors.New("tonemu: external message not accepted")

// maxCascade bounds the number of transactions one message may cause, so a
// pair of contracts that ping-pong forever fails the test instead of hanging it.
const maxCascade = 10_000

// genesis is the source address of Fund's credit messages. It is the zero
// address of the basechain: nothing is deployed there.
var genesis = address.NewAddress(0, 0, make([]byte, 32))

// Transaction is one transaction the chain executed, with the facts a test
// usually asserts on already extracted from Tx.
type Transaction struct {
	// Block is the sequence number of the masterchain block that holds it.
	Block uint32
	// Tx is the full parsed transaction, Tx.Hash included.
	Tx *tlb.Transaction
	// ComputeSkipped reports that the compute phase did not run (no state to
	// run, or no gas): ExitCode is then 0 and Success false.
	ComputeSkipped bool
	// ExitCode is the compute phase's exit code.
	ExitCode int32
	// Success is the compute phase's success flag.
	Success bool
	// Aborted is the transaction's aborted flag: the compute or action phase
	// failed (or was skipped) and the state change was rolled back.
	Aborted bool
	// Bounced reports that the transaction sent the inbound message back
	// (a bounce phase produced a message).
	Bounced bool

	raw *cell.Cell // the transaction as the executor built it, for the liteserver
}

// account is one account's state. Values are never mutated, so block
// snapshots can share them.
type account struct {
	prepared    *tvm.PreparedAccount
	storageStat *cell.Cell
}

type block struct {
	id       *ton.BlockIDExt
	now      uint32
	accounts map[string]*account
}

// Chain is an in-memory TON chain. The zero value is not usable: create one
// with New. It is safe for concurrent use; one mutex serialises everything.
//
// Implemented ton.APIClientWrapped methods: CurrentMasterchainInfo,
// GetMasterchainInfo, GetTime, WaitForBlock, GetAccount, RunGetMethod,
// RunGetMethodByID, SendExternalMessage, SendExternalMessageWaitTransaction,
// ListTransactions, GetTransaction, FindLastTransactionByInMsgHash, and the
// option setters WithRetry, WithRetryTimeout, WithTimeout and
// WithLSInfoInErrors (which return the chain itself). Every other method
// panics with a message naming it.
type Chain struct {
	unimplemented

	mu       sync.Mutex
	cfg      *tvm.PreparedBlockchainConfig
	vm       *tvm.TVM
	now      time.Time
	offline  bool
	lt       uint64              // lower bound of the next transaction's logical time
	accounts map[string]*account // head state, same as the last block's
	blocks   []*block
	txs      map[string][]*Transaction
	// wallClock makes the clock follow the machine's, offset by now minus the
	// machine's time when it was set (FollowWallClock).
	wallClock bool
	offset    time.Duration
	// provenCache holds the blocks built as cells (proven.go), by sequence number.
	provenCache map[uint32]*provenBlock
	// newBlock is closed and replaced when a block is sealed (waitBlock).
	newBlock chan struct{}
}

var _ ton.APIClientWrapped = (*Chain)(nil)

// New returns an empty chain whose clock starts at the current wall-clock
// second, with one (empty) masterchain block. It fails only if the embedded
// config cannot be parsed.
func New() (*Chain, error) {
	cfg, err := preparedConfig()
	if err != nil {
		return nil, err
	}
	c := &Chain{
		cfg:      cfg,
		vm:       tvm.NewTVM(),
		now:      time.Now().Truncate(time.Second),
		lt:       1_000_000, // any start above 0: tonutils-go reads LT 0 as "no transaction"
		accounts: map[string]*account{},
		txs:      map[string][]*Transaction{},
	}
	c.sealBlock(c.accounts)
	return c, nil
}

// Now returns the chain's clock: the unix time of the next block.
func (c *Chain) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clock()
}

// clock is the chain's time. The caller holds c.mu.
func (c *Chain) clock() time.Time {
	if c.wallClock {
		return time.Now().Add(c.offset).Truncate(time.Second)
	}
	return c.now
}

// SetNow sets the chain's clock. It may go backwards, which a real chain
// never does; that is the caller's business.
func (c *Chain) SetNow(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	c.offset = time.Until(t)
}

// Advance moves the chain's clock forward by d.
func (c *Chain) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.offset += d
}

// Tick seals an empty block at the chain's clock, as validators produce blocks while
// time passes: get-methods run at a block's time, so without it they would see the time
// of the last message however far the clock moved since.
func (c *Chain) Tick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sealBlock(c.accounts)
}

// FollowWallClock makes the chain's clock run with the machine's from now on,
// keeping its current distance to it (as a network's clock runs for its
// clients); SetNow and Advance then move that distance. Without it the clock
// stands still between SetNow and Advance calls, as tests want.
func (c *Chain) FollowWallClock() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset = time.Until(c.now)
	c.wallClock = true
}

// SetOffline switches the chain off (true) or on again. While it is off every
// API method returns ErrOffline; the test helpers (Fund, Balance,
// Transactions, the clock) keep working.
func (c *Chain) SetOffline(offline bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offline = offline
}

// Fund credits nanoTON to addr in a new block, as a genesis allocation: an
// internal message without body and without bounce from the zero address,
// executed as a real transaction. An account that does not exist becomes
// uninitialised with that balance; an active one runs its code on an empty
// message, and whatever it sends is delivered as usual.
func (c *Chain) Fund(addr *address.Address, nanoTON *big.Int) error {
	if nanoTON == nil || nanoTON.Sign() <= 0 {
		return fmt.Errorf("tonemu: fund %s: amount must be positive", addr)
	}
	c.mu.Lock()
	defer c.mu.Unlock()

	st := c.newStage()
	msg := &tlb.InternalMessage{
		IHRDisabled: true,
		SrcAddr:     genesis,
		DstAddr:     addr,
		Amount:      tlb.FromNanoTON(nanoTON),
		CreatedLT:   st.lt,
		CreatedAt:   st.block.Now(),
	}
	msgCell, err := tlb.ToCell(msg)
	if err != nil {
		return fmt.Errorf("tonemu: fund %s: %w", addr, err)
	}
	if _, err = c.cascade(st, msgCell); err != nil {
		return fmt.Errorf("tonemu: fund %s: %w", addr, err)
	}
	c.commit(st)
	return nil
}

// Balance returns addr's balance in nanoTON at the head of the chain (zero
// for an account that does not exist).
func (c *Chain) Balance(addr *address.Address) *big.Int {
	c.mu.Lock()
	defer c.mu.Unlock()
	acc := c.accounts[key(addr)]
	if acc == nil || acc.prepared.State() == nil || !acc.prepared.State().IsValid {
		return new(big.Int)
	}
	return new(big.Int).Set(acc.prepared.State().Balance.Nano())
}

// Transactions returns addr's transactions, oldest first. The list survives
// the account's destruction.
func (c *Chain) Transactions(addr *address.Address) []*Transaction {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Transaction(nil), c.txs[key(addr)]...)
}

// LastTransaction returns addr's most recent transaction, or nil if it has
// none.
func (c *Chain) LastTransaction(addr *address.Address) *Transaction {
	c.mu.Lock()
	defer c.mu.Unlock()
	list := c.txs[key(addr)]
	if len(list) == 0 {
		return nil
	}
	return list[len(list)-1]
}

// stage is a block being built: the account states it changed are applied to
// a copy of the head state, and committed only when the whole cascade
// succeeded, so a failed send leaves the chain as it was.
type stage struct {
	block    *tvm.BlockContext
	seqno    uint32
	lt       uint64
	accounts map[string]*account
	txs      []stagedTx
}

type stagedTx struct {
	account string
	tx      *Transaction
}

func (c *Chain) newStage() *stage {
	seqno := c.head().id.SeqNo + 1
	var seqBytes [4]byte
	binary.BigEndian.PutUint32(seqBytes[:], seqno)
	seed := sha256.Sum256(seqBytes[:])
	blk, err := c.cfg.NewBlockContext(tvm.BlockOptions{Now: uint32(c.clock().Unix()), RandSeed: seed[:]})
	if err != nil {
		// Only a nil config fails, and New never leaves one.
		panic(fmt.Sprintf("tonemu: block context: %v", err))
	}
	accounts := make(map[string]*account, len(c.accounts))
	for k, v := range c.accounts {
		accounts[k] = v
	}
	return &stage{block: blk, seqno: seqno, lt: c.lt, accounts: accounts}
}

func (c *Chain) commit(st *stage) {
	c.lt = st.lt
	for _, s := range st.txs {
		c.txs[s.account] = append(c.txs[s.account], s.tx)
	}
	c.accounts = st.accounts
	c.sealBlock(st.accounts)
}

func (c *Chain) sealBlock(accounts map[string]*account) {
	seqno := uint32(len(c.blocks) + 1)
	var seqBytes [4]byte
	binary.BigEndian.PutUint32(seqBytes[:], seqno)
	root := sha256.Sum256(append([]byte("tonemu root"), seqBytes[:]...))
	file := sha256.Sum256(append([]byte("tonemu file"), seqBytes[:]...))
	c.blocks = append(c.blocks, &block{
		id: &ton.BlockIDExt{
			Workchain: address.MasterchainID,
			Shard:     -0x8000000000000000,
			SeqNo:     seqno,
			RootHash:  root[:],
			FileHash:  file[:],
		},
		now:      uint32(c.clock().Unix()),
		accounts: accounts,
	})
	if c.newBlock != nil {
		close(c.newBlock)
		c.newBlock = nil
	}
}

// blockSealed returns a channel closed when the next block is sealed. The caller
// holds c.mu.
func (c *Chain) blockSealed() <-chan struct{} {
	if c.newBlock == nil {
		c.newBlock = make(chan struct{})
	}
	return c.newBlock
}

func (c *Chain) head() *block { return c.blocks[len(c.blocks)-1] }

// cascade executes msgCell and then every internal message it causes,
// breadth first, and returns the first transaction. An inbound external
// message that is not accepted fails with ErrNotAccepted.
func (c *Chain) cascade(st *stage, msgCell *cell.Cell) (*Transaction, error) {
	queue := []*cell.Cell{msgCell}
	var first *Transaction
	for n := 0; len(queue) > 0; n++ {
		if n == maxCascade {
			return nil, fmt.Errorf("more than %d transactions from one message", maxCascade)
		}
		msg, err := tvm.PrepareMessage(queue[0])
		if err != nil {
			return nil, err
		}
		queue = queue[1:]
		out, tx, err := c.execute(st, msg)
		if err != nil {
			return nil, err
		}
		if first == nil {
			first = tx
		}
		for _, m := range out {
			if m.Msg.MsgType == tlb.MsgTypeInternal {
				queue = append(queue, m.Cell)
			}
		}
	}
	return first, nil
}

// execute runs one transaction on the message's destination account.
func (c *Chain) execute(st *stage, msg *tvm.PreparedMessage) ([]tvm.OutMessage, *Transaction, error) {
	dst := msg.Message().Msg.DestAddr()
	if dst == nil || dst.Type() != address.StdAddress {
		return nil, nil, fmt.Errorf("message to unsupported address %v", dst)
	}
	k := key(dst)
	acc := st.accounts[k]
	if acc == nil {
		prepared, err := tvm.PrepareAccount(&tlb.ShardAccount{
			Account:       cell.BeginCell().MustStoreBoolBit(false).EndCell(), // account_none$0
			LastTransHash: make([]byte, 32),
		}, dst)
		if err != nil {
			return nil, nil, fmt.Errorf("prepare empty account %s: %w", dst, err)
		}
		acc = &account{prepared: prepared}
	}

	res, err := c.vm.EmulateTransaction(st.block, acc.prepared, msg, tvm.TransactionOptions{
		LogicalTime:        int64(st.lt),
		AccountStorageStat: acc.storageStat,
	})
	external := msg.Message().MsgType == tlb.MsgTypeExternalIn
	if err != nil && external {
		// The executor refuses an external message that cannot even pay its
		// import fee; a validator drops such a message like an unaccepted one.
		return nil, nil, fmt.Errorf("%w by %s: %v", ErrNotAccepted, dst, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("transaction on %s: %w", dst, err)
	}
	if external && !res.Accepted {
		return nil, nil, fmt.Errorf("%w by %s (exit code %d)", ErrNotAccepted, dst, res.ExitCode)
	}
	parsed, err := res.ParseTransaction()
	if err != nil {
		return nil, nil, fmt.Errorf("transaction on %s: %w", dst, err)
	}

	st.accounts[k] = &account{prepared: res.NextAccount, storageStat: res.AccountStorageStat}
	st.lt = max(st.lt, res.EndLT) + 1
	tx := describe(parsed, st.seqno)
	tx.raw = res.TransactionCell
	st.txs = append(st.txs, stagedTx{account: k, tx: tx})
	return res.OutMessages, tx, nil
}

// describe extracts the compute-phase facts of an ordinary transaction.
func describe(tx *tlb.Transaction, seqno uint32) *Transaction {
	out := &Transaction{Block: seqno, Tx: tx}
	desc, ok := tx.Description.(tlb.TransactionDescriptionOrdinary)
	if !ok {
		return out
	}
	out.Aborted = desc.Aborted
	switch p := desc.ComputePhase.Phase.(type) {
	case tlb.ComputePhaseVM:
		out.ExitCode = p.Details.ExitCode
		out.Success = p.Success
	case tlb.ComputePhaseSkipped:
		out.ComputeSkipped = true
	}
	if desc.BouncePhase != nil {
		_, out.Bounced = desc.BouncePhase.Phase.(tlb.BouncePhaseOk)
	}
	return out
}

// blockAt returns the block with the given id, checking that it is one of
// this chain's.
func (c *Chain) blockAt(id *ton.BlockIDExt) (*block, error) {
	if id == nil || id.SeqNo == 0 || int(id.SeqNo) > len(c.blocks) {
		return nil, fmt.Errorf("tonemu: unknown block %v", id)
	}
	b := c.blocks[id.SeqNo-1]
	if id.Workchain != b.id.Workchain || !bytes.Equal(id.RootHash, b.id.RootHash) {
		return nil, fmt.Errorf("tonemu: block %d is not this chain's", id.SeqNo)
	}
	return b, nil
}

func key(addr *address.Address) string {
	return fmt.Sprintf("%d:%x", addr.Workchain(), addr.Data())
}
