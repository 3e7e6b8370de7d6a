// The JavaScript side of web/E2E.md, against the vectors Go wrote and checks
// (web/e2e/testdata/vectors.json), run on the browser client library itself: its E2E
// code as shipped, the built web/browser/dist/cocoon.js (its `e2e` export), not a second
// implementation. Per suite it plays the host with the vector's key (the library's own
// HPKE suite), opens the Go-sealed request, and checks that the library's Opener opens
// the sealed answer and stream records and refuses them altered, reordered or with
// another status; it checks that the library seals the vector's plaintext byte for
// byte, and (X25519, with a fixed ephemeral seed) the exact envelope that
// web/e2e/vectors_test.go opens. UPDATE=1 rewrites that envelope in the vectors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
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
// where @hpke/hybridkem-x-wing's deriveKeyPair takes SHAKE256(ikm) (an older draft);
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
