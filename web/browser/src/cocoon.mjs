// The browser client library of a Cocoon host (web/browser/README.md): connect verifies
// the host's evidence with the Go verifier compiled to WebAssembly and pins its keys;
// Host.chat seals each request to the pinned key (web/E2E.md), opens the answer record
// by record, and checks its signature and receipt with the same Go code `cocoon chat`
// runs. Built into dist/cocoon.js (one ES module, no other file) by build.mjs.
import * as e2e from "./e2e.mjs";
import { call, loadVerifier } from "./verifier.mjs";

export { e2e };

/**
 * CocoonError is every failure of this library. code is the host's error code when it
 * sent one (its `error.code`), else one of verification_failed, e2e_invalid,
 * signature_invalid, receipt_invalid, bad_answer, network, invalid_argument. status is
 * the HTTP status when there was an answer; report the verifier's report when
 * verification ran; signed says whether the host's error answer was signed by the
 * pinned key (an unsigned one may come from anything between). answer is set when
 * Host.chat's answer verified (opened, signed by the pinned host key) and only its bill
 * could not be checked (receipt_invalid, or a failure fetching the price list): the
 * answer as chat would have returned it, { text, usage, status, signature, receipt },
 * its receipt the one the host sent, unverified, or null. Show the text, and say its
 * charge is not verified.
 */
