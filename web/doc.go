// Package web is the HTTP API of a Cocoon host: OpenAI-compatible chat completions
// through pipelines, pipeline upload and inspection, models, health and Prometheus
// metrics. New builds a Server from a backend, a sandbox, a module store and a pipeline
// registry; Handler serves it, or Serve and Shutdown run it on a listener:
//
//	srv, err := web.New(web.Config{Backend: b, Sandbox: sb, Store: st, Registry: reg,
//		APIKeys: []web.APIKey{{Name: "ops", Key: key}}})
//	go srv.Serve(listener)
//	...
//	srv.Shutdown(ctx) // waits for streams in flight
//
// # Routes
//
//	GET    /healthz                      200 while the process runs
//	GET    /readyz                       200 when the backend can serve, else 503
//	GET    /metrics                      Prometheus metrics
//	GET    /v1/attestation               the boot evidence (no credential)
//	GET    /v1/pricing                   the signed price list of a billing host (no credential)
//	GET    /v1/accounts/{account}        an escrow account's totals (its client only)
//	GET    /v1/accounts/{account}/receipts?from=&limit=   its receipts (its client only)
//	GET    /v1/models                    the backend's models
//	POST   /v1/chat/completions          the bare backend, through an empty pipeline
//	POST   /v1/pipelines                 upload a pipeline (owner credential)
//	GET    /v1/pipelines                 list pipelines
//	GET    /v1/pipelines/{id}            a pipeline's canonical manifest and module hashes
//	GET    /v1/pipelines/{id}/attestation?nonce=<hex>   fresh pipeline evidence
//	DELETE /v1/pipelines/{id}            withdraw as an owner (owner credential)
//	GET    /p/{id}/v1/models             the pipeline's model
//	POST   /p/{id}/v1/chat/completions   chat through the pipeline
//
// An OpenAI SDK works against a pipeline with baseURL = https://HOST/p/{id}/v1.
//
// # Uploading a pipeline
//
// The body of POST /v1/pipelines is JSON, decoded strictly as it arrives (unknown
// members, members given twice and trailing data are errors; the manifest is checked
// as soon as it is read, and the body is never held whole):
//
//	{"manifest": {"abi_version": 1, "model": "stories260K",
//	              "pre":  [{"module": "sha256:<hex>", "config": {...}, "limits": {"time_ms": 100}}],
//	              "post": [{"module": "sha256:<hex>"}]},
//	 "modules":  {"sha256:<hex>": "<standard base64 of the .wasm bytes>"}}
//
// The manifest is host.Manifest; the pipeline id is its host.Manifest.ID. modules holds
// the bytes of every module the host does not store yet (a module already stored may be
// left out); each must hash to its key and be named by the manifest. The answer is 201
// with the pipeline for a new one, 200 for one already registered (same content, same
// id: the caller joins its owners); both carry "id", "base_url", the canonical
// "manifest" and the "modules" hashes. Each refusal is a 400 whose message names the
// module and the reason: code "invalid_module" (with "reason", the abi.ErrorCode when
// validation failed, or "compile_too_costly" when compiling would cost more than a host
// allows), "invalid_pipeline" or "invalid_request". Bodies over Config.MaxUploadBytes
// are a 413. Capacity refusals are 429 with Retry-After: "too_many_uploads" when
// Config.MaxUploads uploads are being received (answered before the body is read), and
// "compile_busy" when the host's compile pool has no room for a module.
//
// # Credentials
//
// "Authorization: Bearer <API key>" (keys compared in constant time) identifies a
// service or pipeline author: it may chat, read, upload pipelines and delete its own.
// "Authorization: tma <init data>" identifies a Telegram Mini App user, whose init data
// is checked as Telegram specifies with Config.TelegramBotToken and must be at most
// Config.TelegramMaxAge old: it may chat and read. /healthz, /readyz, /metrics and
// /v1/attestation need no credential.
//
// # Chat completions
//
// The client's body goes to the pipeline's pre modules, the request that leaves them is
// decoded for the backend (model, messages with string or text-part content,
// max_tokens or max_completion_tokens, temperature, top_p, seed, stop; n must be 1; the
// rest passes on raw), and the answer goes through the post modules. A pipeline's model
// is fixed by its manifest: a client naming another one gets a 400. With "stream": true
// the answer is server-sent "data:" chunks in OpenAI's format ending with
// "data: [DONE]", with a last chunk of usage when "stream_options": {"include_usage":
// true}. A failure before the first chunk is an ordinary error response; after it, an
// event "data: {"error": {...}}" ends the stream without [DONE].
//
// At most Config.MaxGenerations completions run at once; the next gets 429 with
// Retry-After instead of a queue. A client that disconnects cancels its request, and
// with it the modules and the backend's generation.
//
// # Attestation
//
// With Config.Attestation set, GET /v1/attestation answers the boot evidence and
// GET /v1/pipelines/{id}/attestation?nonce=<hex> pipeline evidence, both as the JSON of
// attest.Evidence. The nonce is hex of 16 to 64 bytes the client chose (400 otherwise);
// an unknown pipeline is a 404. Pipeline evidence takes a fresh quote, so at most
// Config.MaxQuotesPerSecond are taken per second, host-wide; over that the answer is 429
// with Retry-After. Without Config.Attestation both routes answer 404
// "attestation_unavailable".
//
// Every chat response is then signed with the attested host key over
// attest.SignedResponse: the sha256 of the request body as sent, the sha256 of the
// assistant's text as received (choices[0].message.content, "" when it is not a string;
// for a stream, the concatenated delta contents), the pipeline id ("" for the bare
// endpoint) and the usage the backend reported. A non-streaming answer carries it in the
// header "Cocoon-Signature: ed25519=<standard base64>"; a stream carries the same value
// as the member "cocoon_signature" of its last chunk (the usage chunk when
// stream_options.include_usage is set, else the finish chunk; only a billing host's
// receipt event comes between it and "data: [DONE]"). The signature
// covers the token counts, which a stream shows only with include_usage: a client that
// verifies streams must ask for it (cocoon proxy does). A stream that ends with an error
// event is not signed.
//
// # Billing
//
// With Config.Billing set, every chat completion is billed to a TON escrow (package
// settle, settle/ESCROW.md). The account is the escrow of a request signed with its
// client key (the headers settle.AccountHeader, TimestampHeader, NonceHeader and
// ClientSignatureHeader, which replace Authorization; see settle.SignedRequest), or the
// escrow an API key is mapped to (APIKey.Account); other credentials get 402. Admission
// reserves the request's maximum cost (the model's context window and max_tokens at the
// current price) and refuses with 402 when the escrow's unspent balance does not cover it,
// saying how much is missing, and with 401 for a bad, stale or replayed signature. The
// backend never generates more than admission priced. The answer carries a receipt
// signed by the settlement key: the header settle.ReceiptHeader, or for a stream an
// event after the last chunk and before "data: [DONE]" (or before the error event of a
// failed stream): a chat.completion.chunk with empty choices and the receipt as
// "cocoon_receipt". A failed or cancelled request is charged for what the client got.
// With settle.IdempotencyKeyHeader (signed, for a signed request), a retry of a
// completed request gets the same answer and receipt again with IdempotentReplayHeader
// set, and is not charged again; a retry of one in flight gets 409, the key with
// another request 422.
//
// # Errors
//
// Every error is in the OpenAI shape {"error": {"message", "type", "param", "code"}},
// with a message that is safe to show: module failures as SPEC.md §9 words them
// (type "module_error", or the rejecting module's status and message), backend failures
// as the backend words them (type "backend_error"), and anything else as a generic
// internal error whose detail goes to Config.Logger.
package web
