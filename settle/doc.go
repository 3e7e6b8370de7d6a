// Package settle is how a Cocoon host is paid: prices, admission against a client's
// escrowed balance on TON, a receipt signed by the attested settlement key with every
// answer, and the batched charges that move the money. ESCROW.md is the protocol
// (messages, signatures, the escrow's rules) and README.md walks one request through
// it; the escrow contract itself is in settle/contracts (Tolk) and its Go bindings in
// settle/escrow.
//
// # Client side
//
// What a client (web/client, cocoon channel/chat/receipts, a Mini App backend) uses to
// pay a host and check what it was charged; none of it holds state:
//
//	requests      SignedRequest.Sign (a request signed by the escrow's client key, in
//	              place of an API key), NewNonce, ParseAccount, the header names
//	              (AccountHeader ...), RequestWindow
//	receipts      Receipt (Verify: signed by the settlement key, costing what its usage
//	              comes to), VerifyChain (no gap, each total the last plus the cost),
//	              ReceiptHeader, RequestHash, Usage, ErrReceipt
//	prices        PriceList (Verify), PriceTable, LoadCurve, FormatTON
//	accounts      AccountView, the host's view of an escrow (GET /v1/accounts/{account})
//	errors        the Code* values of the host's refusals (401, 402, 409, 422, 503)
//
// # Host side
//
// What the host runs (web's billing layer, cocoon-host serve):
//
//	admission     NewService(Config) → Service: Authenticate (a SignedRequest,
//	              ParseSignedRequest), Admit (an Admission → a Ticket, finished with a
//	              receipt or released), Account, Receipts, PriceList; Error,
//	              InsufficientError, IdempotentError, ErrReplay
//	escrows       EscrowSource, ChainEscrows (read through any ton.APIClientWrapped,
//	              cached), EscrowState
//	pricing       Pricer (the price table times a load coefficient), DefaultLoadCurve,
//	              Quote, Reservation, HoldID
//	ledger        Store (settle/ledger is the crash-safe one), AccountStatus,
//	              AccountTotals, ErrIntegrity
//	settlement    NewSettler(SettlerConfig) → Settler: commits the ledger's charges
//	              on-chain in batches; DefaultMinTimeout
//	metrics       Metrics, Service.Collectors
//
// The two sides meet in the wire formats above: a receipt the host signs is the
// receipt the client verifies, with the same code (Receipt.Verify, VerifyChain), so
// that what is charged on-chain (the latest receipt's cumulative total) is what the
// client can check it holds receipts for.
//
// The host side stays in this package for now: issue 14's registry and market add to
// it in parallel, and moving it under them would conflict; see RATIONALE.md, "Layout".
package settle
