package tonemu

import (
	"fmt"
	"math/big"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

// A liteserver client (tonutils-go with ProofCheckPolicyFast, as cmd/internal/tonnet
// dials) trusts nothing it cannot check against a block's root hash: an account's state
// comes with a Merkle proof from a basechain shard block to the account, and a proof
// from the masterchain block the client asked about to that shard block. So that the
// emulator's chain can be served over the real protocol, every masterchain block is
// also built as cells: a masterchain block whose state lists one basechain shard block,
// and that shard block, whose state holds every account. The block ids served are the
// hashes of those cells, and the proofs are real Merkle proofs over them.
//
// What the cells leave out: block headers, value flow, messages and transactions
// descriptions (BlockInfo, ValueFlow and BlockExtra are empty cells, always pruned from
// proofs), and the state update is an ordinary cell holding the new state, not a
// MERKLE_UPDATE. Nothing the clients check depends on them; a client asking for
// them (getBlock, getBlockHeader) is told the server does not serve them.

// blockGlobalID is the global id written into the built blocks and states.
const blockGlobalID = -239

// fullShard is the shard id of a workchain that is not split.
const fullShard = -0x8000000000000000

// provenKept is how many blocks' cells a chain keeps; an older block is built again
// if asked about.
const provenKept = 256

// provenBlock is one emulator block built as cells.
type provenBlock struct {
	master, shard           *ton.BlockIDExt
	masterBlock, shardBlock *cell.Cell
	masterState, shardState *cell.Cell
	masterStateHash         []byte
}

// proven returns b built as cells, building it on first use. The caller holds c.mu.
// Cost: one dictionary of every account in the block, O(n log n), once per block.
func (c *Chain) proven(b *block) (*provenBlock, error) {
	if p := c.provenCache[b.id.SeqNo]; p != nil {
		return p, nil
	}
	p, err := buildProven(b)
	if err != nil {
		return nil, fmt.Errorf("tonemu: build block %d as cells: %w", b.id.SeqNo, err)
	}
	if c.provenCache == nil {
		c.provenCache = map[uint32]*provenBlock{}
	}
	c.provenCache[b.id.SeqNo] = p
	delete(c.provenCache, b.id.SeqNo-provenKept) // clients ask about recent blocks
	return p, nil
}

func buildProven(b *block) (*provenBlock, error) {
	accounts, err := tlb.NewShardAccountsAugDict()
	if err != nil {
		return nil, err
	}
	for _, acc := range b.accounts {
		st := acc.prepared.State()
		if st == nil || !st.IsValid {
			continue // destroyed: gone from the state, as on the real chain
		}
		addr := acc.prepared.Address()
		if addr.Workchain() != 0 {
			return nil, fmt.Errorf("account %s: only the basechain is served", addr)
		}
		if err := accounts.Set(accountKey(addr), acc.prepared.ShardAccountCell()); err != nil {
			return nil, fmt.Errorf("account %s: %w", addr, err)
		}
	}
	empty := cell.BeginCell().EndCell()
	shardState, err := tlb.ToCell(tlb.ShardStateUnsplit{GlobalID: blockGlobalID,
		ShardIdent: tlb.ShardIdent{WorkchainID: 0}, Seqno: b.id.SeqNo, GenUTime: b.now,
		OutMsgQueueInfo: empty, Accounts: struct {
			ShardAccounts *tlb.ShardAccountsAugDict `tlb:"."`
		}{accounts}, Stats: empty})
	if err != nil {
		return nil, fmt.Errorf("shard state: %w", err)
	}
	shardBlock := blockCell(shardState)
	shard := &ton.BlockIDExt{Workchain: 0, Shard: fullShard, SeqNo: b.id.SeqNo,
		RootHash: shardBlock.Hash(), FileHash: fileHash(shardBlock)}

	masterState, err := masterStateCell(b, shard)
	if err != nil {
		return nil, err
	}
	masterBlock := blockCell(masterState)
	master := &ton.BlockIDExt{Workchain: address.MasterchainID, Shard: fullShard, SeqNo: b.id.SeqNo,
		RootHash: masterBlock.Hash(), FileHash: fileHash(masterBlock)}
	return &provenBlock{master: master, shard: shard, masterBlock: masterBlock, shardBlock: shardBlock,
		masterState: masterState, shardState: shardState, masterStateHash: masterState.Hash()}, nil
}

// masterStateCell is the masterchain state of b: no accounts, and McStateExtra listing
// the basechain's one shard block and the chain's config.
func masterStateCell(b *block, shard *ton.BlockIDExt) (*cell.Cell, error) {
	cfg, err := cell.FromBOC(configBOC)
	if err != nil {
		return nil, err
	}
	desc, err := tlb.ToCell(tlb.ShardDesc{SeqNo: shard.SeqNo, RegMcSeqno: b.id.SeqNo, RootHash: shard.RootHash,
		FileHash: shard.FileHash, GenUTime: b.now, SplitMergeAt: tlb.FutureSplitMergeNone{}})
	if err != nil {
		return nil, fmt.Errorf("shard description: %w", err)
	}
	leaf := cell.BeginCell().MustStoreBoolBit(false).MustStoreBuilder(desc.ToBuilder()).EndCell() // bt_leaf$0
	hashes := cell.NewDict(32)
	if err := hashes.SetIntKey(big.NewInt(0), cell.BeginCell().MustStoreRef(leaf).EndCell()); err != nil {
		return nil, err
	}
	empty := cell.BeginCell().EndCell()
	extra := cell.BeginCell().MustStoreUInt(0xcc26, 16).MustStoreDict(hashes).
		MustStoreSlice(make([]byte, 32), 256).MustStoreRef(cfg). // config_addr, config
		MustStoreRef(empty).                                     // info: not served
		MustStoreCoins(0).MustStoreBoolBit(false).               // global_balance
		EndCell()
	accounts, err := tlb.NewShardAccountsAugDict()
	if err != nil {
		return nil, err
	}
	st, err := tlb.ToCell(tlb.ShardStateUnsplit{GlobalID: blockGlobalID,
		ShardIdent: tlb.ShardIdent{WorkchainID: address.MasterchainID}, Seqno: b.id.SeqNo, GenUTime: b.now,
		OutMsgQueueInfo: empty, Accounts: struct {
			ShardAccounts *tlb.ShardAccountsAugDict `tlb:"."`
		}{accounts}, Stats: empty, McStateExtra: extra})
	if err != nil {
		return nil, fmt.Errorf("masterchain state: %w", err)
	}
	return st, nil
}

// blockCell is a block whose state update refers to state: block#11ef55aa global_id
// info value_flow state_update extra, with the parts no client checks left out.
func blockCell(state *cell.Cell) *cell.Cell {
	update := cell.BeginCell().MustStoreRef(notServed).MustStoreRef(state).EndCell()
	return cell.BeginCell().MustStoreUInt(0x11ef55aa, 32).MustStoreInt(blockGlobalID, 32).
		MustStoreRef(notServed).MustStoreRef(notServed).MustStoreRef(update).MustStoreRef(notServed).EndCell()
}

// notServed stands for the parts of a block the emulator does not build. It has a
// reference so that proofs prune it (a proof keeps a cell without references whole),
// and clients, which skip pruned parts, never parse it.
var notServed = cell.BeginCell().MustStoreRef(cell.BeginCell().EndCell()).EndCell()

// fileHash stands for the hash of a block's file, which the emulator does not have.
func fileHash(block *cell.Cell) []byte {
	return cell.BeginCell().MustStoreSlice(block.Hash(), 256).MustStoreUInt(0, 8).EndCell().Hash()
}

func accountKey(addr *address.Address) *cell.Cell {
	return cell.BeginCell().MustStoreSlice(addr.Data(), 256).EndCell()
}

// blockStateProof is the two roots a client checks a state with: the block down to its
// state update, with everything else pruned, and state with only what visit reads.
func blockStateProof(block, state *cell.Cell, visit func(traced *cell.Cell) error) ([]*cell.Cell, error) {
	blockProof, err := usageProof(block, func(traced *cell.Cell) error {
		update, err := traced.PeekRef(2)
		if err != nil {
			return err
		}
		_, err = update.BeginParse() // the update itself, its references pruned
		return err
	})
	if err != nil {
		return nil, err
	}
	stateProof, err := usageProof(state, visit)
	if err != nil {
		return nil, err
	}
	return []*cell.Cell{blockProof, stateProof}, nil
}

// usageProof is a Merkle proof of root with the cells visit loads and the hashes of the
// others.
func usageProof(root *cell.Cell, visit func(traced *cell.Cell) error) (*cell.Cell, error) {
	builder := cell.NewMerkleProofBuilder(root)
	if _, err := builder.Root().BeginParse(); err != nil {
		return nil, err
	}
	if err := visit(builder.Root()); err != nil {
		return nil, err
	}
	return builder.CreateProof()
}

// shardInMasterProof proves that p's shard block is in its masterchain block, reading
// what ton.CheckShardInMasterProofForAccount reads.
func (p *provenBlock) shardInMasterProof() ([]*cell.Cell, error) {
	return blockStateProof(p.masterBlock, p.masterState, func(traced *cell.Cell) error {
		var st tlb.ShardStateUnsplit
		if err := tlb.LoadFromCellAsProof(&st, traced.MustBeginParse(), false); err != nil {
			return err
		}
		var extra tlb.McStateExtra
		if err := tlb.Parse(&extra, st.McStateExtra); err != nil {
			return err
		}
		_, err := ton.LoadShardsFromHashes(extra.ShardHashes, true)
		return err
	})
}

// accountProof proves addr's entry in p's shard state (or its absence), reading what
// ton.CheckAccountStateProofForShard reads.
func (p *provenBlock) accountProof(addr *address.Address) ([]*cell.Cell, error) {
	return blockStateProof(p.shardBlock, p.shardState, func(traced *cell.Cell) error {
		var st tlb.ShardStateUnsplit
		if err := tlb.LoadFromCellAsProof(&st, traced.MustBeginParse(), false); err != nil {
			return err
		}
		_, _, _ = st.Accounts.ShardAccounts.LoadValueExtra(accountKey(addr)) // absent: the path to where it would be
		return nil
	})
}
