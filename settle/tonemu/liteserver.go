package tonemu

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/liteclient"
	"github.com/xssnick/tonutils-go/tl"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

// Liteserver error codes, as a real liteserver answers them.
const (
	lsErrNotServed = 400 // a query this server does not serve
	lsErrBadQuery  = 401 // a malformed query, or a block this chain does not have
	lsErrTimeout   = 652 // waitMasterchainSeqno timed out
)

// maxWait bounds a liteServer.waitMasterchainSeqno: a client that asks for a block far
// ahead holds a goroutine at most this long.
const maxWait = 30 * time.Second

// Server serves a Chain over the real liteserver protocol (ADNL over TCP, as
// tonutils-go's liteclient.Server implements it), so that unmodified clients dialing
// a global config that lists it (see GlobalConfig) use the chain as a TON network:
// getMasterchainInfo, getTime, getAccountState and runSmcMethod with Merkle proofs
// from the masterchain block (proven.go), sendMessage, getTransactions and
// waitMasterchainSeqno. Any other query gets a liteserver error naming it.
//
// A Server owns a goroutine per query and per connection; Close ends them and returns
// once they have.
type Server struct {
	chain *Chain
	ls    *liteclient.Server

	mu      sync.Mutex
	clients map[*liteclient.ServerClient]struct{}
	closed  bool
	queries sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

// NewServer returns a server of chain that authenticates as key (the key a global
// config names the liteserver by).
func NewServer(chain *Chain, key ed25519.PrivateKey) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{chain: chain, ls: liteclient.NewServer([]ed25519.PrivateKey{key}),
		clients: map[*liteclient.ServerClient]struct{}{}, ctx: ctx, cancel: cancel}
	s.ls.SetConnectionHook(func(c *liteclient.ServerClient) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			return errors.New("closed")
		}
		s.clients[c] = struct{}{}
		return nil
	})
	s.ls.SetDisconnectHook(func(c *liteclient.ServerClient) {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.clients, c)
	})
	s.ls.SetQueryHandler(s.handle)
	return s
}

// ListenAndServe listens on addr (host:port) and serves until Close, when it returns
// nil; it fails if it cannot listen.
func (s *Server) ListenAndServe(addr string) error {
	return s.ls.Listen(addr)
}

// Close stops listening, closes every connection and waits for the queries under way.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	clients := make([]*liteclient.ServerClient, 0, len(s.clients))
	for c := range s.clients {
		clients = append(clients, c)
	}
	s.mu.Unlock()
	err := s.ls.Close()
	s.cancel()
	for _, c := range clients {
		c.Close()
	}
	s.queries.Wait()
	return err
}

// handle answers one query in a goroutine of its own: the library calls it from the
// connection's read loop, which must not block on a wait or a transaction.
func (s *Server) handle(_ context.Context, client *liteclient.ServerClient, queryID []byte, query tl.Serializable) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.queries.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.queries.Done()
		client.Answer(queryID, s.answer(query))
	}()
}

func (s *Server) answer(query tl.Serializable) tl.Serializable {
	resp, err := s.dispatch(query)
	if err != nil {
		var ls ton.LSError
		if errors.As(err, &ls) {
			return ls
		}
		return ton.LSError{Code: lsErrBadQuery, Text: err.Error()}
	}
	return resp
}

func (s *Server) dispatch(query tl.Serializable) (tl.Serializable, error) {
	switch q := query.(type) {
	case []tl.Serializable: // a prefix, then the query
		if len(q) != 2 {
			return nil, ton.LSError{Code: lsErrBadQuery, Text: "tonemu: a prefixed query has two parts"}
		}
		wait, ok := q[0].(ton.WaitMasterchainSeqno)
		if !ok {
			return nil, ton.LSError{Code: lsErrNotServed, Text: fmt.Sprintf("tonemu: query prefix %T is not served", q[0])}
		}
		if err := s.waitBlock(uint32(wait.Seqno), time.Duration(wait.Timeout)*time.Millisecond); err != nil {
			return nil, err
		}
		return s.dispatch(q[1])
	case ton.GetMasterchainInf:
		return s.masterchainInfo()
	case ton.GetTime:
		now, err := s.chain.GetTime(s.ctx)
		return ton.CurrentTime{Now: now}, err
	case ton.GetAccountState:
		return s.accountState(q.ID, q.Account)
	case ton.RunSmcMethod:
		return s.runMethod(q)
	case ton.SendMessage:
		return s.sendMessage(q.Body)
	case ton.GetTransactions:
		return s.transactions(q)
	default:
		return nil, ton.LSError{Code: lsErrNotServed, Text: fmt.Sprintf("tonemu: %T is not served by the emulated chain", query)}
	}
}

