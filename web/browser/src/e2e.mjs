// End-to-end encryption of chat requests (web/E2E.md), the client's side: seal a
// request to the host's attested HPKE key (version 1) or under a session it established
// (version 2), open the answer's records in order.
// The Go implementation is web/e2e; both are checked against web/e2e/testdata/vectors.json
// (web/e2e/js/test.mjs runs this module on them).
import { Aes256Gcm, CipherSuite, HkdfSha256 } from "@hpke/core";
import { DhkemX25519HkdfSha256 } from "@hpke/dhkem-x25519";
import { XWing } from "@hpke/hybridkem-x-wing";

/** The media type of an envelope and of a sealed whole answer. */
export const CONTENT_TYPE = "application/vnd.cocoon.e2e";

/** The version byte of an HPKE envelope (one KEM per request). */
export const VERSION = 1;

/** The version byte of a session envelope (no KEM: one HKDF and one AES-GCM). */
export const SESSION_VERSION = 2;

/**
 * The answer header, read only from an opened answer's sealed head, by which the host
 * grants the session a version-1 request asked for: seconds until it expires.
 */
export const SESSION_HEADER = "Cocoon-E2E-Session";

/** The host's error code for a session envelope whose session it does not hold. */
export const SESSION_UNKNOWN = "e2e_session_unknown";

/** How long a host keeps a session from its creation (E2E.md §8): the longest grant. */
export const SESSION_LIFETIME_SECONDS = 3600;

/** A client stops using a session this many seconds before the host's expiry. */
export const SESSION_MARGIN_SECONDS = 60;

// The session envelope's layout: version, session id, rid; these 33 bytes are its AAD.
const SESSION_ID_BYTES = 16;
const RID_BYTES = 16;
const SESSION_HEADER_BYTES = 1 + SESSION_ID_BYTES + RID_BYTES;

// The suites of version 1 by name (E2E.md §2): KEM id, the KEM, the length of enc.
const KEMS = {
  x25519: { id: 0x0020, kem: () => new DhkemX25519HkdfSha256() },
  mlkem768x25519: { id: 0x647a, kem: () => new XWing() },
};

/** The names of the suites this library seals with, the post-quantum one first. */
export const SUITES = ["mlkem768x25519", "x25519"];

// The headers that may travel sealed, and only there (E2E.md §3).
const SEALED_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "Cocoon-Account",
  "Cocoon-Timestamp", "Cocoon-Nonce", "Cocoon-Client-Signature"];

const MAX_HEAD = 16 << 10; // a plaintext's JSON head, either way
const utf8 = new TextEncoder();

/** E2EError is a failure of the protocol: an answer that does not open, or bad input. */
export class E2EError extends Error {
  constructor(message) {
    super(message);
    this.name = "E2EError";
  }
}

const suites = new Map();

/** suite returns the HPKE cipher suite of a suite name (made once). */
export function suite(name) {
  const k = KEMS[name];
  if (!k) throw new E2EError(`unknown suite ${JSON.stringify(name)}: want one of ${SUITES.join(", ")}`);
  if (!suites.has(name)) suites.set(name, new CipherSuite({ kem: k.kem(), kdf: new HkdfSha256(), aead: new Aes256Gcm() }));
  return suites.get(name);
}

/** lp concatenates fields, each as its uint32be length and its bytes. */
export function lp(...fields) {
  const parts = fields.map((f) => (typeof f === "string" ? utf8.encode(f) : f));
  const out = new Uint8Array(parts.reduce((n, x) => n + 4 + x.length, 0));
  const view = new DataView(out.buffer);
  let o = 0;
  for (const x of parts) {
    view.setUint32(o, x.length);
    out.set(x, o + 4);
    o += 4 + x.length;
  }
  return out;
}

/** info is the HPKE info of a request: lp("cocoon-host e2e request v1") || lp(method) || lp(path). */
export function info(method, path) {
  return lp("cocoon-host e2e request v1", method, path);
}

// frame is uint32be(len(head)) || head || body.
function frame(head, body) {
  const h = utf8.encode(head);
  const out = new Uint8Array(4 + h.length + body.length);
  new DataView(out.buffer).setUint32(0, h.length);
  out.set(h, 4);
  out.set(body, 4 + h.length);
  return out;
}

