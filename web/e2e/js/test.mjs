// The JavaScript side of web/E2E.md, against the vectors Go wrote and checks
// (web/e2e/testdata/vectors.json), run on the browser client library itself: its E2E
// code as shipped, the built web/browser/dist/cocoon.js (its `e2e` export), not a second
// implementation. Per suite it plays the host with the vector's key (the library's own
// HPKE suite), opens the Go-sealed request, and checks that the library's Opener opens
// the sealed answer and stream records and refuses them altered, reordered or with
// another status; it checks that the library seals the vector's plaintext byte for
// byte, and (X25519, with a fixed ephemeral seed) the exact envelope that
// web/e2e/vectors_test.go opens. For sessions (version 2, E2E.md §8) it opens Go's
// establishing envelope and exports Go's session, seals Go's session envelope byte for
// byte with the vector's rid, and opens (and refuses altered) Go's answers under it.
// UPDATE=1 rewrites the version-1 envelope in the vectors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";

// Node 18 has WebCrypto only as node:crypto's webcrypto; a browser and Node 20 have it
// global, where the library and Go's wasm_exec.js look for it.
globalThis.crypto ??= (await import("node:crypto")).webcrypto;
const { e2e } = await import(new URL("../../browser/dist/cocoon.js", import.meta.url));

const path = new URL("../testdata/vectors.json", import.meta.url);
const vectors = JSON.parse(readFileSync(path, "utf8"));
const hex = (s) => Uint8Array.from(s.match(/../g) ?? [], (b) => parseInt(b, 16));
const buf = (b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);

// hostKeyPair derives the host's key pair of the vector v as Go's crypto/hpke does
// (RFC 9180 DeriveKeyPair). For X-Wing Go follows draft-ietf-hpke-pq: the seed is
// SHAKE256 LabeledDerive(ikm, "DeriveKeyPair") with the suite id "KEM" || 0x647a,
// where @hpke/hybridkem-x-wing's deriveKeyPair takes SHAKE256(ikm);
// the KEM itself agrees, and a client never derives a key (web/E2E.md §8).
async function hostKeyPair(v) {
  const kem = e2e.suite(v.suite).kem;
  let kp;
  if (v.suite === "x25519") {
    kp = await kem.deriveKeyPair(buf(hex(v.ikm)));
  } else {
    const label = "DeriveKeyPair";
    const seed = createHash("shake256", { outputLength: 32 })
      .update(Buffer.concat([hex(v.ikm), Buffer.from("HPKE-v1"), Buffer.from([0x4b, 0x45, 0x4d, 0x64, 0x7a]),
        Buffer.from([0, label.length]), Buffer.from(label), Buffer.from([0, 32])]))
      .digest();
    // Private API of @hpke/hybridkem-x-wing (the key pair of a given seed), test only.
    const [, pk] = await kem._generateKeyPairDerand(new Uint8Array(seed));
    kp = { privateKey: await kem.deserializePrivateKey(buf(seed)), publicKey: await kem.deserializePublicKey(buf(pk)) };
  }
  assert.equal(e2e.hex(new Uint8Array(await kem.serializePublicKey(kp.publicKey))), v.public_key, "the host's public key");
  return kp;
}