export class CocoonError extends Error {
  constructor(code, message, { status, report, signed, answer, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = "CocoonError";
    this.code = code;
    if (status !== undefined) this.status = status;
    if (report !== undefined) this.report = report;
    if (signed !== undefined) this.signed = signed;
    if (answer !== undefined) this.answer = answer;
  }
}

// MAX_ANSWER bounds an answer read whole and a stream's opened bytes, as in the Go
// client (web/client.MaxAnswerBytes).
const MAX_ANSWER = 16 << 20;
// MAX_QUOTE_RETRIES bounds how often connect waits for a rate-limited quote.
const MAX_QUOTE_RETRIES = 3;
const utf8 = new TextEncoder();

/**
 * connect fetches the host's boot evidence over a fresh nonce (and a pipeline's, with
 * pipeline), verifies it with the Go verifier, and returns a Host pinned to the keys of
 * that evidence. Options:
 *   baseURL   origin of the host or of a relay in front of it; "" is this page's origin
 *   pipeline  a pipeline id (64 hex): its evidence is verified too, from the same host key
 *   verifier  the verifier's options as cocoonVerify takes them (policy, trust_sim_root,
 *             expect_modules, expect_manifest, strict, collateral); nonce, pipeline_id
 *             and host_key are set by connect
 *   verifierURL where verifier.wasm and wasm_exec.js are: by default beside this module
 *             (a host serves all three under /sdk/), never baseURL, which may be a relay
 *   verifierSHA256 the verifier's sha256 (hex), to refuse any other verifier
 *   suite     "mlkem768x25519" (default: post-quantum, X-Wing) or "x25519"
 *   sessions  true (default): one KEM per session the host grants, then session
 *             envelopes (one HKDF and one AES-GCM a request); false: a KEM every request
 *   auth      Authorization sent with the pipeline evidence request, which is not sealed:
 *             anything between sees it, so it is refused (invalid_argument, before
 *             anything is sent) to an http host off this machine (refuseInClear); unset,
 *             the host serves it as to an anonymous reviewer
 *   fetch     a fetch function, default globalThis.fetch
 * It rejects with CocoonError verification_failed (with .report) when any check fails,
 * or when the host publishes no end-to-end keys. Cost: two or three requests and one
 * verification each (milliseconds), plus loading the verifier once per page.
 */
export async function connect(options = {}) {
  const { baseURL = "", pipeline = "", verifier = {}, auth, suite = "mlkem768x25519", sessions = true } = options;
  const fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
  if (!e2e.SUITES.includes(suite)) throw new CocoonError("invalid_argument", `suite ${JSON.stringify(suite)}: want one of ${e2e.SUITES.join(", ")}`);
  if (pipeline && !/^[0-9a-f]{64}$/.test(pipeline)) throw new CocoonError("invalid_argument", "pipeline: want 64 lowercase hex digits");
  for (const k of ["nonce", "pipeline_id", "host_key"]) {
    if (k in verifier) throw new CocoonError("invalid_argument", `verifier.${k} is set by connect, not by its caller`);
  }
  const base = baseURL.replace(/\/+$/, "");
  if (pipeline && auth) refuseInClear(`${base}/v1/pipelines/${pipeline}/attestation`, "auth (an Authorization value)");
  try {
    await loadVerifier(options.verifierURL ?? new URL("./", import.meta.url).href, fetchFn, options.verifierSHA256);
  } catch (e) {
    throw new CocoonError("network", `loading the verifier: ${e.message}`, { cause: e });
  }
  const boot = await verifyEvidence(fetchFn, base + "/v1/attestation", {}, verifier, "boot");
  let keys = boot.keys;
  const report = { boot: boot.report };
  if (pipeline) {
    const p = await verifyEvidence(fetchFn, `${base}/v1/pipelines/${pipeline}/attestation`, auth ? { Authorization: auth } : {},
      { ...verifier, pipeline_id: pipeline, host_key: e2e.hex(e2e.base64Decode(keys.host_key)) }, "pipeline");
    report.pipeline = p.report;
    if (JSON.stringify(p.keys.e2e_keys) !== JSON.stringify(keys.e2e_keys)) {
      throw new CocoonError("verification_failed", "the pipeline's evidence names other end-to-end keys than the boot evidence of the same host key", { report });
    }
    keys = p.keys;
  }
  return new Host({ base, fetchFn, pipeline, keys, report, suite, sessions });
}

// verifyEvidence fetches evidence at url over a fresh nonce and verifies it: the report
// must pass and carry end-to-end keys.
async function verifyEvidence(fetchFn, url, headers, verifierOptions, what) {
  const nonce = e2e.hex(crypto.getRandomValues(new Uint8Array(32)));
  let resp;
  let bytes;
  // The host rate-limits fresh quotes: wait as it asks (429 with Retry-After), a few times.
  for (let attempt = 0; ; attempt++) {
    resp = await send(fetchFn, `${url}?nonce=${nonce}`, { headers });
    bytes = await readLimited(resp, 8 << 20);
    const wait = Number(resp.headers.get("Retry-After"));
    if (resp.status !== 429 || attempt === MAX_QUOTE_RETRIES || !(wait >= 0 && wait <= 10)) break;
    await new Promise((resolve) => setTimeout(resolve, wait * 1000 + 50));
  }
  if (!resp.ok) throw await hostError(resp, bytes, `GET ${what} evidence`, false);
  const result = call("cocoonVerify", bytes, JSON.stringify({ ...verifierOptions, nonce }));
  if (result.error) throw new CocoonError("verification_failed", `the host's ${what} evidence: ${result.error}`, { status: resp.status });
  if (!result.report.ok || !result.keys) {
    const failed = (result.report.checks ?? []).filter((c) => c.verdict === "fail").map((c) => `${c.name}: ${c.detail}`);
    throw new CocoonError("verification_failed", `the host's ${what} evidence does not verify: ${failed.join("; ") || "see the report"}`, { report: result.report });
  }
  if (!result.keys.e2e_keys) {
    throw new CocoonError("verification_failed", `the host's ${what} evidence carries no end-to-end keys: it cannot be sent a sealed request`, { report: result.report });
  }
  return result;
}

/**
 * Host is a host whose evidence verified: its keys are pinned for every request. It is
 * made by connect, from the keys the verifier returned; a Host made otherwise pins
 * whatever it is given (the tests make one with a wrong host key). With sessions, it
 * keeps the one session the host last granted to its pinned key (E2E.md's session
 * section) and seals with it until it expires.
 */
export class Host {
  #base;
  #fetch;
  #keys;
  #prices = null;
  #sessions;
  // The current session (e2e.Session) or null. Concurrent chats share it: each seals
  // under its own rid; a grant replaces it only with one that lasts longer; an unknown
  // session is dropped only if it is still the current one.
  #session = null;

