// The library (the built dist/cocoon.js, as a page imports it) against a real host, run
// by web/browser/browser_test.go, which starts a simulated host behind a relay and sets:
//   COCOON_RELAY     the relay's URL: /clean/... passes through, /answer/... alters a
//                    byte of every sealed chat answer, /request/... of every sealed
//                    request, /flipN/... byte N of a session envelope; /forge/ and
//                    /strip/ set and delete Cocoon-E2E-Session outside the seal,
//                    /unknown/ answers every chat e2e_session_unknown itself,
//                    /redirect/ answers everything with a 307 to another server; it
//                    serves the version bytes of the chat envelopes it saw at
//                    /relay/versions, "<price-list requests> <requests the redirect's
//                    target got>" at /relay/asked, answers the next price-list
//                    requests with the lists a POST to /relay/prices names ("stale":
//                    other prices, signed by the settlement key; "forged": another
//                    key's), restarts the host on POST /relay/restart, and from a
//                    POST to /relay/raise on passes everything to the host at twice
//                    its prices (its operator's new config: same keys, its own ledger)
//   COCOON_FORGER    a host that signs and seals streams no real host sends: GET /keys
//                    gives its keys to pin, /{order}/v1/chat/completions answers with
//                    the receipt events of order (in-order, one-receipt,
//                    two-receipts, text-after-receipt)
//   COCOON_ROOT      the simulator root's PEM, WRONG_ROOT another simulator's
//   COCOON_PIPELINE  the pipeline's id; COCOON_API_KEY an API key
//   COCOON_PROMPT    the prompt (the Go test checks the relay never saw it)
//   COCOON_STEP      "chat" (default) or "deposit" / "billed" with the billing variables
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";

// Node 18 has WebCrypto only as node:crypto's webcrypto; a browser and Node 20 have it
// global, where the library and Go's wasm_exec.js look for it.
globalThis.crypto ??= (await import("node:crypto")).webcrypto;
// Node has no page to load Go's wasm_exec.js into: import it from the build, as the
// library would from the host.
await import(new URL("../../page/dist/wasm_exec.js", import.meta.url));
const { connect, CocoonError, Host, newClientKey, clientKeyFromSeed } = await import(new URL("../dist/cocoon.js", import.meta.url));

const env = process.env;
const relay = env.COCOON_RELAY;
const root = readFileSync(env.COCOON_ROOT, "utf8");
const auth = `Bearer ${env.COCOON_API_KEY}`;
const prompt = env.COCOON_PROMPT;
// The module is a file here: the verifier comes from the host's /sdk/, as it would for
// a page that loaded the library from there.
const verifierURL = `${relay}/clean/sdk/`;
const request = (stream) => ({ messages: [{ role: "user", content: prompt }], max_tokens: 24, stream });

const open = (mode, extra = {}) =>
  connect({ baseURL: `${relay}/${mode}`, pipeline: env.COCOON_PIPELINE, verifier: { trust_sim_root: root }, verifierURL, auth, ...extra });

// asked returns [price-list requests, requests the redirect's target got] so far.
async function asked() {
  return (await (await fetch(`${relay}/relay/asked`)).text()).split(" ").map(Number);
}