/**
 * requestPlaintext is what an envelope seals: the JSON head {"id","time","headers"}
 * (header names in canonical form, sorted, as Go writes them), with "session": true
 * when session is set (a version-1 request asking for a session), and the body.
 */
export function requestPlaintext({ id, time, headers, body, session = false }) {
  const sorted = {};
  for (const name of Object.keys(headers).sort()) {
    if (!SEALED_HEADERS.includes(name)) throw new E2EError(`header ${JSON.stringify(name)} cannot be sealed (one of ${SEALED_HEADERS.join(", ")})`);
    sorted[name] = String(headers[name]);
  }
  const head = { id, time, headers: sorted };
  if (session) head.session = true;
  return frame(JSON.stringify(head), body);
}

/**
 * sealRequest seals a request for method and path (the request-target as sent) to the
 * host's public key of suite (a version-1 envelope), and returns the envelope to POST
 * with CONTENT_TYPE and the Opener of its answer. headers are the credentials and
 * Content-Type (sealed only), body the request's bytes. With session, the head asks
 * the host for a session, and the result has sessionKeys: the { id, secret } the
 * host stores if it grants one (sessionKeys, E2E.md's session section). id (32 hex),
 * time (Unix seconds) and ekm (the ephemeral key's seed) are for test vectors only: a
 * fresh random id, the clock and a random ephemeral key otherwise. Cost: one HPKE
 * encapsulation and seal.
 */
export async function sealRequest(suiteName, publicKey, method, path, { headers, body, id, time, ekm, session = false }) {
  const s = suite(suiteName);
  let pk;
  try {
    pk = await s.kem.deserializePublicKey(toArrayBuffer(publicKey));
  } catch (e) {
    throw new E2EError(`not a ${suiteName} public key: ${e.message}`);
  }
  const plaintext = requestPlaintext({
    id: id ?? hex(crypto.getRandomValues(new Uint8Array(16))),
    time: time ?? Math.floor(Date.now() / 1000),
    headers,
    body,
    session,
  });
  const params = { recipientPublicKey: pk, info: toArrayBuffer(info(method, path)) };
  if (ekm) params.ekm = toArrayBuffer(ekm);
  const sender = await s.createSenderContext(params);
  const ct = new Uint8Array(await sender.seal(toArrayBuffer(plaintext)));
  const enc = new Uint8Array(sender.enc);
  const envelope = new Uint8Array(5 + enc.length + ct.length);
  envelope[0] = VERSION;
  new DataView(envelope.buffer).setUint16(1, KEMS[suiteName].id);
  new DataView(envelope.buffer).setUint16(3, enc.length);
  envelope.set(enc, 5);
  envelope.set(ct, 5 + enc.length);
  const sealed = { envelope, opener: await Opener.fromContext(sender), plaintext };
  if (session) sealed.sessionKeys = await sessionKeys(sender);
  return sealed;
}

/**
 * sessionKeys exports a session's { id, secret } (16 and 32 bytes) from the HPKE
 * context of the version-1 request that asked for it, sender's or recipient's:
 * Export("cocoon-host e2e session id v1", 16), Export("cocoon-host e2e session secret v1", 32).
 */
export async function sessionKeys(ctx) {
  return {
    id: new Uint8Array(await ctx.export(utf8.encode("cocoon-host e2e session id v1"), SESSION_ID_BYTES)),
    secret: new Uint8Array(await ctx.export(utf8.encode("cocoon-host e2e session secret v1"), 32)),
  };
}

/**
 * sessionSeconds reads the session a host granted from an opened answer's head (a
 * Headers): the seconds until it expires, or 0 for none. E2E.md §8's grammar, as Go's
 * client reads it (both run web/e2e/testdata/grants.json): ASCII digits with no sign,
 * space or leading zero, above SESSION_MARGIN_SECONDS and at most
 * SESSION_LIFETIME_SECONDS; anything else grants nothing. Never call it on an answer's
 * outer headers: a relay can set those.
 */