for (const v of vectors.suites) {
  test(`${v.suite}: the library opens Go's sealed answers, and seals Go's plaintext`, async () => {
    const suite = e2e.suite(v.suite);
    const kp = await hostKeyPair(v);
    assert.equal(e2e.hex(e2e.info(v.method, v.path)), v.info);

    // The host's side: open Go's envelope with the vector's key.
    const env = hex(v.envelope);
    const view = new DataView(env.buffer);
    assert.equal(env[0], e2e.VERSION);
    assert.equal(view.getUint16(1), Number(v.kem_id));
    const n = view.getUint16(3);
    const ctx = await suite.createRecipientContext({ recipientKey: kp, enc: buf(env.subarray(5, 5 + n)), info: buf(e2e.info(v.method, v.path)) });
    const plain = new Uint8Array(await ctx.open(buf(env.subarray(5 + n))));
    assert.equal(e2e.hex(plain), v.request_plaintext);

    // The library frames the same plaintext byte for byte.
    const headers = v.request_headers;
    const body = new TextEncoder().encode(v.request_body);
    assert.equal(e2e.hex(e2e.requestPlaintext({ id: v.request_id, time: Number(v.request_time), headers, body })), v.request_plaintext);

    // The client's side: the library's Opener, from the same context, opens the answers.
    const opener = await e2e.Opener.fromContext(ctx);
    const whole = await opener.openBody(Number(v.body_status), hex(v.sealed_body));
    assert.equal(new TextDecoder().decode(whole.body), v.body);
    for (const [name, value] of Object.entries(v.body_headers)) assert.equal(whole.headers.get(name), value);
    await assert.rejects(opener.openBody(500, hex(v.sealed_body)), e2e.E2EError, "a changed status must not open");
    const altered = hex(v.sealed_body);
    altered[7] ^= 1;
    await assert.rejects(opener.openBody(Number(v.body_status), altered), e2e.E2EError, "an altered byte must not open");

    const events = v.stream_records.map((r) => r.event);
    const stream = await collect(opener.openStream(chunks(events.join(""))));
    const want = v.stream_records.map((r) => hex(r.plaintext)).reduce((a, b) => new Uint8Array([...a, ...b]));
    const head = new DataView(want.buffer).getUint32(0);
    assert.equal(e2e.hex(stream.bytes), e2e.hex(want.subarray(4 + head)), "the stream's bytes after its head");

    // Reordered, dropped, truncated, extended: each fails.
    if (events.length >= 3) {
      const swapped = [events[0], events[2], events[1], ...events.slice(3)];
      await assert.rejects(collect(opener.openStream(chunks(swapped.join("")))), e2e.E2EError, "reordered");
      await assert.rejects(collect(opener.openStream(chunks([events[0], ...events.slice(2)].join("")))), e2e.E2EError, "dropped");
    }
    await assert.rejects(collect(opener.openStream(chunks(events.slice(0, -1).join("")))), e2e.E2EError, "truncated");
    await assert.rejects(collect(opener.openStream(chunks(events.join("")), 8)), /over the limit of 8 bytes/, "a record over the limit");
    const oneChunk = (async function* () {
      yield new TextEncoder().encode(events.join(""));
    })();
    await assert.rejects(collect(opener.openStream(oneChunk, 8)), /over the limit of 8 bytes/, "a record over the limit, in one chunk");
    await assert.rejects(collect(opener.openStream(chunks(events.join("") + "data: x\n\n"))), e2e.E2EError, "bytes after the final record");
    await assert.rejects(collect(opener.openStream(chunks(events.join(""), "\n"))), e2e.E2EError, "a byte after the final record, alone");
  });
}

test("every single-byte change of a sealed stream fails with E2EError, never anything else", async () => {
  const v = vectors.suites.find((s) => s.suite === "x25519");
  const kp = await hostKeyPair(v);
  const env = hex(v.envelope);
  const ctx = await e2e.suite("x25519").createRecipientContext({ recipientKey: kp, enc: buf(env.subarray(5, 37)), info: buf(e2e.info(v.method, v.path)) });
  const opener = await e2e.Opener.fromContext(ctx);
  const stream = new TextEncoder().encode(v.stream_records.map((r) => r.event).join(""));
  // Every position, each with a pseudo-random other byte (a fixed seed: reproducible).
  let seed = 1;
  for (let i = 0; i < stream.length; i++) {
    const b = stream.slice();
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    b[i] ^= 1 + (seed % 255);
    await assert.rejects(collect(opener.openStream(chunks(b))), (e) => {
      assert.ok(e instanceof e2e.E2EError, `byte ${i}: ${e}`);
      return true;
    });
  }
});

test("x25519: the library seals the envelope Go opens (fixed ephemeral seed)", async () => {
  const v = vectors.suites.find((s) => s.suite === "x25519");
  const js = vectors.js_request;
  const ekm = js?.ephemeral_ikm ?? "33".repeat(32);
  const { envelope, plaintext } = await e2e.sealRequest("x25519", hex(v.public_key), v.method, v.path, {
    headers: v.request_headers, body: new TextEncoder().encode(v.request_body),
    id: v.request_id, time: Number(v.request_time), ekm: hex(ekm),
  });
  assert.equal(e2e.hex(plaintext), v.request_plaintext);
  if (process.env.UPDATE) {
    vectors.js_request = { suite: "x25519", ephemeral_ikm: ekm, request_plaintext: v.request_plaintext, envelope: e2e.hex(envelope) };
    writeFileSync(path, JSON.stringify(vectors, null, 2) + "\n");
    return;
  }
  assert.equal(e2e.hex(envelope), js.envelope, "the library's envelope differs from the vector's");
});