  constructor({ base, fetchFn, pipeline, keys, report, suite, sessions = true }) {
    this.#base = base;
    this.#fetch = fetchFn;
    this.#keys = keys;
    this.#sessions = sessions;
    /** The pipeline chat requests go to, "" for the host's bare model. */
    this.pipeline = pipeline;
    /** { boot, pipeline } reports as the verifier returned them, to display. */
    this.report = report;
    /** The host key the quotes bind, base64. */
    this.hostKey = keys.host_key;
    /** The settlement key the verified event log measures, base64; null without billing. */
    this.settlementKey = keys.settlement_key ?? null;
    /** The suite requests are sealed with. */
    this.suite = suite;
    Object.freeze(this);
  }

  /**
   * chat sends one chat completion request, sealed to the pinned key with its
   * credentials, and returns { text, usage, status, signature: "verified", receipt }.
   * options: onDelta(text) for a stream's text as it arrives (unverified until chat
   * resolves: a stream that fails its signature rejects at its end); auth (an
   * Authorization value) or pay ({ clientKey, escrow }: the request is signed with the
   * escrow's client key and billed to it, and its receipt must verify); maxPrice (the
   * most the request may cost, nanoTON as a string or a number: sent as its max_price);
   * signal (an AbortSignal); idempotencyKey. A request paid for (pay) always carries a
   * max_price: maxPrice, else the request's own max_price, else by default the worst
   * case at the price list the library keeps (priceList, fetched before the first such
   * request and verified by the attested settlement key), at the context window that
   * list signs for the model (for a pipeline, the list's dearest model): a host whose
   * prices rose since refuses it (402 max_price_exceeded, nothing charged; refresh the
   * list to agree to the new prices), and a receipt that reserved more is refused
   * whatever price list the host shows. With sessions (connect's default) the request is a
   * session envelope when the host granted a session, else a version-1 envelope that
   * asks for one; a session the host says it does not hold (a plaintext 400
   * e2e_session_unknown, which anything between can forge: it costs one KEM) is dropped
   * and the request sent once more as version 1, same body and credentials, a new id;
   * a session envelope refused e2e_invalid drops its session too (E2E.md §7).
   * Rejects with CocoonError: the host's code for a refusal, e2e_invalid for an answer
   * that does not open, signature_invalid for one not signed by the pinned host key,
   * bad_answer for a signed stream that is not one a host sends (a second receipt
   * event, more of the answer after it: web/doc.go's rule, as web/client applies it),
   * receipt_invalid (with .answer: the answer verified, its bill did not), network. A
   * receipt that does not verify against the cached price list is checked once more
   * against the list fetched again (priceList), in case the host changed its prices
   * since: one more request, at most once per receipt, and the receipt still within the
   * max_price the request carried.
   */
  async chat(request, options = {}) {
    const { onDelta, auth, pay, signal, idempotencyKey } = options;
    const prefix = this.pipeline ? `/p/${this.pipeline}` : "";
    const path = `${prefix}/v1/chat/completions`;
    const maxPrice = await this.#maxPrice(request, options.maxPrice, pay);
    if (maxPrice !== "0") request = { ...request, max_price: maxPrice };
    const body = utf8.encode(JSON.stringify(request));
    const headers = { "Content-Type": "application/json" };
    if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
    let signed = null;
    if (pay) {
      signed = this.#sign(pay, "POST", path, body, idempotencyKey);
      Object.assign(headers, signed.headers);
    } else if (auth) {
      headers.Authorization = auth;
    }
    const { resp, opener, grant } = await this.#send(path, { headers, body }, signal);
    const type = resp.headers.get("Content-Type");
    let answer;
    if (resp.status === 200 && type === "text/event-stream") {
      answer = await this.#readStream(resp, opener, body, onDelta, grant);
    } else if (type === e2e.CONTENT_TYPE) {
      answer = await this.#readWhole(resp, opener, body, grant);
    } else {
      throw await refusal(resp);
    }
    try {
      answer.receipt = await this.#checkReceipt(answer.receipt, pay, signed, maxPrice);
    } catch (e) {
      if (e instanceof CocoonError) e.answer = answer; // verified: only its bill is in doubt
      throw e;
    }
    return answer;
  }