export function sessionSeconds(sealedHeaders) {
  const v = sealedHeaders.get(SESSION_HEADER);
  const n = v !== null && /^[1-9][0-9]{0,3}$/.test(v) ? Number(v) : 0;
  return n > SESSION_MARGIN_SECONDS && n <= SESSION_LIFETIME_SECONDS ? n : 0;
}

/**
 * sessionDeriver returns E(label, L) of one session request (E2E.md's session
 * section): HKDF-SHA256 with salt rid and the session secret as input keying
 * material, info lp("cocoon-host e2e session request v1") || lp(method) || lp(path)
 * || lp(label). secret is the 32 bytes or a CryptoKey of them (HKDF, deriveBits).
 */
export async function sessionDeriver(secret, rid, method, path) {
  const key = secret instanceof Uint8Array ? await importSessionSecret(secret) : secret;
  const ctx = lp("cocoon-host e2e session request v1", method, path);
  return async (label, length) => new Uint8Array(await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: rid, info: concat([ctx, lp(label)]) }, key, length * 8));
}

// importSessionSecret makes the session secret a non-extractable WebCrypto key: the
// page's code can derive with it but never read it back.
function importSessionSecret(secret) {
  return crypto.subtle.importKey("raw", secret, "HKDF", false, ["deriveBits"]);
}

/**
 * Session is a session the host granted (E2E.md's session section): requests sealed
 * with it are version-2 envelopes, no KEM. It holds the session id, the secret as a
 * non-extractable key, and when the client stops using it (expiresAt, milliseconds
 * since the epoch: the host's expiry less SESSION_MARGIN_SECONDS).
 */
export class Session {
  #secret;

  constructor(id, secretKey, expiresAt) {
    this.id = id;
    this.#secret = secretKey;
    this.expiresAt = expiresAt;
    Object.freeze(this);
  }

  /**
   * create makes the session of sessionKeys ({ id, secret }) the host granted for
   * seconds (sessionSeconds) to a request sent at sentAt (ms since the epoch: before
   * the host made it, so the client's expiry is never later than the host's, whatever
   * the answer's delay). It returns null for a grant no longer than the margin.
   */
  static async create({ id, secret }, seconds, sentAt) {
    const expiresAt = sentAt + (seconds - SESSION_MARGIN_SECONDS) * 1000;
    if (expiresAt <= sentAt) return null;
    return new Session(id, await importSessionSecret(secret), expiresAt);
  }

  /** usable says whether a request sent at now (ms) may use the session. */
  usable(now = Date.now()) {
    return now < this.expiresAt;
  }

  /**
   * seal seals a request for method and path as a version-2 envelope and returns
   * { envelope, opener, plaintext }, as sealRequest does. The head's id is rid, 16
   * fresh random bytes (rid, 16 bytes, and time are for test vectors only). Cost: two
   * HKDF derivations and one AES-256-GCM pass for the request, two more derivations
   * for its answer's keys.
   */
  async seal(method, path, { headers, body, rid, time }) {
    rid ??= crypto.getRandomValues(new Uint8Array(RID_BYTES));
    if (rid.length !== RID_BYTES) throw new E2EError(`a session request's rid is ${RID_BYTES} bytes, not ${rid.length}`);
    const plaintext = requestPlaintext({ id: hex(rid), time: time ?? Math.floor(Date.now() / 1000), headers, body });
    const derive = await sessionDeriver(this.#secret, rid, method, path);
    const key = await crypto.subtle.importKey("raw", await derive("request key", 32), "AES-GCM", false, ["encrypt"]);
    const head = new Uint8Array(SESSION_HEADER_BYTES);
    head[0] = SESSION_VERSION;
    head.set(this.id, 1);
    head.set(rid, 1 + SESSION_ID_BYTES);
    const ct = new Uint8Array(await crypto.subtle.encrypt(
      { name: "AES-GCM", iv: await derive("request nonce", 12), additionalData: head }, key, plaintext));
    return { envelope: concat([head, ct]), opener: await Opener.fromExport(derive), plaintext };
  }
}

/**
 * Opener opens the answer to one request: records 0, 1, 2, ... under the AES-256-GCM
 * key and base nonce exported from the request's HPKE context (E2E.md §5), or derived
 * with the same labels from a session request's E(label, L).
 */
export class Opener {
  #key;
  #nonce;