test("mlkem768x25519: a request the library seals opens with the host's key", async () => {
  const v = vectors.suites.find((s) => s.suite === "mlkem768x25519");
  const kp = await hostKeyPair(v);
  const body = new TextEncoder().encode(v.request_body);
  const { envelope } = await e2e.sealRequest("mlkem768x25519", hex(v.public_key), v.method, v.path, { headers: v.request_headers, body });
  assert.equal(new DataView(envelope.buffer).getUint16(1), 0x647a, "X-Wing's KEM id");
  assert.equal(new DataView(envelope.buffer).getUint16(3), 1120, "X-Wing's enc is 1,120 bytes");
  const suite = e2e.suite("mlkem768x25519");
  const ctx = await suite.createRecipientContext({ recipientKey: kp, enc: buf(envelope.subarray(5, 1125)), info: buf(e2e.info(v.method, v.path)) });
  const plain = new Uint8Array(await ctx.open(buf(envelope.subarray(1125))));
  const head = new DataView(plain.buffer).getUint32(0);
  assert.equal(new TextDecoder().decode(plain.subarray(4 + head)), v.request_body);
});

// Sessions (version 2, E2E.md §8). The host's side is played here with
// node:crypto (HKDF and AES-256-GCM written from the spec, not the library's WebCrypto
// code), so the library's session envelopes and answers are checked against a second
// implementation of the derivation, and against Go's once the vectors carry a session.

// sessionE is the spec's E(label, L) of one session request, with node:crypto.
function sessionE(secret, rid, method, path) {
  const ctx = e2e.lp("cocoon-host e2e session request v1", method, path);
  return (label, n) => new Uint8Array(hkdfSync("sha256", secret, rid, Buffer.concat([ctx, e2e.lp(label)]), n));
}

// hostOpenSession opens a session envelope as the host does, with the session's id
// and secret: it returns the plaintext and the request's E, or throws.
function hostOpenSession(id, secret, method, path, envelope) {
  assert.equal(envelope[0], 2, "a session envelope's version");
  assert.equal(e2e.hex(envelope.subarray(1, 17)), e2e.hex(id), "the session id");
  const rid = envelope.subarray(17, 33);
  const E = sessionE(secret, rid, method, path);
  const d = createDecipheriv("aes-256-gcm", E("request key", 32), E("request nonce", 12));
  d.setAAD(envelope.subarray(0, 33));
  d.setAuthTag(envelope.subarray(envelope.length - 16));
  const plain = Buffer.concat([d.update(envelope.subarray(33, envelope.length - 16)), d.final()]);
  const head = JSON.parse(plain.subarray(4, 4 + plain.readUInt32BE(0)).toString());
  assert.equal(head.id, e2e.hex(rid), "the head's id is the envelope's rid");
  return { plain: new Uint8Array(plain), E };
}

// hostSealRecord seals record seq of an answer (E2E.md §5) under E's answer keys.
function hostSealRecord(E, seq, status, final, plaintext) {
  const nonce = Buffer.from(E("cocoon-host e2e response nonce v1", 12));
  nonce.writeBigUInt64BE(nonce.readBigUInt64BE(4) ^ BigInt(seq), 4);
  const c = createCipheriv("aes-256-gcm", E("cocoon-host e2e response key v1", 32), nonce);
  c.setAAD(Buffer.from([status >> 8, status & 0xff, final ? 1 : 0]));
  return new Uint8Array(Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]));
}

// answerPlaintext is uint32be(len(head)) || head || body of an answer.
function answerPlaintext(headers, body) {
  const head = Buffer.from(JSON.stringify({ headers }));
  const n = Buffer.alloc(4);
  n.writeUInt32BE(head.length);
  return new Uint8Array(Buffer.concat([n, head, Buffer.from(body)]));
}

