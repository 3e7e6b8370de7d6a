// The Go verifier compiled to WebAssembly (web/page/verifier/wasm), loaded once per page:
// evidence verification, answer signatures, receipts, request signing and the escrow's
// deposit are the Go code `cocoon` runs, not a second implementation in JavaScript.

let loading = null;
let digest = null; // the loaded verifier's sha256, hex

/**
 * loadVerifier loads the verifier from base (a URL ending in "/", such as
 * "https://host/sdk/"): Go's wasm_exec.js (unless globalThis.Go is already defined,
 * as a Node program may do by importing it from GOROOT), then verifier.wasm, which it
 * starts, once per page: later calls wait for the first one's load (a failed load is
 * tried again). With sha256 (hex) the verifier loaded must have that digest, or it
 * throws. Cost: one fetch of the verifier (about 4 MB gzipped), its sha256 and its
 * compilation, once.
 */
export async function loadVerifier(base, fetchFn, sha256) {
  if (!loading) {
    loading = load(base, fetchFn).catch((e) => {
      loading = null;
      throw e;
    });
  }
  await loading;
  if (sha256 && digest !== sha256.toLowerCase()) {
    throw new Error(`the verifier loaded has sha256 ${digest}, not the pinned ${sha256}`);
  }
}

async function load(base, fetchFn) {
  if (typeof globalThis.Go !== "function") await import(/* a classic script that defines globalThis.Go */ base + "wasm_exec.js");
  const resp = await fetchFn(base + "verifier.wasm");
  if (!resp.ok) throw new Error(`GET ${base}verifier.wasm: ${resp.status} ${resp.statusText}`);
  const wasm = await resp.arrayBuffer();
  digest = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", wasm)), (b) => b.toString(16).padStart(2, "0")).join("");
  const go = new globalThis.Go();
  const { instance } = await WebAssembly.instantiate(wasm, go.importObject);
  go.run(instance); // runs main until it waits for calls: the functions are defined on return
  if (typeof globalThis.cocoonCheckAnswer !== "function") {
    throw new Error(`${base}verifier.wasm is not a verifier this library speaks to (no cocoonCheckAnswer): an older host?`);
  }
}

/** call runs the verifier's function name and returns its JSON result, parsed. */
export function call(name, ...args) {
  return JSON.parse(globalThis[name](...args));
}