  /** fromContext derives the answer's key and nonce from an HPKE context (sender or recipient). */
  static fromContext(ctx) {
    return Opener.fromExport(async (label, length) => new Uint8Array(await ctx.export(utf8.encode(label), length)));
  }

  /**
   * fromExport derives the answer's key and nonce with exp(label, length), a
   * promise of bytes: an HPKE context's Export or a session request's E.
   */
  static async fromExport(exp) {
    const o = new Opener();
    const key = await exp("cocoon-host e2e response key v1", 32);
    o.#nonce = await exp("cocoon-host e2e response nonce v1", 12);
    o.#key = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["decrypt"]);
    return o;
  }

  /**
   * openRecord opens record seq of an answer of status; final says whether it is the
   * last. It throws E2EError for a record that does not open: altered, reordered,
   * from another answer, or with another status or final flag.
   */
  async openRecord(seq, status, final, ct) {
    const nonce = this.#nonce.slice();
    const s = new DataView(new ArrayBuffer(8));
    s.setBigUint64(0, BigInt(seq));
    for (let i = 0; i < 8; i++) nonce[4 + i] ^= s.getUint8(i);
    const aad = new Uint8Array([status >> 8, status & 0xff, final ? 1 : 0]);
    try {
      return new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv: nonce, additionalData: aad }, this.#key, ct));
    } catch {
      throw new E2EError(`record ${seq} of the answer does not open with this request's key: altered, reordered, dropped or not this request's`);
    }
  }

  /** openBody opens a whole answer of status (one final record): { headers, body }. */
  async openBody(status, sealed) {
    return splitAnswer(await this.openRecord(0, status, true, sealed));
  }

  /**
   * openStream reads a sealed stream (200, text/event-stream) from chunks, an async
   * iterable of Uint8Array (a fetch body), opening each record in order. It yields
   * { headers } once the head is complete, then { bytes } of the inner stream as each
   * record opens. It throws E2EError at a record that does not open or is not framed
   * as E2E.md §5 says, at bytes after the final record, and at an end without one.
   * maxRecord bounds one record's base64.
   */
  async *openStream(chunks, maxRecord = 16 << 20) {
    let seq = 0;
    let head = new Uint8Array(0);
    let headDone = false;
    let ended = false;
    // sseEvents reads on after the final record, to fail on bytes after it.
    for await (const record of sseEvents(chunks, maxRecord)) {
      const plain = await this.openRecord(seq, 200, record.final, decodeBase64Strict(record.data, seq));
      seq++;
      let bytes = plain;
      if (!headDone) {
        head = concat([head, plain]);
        bytes = new Uint8Array(0);
        if (head.length >= 4) {
          const n = new DataView(head.buffer, head.byteOffset).getUint32(0);
          if (n > MAX_HEAD) throw new E2EError(`the answer's head of ${n} bytes is over ${MAX_HEAD}`);
          if (head.length >= 4 + n) {
            const { headers, body } = splitAnswer(head);
            headDone = true;
            yield { headers };
            bytes = body;
          }
        }
      }
      if (bytes.length > 0) yield { bytes };
      if (record.final) {
        if (!headDone) throw new E2EError("the answer ended inside its head");
        ended = true;
      }
    }
    if (!ended) throw new E2EError(`the answer ends after record ${seq} without its final record: truncated`);
  }
}

