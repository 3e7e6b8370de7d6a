// The client's cost of sealing one chat request with the browser client library as
// built (web/browser/dist/cocoon.js), per suite: a version-1 envelope (one KEM, as
// every request without sessions, and the first of a session) against a session
// envelope (version 2: HKDF and AES-GCM only), with the answer's keys derived in both.
// Rounds interleave the cases, so that a load on the machine weighs on each alike; it
// prints each case's median time per request and its ratio to the session envelope's.
// A measurement to print, not a test: `npm run bench --prefix web/e2e/js`.
import { readFileSync } from "node:fs";

globalThis.crypto ??= (await import("node:crypto")).webcrypto;
const { e2e } = await import(new URL("../../browser/dist/cocoon.js", import.meta.url));

const vectors = JSON.parse(readFileSync(new URL("../testdata/vectors.json", import.meta.url), "utf8"));
const hex = (s) => Uint8Array.from(s.match(/../g) ?? [], (b) => parseInt(b, 16));
const ROUNDS = Number(process.env.ROUNDS ?? 15);
const PER_ROUND = Number(process.env.PER_ROUND ?? 20);

const cases = [];
for (const v of vectors.suites) {
  const request = { headers: v.request_headers, body: new TextEncoder().encode(v.request_body) };
  const pub = hex(v.public_key);
  const session = await e2e.Session.create({ id: hex(v.session.session_id), secret: hex(v.session.session_secret) }, 3600, Date.now());
  cases.push({
    suite: v.suite,
    v1: () => e2e.sealRequest(v.suite, pub, v.method, v.path, { ...request, session: true }),
    v2: () => session.seal(v.method, v.path, request),
    times: { v1: [], v2: [] },
  });
}

for (let round = -1; round < ROUNDS; round++) {
  for (const c of cases) {
    for (const kind of ["v1", "v2"]) {
      const t0 = performance.now();
      for (let i = 0; i < PER_ROUND; i++) await c[kind]();
      if (round >= 0) c.times[kind].push(((performance.now() - t0) * 1000) / PER_ROUND); // round -1 warms up
    }
  }
}
const median = (xs) => xs.slice().sort((a, b) => a - b)[xs.length >> 1];
console.log(`node ${process.version}, ${ROUNDS} rounds of ${PER_ROUND} requests per case, median per request:`);
for (const c of cases) {
  const v1 = median(c.times.v1);
  const v2 = median(c.times.v2);
  console.log(`  ${c.suite.padEnd(15)} version 1 (KEM) ${v1.toFixed(0).padStart(6)} us, session envelope ${v2.toFixed(0).padStart(5)} us: x${(v1 / v2).toFixed(1)}`);
}