for (const v of vectors.suites) {
  test(`${v.suite}: Go's session vector: establishing, the grant, the session envelope byte for byte, its answers`, async () => {
    const vs = v.session;
    assert.ok(vs, "the vectors carry no session for this suite");
    const kp = await hostKeyPair(v);
    const body = new TextEncoder().encode(v.request_body);
    const time = Number(v.request_time);

    // The establishing request: the host's side opens Go's envelope, whose head asks
    // for a session as the library writes it, and exports Go's session.
    assert.equal(e2e.hex(e2e.requestPlaintext({ id: vs.establishing_request_id, time, headers: v.request_headers, body, session: true })),
      vs.establishing_request_plaintext, "the establishing request's plaintext");
    const env = hex(vs.establishing_envelope);
    assert.equal(env[0], e2e.VERSION);
    const n = new DataView(env.buffer).getUint16(3);
    const ctx = await e2e.suite(v.suite).createRecipientContext({ recipientKey: kp, enc: buf(env.subarray(5, 5 + n)), info: buf(e2e.info(v.method, v.path)) });
    assert.equal(e2e.hex(new Uint8Array(await ctx.open(buf(env.subarray(5 + n))))), vs.establishing_request_plaintext);
    const keys = await e2e.sessionKeys(ctx);
    assert.equal(e2e.hex(keys.id), vs.session_id, "session_id");
    assert.equal(e2e.hex(keys.secret), vs.session_secret, "session_secret");

    // The grant: the answer to it opens with its Opener and grants the session.
    const grant = await (await e2e.Opener.fromContext(ctx)).openBody(Number(v.body_status), hex(vs.grant_sealed_body));
    for (const [name, value] of Object.entries(vs.grant_headers)) assert.equal(grant.headers.get(name), value);
    assert.equal(e2e.sessionSeconds(grant.headers), 3600);
    assert.equal(new TextDecoder().decode(grant.body), v.body);

    // The spec's derivation, written with node:crypto, gives Go's intermediate values.
    const rid = hex(vs.request_id);
    assert.equal(e2e.hex(e2e.lp("cocoon-host e2e session request v1", v.method, v.path)), vs.context, "ctx");
    assert.equal(createHmac("sha256", rid).update(hex(vs.session_secret)).digest("hex"), vs.prk, "prk = HKDF-Extract(rid, session_secret)");
    const E = sessionE(hex(vs.session_secret), rid, v.method, v.path);
    assert.equal(e2e.hex(E("request key", 32)), vs.request_key);
    assert.equal(e2e.hex(E("request nonce", 12)), vs.request_nonce);
    assert.equal(e2e.hex(E("cocoon-host e2e response key v1", 32)), vs.response_key);
    assert.equal(e2e.hex(E("cocoon-host e2e response nonce v1", 12)), vs.response_nonce);

    // Playing the host: Go's session envelope opens to its plaintext.
    const goEnvelope = hex(vs.envelope);
    assert.equal(e2e.hex(hostOpenSession(keys.id, keys.secret, v.method, v.path, goEnvelope).plain), vs.request_plaintext);

    // The library seals the same plaintext, with the vector's rid, byte for byte.
    const session = await e2e.Session.create(keys, e2e.sessionSeconds(grant.headers), Date.now());
    const sealed = await session.seal(v.method, v.path, { headers: v.request_headers, body, rid, time });
    assert.equal(e2e.hex(sealed.plaintext), vs.request_plaintext, "the session request's plaintext");
    assert.equal(e2e.hex(sealed.envelope), vs.envelope, "the library's session envelope differs from Go's");

    // Its Opener opens Go's answers under E(...), and refuses them altered.
    const whole = await sealed.opener.openBody(Number(v.body_status), hex(vs.sealed_body));
    assert.equal(new TextDecoder().decode(whole.body), v.body);
    for (const [name, value] of Object.entries(v.body_headers)) assert.equal(whole.headers.get(name), value);
    await assert.rejects(sealed.opener.openBody(500, hex(vs.sealed_body)), e2e.E2EError, "a changed status must not open");
    const altered = hex(vs.sealed_body);
    altered[altered.length - 1] ^= 1;
    await assert.rejects(sealed.opener.openBody(Number(v.body_status), altered), e2e.E2EError, "an altered byte must not open");
    await assert.rejects(sealed.opener.openBody(Number(v.body_status), hex(v.sealed_body)), e2e.E2EError, "version 1's answer is not the session's");

    const events = vs.stream_records.map((r) => r.event);
    const want = vs.stream_records.map((r) => hex(r.plaintext)).reduce((a, b) => new Uint8Array([...a, ...b]));
    const stream = await collect(sealed.opener.openStream(chunks(events.join(""))));
    assert.equal(e2e.hex(stream.bytes), e2e.hex(want.subarray(4 + new DataView(want.buffer).getUint32(0))), "the stream's bytes after its head");
    const all = new TextEncoder().encode(events.join(""));
    for (let i = 0; i < all.length; i += 5) {
      const b = all.slice();
      b[i] ^= 0x21;
      await assert.rejects(collect(sealed.opener.openStream(chunks(b))), e2e.E2EError, `stream byte ${i} changed`);
    }
    await assert.rejects(collect(sealed.opener.openStream(chunks(events.slice(0, -1).join("")))), e2e.E2EError, "truncated");
  });

  test(`${v.suite}: a request asking for a session; both sides export the same session`, async () => {
    const kp = await hostKeyPair(v);
    const body = new TextEncoder().encode(v.request_body);
    const sealed = await e2e.sealRequest(v.suite, hex(v.public_key), v.method, v.path, { headers: v.request_headers, body, session: true });
    const n = new DataView(sealed.envelope.buffer).getUint16(3);
    const ctx = await e2e.suite(v.suite).createRecipientContext({ recipientKey: kp, enc: buf(sealed.envelope.subarray(5, 5 + n)), info: buf(e2e.info(v.method, v.path)) });
    const plain = new Uint8Array(await ctx.open(buf(sealed.envelope.subarray(5 + n))));
    const head = JSON.parse(new TextDecoder().decode(plain.subarray(4, 4 + new DataView(plain.buffer).getUint32(0))));
    assert.deepEqual(Object.keys(head), ["id", "time", "headers", "session"]);
    assert.equal(head.session, true);
    const host = await e2e.sessionKeys(ctx);
    assert.equal(e2e.hex(sealed.sessionKeys.id), e2e.hex(host.id), "session_id");
    assert.equal(e2e.hex(sealed.sessionKeys.secret), e2e.hex(host.secret), "session_secret");
    assert.equal(host.id.length, 16);
    assert.equal(host.secret.length, 32);
    // Without session, no member and no session keys: a plain version-1 request.
    const plainV1 = await e2e.sealRequest(v.suite, hex(v.public_key), v.method, v.path, { headers: v.request_headers, body });
    assert.equal(plainV1.sessionKeys, undefined);
  });
}

