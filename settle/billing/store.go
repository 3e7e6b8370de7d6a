package billing

import (
	"github.com/cocoonhost/cocoon/settle"

	"context"
	"errors"
	"time"
)

// Store is the durable ledger: holds for requests in flight, the receipt chain of every
// account, idempotency records and what has been committed on-chain. settle/ledger
// implements it on bbolt; a PostgreSQL implementation can take its place (each method is
// one transaction).
//
// Every method but Reserve that returns without error has made its change durable: a
// crash after the return loses nothing, a crash before leaves no trace of the call.
// Holds live in memory only, so admission costs no disk write: a crash drops them, and
// needs not keep them, because a request that had not committed its receipt returned
// none and is charged nothing. Its request hash is then not recorded either, so the
// client may send it again.
type Store interface {
	// Reserve creates a hold of r.MaxCost on r.Account if the account's cumulative total
	// plus its open holds plus r.MaxCost is at most r.Limit; otherwise it returns an
	// *InsufficientError saying how much is missing. With an r.IdempotencyKey already
	// used on the account it returns *IdempotentError: with the stored response if that
	// request finished, ErrInProgress if it has not, and ErrIdempotencyMismatch if it
	// was for another request hash; a key whose request was cancelled is free (see
	// Commit). Otherwise it returns ErrReplay if r.RequestHash or r.SignatureHash was
	// seen on this account before (and not yet pruned, see Prune), and ErrReopened if
	// the account's settled total is above r.Charged.
	Reserve(ctx context.Context, r Reservation) (HoldID, error)

	// Commit turns a hold into the account's next receipt: it sets the receipt's Seq to
	// the account's last Seq plus one and its Cumulative to the last Cumulative plus
	// r.Cost, calls sign (which must sign the receipt; it runs inside the transaction),
	// stores the receipt, records the hold's request and signature hashes, stores the
	// response for the hold's idempotency key (if any) and releases the hold. r.Cost
	// must not exceed the hold's MaxCost.
	//
	// A receipt with StatusCancelled (the client went away) records no idempotency
	// record and not the request hash of a hold with an idempotency key (which names
	// the key, not the attempt): its key is free, and a retry with it runs the request
	// again instead of replaying a cut answer. Its signature hash is recorded, so the
	// same signed attempt cannot be sent again.
	Commit(ctx context.Context, id HoldID, r *settle.Receipt, response []byte, sign func(*settle.Receipt)) error

	// Release drops a hold without a receipt (a Commit that failed, a request that
	// panicked): its amount, request and signature hashes and idempotency key are free
	// again. It returns ErrUnknownHold for a hold that is committed or released.
	Release(id HoldID) error

	// Account returns an account's totals; an unknown account has zero totals.
	Account(ctx context.Context, account string) (AccountTotals, error)

	// Receipts returns up to limit receipts of account from Seq fromSeq on, in order.
	Receipts(ctx context.Context, account string, fromSeq uint64, limit int) ([]settle.Receipt, error)

	// Unsettled lists the accounts whose cumulative total is above what was last
	// recorded as settled on-chain.
	Unsettled(ctx context.Context) ([]AccountTotals, error)

	// RecordSettlement records that account's escrow has been charged up to cumulative
	// on-chain (charged no lower than before: an older value is ignored).
	RecordSettlement(ctx context.Context, account string, cumulative uint64, at time.Time) error

	// Prune forgets request hashes and idempotency records older than before, and from
	// then on Reserve refuses a Reservation whose Time is not after every record it
	// forgot, with ErrPruned: the host's clock (which the machine's owner sets) may
	// have gone back, and such a request may be one the store has forgotten it billed.
	// A replay of a pruned signed request is so refused whatever the clock says, as its
	// Time is its signed timestamp; with an honest clock it is refused by the signed
	// request's timestamp window already.
	Prune(ctx context.Context, before time.Time) error

	Close() error
}

// HoldID names a hold until Commit.
type HoldID uint64

// Reservation is what Reserve holds.
type Reservation struct {
	Account string
	// RequestHash names the request in its receipt; with an IdempotencyKey it is
	// derived from the key, so every retry has the same one.
	RequestHash string
	// SignatureHash, optional, names the signed attempt of a request with an
	// IdempotencyKey (the hash of what the client signed, nonce included).
	SignatureHash  string
	IdempotencyKey string // optional
	MaxCost        uint64
	// Limit is the account's spendable total: its escrow's deposit.
	Limit uint64
	// Charged is what the account's escrow has been charged on-chain. Within one
	// contract it never decreases, so a settled total above it means that the contract
	// is not the one the ledger settled with: closed and deployed again at the same
	// address (ErrReopened), or a state read before the latest settlement.
	Charged uint64
	// Time is when the request was made: for a signed request the time its client
	// signed, otherwise when it was admitted. Prune compares it.
	Time time.Time
}

// AccountTotals are an account's ledger totals in nanoTON.
type AccountTotals struct {
	Account string
	// LastSeq and Cumulative are those of the account's latest receipt.
	LastSeq    uint64
	Cumulative uint64
	// Held is the sum of the account's open holds.
	Held uint64
	// Settled is the highest cumulative recorded by RecordSettlement, SettledAt when.
	Settled   uint64
	SettledAt time.Time
}

// Store errors.
var (
	ErrReplay              = errors.New("settle: request already seen")
	ErrInProgress          = errors.New("settle: a request with this idempotency key is in progress")
	ErrIdempotencyMismatch = errors.New("settle: this idempotency key was used for a different request")
	ErrUnknownHold         = errors.New("settle: unknown hold")
	// ErrReopened is Reserve's refusal of an account whose escrow has been charged less
	// than the ledger has settled with it (see Reservation.Charged).
	ErrReopened = errors.New("settle: the escrow has been charged less than the ledger settled with it")
	// ErrPruned is Reserve's refusal of a reservation whose Time is before what the
	// store has pruned (see Prune).
	ErrPruned = errors.New("settle: the request is older than the requests the ledger remembers")
)

// InsufficientError is Reserve's refusal for lack of funds.
type InsufficientError struct {
	// Available is the account's limit minus its cumulative total and open holds.
	Available uint64
	Needed    uint64
}

func (e *InsufficientError) Error() string {
	return "settle: insufficient balance"
}

// Missing is how much more the account needs.
func (e *InsufficientError) Missing() uint64 { return e.Needed - e.Available }

// IdempotentError is Reserve's answer to a reused idempotency key.
type IdempotentError struct {
	// Err is ErrInProgress or ErrIdempotencyMismatch, or nil when the earlier request
	// finished: Receipt and Response are then what it returned.
	Err      error
	Receipt  *settle.Receipt
	Response []byte
}

func (e *IdempotentError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return "settle: request already completed"
}

func (e *IdempotentError) Unwrap() error { return e.Err }
