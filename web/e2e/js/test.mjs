// The JavaScript side of web/E2E.md, against the vectors Go wrote and checks
// (web/e2e/testdata/vectors.json): @hpke/core opens the Go-sealed X25519 request with
// the host's key, derives the answer's keys with the HPKE exporter, opens the sealed
// answer and stream records, and seals a request (with a fixed ephemeral seed, so
// the bytes are reproducible) that web/e2e/vectors_test.go opens. UPDATE=1 rewrites
// that request in the vectors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { webcrypto } from "node:crypto";
import { Aes256Gcm, CipherSuite, HkdfSha256 } from "@hpke/core";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";

const path = new URL("../testdata/vectors.json", import.meta.url);
const vectors = JSON.parse(readFileSync(path, "utf8"));
const v = vectors.suites.find((s) => s.suite === "x25519");
const hex = (s) => Uint8Array.from(s.match(/../g) ?? [], (b) => parseInt(b, 16));
const toHex = (b) => Buffer.from(b).toString("hex");
const text = new TextEncoder();

const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });

// info = lp("cocoon-host e2e request v1") || lp(method) || lp(path)
function info(method, p) {
  const parts = ["cocoon-host e2e request v1", method, p].map((s) => text.encode(s));
  const out = new Uint8Array(parts.reduce((n, x) => n + 4 + x.length, 0));
  let o = 0;
  for (const x of parts) {
    new DataView(out.buffer).setUint32(o, x.length);
    out.set(x, o + 4);
    o += 4 + x.length;
  }
  return out;
}

// The envelope: version 1, uint16be KEM id, uint16be enc length, enc, ciphertext.
function parseEnvelope(b) {
  const d = new DataView(b.buffer, b.byteOffset);
  assert.equal(b[0], 1);
  const n = d.getUint16(3);
  return { kem: d.getUint16(1), enc: b.slice(5, 5 + n), ct: b.slice(5 + n) };
}

// The answer's AES-256-GCM key and base nonce, from the request's context.
async function responseKeys(ctx) {
  const key = new Uint8Array(await ctx.export(text.encode("cocoon-host e2e response key v1"), 32));
  const nonce = new Uint8Array(await ctx.export(text.encode("cocoon-host e2e response nonce v1"), 12));
  return { key: await webcrypto.subtle.importKey("raw", key, "AES-GCM", false, ["decrypt"]), nonce };
}

// Record seq opens with nonce = base XOR uint64be(seq) in the last 8 bytes and
// AAD = uint16be(status) || final.
async function openRecord(keys, seq, status, final, ct) {
  const nonce = keys.nonce.slice();
  const s = new DataView(new ArrayBuffer(8));
  s.setBigUint64(0, BigInt(seq));
  for (let i = 0; i < 8; i++) nonce[4 + i] ^= s.getUint8(i);
  const aad = new Uint8Array([status >> 8, status & 0xff, final ? 1 : 0]);
  return new Uint8Array(await webcrypto.subtle.decrypt({ name: "AES-GCM", iv: nonce, additionalData: aad }, keys.key, ct));
}

async function hostKeyPair() {
  const kp = await suite.kem.deriveKeyPair(hex(v.ikm).buffer);
  assert.equal(toHex(new Uint8Array(await suite.kem.serializePublicKey(kp.publicKey))), v.public_key);
  return kp;
}

test("opens the Go-sealed request and answers", async () => {
  const kp = await hostKeyPair();
  const env = parseEnvelope(hex(v.envelope));
  assert.equal(env.kem, 0x0020);
  assert.equal(toHex(info(v.method, v.path)), v.info);
  const ctx = await suite.createRecipientContext({ recipientKey: kp, enc: env.enc.buffer, info: info(v.method, v.path).buffer });
  const plain = new Uint8Array(await ctx.open(env.ct.buffer));
  assert.equal(toHex(plain), v.request_plaintext);
  const headLen = new DataView(plain.buffer).getUint32(0);
  const head = JSON.parse(new TextDecoder().decode(plain.slice(4, 4 + headLen)));
  assert.equal(head.id, v.request_id);
  assert.deepEqual(head.headers, v.request_headers);
  assert.equal(new TextDecoder().decode(plain.slice(4 + headLen)), v.request_body);

  const keys = await responseKeys(ctx);
  assert.equal(toHex(await openRecord(keys, 0, v.body_status, true, hex(v.sealed_body))), v.body_plaintext);
  await assert.rejects(openRecord(keys, 0, 500, true, hex(v.sealed_body)), "a changed status must not open");
  for (const [seq, r] of v.stream_records.entries()) {
    const prefix = r.final ? "event: final\ndata: " : "data: ";
    assert.ok(r.event.startsWith(prefix) && r.event.endsWith("\n\n"));
    const ct = Uint8Array.from(Buffer.from(r.event.slice(prefix.length, -2), "base64"));
    assert.equal(toHex(await openRecord(keys, seq, 200, r.final, ct)), r.plaintext);
    await assert.rejects(openRecord(keys, seq + 1, 200, r.final, ct), "a reordered record must not open");
  }
});

test("seals a request Go opens", async () => {
  const kp = await hostKeyPair();
  const js = vectors.js_request;
  const ekm = js?.ephemeral_ikm ?? "33".repeat(32);
  const plaintext = v.request_plaintext;
  const sender = await suite.createSenderContext({ recipientPublicKey: kp.publicKey, info: info(v.method, v.path).buffer, ekm: hex(ekm).buffer });
  const ct = new Uint8Array(await sender.seal(hex(plaintext).buffer));
  const enc = new Uint8Array(sender.enc);
  const env = new Uint8Array(5 + enc.length + ct.length);
  env.set([1, 0x00, 0x20, enc.length >> 8, enc.length & 0xff]);
  env.set(enc, 5);
  env.set(ct, 5 + enc.length);
  if (process.env.UPDATE) {
    vectors.js_request = { suite: "x25519", ephemeral_ikm: ekm, request_plaintext: plaintext, envelope: toHex(env) };
    writeFileSync(path, JSON.stringify(vectors, null, 2) + "\n");
    return;
  }
  assert.equal(js.request_plaintext, plaintext);
  assert.equal(toHex(env), js.envelope, "@hpke/core's envelope differs from the vector's");
});
