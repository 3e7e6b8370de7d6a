package tonemu

import (
	"context"
	"time"

	"github.com/xssnick/tonutils-go/address"
	"github.com/xssnick/tonutils-go/liteclient"
	"github.com/xssnick/tonutils-go/tlb"
	"github.com/xssnick/tonutils-go/ton"
	"github.com/xssnick/tonutils-go/tvm/cell"
)

// unimplemented holds the ton.APIClientWrapped methods the emulator does not
// model. Each panics naming itself, so a test that reaches one fails loudly
// instead of getting a plausible wrong answer.
type unimplemented struct{}

func notImplemented(method string) string {
	return "tonemu: ton.APIClientWrapped." + method + " is not implemented by the emulator"
}

func (unimplemented) Client() ton.LiteClient { panic(notImplemented("Client")) }

func (unimplemented) GetLibraries(ctx context.Context, list ...[]byte) ([]*cell.Cell, error) {
	panic(notImplemented("GetLibraries"))
}

func (unimplemented) LookupBlock(ctx context.Context, workchain int32, shard int64, seqno uint32) (*ton.BlockIDExt, error) {
	panic(notImplemented("LookupBlock"))
}

func (unimplemented) GetBlockData(ctx context.Context, block *ton.BlockIDExt) (*tlb.Block, error) {
	panic(notImplemented("GetBlockData"))
}

func (unimplemented) GetBlockDataAsCell(ctx context.Context, block *ton.BlockIDExt) (*cell.Cell, error) {
	panic(notImplemented("GetBlockDataAsCell"))
}

func (unimplemented) GetBlockHeader(ctx context.Context, block *ton.BlockIDExt) (*tlb.BlockHeader, error) {
	panic(notImplemented("GetBlockHeader"))
}

func (unimplemented) GetBlockTransactionsV2(ctx context.Context, block *ton.BlockIDExt, count uint32, after ...*ton.TransactionID3) ([]ton.TransactionShortInfo, bool, error) {
	panic(notImplemented("GetBlockTransactionsV2"))
}

func (unimplemented) GetBlockShardsInfo(ctx context.Context, master *ton.BlockIDExt) ([]*ton.BlockIDExt, error) {
	panic(notImplemented("GetBlockShardsInfo"))
}

func (unimplemented) GetBlockchainConfig(ctx context.Context, block *ton.BlockIDExt, onlyParams ...int32) (*tlb.BlockchainConfig, error) {
	panic(notImplemented("GetBlockchainConfig"))
}

func (unimplemented) GetBlockProof(ctx context.Context, known, target *ton.BlockIDExt) (*ton.PartialBlockProof, error) {
	panic(notImplemented("GetBlockProof"))
}

func (unimplemented) SubscribeOnTransactions(workerCtx context.Context, addr *address.Address, lastProcessedLT uint64, channel chan<- *tlb.Transaction) {
	panic(notImplemented("SubscribeOnTransactions"))
}

func (unimplemented) VerifyProofChain(ctx context.Context, from, to *ton.BlockIDExt) error {
	panic(notImplemented("VerifyProofChain"))
}

func (unimplemented) SetTrustedBlock(block *ton.BlockIDExt) { panic(notImplemented("SetTrustedBlock")) }

func (unimplemented) SetTrustedBlockFromConfig(cfg *liteclient.GlobalConfig) {
	panic(notImplemented("SetTrustedBlockFromConfig"))
}

func (unimplemented) FindLastTransactionByOutMsgHash(ctx context.Context, addr *address.Address, msgHash []byte, maxTxNumToScan ...int) (*tlb.Transaction, error) {
	panic(notImplemented("FindLastTransactionByOutMsgHash"))
}

func (unimplemented) FindLastTransactionByInMsgHashAfterTime(ctx context.Context, addr *address.Address, msgHash []byte, after time.Time) (*tlb.Transaction, error) {
	panic(notImplemented("FindLastTransactionByInMsgHashAfterTime"))
}

func (unimplemented) FindLastTransactionByOutMsgHashAfterTime(ctx context.Context, addr *address.Address, msgHash []byte, after time.Time) (*tlb.Transaction, error) {
	panic(notImplemented("FindLastTransactionByOutMsgHashAfterTime"))
}

func (unimplemented) GetOutMsgQueueSizes(ctx context.Context, wc *int32, shard *int64) (*ton.OutMsgQueueSizes, error) {
	panic(notImplemented("GetOutMsgQueueSizes"))
}

func (unimplemented) GetBlockOutMsgQueueSize(ctx context.Context, block *ton.BlockIDExt) (*ton.BlockOutMsgQueueSize, error) {
	panic(notImplemented("GetBlockOutMsgQueueSize"))
}

func (unimplemented) GetDispatchQueueInfo(ctx context.Context, block *ton.BlockIDExt, afterAddr *address.Address, maxAccounts int) (*ton.DispatchQueueInfo, error) {
	panic(notImplemented("GetDispatchQueueInfo"))
}

func (unimplemented) GetDispatchQueueMessages(ctx context.Context, block *ton.BlockIDExt, addr *address.Address, afterLT uint64, maxMessages int, options ...func(*ton.GetDispatchQueueMessages)) (*ton.DispatchQueueMessages, error) {
	panic(notImplemented("GetDispatchQueueMessages"))
}

func (unimplemented) GetAllNonfinalValidatorGroups(ctx context.Context) (*ton.NonfinalValidatorGroups, error) {
	panic(notImplemented("GetAllNonfinalValidatorGroups"))
}

func (unimplemented) GetNonfinalValidatorGroups(ctx context.Context, wc int32, shard int64) (*ton.NonfinalValidatorGroups, error) {
	panic(notImplemented("GetNonfinalValidatorGroups"))
}

func (unimplemented) GetNonfinalCandidate(ctx context.Context, id *ton.NonfinalCandidateID) (*ton.NonfinalCandidate, error) {
	panic(notImplemented("GetNonfinalCandidate"))
}

func (unimplemented) GetAllNonfinalPendingShardBlocks(ctx context.Context) (*ton.NonfinalPendingShardBlocks, error) {
	panic(notImplemented("GetAllNonfinalPendingShardBlocks"))
}

func (unimplemented) GetNonfinalPendingShardBlocks(ctx context.Context, wc int32, shard int64) (*ton.NonfinalPendingShardBlocks, error) {
	panic(notImplemented("GetNonfinalPendingShardBlocks"))
}