  // #maxPrice returns the max_price request carries, nanoTON as a string ("0": none):
  // given (the option, else the request's own), or for a request paid for (pay) its
  // worst case at the kept price list's prices and context windows (cocoonMaxPrice,
  // which checks the list is signed by the attested settlement key). Nothing unsigned
  // (the host's model list) is read: a relay could enlarge a window there.
  async #maxPrice(request, given, pay) {
    given ??= request.max_price;
    if (given !== undefined && given !== null) {
      if (!/^[1-9][0-9]*$/.test(String(given))) throw new CocoonError("invalid_argument", `maxPrice: want a positive whole number of nanoTON, not ${String(given).slice(0, 40)}`);
      return String(given);
    }
    if (!pay) return "0";
    if (!this.settlementKey) throw new CocoonError("receipt_invalid", "the host's attestation measures no settlement key: its receipts could not be checked, so nothing is paid for");
    const prices = await this.priceList();
    const r = call("cocoonMaxPrice", JSON.stringify({ settlement_key: this.settlementKey, price_list: prices, pipeline: !!this.pipeline }),
      utf8.encode(JSON.stringify(request)));
    if (r.error) throw new CocoonError("verification_failed", `the request's max_price (give maxPrice to skip this): ${r.error}`);
    return r.max_price;
  }