test("a session envelope opens with the spec's derivation; its answers open with the library, and not altered", async () => {
  const v = vectors.suites[0];
  const keys = { id: hex("5e".repeat(16)), secret: hex("5c".repeat(32)) };
  const session = await e2e.Session.create(keys, 3600, Date.now());
  const body = new TextEncoder().encode(v.request_body);
  const rid = hex("a1".repeat(16));
  const { envelope, opener, plaintext } = await session.seal(v.method, v.path, { headers: v.request_headers, body, rid, time: Number(v.request_time) });
  assert.equal(e2e.hex(plaintext), e2e.hex(e2e.requestPlaintext({ id: "a1".repeat(16), time: Number(v.request_time), headers: v.request_headers, body })),
    "a session request's plaintext is version 1's, without the session member");
  const { plain, E } = hostOpenSession(keys.id, keys.secret, v.method, v.path, envelope);
  assert.equal(e2e.hex(plain), e2e.hex(plaintext));

  // A fresh rid each request, so never the same envelope twice.
  const again = await session.seal(v.method, v.path, { headers: v.request_headers, body });
  assert.notEqual(e2e.hex(again.envelope.subarray(17, 33)), e2e.hex(rid));
  hostOpenSession(keys.id, keys.secret, v.method, v.path, again.envelope);

  // Another path, another session secret, any byte changed: the host cannot open it.
  assert.throws(() => hostOpenSession(keys.id, keys.secret, v.method, "/v1/chat/completions", envelope));
  assert.throws(() => hostOpenSession(keys.id, hex("5d".repeat(32)), v.method, v.path, envelope));
  for (let i = 33; i < envelope.length; i += 13) {
    const b = envelope.slice();
    b[i] ^= 0x40;
    assert.throws(() => hostOpenSession(keys.id, keys.secret, v.method, v.path, b), `byte ${i}`);
  }
  const movedRid = envelope.slice();
  movedRid[20] ^= 1; // the rid is bound twice: the AAD and the head's id
  assert.throws(() => hostOpenSession(keys.id, keys.secret, v.method, v.path, movedRid));

  // The host's answers under E(...), whole and streamed: the library's Opener opens them.
  const answer = answerPlaintext({ "Content-Type": "application/json" }, v.body);
  const whole = await opener.openBody(200, hostSealRecord(E, 0, 200, true, answer));
  assert.equal(new TextDecoder().decode(whole.body), v.body);
  await assert.rejects(opener.openBody(201, hostSealRecord(E, 0, 200, true, answer)), e2e.E2EError, "another status");
  const altered = hostSealRecord(E, 0, 200, true, answer);
  altered[9] ^= 1;
  await assert.rejects(opener.openBody(200, altered), e2e.E2EError, "a changed byte");
  await assert.rejects((await e2e.Session.create(keys, 3600, Date.now())).seal(v.method, v.path, { headers: v.request_headers, body, rid: hex("a1") }), e2e.E2EError, "a short rid");

  const parts = [answerPlaintext({ "Content-Type": "text/event-stream" }, ""), new TextEncoder().encode("data: one\n\n"), new TextEncoder().encode("data: two\n\n")];
  const events = parts.map((p, i) => `${i === parts.length - 1 ? "event: final\n" : ""}data: ${e2e.base64Encode(hostSealRecord(E, i, 200, i === parts.length - 1, p))}\n\n`);
  assert.equal(new TextDecoder().decode((await collect(opener.openStream(chunks(events.join(""))))).bytes), "data: one\n\ndata: two\n\n");
  await assert.rejects(collect(opener.openStream(chunks([events[0], events[2], events[1]].join("")))), e2e.E2EError, "reordered");
  // The first request's opener is not the second's: an answer of one does not open as the other's.
  await assert.rejects(again.opener.openBody(200, hostSealRecord(E, 0, 200, true, answer)), e2e.E2EError, "another request's answer");
});