// sseEvents yields the sealed records of a stream: { data, final }, one per event,
// "data: <b64>\n\n" or "event: final\ndata: <b64>\n\n", exactly (E2E.md §5). After the
// final record it reads on and fails if any byte follows.
async function* sseEvents(chunks, maxRecord) {
  const dec = new TextDecoder("utf-8", { fatal: true });
  let buf = "";
  let final = false;
  let seq = 0;
  let scanned = 0; // buf holds no "\n\n" before this index
  const limit = maxRecord + 64;
  for await (const chunk of chunks) {
    if (final) {
      if (chunk.length > 0) throw new E2EError("bytes follow the final record");
      continue;
    }
    try {
      buf += dec.decode(chunk, { stream: true });
    } catch {
      throw new E2EError(`record ${seq} is not text`);
    }
    for (;;) {
      const end = buf.indexOf("\n\n", scanned);
      if (end < 0) {
        if (buf.length > limit) throw new E2EError(`record ${seq} is over the limit of ${maxRecord} bytes`);
        scanned = Math.max(0, buf.length - 1); // a record arrives in many chunks: scan each byte once
        break;
      }
      const event = buf.slice(0, end);
      buf = buf.slice(end + 2);
      scanned = 0;
      let data;
      if (event.startsWith("data: ") && !event.includes("\n")) {
        data = event.slice(6);
      } else if (event.startsWith("event: final\ndata: ") && event.indexOf("\n", 13) < 0) {
        data = event.slice(19);
        final = true;
      } else {
        throw new E2EError(`record ${seq} is not a sealed record event`);
      }
      if (data.length === 0) throw new E2EError(`record ${seq} is empty`);
      if (data.length > maxRecord) throw new E2EError(`record ${seq} is over the limit of ${maxRecord} bytes`);
      yield { data, final };
      seq++;
      if (final) {
        if (buf.length > 0) throw new E2EError("bytes follow the final record");
        break;
      }
    }
  }
  if (buf.length > 0) throw new E2EError(`the answer ends inside record ${seq}: truncated`);
}

// An answer head's header names are HTTP tokens, its values visible ASCII with spaces
// and tabs inside, none first or last (E2E.md §5): what Headers holds as sealed, where
// it would trim, refuse or merge anything else, and what Go's client accepts.
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const HEADER_VALUE = /^(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?$/;

// splitAnswer splits an answer's plaintext into its head {"headers":{...}} (string
// values only, no other member, each name once and each name and value as HEADER_NAME
// and HEADER_VALUE) and its body.
function splitAnswer(p) {
  if (p.length < 4) throw new E2EError(`the answer's plaintext of ${p.length} bytes has no head`);
  const n = new DataView(p.buffer, p.byteOffset).getUint32(0);
  if (n > MAX_HEAD || n > p.length - 4) throw new E2EError(`the answer's head of ${n} bytes is over ${MAX_HEAD} or past the plaintext`);
  let head;
  try {
    head = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(p.subarray(4, 4 + n)));
  } catch {
    head = null;
  }
  const ok = head && typeof head === "object" && !Array.isArray(head) && Object.keys(head).join() === "headers" &&
    head.headers && typeof head.headers === "object" && !Array.isArray(head.headers) &&
    Object.values(head.headers).every((v) => typeof v === "string");
  if (!ok) throw new E2EError("the answer's head is not the JSON object of version 1");
  const headers = new Headers();
  for (const [name, value] of Object.entries(head.headers)) {
    if (!HEADER_NAME.test(name) || !HEADER_VALUE.test(value) || headers.has(name)) {
      throw new E2EError(`the answer's head holds header ${JSON.stringify(name)} twice or not as HTTP carries it`);
    }
    headers.set(name, value);
  }
  return { headers, body: p.slice(4 + n) };
}

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

// decodeBase64Strict decodes standard base64 with padding, in its one canonical
// spelling (as Go's base64.StdEncoding.Strict()): anything else is not a record.
function decodeBase64Strict(s, seq) {
  if (!B64.test(s)) throw new E2EError(`record ${seq} is not base64`);
  const b = base64Decode(s);
  if (base64Encode(b) !== s) throw new E2EError(`record ${seq} is not base64 in its canonical form`);
  return b;
}

/** base64Encode is standard base64 with padding. */
export function base64Encode(b) {
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
  return btoa(s);
}

/** base64Decode decodes standard base64; it throws for what is not. */
export function base64Decode(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** hex is the lowercase hex of bytes. */
export function hex(b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** concat returns the bytes of parts, an array of Uint8Array, one after the other. */
export function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// toArrayBuffer returns an ArrayBuffer holding exactly b's bytes, which @hpke/core takes.
function toArrayBuffer(b) {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
}
