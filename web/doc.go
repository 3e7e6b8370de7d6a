// Package web is the HTTP API of a Cocoon host: OpenAI-compatible chat completions
// through pipelines, pipeline upload and inspection, models, health and Prometheus
// metrics. New builds a Server from a backend, a sandbox, a module store and a pipeline
// registry; Handler serves it, or Serve and Shutdown run it on a listener:
//
//	srv, err := web.New(web.Config{Backend: b, Sandbox: sb, Store: st, Registry: reg,
//		APIKeys: []web.APIKey{{Name: "ops", Key: key}}})
//	go srv.Serve(listener)
//	...
//	srv.Shutdown(ctx) // lets requests in flight finish until ctx is done, then cuts them
//
// # Routes
//
//	GET    /                             the reviewer's page (no credential; see below)
//	GET    /page/{file}                  its script, style, config and verifier
//	GET    /sdk/{file}                   the browser client library and its verifier (package web/browser)
//	GET    /healthz                      200 while the process runs
//	GET    /readyz                       200 when the backend can serve, else 503
//	GET    /metrics                      Prometheus metrics
//	GET    /v1/attestation[?nonce=<hex>] the boot evidence, fresh with a nonce (no credential)
//	GET    /v1/pricing                   the signed price list of a billing host, with each model's context window (no credential)
//	GET    /v1/accounts/{account}        an escrow account's totals (its client only)
//	GET    /v1/accounts/{account}/receipts?from=&limit=   its receipts (its client only)
//	GET    /v1/models                    the backend's models
//	POST   /v1/chat/completions          the bare backend, through an empty pipeline
//	POST   /v1/pipelines                 upload a pipeline (owner credential)
//	GET    /v1/pipelines                 list pipelines
//	GET    /v1/pipelines/{id}            a pipeline's canonical manifest and module hashes
//	GET    /v1/pipelines/{id}/attestation?nonce=<hex>   fresh pipeline evidence (any credential, or none)
//	GET    /v1/pipelines/{id}/logs       module logs of its recent failed requests (its owners only)
//	DELETE /v1/pipelines/{id}            withdraw as an owner (owner credential)
//	GET    /p/{id}/v1/models             the pipeline's model
//	POST   /p/{id}/v1/chat/completions   chat through the pipeline
//
// An OpenAI SDK works against a pipeline with baseURL = https://HOST/p/{id}/v1. The
// attestation routes exist only with Config.Attestation and the pricing and account
// routes only with Config.Billing; without them they answer 404 with the codes
// "attestation_unavailable" and "billing_disabled".
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
// is checked as Telegram specifies, with the bot token (Config.TelegramBotToken, its
// "hash") or without it (Config.TelegramBotID, Telegram's Ed25519 "signature" by
// Config.TelegramKey), and must be at most Config.TelegramMaxAge old: it may chat and
// read. On a billing host, a request signed
// with an escrow's client key (see Billing) identifies that escrow's client: it may chat,
// read, and read its account. /, /page/, /healthz, /readyz, /metrics, /v1/attestation
// and /v1/pricing need no credential, nor do pipeline evidence (see The reviewer's
// page) and the model lists, /v1/models and /p/{id}/v1/models (they name what the
// evidence names; the context windows a client's max_price needs are in the signed
// price list, never read from them); they answer from admission's cache of the
// backend's list, read at most once a minute and on no client's context, so an
// anonymous flood costs the backend nothing and a client hanging up ends no read.
//
// The credential is checked completely in middleware, before any handler runs: a
// request whose credential fails gets 401 (402 for a signed request naming an address
// with no escrow, or an escrow for another host) and its connection is closed,
// whatever the route. A signed request's
// signature covers its body, so on the chat routes the middleware reads the body (at
// most Config.MaxRequestBytes, within Config.RequestReadTimeout: 413 and 408 otherwise) and
// verifies the signature over it; on the other routes the signature covers an empty
// body and no body is read.
//
// # Chat completions
//
// A chat request is refused before any module or the backend sees it when it is not
// one this host serves (host.CheckChatRequest): a 400 "invalid_request" whose message
// names the member, such as "messages: must be a non-empty array of messages" or
// "tools: not supported by this host (no tool calls)". The same check applies to the
// request the last pre module returns, where a failure is that module's
// "invalid_output" (500). The host serves:
//
//	model                   a string; a pipeline's model is fixed by its manifest, and
//	                        naming another one is a 400
//	messages                a non-empty array of {"role", "content", "name"}: role a
//	                        string (not "tool" or "function"), content a string, null,
//	                        or an array of {"type": "text", "text": "..."} parts
//	max_tokens, max_completion_tokens
//	                        integers from 0 to 2³¹−1; 0 means unset (the model's
//	                        context bounds the answer)
//	temperature, top_p      numbers in [0, 2] and [0, 1]
//	seed                    an integer
//	stop                    a string or an array of strings
//	stream, stream_options.include_usage
//	                        booleans
//	n                       1
//	user                    a string
//	presence_penalty, frequency_penalty
//	                        numbers in [-2, 2], passed to the backend (OpenAI-compatible
//	                        servers honour them; the embedded engine does not)
//
// and refuses what it does not implement, rather than answering plain text to a
// client that asked for something else: tools, functions, tool_choice and
// function_call (but "none"), messages with tool_calls or audio, response_format
// other than {"type": "text"}, logprobs: true, top_logprobs, logit_bias, audio,
// modalities other than ["text"], prediction and web_search_options. Null and the
// neutral value of each (tools: [], logprobs: false, ...) pass. Members the host does
// not know pass to the backend untouched: SDKs send new fields.
//
// A body larger than the input limit of the pipeline's first pre module is a 413
// naming the limit, before any module runs; the embedded backend refuses a prompt too
// long in bytes for its context window before it tokenizes it (400).
//
// The client's body goes to the pipeline's pre modules, the request that leaves them
// is decoded for the backend (the members above; the rest passes on raw), and the
// answer goes through the post modules. With "stream": true the answer is server-sent
// "data:" chunks in OpenAI's format ending with "data: [DONE]", with a last chunk of
// usage when "stream_options": {"include_usage": true}. A failure before the first
// chunk is an ordinary error response; after it, an event "data: {"error": {...}}"
// ends the stream without [DONE] (followed, on an attesting host, by the stream's
// signature event: see Attestation). Chunks go out as the backend makes them, one
// event per delta; from a backend that tells when it reads from its server (the
// openai adapter, see backend.WithIdle) the deltas of one read from the server go out
// in one write and one flush before it reads again: as many as the server sent while
// the host was busy, so a fast server's tokens are relayed several at a time on a busy
// machine. The first token is never held back, and a server that stalls holds nothing
// already read. A billed stream cut by its client is charged the deltas of the flushes
// that completed.
//
// At most Config.MaxGenerations completions run at once. The next ones wait for a
// slot, first come first served, at most Config.MaxWaiting of them and each at most
// Config.SlotWait, then get 429 "over_capacity" with Retry-After; past MaxWaiting the
// 429 comes before the body is read. The body is read before a request waits or takes
// a slot, so a client that sends it slowly holds neither. A client that
// disconnects cancels its request, and with it the modules and the backend's
// generation. Every write to a client (a JSON answer, each SSE event) must complete
// within Config.WriteTimeout (to within a second): a client that stops reading is cut
// when its socket buffers are full and the timeout passes, which cancels its generation
// and frees its slot.
//
// # Attestation
//
// With Config.Attestation set, GET /v1/attestation answers the boot evidence,
// GET /v1/attestation?nonce=<hex> fresh boot evidence (a quote taken now that binds the
// nonce too), and GET /v1/pipelines/{id}/attestation?nonce=<hex> pipeline evidence, all
// as the JSON of attest.Evidence. The nonce is hex of 16 to 64 bytes the client chose
// (400 otherwise); an unknown pipeline is a 404. Pipeline evidence takes a fresh quote,
// so at most Config.MaxQuotesPerSecond are taken per second host-wide, and at most half
// of those by one credential (an API key, a Telegram user, an escrow), so that no
// client can spend the quotes others need; over either the answer is 429 with
// Retry-After. Fresh boot evidence needs no credential: it has a budget of its own, the
// same rate host-wide and half of it per client address (the connection's peer, never
// a header), so that it cannot spend pipeline evidence's.
//
// The chat routes then also take requests sealed to the host's attested end-to-end keys
// (web/E2E.md, Content-Type application/vnd.cocoon.e2e): openSealed opens them before
// any other middleware, and seals every answer to them, signed inside the encryption;
// Config.RequireE2E refuses plaintext chat requests.
//
// Every answer of the chat routes is then signed with the attested host key, errors of
// any status included (those of the middlewares too: at capacity, a refused credential,
// a body too large or too slow, a panic), over attest.SignedResponse: a digest of every
// byte of the body the client reads, the status, the Retry-After header, the sha256 of
// the request body as sent (none for an error sent before the body was read) and the
// pipeline id of the path ("" for the bare endpoint). An answer written whole (a
// chat.completion or an error) carries it in the header
// "Cocoon-Signature: ed25519=<standard base64>", over the sha256 of its body. A stream
// carries it in a last event, attest.SignatureEvent, a chunk with no choices and the
// member "cocoon_signature", over the sha256 of every byte sent before it (the chunks, a
// billing host's receipt event, the error event of a failed stream, in order); it comes
// just before "data: [DONE]", or last after an error event. An idempotent replay is
// signed as it is sent, by the host that sends it. attest/README.md gives the encoding;
// attest.ResponseVerifier checks it. Signing costs one ed25519 signature per answer and
// a sha256 of its bytes, which a stream hashes as it writes them.
//
// # The reviewer's page
//
// GET / serves the reviewer's page (package web/page) and GET /page/{file} its assets:
// plain HTML, CSS and JavaScript, Go's wasm_exec.js and the verifier compiled to
// WebAssembly, under a content security policy that lets the page reach its own origin
// only. The page fetches the evidence routes above from the same origin (no CORS) and
// verifies the evidence in the browser. A page the host serves proves nothing by
// itself, since a lying host can serve a lying page: `cocoon verify --web` serves the
// same page from the reviewer's own build and relays its evidence requests here.
//
// Pipeline evidence is for reviewers who are not clients too: a pipeline's id is what
// its clients are given, and the evidence exists to show what runs under it. A request
// for it with no credential at all (neither Authorization nor a client signature) is
// served as one shared principal, "anonymous", which the quote limit treats as one
// credential: all anonymous requests together get half of Config.MaxQuotesPerSecond,
// so at least half the host's quotes stay with its clients. A request with a
// credential is authenticated as on every route: a wrong credential is a 401, never
// taken for none.
//
// # Billing
//
// With Config.Billing set, every chat completion is billed to a TON escrow (package
// settle, settle/ESCROW.md). The account is the escrow of a request signed with its
// client key (the headers settle.AccountHeader, TimestampHeader, NonceHeader and
// ClientSignatureHeader, which replace Authorization; see settle.SignedRequest), or the
// escrow an API key is mapped to (APIKey.Account); other credentials get 402. Admission
// reserves the request's maximum cost (the model's context window of prompt tokens and
// max_tokens of completion, or the whole window again when max_tokens is absent or 0,
// at the current price) and refuses with 402 when the escrow's unspent balance does not
// cover it, saying how much is missing, and with 401 for a bad, stale or replayed
// signature. The backend is told the completion bound admission priced and never
// generates more. The answer carries a receipt signed by the settlement key: the header
// settle.ReceiptHeader, or for a stream an event after the last chunk and before
// "data: [DONE]" (or before the error event of a failed stream): a
// chat.completion.chunk with empty choices and the receipt as "cocoon_receipt". A stream
// carries at most one receipt event, nothing after it but that error event, and nothing
// after an error event: a stream otherwise, signed or not, is not one this host sends,
// and its clients (web/client's Chat, the browser library through the verifier) refuse
// it as a bad answer by that one rule, settle.StreamReceipt. A failed
// or cancelled request is charged for what the client got: its prompt, and the
// completion tokens of the deltas written to it before the stream failed or was cut
// (none for a JSON answer). A request that panics is charged nothing and holds nothing.
//
// With settle.IdempotencyKeyHeader (signed, for a signed request), a retry of a
// completed request, or of one that failed on the host's side, gets the same answer
// and receipt again with IdempotentReplayHeader set, and is not charged again; a retry
// of one in flight gets 409, the key with another request 422. A request whose client
// went away (a cut stream) keeps no answer: a retry under its key runs the request
// again to the end, under a new receipt, while the cut attempt's receipt stands for
// what it delivered. The cut attempt itself, sent again as signed, is refused as a
// replay.
//
// # Connections and shutdown
//
// Serve holds at most Config.MaxConnections connections (by default three quarters of
// the process's RLIMIT_NOFILE, at most 16,384). Over it, the connection idle longest
// is closed to make room; with none idle, the new one is answered 503 with Retry-After
// once it has sent its request, and closed (closed without an answer over TLS, or when
// it sends nothing within 100 ms). Accepting never blocks, so a flood of
// silent connections cannot take every file descriptor or leave /healthz hanging. A
// client has 10 seconds to send its request's headers and Config.RequestReadTimeout
// (60 s) for the whole request, body included (an owner's pipeline upload
// Config.UploadReadTimeout, 10 minutes); a body that stops arriving ends its request
// with a 408. An answer written before the body was read (a 401, a 404) closes the
// connection instead of reading a body nobody wants. Keep-alive connections close
// after Config.IdleTimeout (2 minutes) without a request.
//
// Shutdown stops accepting and lets requests finish until its context is done; then it
// cuts those still running: a stream ends with the error event "shutting_down" (503)
// after its receipt on a billing host (charged for what was sent), an answer not yet
// started is that 503 with Retry-After, and a body still arriving stops being read.
//
// # Module logs
//
// Module logs never reach the client. The logs of a pipeline's recent failed requests
// (a module's fault, not a rejection or a cancellation: the last 16 per pipeline, for
// the 128 pipelines that failed last, each up to 32 records and 8 KiB) are kept in
// memory and served at GET /v1/pipelines/{id}/logs to its owners, and only those that
// failed while the caller owned the pipeline; anyone else gets 403. They hold what the
// modules logged and the error the client got, nothing else of the request.
//
// # Logs and metrics
//
// At level info Config.Logger gets one access log line per request: method, route
// pattern, status, latency, bytes written, pipeline id and request id (also in the
// answer's X-Request-Id); never a header, the query or a byte of a body. GET /metrics
// serves the Prometheus metrics the README's "Operating the host" lists.
//
// # Errors
//
// Every error is in the OpenAI shape {"error": {"message", "type", "param", "code"}},
// and every 429 and 503 carries Retry-After (1 and 5 seconds unless the error knows
// better), with a message that is safe to show: module failures as SPEC.md §9 words them
// (type "module_error", or the rejecting module's status and message), backend failures
// as the backend words them (type "backend_error"), and anything else as a generic
// internal error whose detail goes to Config.Logger.
package web
