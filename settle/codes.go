package settle

// The codes of the host's refusals: the "code" member of an error answer's JSON, with
// the HTTP status each comes with. A client branches on them; settle/billing's Error
// carries them.
const (
	// CodeBadSignature (401): the signing headers are missing or malformed, or the
	// signature does not verify with the escrow's client key.
	CodeBadSignature = "invalid_signature"
	// CodeExpired (401): the signed request's timestamp is outside RequestWindow.
	CodeExpired = "request_expired"
	// CodeReplay (401): this signed request was already received.
	CodeReplay = "replayed_request"
	// CodeInsufficient (402): the escrow's unspent balance does not cover the
	// request's maximum cost; the message says how much is missing.
	CodeInsufficient = "insufficient_balance"
	// CodeUnknownAccount (402): the escrow does not exist, is not the Cocoon escrow
	// contract, or is for another host.
	CodeUnknownAccount = "unknown_account"
	// CodeClosing (402): the client asked the escrow for its money back.
	CodeClosing = "escrow_closing"
	// CodeMaxPrice (402): the request's worst-case cost at the current prices exceeds
	// the max_price the client set (MaxPriceMember); nothing was reserved or charged.
	CodeMaxPrice = "max_price_exceeded"
	// CodeUnpricedModel (400): the host's price list has no table for the request's
	// model and no default; nothing was reserved or charged.
	CodeUnpricedModel = "model_not_priced"
	// CodeInProgress (409): a request with this idempotency key is still running.
	CodeInProgress = "idempotency_in_progress"
	// CodeIdempotencyMismatch (422): the idempotency key was used for another request.
	CodeIdempotencyMismatch = "idempotency_key_reused"
	// CodeUnavailable (503): the escrow cannot be read (the chain is unreachable and
	// the host has never seen it, or what it last saw cannot decide the request: a
	// balance short of it, or charged less than the host settled) or the ledger failed.
	CodeUnavailable = "settlement_unavailable"
	// CodeIntegrity (503): the ledger's records of the account fail their integrity
	// check (they were altered on the host's disk): the host neither serves nor charges
	// the account until its operator restores them.
	CodeIntegrity = "ledger_integrity"
)