// rejectsWith expects a CocoonError of code.
async function rejectsWith(promise, code) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof CocoonError, `not a CocoonError: ${e}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

if ((env.COCOON_STEP ?? "chat") === "chat") {
  test("the verifier loads once, from beside the library (or verifierURL)", async () => {
    // A host that cannot be reached: connect loads the verifier, then fails to fetch.
    const t0 = performance.now();
    await rejectsWith(connect({ baseURL: "http://127.0.0.1:9", verifier: { trust_sim_root: root }, verifierURL }), "network");
    // A figure for the README, not an assertion.
    console.log(`verifier loaded in ${(performance.now() - t0).toFixed(0)} ms`);
  });

  // The Go test makes the host answer its next eight evidence requests 429.
  test("connect waits for rate-limited quotes, three times, then gives up", async () => {
    await rejectsWith(open("clean"), "quote_rate_limited"); // four 429s: the first try and three more
    assert.equal((await fetch(`${relay}/clean/v1/attestation`)).status, 429, "connect gave up while the host still rate-limited");
    const host = await open("clean"); // three more 429s, then the quote
    assert.equal(host.report.boot.ok, true);
  });

  test("connect verifies the host and pins its keys", async () => {
    const t0 = performance.now();
    const host = await open("clean");
    // A figure for the README, not an assertion.
    console.log(`connect with pipeline in ${(performance.now() - t0).toFixed(0)} ms`);
    assert.equal(host.report.boot.ok, true);
    assert.equal(host.report.pipeline.ok, true);
    assert.ok(host.report.boot.checks.some((c) => c.name === "e2e keys" && c.verdict === "ok"));
    assert.equal(host.suite, "mlkem768x25519");
    assert.equal(Buffer.from(host.hostKey, "base64").length, 32);
  });

  for (const suite of ["mlkem768x25519", "x25519"]) {
    test(`chat, whole and streamed, sealed with ${suite}`, async () => {
      const host = await open("clean", { suite });
      const whole = await host.chat(request(false), { auth });
      assert.equal(whole.status, 200);
      assert.equal(whole.signature, "verified");
      assert.ok(whole.text.length > 0, "no text");
      assert.ok(whole.usage.completion_tokens > 0);

      let streamed = "";
      const s = await host.chat(request(true), { auth, onDelta: (d) => (streamed += d) });
      assert.equal(s.signature, "verified");
      assert.ok(s.text.length > 0);
      assert.equal(streamed, s.text, "the deltas shown are the verified text");
    });
  }

  test("a verifier of another sha256 is refused, the pinned one loads", async () => {
    await assert.rejects(open("clean", { verifierSHA256: "00".repeat(32) }), (e) => e.code === "network" && /pinned/.test(e.message));
    const host = await open("clean", { verifierSHA256: env.VERIFIER_SHA256 });
    assert.equal(host.report.boot.ok, true);
  });

  test("a wrong simulator root fails verification", async () => {
    const wrong = readFileSync(env.WRONG_ROOT, "utf8");
    await assert.rejects(connect({ baseURL: `${relay}/clean`, verifier: { trust_sim_root: wrong }, verifierURL }), (e) => {
      assert.equal(e.code, "verification_failed", e.message);
      assert.equal(e.report?.ok, false);
      return true;
    });
  });

  test("a byte changed in a sealed answer, whole or streamed, is a clean e2e_invalid", async () => {
    const host = await open("answer");
    await rejectsWith(host.chat(request(false), { auth }), "e2e_invalid");
    let shown = "";
    await rejectsWith(host.chat(request(true), { auth, onDelta: (d) => (shown += d) }), "e2e_invalid");
  });

  test("a byte changed in a sealed request is the host's e2e_invalid, before anything runs", async () => {
    const host = await open("request");
    await assert.rejects(host.chat(request(false), { auth }), (e) => {
      assert.equal(e.code, "e2e_invalid", e.message);
      assert.equal(e.status, 400);
      assert.equal(e.signed, false);
      return true;
    });
  });

  test("an answer that opens but is not signed by the pinned host key is signature_invalid", async () => {
    // The host's real end-to-end keys pinned with another host key: the answers open,
    // and their signatures must not pass for the pinned key's.
    const real = await open("clean");
    const evidence = await (await fetch(`${relay}/clean/v1/attestation`)).json();
    const keys = { host_key: Buffer.alloc(32, 1).toString("base64"), e2e_keys: evidence.e2e_keys };
    const host = new Host({ base: `${relay}/clean`, fetchFn: fetch, pipeline: real.pipeline, keys, report: real.report, suite: real.suite });
    await rejectsWith(host.chat(request(false), { auth }), "signature_invalid");
    await rejectsWith(host.chat(request(true), { auth }), "signature_invalid");
  });

  // Refused before its id is recorded, a sealed request gets its answer in plaintext,
  // status and code only, unsigned (web/E2E.md §4: a sealed refusal of a copy of the
  // envelope would reuse the answer's keystream).
  test("a sealed credential the host refuses is a plaintext, unsigned 401 naming its code", async () => {
    const host = await open("clean");
    await assert.rejects(host.chat(request(false), { auth: "Bearer wrong" }), (e) => {
      assert.equal(e.status, 401, e.message);
      assert.equal(e.signed, false);
      assert.equal(e.code, "invalid_credentials");
      return true;
    });
  });

  // Sessions (web/E2E.md): the relay tells which envelope versions it saw.
  let seenSoFar = 0;
  // sent returns the versions of the chat envelopes the relay saw since the last call,
  // as a string of hex bytes ("0102": a version 1, then a version 2).
  async function sent() {
    const all = await (await fetch(`${relay}/relay/versions`)).text();
    const since = all.slice(seenSoFar);
    seenSoFar = all.length;
    return since;
  }
  // viaRelay connects through /clean/ and returns the Host and a setter of the relay
  // mode its later requests go through (the session stays the Host's).
  async function viaRelay(extra = {}) {
    let mode = "clean";
    const fetchFn = (url, init) => fetch(String(url).replace(`${relay}/clean/`, `${relay}/${mode}/`), init);
    const host = await open("clean", { fetch: fetchFn, ...extra });
    await sent();
    return { host, via: (m) => (mode = m) };
  }

  for (const suite of ["mlkem768x25519", "x25519"]) {
    test(`${suite}: the first chat asks for a session, the next ones use it (version 2 at the relay)`, async () => {
      const { host } = await viaRelay({ suite });
      const first = await host.chat(request(false), { auth });
      assert.equal(first.signature, "verified");
      assert.equal(await sent(), "01", "the first request is a version-1 envelope");
      const second = await host.chat(request(false), { auth });
      assert.equal(second.signature, "verified");
      assert.ok(second.text.length > 0);
      let streamed = "";
      const third = await host.chat(request(true), { auth, onDelta: (d) => (streamed += d) });
      assert.equal(third.signature, "verified");
      assert.equal(streamed, third.text);
      assert.equal(await sent(), "0202", "the second and third requests are session envelopes");
    });
  }

  test("sessions: false seals every request with its own KEM", async () => {
    const { host } = await viaRelay({ sessions: false });
    await host.chat(request(false), { auth });
    await host.chat(request(true), { auth });
    assert.equal(await sent(), "0101");
  });

  test("a Cocoon-E2E-Session header outside the seal is never used; deleting one changes nothing", async () => {
    const { host, via } = await viaRelay();
    via("forge");
    // A refused credential: the host grants no session, the relay forges one outside.
    await assert.rejects(host.chat(request(false), { auth: "Bearer wrong" }), (e) => e.status === 401 && e.signed === false);
    await host.chat(request(false), { auth });
    assert.equal(await sent(), "0101", "a forged outer header made the library use a session");
    via("strip");
    await host.chat(request(false), { auth });
    await host.chat(request(true), { auth });
    assert.equal(await sent(), "0202", "the sealed grant is the one that counts");
  });

  test("a session the host does not hold falls back once to version 1, and succeeds", async () => {
    const { host, via } = await viaRelay();
    await host.chat(request(false), { auth });
    assert.equal(await sent(), "01");
    // A changed session id: the host's own e2e_session_unknown, nothing run.
    via("flip5");
    const a = await host.chat(request(false), { auth });
    assert.equal(a.signature, "verified");
    assert.equal(await sent(), "0201", "dropped the session, sent again as version 1");
    via("clean");
    await host.chat(request(true), { auth });
    assert.equal(await sent(), "02", "the retry asked for a new session and got it");
    // A relay that says so to every request: one retry, then its refusal, not a loop.
    via("unknown");
    await assert.rejects(host.chat(request(false), { auth }), (e) => e.code === "e2e_session_unknown" && e.status === 400 && e.signed === false);
    assert.equal(await sent(), "0201");
  });

  test("any byte of a session envelope changed, or of its answer, is a clean error", async () => {
    const { host, via } = await viaRelay();
    // The version, the rid (bound by the AAD and the head's id), the ciphertext, the tag.
    for (const n of [0, 17, 32, 33, 60, -1]) {
      via("clean");
      await host.chat(request(false), { auth }); // establishes a session
      via(`flip${n}`);
      await assert.rejects(host.chat(request(false), { auth }), (e) => {
        assert.equal(e.code, "e2e_invalid", `byte ${n}: ${e.message}`);
        assert.equal(e.status, 400);
        assert.equal(e.signed, false);
        return true;
      });
    }
    // A session envelope the host refused e2e_invalid drops the session (E2E.md §7).
    assert.equal(await sent(), "0102".repeat(6));
    via("clean");
    await host.chat(request(false), { auth });
    via("answer");
    await rejectsWith(host.chat(request(false), { auth }), "e2e_invalid");
    await rejectsWith(host.chat(request(true), { auth }), "e2e_invalid");
    via("clean");
    assert.equal((await host.chat(request(false), { auth })).signature, "verified", "an altered answer leaves the session as it was");
    assert.equal(await sent(), "01020202");
  });

  test("concurrent chats share the session state without breaking it", async () => {
    const { host } = await viaRelay();
    const first = await Promise.all([host.chat(request(false), { auth }), host.chat(request(true), { auth })]);
    assert.ok(first.every((a) => a.signature === "verified"));
    assert.equal(await sent(), "0101", "both asked for a session before either had one");
    const next = await Promise.all([host.chat(request(false), { auth }), host.chat(request(true), { auth }), host.chat(request(false), { auth })]);
    assert.ok(next.every((a) => a.signature === "verified"));
    assert.equal(await sent(), "020202");
  });

  // The stream opens and its signature verifies: only the receipt rule refuses it.
  test("a signed stream with a second receipt, or text after its receipt, is bad_answer", async () => {
    const keys = await (await fetch(`${env.COCOON_FORGER}/keys`)).json();
    const forged = (order) => new Host({ base: `${env.COCOON_FORGER}/${order}`, fetchFn: fetch, pipeline: "", keys, report: {}, suite: "x25519", sessions: false });
    const inOrder = await forged("in-order").chat(request(true), { auth });
    assert.equal(inOrder.signature, "verified");
    assert.equal(inOrder.text, "forged");
    // One receipt passes the rule and reaches the receipt check (this host measures no settlement key).
    await assert.rejects(forged("one-receipt").chat(request(true), { auth }), (e) => e.code === "receipt_invalid" && /measures no settlement key/.test(e.message));
    for (const order of ["two-receipts", "text-after-receipt"]) {
      await assert.rejects(forged(order).chat(request(true), { auth }), (e) => {
        assert.equal(e.code, "bad_answer", `${order}: ${e.message}`);
        assert.equal(e.signed, true);
        assert.match(e.message, /not an answer a host sends/);
        assert.equal(e.answer, undefined, "a refused stream carries no answer");
        return true;
      });
    }
  });

  test("a redirect is refused, naming its Location, and nothing reaches its target", async () => {
    await assert.rejects(open("redirect"), (e) => {
      assert.equal(e.code, "bad_answer", e.message);
      assert.equal(e.status, 307);
      assert.match(e.message, /redirect to http:\/\/127\.0\.0\.1:\d+\/v1\/attestation/);
      return true;
    });
    const { host, via } = await viaRelay();
    via("redirect");
    await rejectsWith(host.chat(request(false), { auth }), "bad_answer");
    await rejectsWith(host.chat(request(true), { auth }), "bad_answer");
    assert.equal((await asked())[1], 0, "a redirected request reached the redirect's target");
  });

  test("no credential goes in plaintext to an http host off this machine; a chat's goes sealed", async () => {
    // 0.0.0.0 dials this machine's relay but is not a loopback name: a remote host. The
    // recording fetch is the wire: what it is given for the remote host, a relay reads.
    const remote = relay.replace("127.0.0.1", "0.0.0.0");
    const wire = [];
    const recording = (url, init = {}) => {
      wire.push(`${url} ${JSON.stringify(init.headers ?? {})}`);
      return fetch(url, init);
    };
    const read = (secret) => wire.filter((w) => w.startsWith(remote) && w.includes(secret));
    const options = { baseURL: `${remote}/clean`, pipeline: env.COCOON_PIPELINE, verifier: { trust_sim_root: root }, verifierURL, fetch: recording };
    await assert.rejects(connect({ ...options, auth }), (e) => e.code === "invalid_argument" && /plaintext to http:\/\/0\.0\.0\.0/.test(e.message));
    assert.deepEqual(read(env.COCOON_API_KEY), [], "connect's auth went in plaintext");
    const host = await connect(options);
    await rejectsWith(host.escrowStatus({ clientKey: await newClientKey(), escrow: `0:${"11".repeat(32)}` }), "invalid_argument");
    assert.deepEqual(read("Cocoon-Client-Signature"), [], "escrowStatus's signature went in plaintext");
    const answer = await host.chat(request(false), { auth });
    assert.equal(answer.signature, "verified");
    assert.ok(wire.some((w) => w.startsWith(`${remote}/clean/p/`)), "the chat did not go to the remote host");
    assert.deepEqual(read(env.COCOON_API_KEY), [], "a chat's credential went in plaintext");
  });

  // Each base URL with a pipeline and auth: a loopback one passes the check and reaches
  // the wire (which fails it: network); any other is invalid_argument, nothing sent.
  for (const [base, loopback] of [
    ["http://127.0.0.1:9", true],
    ["http://127.8.9.10:9", true],
    ["http://localhost:9", true],
    ["http://LOCALHOST:9", true], // the parser lowercases it
    ["http://[::1]:9", true],
    ["http://127.1:9", true], // the parser writes these three 127.0.0.1, which fetch dials
    ["http://0x7f.0.0.1:9", true],
    ["http://2130706433:9", true],
    ["https://evil.example:9", true], // TLS: not plaintext
    ["", false], // the page's origin, and Node has no page
    ["http://127.0.0.1.evil.example:9", false],
    ["http://localhost.:9", false],
    ["http://localhost.evil.example:9", false],
    ["http://0.0.0.0:9", false],
    ["http://[::]:9", false],
    ["http://[::ffff:127.0.0.1]:9", false], // loopback, but not as spelled: refused, which is safe
    ["http://127.0.0.1@evil.example:9", false],
    ["http://127.0.0.1:9@evil.example:9", false],
    ["http://evil.example\\@127.0.0.1:9", false],
    ["http://evil.example#@127.0.0.1:9", false],
    ["http://evil.example?@127.0.0.1:9", false],
    ["ws://127.0.0.1:9", false],
  ]) {
    test(`the loopback exemption: ${JSON.stringify(base)} is ${loopback ? "" : "not "}loopback`, async () => {
      const wire = [];
      const nothing = async (url) => {
        wire.push(url);
        throw new Error("the test sends nothing");
      };
      await rejectsWith(connect({ baseURL: base, pipeline: env.COCOON_PIPELINE, verifier: { trust_sim_root: root }, verifierURL, auth, fetch: nothing }),
        loopback ? "network" : "invalid_argument");
      assert.equal(wire.length > 0, loopback, `sent ${JSON.stringify(wire)}`);
    });
  }

  // Last of this step: it restarts the host.
  test("a restarted host: its session unknown, the retry to its old key e2e_invalid, a new connect chats", async () => {
    const { host } = await viaRelay();
    await host.chat(request(false), { auth });
    await host.chat(request(false), { auth });
    assert.equal(await sent(), "0102");
    assert.equal((await fetch(`${relay}/relay/restart`, { method: "POST" })).status, 200);
    await assert.rejects(host.chat(request(false), { auth }), (e) => {
      assert.equal(e.code, "e2e_invalid", e.message); // the retry, sealed to the key the host no longer has
      assert.equal(e.signed, false);
      return true;
    });
    assert.equal(await sent(), "0201", "the session envelope, then once version 1");
    const again = await open("clean");
    assert.notEqual(again.hostKey, host.hostKey, "a restarted host has a new host key");
    assert.equal((await again.chat(request(false), { auth })).signature, "verified");
  });
}

if (env.COCOON_STEP === "deposit") {
  test("escrowDeposit builds the deposit for the attested host", async () => {
    const host = await connect({ baseURL: `${relay}/clean`, verifier: { trust_sim_root: root }, verifierURL });
    assert.ok(host.settlementKey, "a billing host measures its settlement key");
    const key = await newClientKey();
    const d = await host.escrowDeposit({ clientKey: key, wallet: env.COCOON_WALLET, amountNano: "2000000000" });
    writeFileSync(env.COCOON_OUT, JSON.stringify({ ...d, seed: Buffer.from(key.privateKey).toString("hex") }));
  });
}

if (env.COCOON_STEP === "billed") {
  test("a billed chat's receipt verifies; the account is readable", async () => {
    const d = JSON.parse(readFileSync(env.COCOON_OUT, "utf8"));
    const clientKey = await clientKeyFromSeed(Uint8Array.from(Buffer.from(d.seed, "hex")));
    const host = await connect({ baseURL: `${relay}/clean`, verifier: { trust_sim_root: root }, verifierURL });
    const pay = { clientKey, escrow: d.address };
    for (const stream of [false, true]) {
      const a = await host.chat({ messages: [{ role: "user", content: prompt }], max_tokens: 8, stream }, { pay });
      assert.ok(a.receipt, "a billed answer has a receipt");
      assert.equal(a.receipt.account, d.addressRaw);
    }
    const st = await host.escrowStatus(pay);
    assert.equal(st.account, d.addressRaw);
    assert.equal(st.last_seq, 2);
  });

  // The host's prices changed while the page lived: the list the library keeps is the
  // one from before (the relay serves it, signed by the settlement key).
  const billed = async () => {
    const d = JSON.parse(readFileSync(env.COCOON_OUT, "utf8"));
    const pay = { clientKey: await clientKeyFromSeed(Uint8Array.from(Buffer.from(d.seed, "hex"))), escrow: d.address };
    const host = await connect({ baseURL: `${relay}/clean`, verifier: { trust_sim_root: root }, verifierURL });
    return { host, pay, chat: (stream) => host.chat({ messages: [{ role: "user", content: prompt }], max_tokens: 8, stream }, { pay }) };
  };
  const queue = async (names) => assert.equal((await fetch(`${relay}/relay/prices`, { method: "POST", body: names })).status, 200);

  test("a receipt the kept price list refuses is checked once more against the list fetched again", async () => {
    const { host, chat } = await billed();
    await queue("stale");
    const [before] = await asked();
    await host.priceList(); // kept: the prices before the change
    for (const stream of [true, false]) {
      const a = await chat(stream);
      assert.ok(a.receipt, "a billed answer has a receipt");
    }
    assert.equal((await asked())[0] - before, 2, "the list once, then once more for the first receipt; the second used the list fetched again");
  });

  test("a price list fetched again that another key signed stays refused: one fetch more, the answer kept", async () => {
    const { host, chat } = await billed();
    await queue("stale,forged");
    const [before] = await asked();
    await host.priceList();
    await assert.rejects(chat(true), (e) => {
      assert.equal(e.code, "receipt_invalid", e.message);
      assert.match(e.message, /does not verify/);
      assert.equal(e.answer?.signature, "verified", "the refusal carries the verified answer");
      assert.ok(e.answer.text.length > 0, "the answer's text");
      assert.ok(e.answer.receipt?.seq > 0, "the receipt as the host sent it");
      return true;
    });
    assert.equal((await asked())[0] - before, 2, "at most one fetch more per receipt");
  });

  // The billing red team's attack: the operator raises its prices after the page
  // looked at the list and before its request. Last: the relay stays raised.
  test("prices raised after the list was kept: refused max_price_exceeded, nothing charged; a cap of the caller's own decides", async () => {
    const { host, pay, chat } = await billed();
    await host.priceList(); // the prices the page agrees to
    assert.equal((await fetch(`${relay}/relay/raise`, { method: "POST" })).status, 200);
    await rejectsWith(chat(false), "max_price_exceeded");
    await rejectsWith(chat(true), "max_price_exceeded");
    const st = await host.escrowStatus(pay); // the raised host's ledger
    assert.equal(st.last_seq, 0, "nothing billed");
    assert.equal(st.held, "0", "nothing held");
    const ask = (maxPrice) => host.chat({ messages: [{ role: "user", content: prompt }], max_tokens: 8 }, { pay, maxPrice });
    await rejectsWith(ask(1), "max_price_exceeded");
    await assert.rejects(ask("1e9"), (e) => e.code === "invalid_argument" && /maxPrice/.test(e.message));
    // A cap that covers the raise: admitted at the raised prices, and the receipt, which
    // the kept list refuses, stands by the list fetched again, within the cap.
    const a = await ask("1000000000000");
    assert.ok(a.receipt, "a billed answer has a receipt");
    assert.equal(a.receipt.prices.prompt_per_million, (await host.priceList()).default.prompt_per_million, "billed at the raised prices, the list the library now keeps");
  });

  // The window red team's attack: a relay reports every model's context window as 10⁹
  // in the unsigned model lists, so that a library reading its window there sends a
  // max_price a billion tokens wide and the host's raise is admitted. After the test
  // above: the host behind the relay is the raised one.
  test("a relay inflating the model lists' windows moves no max_price: the raise is still refused, no model list read", async () => {
    const d = JSON.parse(readFileSync(env.COCOON_OUT, "utf8"));
    const pay = { clientKey: await clientKeyFromSeed(Uint8Array.from(Buffer.from(d.seed, "hex"))), escrow: d.address };
    const host = await connect({ baseURL: `${relay}/inflate`, verifier: { trust_sim_root: root }, verifierURL });
    await queue("original");
    const kept = await host.priceList(); // the prices before the raise, signed with their windows
    assert.equal(kept.windows.default, 8192, "the signed default window");
    const [, , modelsBefore] = await asked();
    const before = await host.escrowStatus(pay);
    for (const stream of [false, true]) {
      await rejectsWith(host.chat({ messages: [{ role: "user", content: prompt }], max_tokens: 8, stream }, { pay }), "max_price_exceeded");
    }
    const [, , modelsAfter] = await asked();
    assert.equal(modelsAfter - modelsBefore, 0, "the library read no model list for its max_price");
    const after = await host.escrowStatus(pay);
    assert.equal(after.last_seq, before.last_seq, "nothing billed");
    assert.equal(after.held, "0", "nothing held");
  });
}
