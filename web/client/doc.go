// Package client is a Go client of a Cocoon host's web API (package web), for programs
// that upload pipelines to a host, chat through them and verify what they talk to:
// the cocoon CLI, a Mini App backend, a reviewer's tooling.
//
//	c, err := client.New("https://host.example", client.WithAPIKey(key),
//		client.WithTrust(policy, attest.EvidenceOptions{}))
//	files, err := client.ReadPipelineFiles([]string{"redactor.wasm"}, nil)
//	m, err := files.Manifest("stories260K")
//	p, err := c.Push(ctx, m, files.Wasm)             // p.ID == m.ID() on every host
//	_, err = c.Chat(ctx, p.ID, req, nil, func(text string) error { ... })
//
// # Trust
//
// A Client of an https host verifies the host's RA-TLS certificate in every TLS
// handshake against its trust (WithTrust: an attest.Policy, a simulator root, Intel's
// collateral) and pins the first verified key, so every request of one Client reaches
// the host that was verified. Over http nothing is verified in transit; with a trust,
// Chat verifies the host's boot evidence itself before it sends, and checks every
// answer's signature with the attested host key. VerifyBoot, AttestedSettlementKey
// and VerifiedPriceList verify on demand; Fetch and NewSavedSource give attest's
// verifier the evidence of a host now, or as saved.
//
// # Calls
//
//	pipelines  ReadPipelineFiles, PipelineFiles.Manifest, Push, FirstModel, Pipelines,
//	           Pipeline, DeletePipeline, FailedRequests
//	chat       Chat (streamed or whole, signature-checked, its receipt checked)
//	evidence   BootEvidence, PipelineEvidence, VerifyBoot, RATLSCheck, Fetch,
//	           NewSavedSource, PinningPolicy
//	billing    Signer (requests signed by an escrow's client key), PriceList,
//	           VerifiedPriceList, Account, Receipts, CheckReceipts, Read/Write/AppendReceipt
//	escrow     Wallet, Transfer, DepositTransfer, WaitEscrow, ReadEscrow (on TON, through
//	           any ton.APIClientWrapped: a liteserver, or settle/tonemu)
//	any route  GetBytes (a bounded GET, retried as every GET), Get (relayed once),
//	           HTTPClient and TransportError for requests of one's own
//
// Each call makes the requests its doc comment names, and no requests or work in the
// background. A sealed Chat to a host key asks for an end-to-end session (web/E2E.md
// §8), which the Client keeps, shared by its copies, and uses for the next Chats to
// that key for up to an hour: they then cost no KEM, and a relay sees that they
// belong to one session. Each Client has a transport of its own (WithMaxIdleConns
// sizes its idle pool, and WithDialControl vets the address of each connection it
// makes), so that closing one's idle connections touches no other.
// A GET the host answers 429 or 503 with a Retry-After of at most MaxRetryWait is sent
// again after that wait, at most MaxRetries times; an upload or a chat is sent once,
// since the host may have acted on it. No request follows a redirect: a 3xx, which no
// route of the host's API answers, is CodeBadAnswer naming its Location, and nothing is
// sent there (it would carry the request's body and credential to another URL).
//
// # Errors
//
// Every failure at the boundary with a host is an *Error with a Code (CodeUnreachable,
// CodeRefused with the host's status and code, CodeBadAnswer, CodeNotVerified,
// CodeInvalid) and a message safe to show a user; a failed attestation carries its
// report (Error.FailedChecks). Messages hold the host's own error message, URLs and
// hashes, never an API key or a seed. The messages are the cocoon CLI's, which prints
// them as they are, so a few name its flags. The escrow helpers talk to the chain, not
// to a host: their errors are the chain client's, wrapped with what was being done;
// errors of local files come as the os package words them.
package client