  // #send seals request ({ headers, body }) for path, under the current session if
  // there is one, and posts it; a session the host does not hold is dropped and the
  // request sent once more as version 1; one whose envelope the host refused
  // e2e_invalid is dropped, and the refusal returned. It returns the answer, its Opener, and grant
  // (headers), which adopts the session a version-1 request asked for if the opened
  // head grants one (a no-op for a session envelope).
  async #send(path, request, signal) {
    for (let retried = false; ; retried = true) {
      const session = retried ? null : this.#currentSession();
      const sentAt = Date.now();
      let sealed;
      if (session) {
        sealed = await session.seal("POST", path, request);
      } else {
        const pub = e2e.base64Decode(this.#keys.e2e_keys[this.suite]);
        sealed = await e2e.sealRequest(this.suite, pub, "POST", path, { ...request, session: this.#sessions });
      }
      const resp = await send(this.#fetch, this.#base + path, {
        method: "POST", body: sealed.envelope, signal, headers: { "Content-Type": e2e.CONTENT_TYPE },
      });
      const grant = sealed.sessionKeys ? (headers) => this.#adopt(sealed.sessionKeys, headers, sentAt) : () => {};
      if (!session || resp.status !== 400 || resp.headers.get("Content-Type") === e2e.CONTENT_TYPE) {
        return { resp, opener: sealed.opener, grant };
      }
      const err = await refusal(resp);
      if (err.code !== e2e.SESSION_UNKNOWN && err.code !== "e2e_invalid") throw err;
      if (this.#session === session) this.#session = null;
      if (err.code !== e2e.SESSION_UNKNOWN) throw err;
    }
  }

  // #currentSession is the session to seal the next request with, or null: none
  // granted, expired, or sessions off.
  #currentSession() {
    if (this.#session && !this.#session.usable()) this.#session = null;
    return this.#session;
  }

  // #adopt keeps the session of keys ({ id, secret }) if the opened head of the
  // answer to the version-1 request that derived them grants one (Cocoon-E2E-Session,
  // sealed), unless the current session lasts longer.
  async #adopt(keys, sealedHeaders, sentAt) {
    const seconds = e2e.sessionSeconds(sealedHeaders);
    if (!seconds) return;
    const s = await e2e.Session.create(keys, seconds, sentAt);
    if (s && (!this.#session || s.expiresAt > this.#session.expiresAt)) this.#session = s;
  }

  // #readWhole opens a whole answer, checks its signature, and returns it or the
  // host's error.
  // grant(headers) is given the opened head.
  async #readWhole(resp, opener, requestBody, grant) {
    const sealed = await readLimited(resp, MAX_ANSWER + (16 << 10) + 20);
    let opened;
    try {
      opened = await opener.openBody(resp.status, sealed);
    } catch (e) {
      throw new CocoonError("e2e_invalid", `the host's answer (${resp.status}) does not open with this request's key, so it is not shown: ${e.message}`, { status: resp.status, cause: e });
    }
    await grant(opened.headers);
    const retryAfter = opened.headers.get("Retry-After") ?? resp.headers.get("Retry-After") ?? "";
    const check = call("cocoonCheckAnswer", JSON.stringify({
      host_key: this.hostKey, pipeline_id: this.pipeline, kind: "body", status: resp.status,
      retry_after: retryAfter, signature: opened.headers.get("Cocoon-Signature") ?? "",
    }), requestBody, opened.body);
    if (!check.ok) {
      throw new CocoonError("signature_invalid", `the host's answer (${resp.status}) is not signed by the attested host key, so it is not shown: ${check.error}`, { status: resp.status });
    }
    if (resp.status < 200 || resp.status > 299) throw await hostError(resp, opened.body, "the host", true);
    const completion = parseJSON(new TextDecoder().decode(opened.body), "bad_answer", "the host's answer");
    const receiptHeader = opened.headers.get("Cocoon-Receipt");
    return {
      text: completion.choices?.[0]?.message?.content ?? "",
      usage: completion.usage ?? null,
      status: resp.status,
      signature: "verified",
      receipt: receiptHeader ? parseJSON(receiptHeader, "receipt_invalid", "the Cocoon-Receipt header") : null,
    };
  }

  // #readStream opens a stream record by record, gives its text to onDelta as it
  // arrives, and at its end checks its signature over every opened byte; the text,
  // usage and receipt returned come from the verified events only. grant(headers) is
  // given the opened head.
  async #readStream(resp, opener, requestBody, onDelta, grant) {
    const parts = [];
    let size = 0;
    let pending = "";
    const dec = new TextDecoder();
    try {
      for await (const piece of opener.openStream(streamChunks(resp.body), MAX_ANSWER)) {
        if (piece.headers) {
          await grant(piece.headers); // the head: a stream's signature is in its last event
          continue;
        }
        size += piece.bytes.length;
        if (size > MAX_ANSWER) throw new e2e.E2EError(`the stream exceeds ${MAX_ANSWER} bytes`);
        parts.push(piece.bytes);
        if (!onDelta) continue;
        pending += dec.decode(piece.bytes, { stream: true });
        let end;
        while ((end = pending.indexOf("\n\n")) >= 0) {
          const event = pending.slice(0, end);
          pending = pending.slice(end + 2);
          const delta = deltaOf(event);
          if (delta) onDelta(delta);
        }
      }
    } catch (e) {
      if (e instanceof e2e.E2EError) throw new CocoonError("e2e_invalid", `the host's stream does not open with this request's key: ${e.message}`, { status: resp.status, cause: e });
      if (e instanceof CocoonError || e?.name === "AbortError") throw e;
      throw new CocoonError("network", `reading the stream: ${e.message}`, { status: resp.status, cause: e });
    }
    const bytes = e2e.concat(parts);
    // The verifier also applies the receipt rule web/client's Chat applies
    // (settle.StreamReceipt): one receipt event at most, nothing after it but the error
    // event that ends a failed stream, nothing after that.
    const check = call("cocoonCheckAnswer", JSON.stringify({ host_key: this.hostKey, pipeline_id: this.pipeline, kind: "stream" }), requestBody, bytes);
    if (check.code === "bad_answer") throw new CocoonError("bad_answer", `the host's stream is not an answer a host sends, so neither its text nor its bill is taken: ${check.error}`, { status: 200, signed: true });
    if (!check.ok) throw new CocoonError("signature_invalid", `the stream is not signed by the attested host key: do not trust the text shown: ${check.error}`, { status: 200 });
    let text = "";
    let usage = null;
    let receipt = null;
    for (const data of check.events ?? []) {
      const chunk = parseJSON(data, "bad_answer", "an event of the stream");
      if (chunk.error) {
        throw new CocoonError(chunk.error.code || "stream_failed", `the answer failed midway: ${chunk.error.message}`, { status: 200, signed: true });
      }
      if (chunk.cocoon_receipt) receipt = chunk.cocoon_receipt;
      if (chunk.usage) usage = chunk.usage;
      for (const ch of chunk.choices ?? []) text += ch.delta?.content ?? "";
    }
    return { text, usage, status: 200, signature: "verified", receipt };
  }

  // #checkReceipt checks a billed answer's receipt against the attested settlement key,
  // the host's price list and maxPrice, the max_price the request carried ("0": none);
  // a signed request must have one. A receipt that does not verify against a list
  // cached earlier is checked once more against the list fetched again: a host may
  // change its prices while a page lives, within the cap the request carried. The list
  // fetched must be signed by the attested settlement key as ever (cocoonCheckReceipt
  // checks it, and the cap).
  async #checkReceipt(receipt, pay, signed, maxPrice) {
    if (!receipt) {
      if (pay) throw new CocoonError("receipt_invalid", "the host sent no receipt for a request signed for an escrow: it does not bill it");
      return null;
    }
    if (!this.settlementKey) throw new CocoonError("receipt_invalid", "the host sent a receipt, but its attestation measures no settlement key");
    const check = (prices) => call("cocoonCheckReceipt", JSON.stringify({
      receipt, settlement_key: this.settlementKey, price_list: prices, pipeline_id: this.pipeline,
      account: signed?.account ?? "", request_hash: signed?.request_hash ?? "", max_price: maxPrice,
    }));
    const cached = this.#prices !== null;
    let result = check(await this.priceList());
    if (!result.ok && cached) result = check(await this.priceList({ refresh: true }));
    if (!result.ok) throw new CocoonError("receipt_invalid", `the receipt does not verify: ${result.error}`);
    return receipt;
  }