// waitBlock waits, at most timeout (bounded by maxWait), until the chain has block
// seqno.
func (s *Server) waitBlock(seqno uint32, timeout time.Duration) error {
	timer := time.NewTimer(min(timeout, maxWait))
	defer timer.Stop()
	for {
		s.chain.mu.Lock()
		have, next := s.chain.head().id.SeqNo, s.chain.blockSealed()
		s.chain.mu.Unlock()
		if have >= seqno {
			return nil
		}
		select {
		case <-next:
		case <-timer.C:
			return ton.LSError{Code: lsErrTimeout, Text: fmt.Sprintf("tonemu: block %d did not come in time", seqno)}
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
	}
}

func (s *Server) masterchainInfo() (tl.Serializable, error) {
	c := s.chain
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(s.ctx); err != nil {
		return nil, err
	}
	head, err := c.proven(c.head())
	if err != nil {
		return nil, err
	}
	first, err := c.proven(c.blocks[0])
	if err != nil {
		return nil, err
	}
	return ton.MasterchainInfo{Last: head.master, StateRootHash: head.masterStateHash,
		Init: &ton.ZeroStateIDExt{Workchain: address.MasterchainID, RootHash: first.master.RootHash, FileHash: first.master.FileHash}}, nil
}

// at returns the block a client names by its masterchain id. The caller holds c.mu.
func (c *Chain) at(id *ton.BlockIDExt) (*block, *provenBlock, error) {
	if id == nil || id.SeqNo == 0 || int(id.SeqNo) > len(c.blocks) {
		return nil, nil, fmt.Errorf("tonemu: unknown block %v", id)
	}
	b := c.blocks[id.SeqNo-1]
	p, err := c.proven(b)
	if err != nil {
		return nil, nil, err
	}
	if !p.master.Equals(id) {
		return nil, nil, fmt.Errorf("tonemu: block %d is not this chain's", id.SeqNo)
	}
	return b, p, nil
}

// proofs are what a client needs to trust an account's entry in a block: the shard
// block in the masterchain block, and the account (or its absence) in the shard block.
type proofs struct {
	master, shard     *ton.BlockIDExt
	shardProof, proof []*cell.Cell
	account           *cell.Cell // the Account cell, nil if there is no account
}

func (c *Chain) accountProofs(ctx context.Context, id *ton.BlockIDExt, addr *address.Address) (*block, *proofs, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(ctx); err != nil {
		return nil, nil, err
	}
	b, p, err := c.at(id)
	if err != nil {
		return nil, nil, err
	}
	out := &proofs{master: p.master, shard: p.shard}
	if out.shardProof, err = p.shardInMasterProof(); err != nil {
		return nil, nil, fmt.Errorf("tonemu: shard proof: %w", err)
	}
	if out.proof, err = p.accountProof(addr); err != nil {
		return nil, nil, fmt.Errorf("tonemu: account proof: %w", err)
	}
	if acc := b.accounts[key(addr)]; acc != nil && acc.prepared.State() != nil && acc.prepared.State().IsValid {
		if out.account, err = acc.prepared.ShardAccountCell().PeekRef(0); err != nil {
			return nil, nil, err
		}
	}
	return b, out, nil
}

func accountAddress(id ton.AccountID) (*address.Address, error) {
	if len(id.ID) != 32 {
		return nil, errors.New("tonemu: account id is not 32 bytes")
	}
	return address.NewAddress(0, byte(id.Workchain), id.ID), nil
}

func (s *Server) accountState(id *ton.BlockIDExt, account ton.AccountID) (tl.Serializable, error) {
	addr, err := accountAddress(account)
	if err != nil {
		return nil, err
	}
	_, p, err := s.chain.accountProofs(s.ctx, id, addr)
	if err != nil {
		return nil, err
	}
	return ton.AccountState{ID: p.master, Shard: p.shard, ShardProof: p.shardProof, Proof: p.proof, State: p.account}, nil
}

func (s *Server) runMethod(q ton.RunSmcMethod) (tl.Serializable, error) {
	addr, err := accountAddress(q.Account)
	if err != nil {
		return nil, err
	}
	params, err := methodParams(q.Params)
	if err != nil {
		return nil, err
	}
	b, p, err := s.chain.accountProofs(s.ctx, q.ID, addr)
	if err != nil {
		return nil, err
	}
	res, err := s.chain.RunGetMethodByID(s.ctx, b.id, addr, q.MethodID, params...)
	var exec ton.ContractExecError
	switch {
	case errors.As(err, &exec) && exec.Code == ton.ErrCodeContractNotInitialized:
		return nil, ton.LSError{Code: exec.Code, Text: "cannot run a get-method on an account that is not active"}
	case errors.As(err, &exec):
		return ton.RunMethodResult{Mode: q.Mode, ID: p.master, ShardBlock: p.shard, ExitCode: exec.Code}, nil
	case err != nil:
		return nil, err
	}
	out := ton.RunMethodResult{Mode: q.Mode, ID: p.master, ShardBlock: p.shard}
	if q.Mode&1 != 0 {
		out.ShardProof, out.Proof = p.shardProof, p.proof
	}
	if q.Mode&2 != 0 {
		if out.StateProof, err = p.account.CreateProof(cell.CreateProofSkeleton()); err != nil {
			return nil, err
		}
	}
	if q.Mode&4 != 0 {
		// The client pops the method's first result first: it goes on top.
		values := res.AsTuple()
		var stack tlb.Stack
		for i := len(values) - 1; i >= 0; i-- {
			stack.Push(values[i])
		}
		if out.Result, err = stack.ToCell(); err != nil {
			return nil, fmt.Errorf("tonemu: serialize the result: %w", err)
		}
	}
	return out, nil
}

// methodParams decodes a get-method's parameters, first parameter first.
func methodParams(boc []byte) ([]any, error) {
	root, err := cell.FromBOC(boc)
	if err != nil {
		return nil, fmt.Errorf("tonemu: get-method parameters: %w", err)
	}
	var stack tlb.Stack
	if err := tlb.Parse(&stack, root); err != nil {
		return nil, fmt.Errorf("tonemu: get-method parameters: %w", err)
	}
	var out []any
	for stack.Depth() > 0 {
		v, err := stack.Pop()
		if err != nil {
			return nil, err
		}
		if _, ok := v.(*big.Int); !ok {
			if _, ok := v.(*cell.Cell); !ok {
				if _, ok := v.(*cell.Slice); !ok {
					return nil, fmt.Errorf("tonemu: get-method parameter of type %T is not served", v)
				}
			}
		}
		out = append(out, v)
	}
	return out, nil
}

func (s *Server) sendMessage(body []byte) (tl.Serializable, error) {
	root, err := cell.FromBOC(body)
	if err != nil {
		return nil, fmt.Errorf("tonemu: message: %w", err)
	}
	var msg tlb.ExternalMessage
	if err := tlb.LoadFromCell(&msg, root.MustBeginParse()); err != nil {
		return nil, fmt.Errorf("tonemu: not an inbound external message: %w", err)
	}
	if err := s.chain.SendExternalMessage(s.ctx, &msg); err != nil {
		if errors.Is(err, ErrNotAccepted) {
			return nil, ton.LSError{Code: 0, Text: "cannot apply external message to current state: " + err.Error()}
		}
		return nil, err
	}
	return ton.SendMessageStatus{Status: 1}, nil
}

// transactions answers getTransactions: up to Limit transactions of the account,
// newest first, starting with the one at LT whose hash is TxHash.
func (s *Server) transactions(q ton.GetTransactions) (tl.Serializable, error) {
	if q.AccID == nil {
		return nil, errors.New("tonemu: no account")
	}
	addr, err := accountAddress(*q.AccID)
	if err != nil {
		return nil, err
	}
	c := s.chain
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.ready(s.ctx); err != nil {
		return nil, err
	}
	list := c.txs[key(addr)]
	end := -1
	for i, tx := range list {
		if tx.Tx.LT == uint64(q.LT) && bytes.Equal(tx.Tx.Hash, q.TxHash) {
			end = i
			break
		}
	}
	if end < 0 {
		return nil, ton.LSError{Code: 0, Text: "cannot compute block with specified transaction: lt not in db"}
	}
	var out ton.TransactionList
	var roots []*cell.Cell
	for i := end; i >= 0 && len(roots) < int(max(q.Limit, 1)); i-- {
		p, err := c.proven(c.blocks[list[i].Block-1])
		if err != nil {
			return nil, err
		}
		out.IDs = append(out.IDs, p.shard)
		roots = append(roots, list[i].raw)
	}
	out.Transactions = cell.ToBOCWithFlags(roots, false)
	return out, nil
}

// GlobalConfig is a TON global config (the format liteclient.GetConfigFromFile reads)
// that lists one liteserver at addr, an IPv4 host:port, known by key.
func GlobalConfig(addr string, key ed25519.PublicKey) (*liteclient.GlobalConfig, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return nil, fmt.Errorf("tonemu: %s is not an IPv4 address", host)
	}
	var portNum int
	if _, err := fmt.Sscan(port, &portNum); err != nil {
		return nil, fmt.Errorf("tonemu: port %q: %w", port, err)
	}
	cfg := &liteclient.GlobalConfig{Type: "config.global"}
	cfg.Liteservers = []liteclient.LiteserverConfig{{
		IP:   int64(int32(uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3]))),
		Port: portNum,
	}}
	cfg.Liteservers[0].ID.Type = "pub.ed25519"
	cfg.Liteservers[0].ID.Key = base64.StdEncoding.EncodeToString(key)
	return cfg, nil
}