// The grant and the head it travels in, as Go's client reads them (web/e2e/testdata/grants.json,
// which web/e2e's TestGrantVectors runs): each head, sealed as a whole answer, opens or not
// through the library's Opener, and grants what the file says.
const grants = JSON.parse(readFileSync(new URL("../testdata/grants.json", import.meta.url), "utf8"));

test("the session grant and the answer's head it travels in: read as Go's client reads them", async () => {
  assert.ok(grants.cases.length > 0);
  const E = sessionE(new Uint8Array(32), new Uint8Array(16), "POST", "/v1/chat/completions");
  const opener = await e2e.Opener.fromExport(async (label, n) => E(label, n));
  for (const c of grants.cases) {
    const head = new TextEncoder().encode(c.head);
    const plain = new Uint8Array(4 + head.length);
    new DataView(plain.buffer).setUint32(0, head.length);
    plain.set(head, 4);
    let opened = null;
    try {
      opened = await opener.openBody(200, hostSealRecord(E, 0, 200, true, plain));
    } catch (e) {
      assert.ok(e instanceof e2e.E2EError, `${c.why}: ${e}`);
    }
    assert.equal(opened !== null, c.opens, `${c.why}: head ${c.head} opens`);
    assert.equal(opened ? e2e.sessionSeconds(opened.headers) : 0, c.seconds, `${c.why}: head ${c.head} grants`);
  }
});

test("a session is used until 60 s before the grant ends", async () => {
  const keys = { id: new Uint8Array(16), secret: new Uint8Array(32) };
  assert.equal(await e2e.Session.create(keys, 60, 0), null, "a grant no longer than the margin is not used");
  const s = await e2e.Session.create(keys, 3600, 1_000_000);
  assert.equal(s.expiresAt, 1_000_000 + 3540 * 1000);
  assert.ok(s.usable(1_000_000 + 3539 * 1000));
  assert.ok(!s.usable(1_000_000 + 3540 * 1000));
});

// chunks yields s's bytes (a string's UTF-8) a few at a time, as a network would, then each of more
// whole, as chunks of their own.
async function* chunks(s, ...more) {
  const b = typeof s === "string" ? new TextEncoder().encode(s) : s;
  for (let i = 0; i < b.length; i += 7) yield b.subarray(i, i + 7);
  for (const m of more) yield new TextEncoder().encode(m);
}

// collect reads an openStream to its end: its headers and the stream's bytes.
async function collect(it) {
  let headers = null;
  const parts = [];
  for await (const piece of it) {
    if (piece.headers) headers = piece.headers;
    if (piece.bytes) parts.push(...piece.bytes);
  }
  return { headers, bytes: new Uint8Array(parts) };
}