  /**
   * priceList fetches the host's price list (GET /v1/pricing) once and keeps it; with
   * { refresh: true } it fetches it again (chat does, once, for a receipt the kept list
   * refuses). It is checked against the attested settlement key wherever it is used
   * (receipts, deposits), not here.
   */
  async priceList({ refresh = false } = {}) {
    if (!this.#prices || refresh) {
      const resp = await send(this.#fetch, this.#base + "/v1/pricing", {});
      const bytes = await readLimited(resp, 1 << 20);
      if (!resp.ok) throw await hostError(resp, bytes, "GET /v1/pricing", false);
      this.#prices = parseJSON(new TextDecoder().decode(bytes), "bad_answer", "the host's price list");
    }
    return this.#prices;
  }

  /**
   * escrowDeposit returns the TON Connect message that funds (and, the first time,
   * deploys) the escrow between wallet (the client's TON Connect account) and this
   * host for clientKey: { address, addressRaw, amount, stateInit, payload, channelId,
   * timeoutSeconds } (BOCs in base64). The escrow's parameters come from the host's
   * price list, which must be signed by the attested settlement key; channelId
   * (default "0") and timeoutSeconds (default the host's minimum) tell apart escrows of
   * one wallet. Keep clientKey: it signs every request billed to the escrow.
   */
  async escrowDeposit({ clientKey, wallet, amountNano, channelId = "0", timeoutSeconds = 0, testnet = false }) {
    if (!this.settlementKey) throw new CocoonError("verification_failed", "the host's attestation measures no settlement key: it does not bill");
    const d = call("cocoonEscrowDeposit", JSON.stringify({
      wallet, client_key: e2e.base64Encode(clientKey.publicKey), settlement_key: this.settlementKey,
      price_list: await this.priceList(), amount_nano: String(amountNano), channel_id: String(channelId),
      timeout_seconds: timeoutSeconds, testnet,
    }));
    if (d.error) throw new CocoonError("invalid_argument", `the escrow deposit: ${d.error}`);
    return {
      address: d.address, addressRaw: d.address_raw, amount: d.amount, stateInit: d.state_init,
      payload: d.payload, channelId: d.channel_id, timeoutSeconds: d.timeout_seconds,
    };
  }

  /**
   * escrowStatus returns the host's view of the escrow's account (GET
   * /v1/accounts/{escrow}, signed with clientKey): { account, last_seq, cumulative,
   * held, settled, deposited, unspent, closing }, amounts in nanoTON as strings.
   */
  async escrowStatus({ clientKey, escrow }) {
    if (!/^(?:-?[0-9]+:[0-9a-fA-F]{64}|[A-Za-z0-9_-]{48})$/.test(escrow ?? "")) {
      throw new CocoonError("invalid_argument", "escrow: want the escrow's address as escrowDeposit returns it (address or addressRaw)");
    }
    const path = `/v1/accounts/${escrow}`;
    refuseInClear(this.#base + path, "escrow signature");
    const { headers } = this.#sign({ clientKey, escrow }, "GET", path, new Uint8Array(0));
    const resp = await send(this.#fetch, this.#base + path, { headers });
    const bytes = await readLimited(resp, 1 << 20);
    if (!resp.ok) throw await hostError(resp, bytes, `GET ${path}`, false);
    return parseJSON(new TextDecoder().decode(bytes), "bad_answer", "the host's account view");
  }

  // #sign signs method path body for pay's escrow (cocoonSignRequest) and returns
  // { headers, request_hash, account }, the account in raw form.
  #sign({ clientKey, escrow }, method, path, body, idempotencyKey = "") {
    if (!clientKey?.privateKey || !escrow) throw new CocoonError("invalid_argument", "pay: want { clientKey, escrow }: the client key (newClientKey) and the escrow's address");
    const r = call("cocoonSignRequest", JSON.stringify({
      account: escrow, client_key: e2e.base64Encode(clientKey.privateKey), method, path, idempotency_key: idempotencyKey ?? "",
    }), body);
    if (r.error) throw new CocoonError("invalid_argument", `signing the request: ${r.error}`);
    return { ...r, account: r.headers["Cocoon-Account"] };
  }
}

/**
 * newClientKey makes an escrow's client key: { publicKey, privateKey } as raw bytes
 * (32 each; privateKey is the ed25519 seed). Store privateKey where the app keeps
 * secrets (clientKeyFromSeed restores it). Uses WebCrypto's Ed25519.
 */
export async function newClientKey() {
  return clientKeyFromSeed(crypto.getRandomValues(new Uint8Array(32)));
}

/** clientKeyFromSeed restores a client key from its 32-byte seed. */
export async function clientKeyFromSeed(seed) {
  if (!(seed instanceof Uint8Array) || seed.length !== 32) throw new CocoonError("invalid_argument", "a client key's seed is 32 bytes");
  // PKCS #8 of an Ed25519 seed (RFC 8410): a fixed 16-byte prefix and the seed.
  const pkcs8 = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20, ...seed]);
  const key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", key);
  const publicKey = e2e.base64Decode(jwk.x.replace(/-/g, "+").replace(/_/g, "/") + "=");
  return { publicKey, privateKey: seed.slice() };
}

