// Package proxy is `cocoon proxy`: a local OpenAI-compatible endpoint for apps that
// cannot verify a Cocoon host themselves, in front of one host or many that serve one
// pipeline. It reaches each host through a web/client Client of its own.
//
//	p, err := proxy.New(proxy.WithHosts(a, b, c), proxy.WithPipeline(id),
//		proxy.WithSimRoots(root), proxy.WithLog(os.Stderr))
//	if err := p.Start(ctx, os.Stdout); err != nil { ... } // verifies every host
//	defer p.Close()                                       // stops the health loops, waits
//	http.Serve(listener, p)
//
// # What it guarantees
//
// Every host is verified on its own before any request goes to it: its boot evidence
// (under the policy, and one of the trusted simulator roots for a simulated host),
// then a fresh quote of the pipeline's evidence over a random nonce, from the same
// host key, with the expected modules. Every answer is checked against that host's
// attested key before the app gets it (streams: see Release). A host whose answer
// does not verify is verified again (a restarted host has a new key) and the answer
// checked with the new key; the proxy never accepts a key an answer merely presents.
//
// The hosts come from a Source: a fixed list (WithHosts), or the hosts registered on a
// registry contract (NewRegistry), each of which must also pass the registry's client
// checks (settle/REGISTRY.md): its boot quote the registered one, its measurements on the
// allowlist, its price list the registered one. A registered host's evidence and price
// list are fetched without the API key, even over RA-TLS. Whoever registers chooses the
// endpoint, so every connection to a registered host is refused when the address it
// resolves to, at that connection, is not public (loopback, private, link-local,
// unspecified, multicast...), unless WithPrivateEndpoints.
//
// # Encryption
//
// Every request is sealed (web/E2E.md) to the ML-KEM-768+X25519 key that the host's
// verified boot evidence carries, signed by its host key, or, once the host granted a
// session to the first such request, under that session (E2E.md §8: no KEM, for up to
// an hour); the request's body and its credentials travel inside, and the answer opens
// only with this request's keys, so a relay sees paths, sizes, timing and the session's
// id only. A host without such keys is refused, unless WithPlaintext, which only RA-TLS
// (https) hosts accept. Evidence and price lists are fetched without the API key unless
// over RA-TLS. A host that no longer holds the session gets the request once more,
// sealed to its key; to a billing host every request carries an Idempotency-Key (the
// app's, or one the proxy makes), so that this cannot charge it twice. A host that
// cannot open a request (restarted with new keys) is verified again and gets the
// request sealed anew.
//
// # Routing and failover
//
// Requests go to the cheapest host for them at each billing host's signed price for
// the pipeline's model (a host that does not bill costs 0; one whose list does not
// price the model is refused, and so is one that serves no list although its boot
// evidence measures a settlement key, which only a billing host measures), and among
// equally cheap hosts to the less
// loaded of two picked at random (requests in flight times latency). A host's health
// loop asks GET /readyz and its price list every health interval, verifies it afresh
// every re-verification interval, and takes it out of routing when either fails; a
// host out of routing (unreachable, failed a check, or lacking the pipeline) is tried
// again with exponential backoff, and every change of state is logged.
//
// A request whose Idempotency-Key was sent to a billing host before goes to that host
// only, whatever prices and routing did since (a 502 host_error while it is out of
// routing): only its ledger knows the key. Failover asks again before each host, as
// the app's second sending of the request may have gone to one meanwhile. The key is remembered from the start of the
// attempt, and kept after it unless the host never received the request whole or
// refused it before admission (a 4xx without a receipt, other than 409 and 422) in an
// answer received over RA-TLS or signed over this request's body: such a request was
// charged nowhere. The keys of requests a verified answer shows admitted (a 2xx, a
// receipt, 409 or 422), and of those whose outcome is unknown (a broken connection,
// an answer that did not verify, a 5xx, a refusal a relay could forge or replay such
// as a sealed request's unsigned 401 for a made-up API key), are kept in two memories
// of 65,536 keys each (keyMemory), so that a flood of refused credentials cannot push
// out the first; when full, each forgets the oldest key of the app credential holding
// the most.
//
// A request that failed before any byte reached the app goes to another verified host
// only when that cannot charge twice: the host never received it whole (the
// connection failed before the request was written, and before any earlier sending of
// it in the same attempt was: one sent again after an unsigned refusal, or by Go's
// transport on a new connection after a reused one closed before the answer, may have
// run the first time), or refused it before admission
// (429 over_capacity, 402 max_price_exceeded) in an answer signed for this request or
// received over RA-TLS (a refusal signed before the host read the body could be a
// relay's replay), or does not bill. A billing host that
// received a request may have charged it, and hosts share no ledger (an idempotency
// key is known only to the host that saw it), so such a request is answered with a
// 502 host_error rather than sent elsewhere. A stream that breaks off after part of
// it reached the app ends with an error event, never with "data: [DONE]".
//
// # The reviewer's page relay
//
// PageRelay is `cocoon verify --web`'s local server: it serves the reviewer's page
// from the reviewer's build and relays its evidence GETs to one host, verifying
// nothing itself (the page does), answering only loopback names when it listens on
// loopback, and refusing in this package's error shape.
//
// # Cost
//
// Per host: a boot evidence request and a pipeline quote at Start and at every
// re-verification, a /readyz and a /v1/pricing request every health interval. Per
// request: the body held (up to MaxBody), one ML-KEM-768+X25519 encapsulation per
// host key and hour (a session), an HKDF-SHA256 schedule and an AES-256-GCM pass over
// the request and the answer, one sha256 over the answer and one
// ed25519 verification; in verified release a stream is held whole until its end.
package proxy
