// Package billing is the host's side of settlement: what web's billing layer and
// cocoon-host serve run to be paid for each request from a client's escrow on TON. The
// formats it speaks (signed requests, receipts, price lists, the Code* values of its
// refusals) are package settle's, the client's side, so that the host signs exactly what
// a client verifies.
//
//	admission     NewService(Config) → Service: Authenticate (a settle.SignedRequest
//	              read by ParseSignedRequest), Admit (an Admission → a Ticket, finished
//	              with a receipt or released), Account, Receipts, PriceList; Error (one
//	              type per refusal, with a settle.Code* value and its HTTP status),
//	              InsufficientError, IdempotentError, ErrReplay
//	escrows       EscrowSource, ChainEscrows (read through any ton.APIClientWrapped,
//	              cached, told each state the settler reads; FreshEscrows),
//	              EscrowState
//	pricing       Pricer (the table of the request's model times a load coefficient
//	              that follows the host's utilization, smoothed in integers),
//	              DefaultLoadCurve
//	ledger        Store (settle/ledger is the crash-safe one), Reservation, HoldID,
//	              AccountStatus, AccountTotals, ErrIntegrity, ErrReopened, ErrPruned
//	settlement    NewSettler(SettlerConfig) → Settler: commits the ledger's charges
//	              on-chain in batches; DefaultMinTimeout
//	metrics       NewMetrics → Metrics, Service.Collectors
//
// Its errors' messages still start "settle:": they are what a client is shown, and the
// split did not change a word of them.
package billing