// parseJSON parses text, or throws CocoonError code naming what it is.
function parseJSON(text, code, what) {
  try {
    return JSON.parse(text);
  } catch {
    throw new CocoonError(code, `${what} is not JSON`);
  }
}

// deltaOf returns the text of one inner stream event ("data: {chunk}"), "" for any
// other event.
function deltaOf(event) {
  if (!event.startsWith("data: {")) return "";
  try {
    const chunk = JSON.parse(event.slice(6));
    return (chunk.choices ?? []).map((c) => c.delta?.content ?? "").join("");
  } catch {
    return "";
  }
}

// refuseInClear throws CocoonError invalid_argument, before anything is sent, when a
// credential (what) would travel unsealed to url in plaintext across a network:
// whatever relays it would read it, as the Go client refuses (web/client
// inClearError). url is resolved against the page's address ("" is the page's own
// origin, so a page served over http from another machine is refused too). https is
// allowed, and http to a loopback host as the URL parser names it: localhost,
// 127.0.0.0/8, [::1]. The WHATWG parser writes 127.1, 0x7f.0.0.1 and 2130706433 as
// 127.0.0.1, the address fetch then dials, so they are loopback too; anything else is
// refused: a name that starts like one (127.0.0.1.example, localhost.), a loopback
// address as userinfo before another host, an IPv4-mapped address, a URL that does
// not parse.
function refuseInClear(url, what) {
  let u = null;
  try {
    u = new URL(url, globalThis.location?.href);
  } catch { /* refused below */ }
  const loopback = u?.hostname === "localhost" || u?.hostname === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(u?.hostname ?? "");
  if (u?.protocol === "https:" || (u?.protocol === "http:" && loopback)) return;
  throw new CocoonError("invalid_argument", `refusing to send the ${what} in plaintext to ${u?.origin ?? JSON.stringify(url)}, where whatever relays it reads it: use an https host, or one on this machine (localhost, 127.0.0.1, [::1])`);
}

