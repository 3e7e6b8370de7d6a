// Package settle is the client side of how a Cocoon host is paid, and the wire formats
// both sides share: prices, requests signed by an escrow's client key, and the receipt
// signed by the attested settlement key that comes with every answer. ESCROW.md is the
// protocol (messages, signatures, the escrow's rules) and README.md walks one request
// through it; the escrow contract itself is in settle/contracts (Tolk) and its Go
// bindings in settle/escrow.
//
// What a client (web/client, cocoon channel/chat/receipts, a Mini App backend) uses to
// pay a host and check what it was charged; none of it holds state:
//
//	requests      SignedRequest.Sign (a request signed by the escrow's client key, in
//	              place of an API key), NewNonce, ParseAccount, the header names
//	              (AccountHeader ...), RequestWindow, MaxPriceMember and ParseMaxPrice
//	receipts      Receipt (Verify: signed by the settlement key, costing what its usage
//	              comes to), CheckReceipt (one answer's, against ReceiptWant: the
//	              attested key, pipeline, escrow, request and price list), VerifyChain
//	              (no gap, each total the last plus the cost), ReceiptHeader,
//	              RequestHash, Usage, ErrReceipt
//	prices        PriceList (format PriceListFormat; Verify, Quote), Prices (a table
//	              per model and a default: For, SamePrices), ModelPrice, PriceTable
//	              (Cost), Windows (each model's context window and a default: For,
//	              SameWindow, MaxContextWindow), ModelWindow, LoadCurve (Coefficient of
//	              a utilization in parts per million, UtilizationScale; integers
//	              only), Quote, FormatTON
//	accounts      AccountView, the host's view of an escrow (GET /v1/accounts/{account})
//	errors        the Code* values of the host's refusals (400, 401, 402, 409, 422, 503)
//
// The host's side (admission, escrow reads, the load-based pricer, the ledger's
// interface, batched on-chain settlement, metrics) is settle/billing, which imports this
// package and never the reverse. The two sides meet in the formats above: a receipt the
// host signs (Receipt.Sign) is the receipt the client verifies, with the same code
// (Receipt.Verify, VerifyChain), and so is a price list (PriceList.Sign, Verify), so
// that what is charged on-chain (the latest receipt's cumulative total) is what the
// client can check it holds receipts for.
package settle