// send is fetch with its failures as CocoonError network. It follows no redirect: a
// 3xx from a relay or a misconfigured host would have fetch send the request (a sealed
// envelope, a signed request) again to another URL, perhaps of another host, perhaps
// over http. A redirect is CocoonError bad_answer, naming its Location where the
// runtime shows it (a browser shows none: an "opaqueredirect" answer).
async function send(fetchFn, url, init) {
  let resp;
  try {
    resp = await fetchFn(url, { ...init, redirect: "manual" });
  } catch (e) {
    if (e?.name === "AbortError") throw e;
    throw new CocoonError("network", `${init.method ?? "GET"} ${url}: ${e.message}`, { cause: e });
  }
  if (resp.type === "opaqueredirect" || (resp.status >= 300 && resp.status <= 399)) {
    const to = resp.headers.get("Location");
    throw new CocoonError("bad_answer", `${init.method ?? "GET"} ${url} was answered with a redirect${to ? ` to ${to}` : ""}: refused, and nothing was sent there: a Cocoon host's API routes do not redirect`,
      { status: resp.status || undefined });
  }
  return resp;
}

// readLimited reads a body of at most limit bytes.
async function readLimited(resp, limit) {
  const parts = [];
  let size = 0;
  try {
    for await (const chunk of streamChunks(resp.body)) {
      size += chunk.length;
      if (size > limit) throw new CocoonError("bad_answer", `the answer exceeds ${limit} bytes`, { status: resp.status });
      parts.push(chunk);
    }
  } catch (e) {
    if (e instanceof CocoonError || e?.name === "AbortError") throw e;
    throw new CocoonError("network", `reading the answer: ${e.message}`, { status: resp.status, cause: e });
  }
  return e2e.concat(parts);
}

// streamChunks iterates a fetch body's chunks (a ReadableStream; null is empty).
async function* streamChunks(body) {
  if (!body) return;
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

// refusal is the CocoonError of an answer that is not sealed: a refusal before the
// host opened the request or recorded its id (web/E2E.md §4), plaintext and unsigned.
async function refusal(resp) {
  const bytes = await readLimited(resp, 1 << 20);
  if (resp.ok) return new CocoonError("e2e_invalid", `the answer (${resp.status}) is not sealed: not the host's answer to this request`, { status: resp.status });
  return hostError(resp, bytes, "the host refused the sealed request before answering it sealed (an unsigned answer: it may come from anything between)", false);
}

// hostError is the CocoonError of a host's error answer: its error.code when the body
// is the host's JSON error, else bad_answer.
async function hostError(resp, bytes, what, signed) {
  let code = "bad_answer";
  let message = `${what}: ${resp.status}`;
  try {
    const e = JSON.parse(new TextDecoder().decode(bytes)).error;
    if (e?.code) code = e.code;
    if (e?.message) message = `${what}: ${e.message}`;
  } catch {
    // not JSON: the status says what there is to say
  }
  return new CocoonError(code, message, { status: resp.status, signed });
}
