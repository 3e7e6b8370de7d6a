// The Go verifier compiled to WebAssembly (web/page/verifier/wasm), loaded once per page:
// evidence verification, answer signatures, receipts, request signing and the escrow's
// deposit are the Go code `cocoon` runs, not a second implementation in JavaScript.

let loading = null;

/**
 * loadVerifier loads the verifier from base (a URL ending in "/", such as
 * "https://host/page/"): Go's wasm_exec.js (unless globalThis.Go is already defined,
 * as a Node program may do by importing it from GOROOT), then verifier.wasm, which it
 * starts. Later calls return the first call's promise; a failed load may be retried.
 * Cost: one fetch of the verifier (about 4 MB gzipped) and its compilation, once.
 */
export function loadVerifier(base, fetchFn) {
  if (!loading) {
    loading = load(base, fetchFn).catch((e) => {
      loading = null;
      throw e;
    });
  }
  return loading;
}

async function load(base, fetchFn) {
  if (typeof globalThis.cocoonCheckAnswer === "function") return;
  if (typeof globalThis.Go !== "function") await import(/* a classic script that defines globalThis.Go */ base + "wasm_exec.js");
  const resp = await fetchFn(base + "verifier.wasm");
  if (!resp.ok) throw new Error(`GET ${base}verifier.wasm: ${resp.status} ${resp.statusText}`);
  const go = new globalThis.Go();
  const { instance } = await WebAssembly.instantiate(await resp.arrayBuffer(), go.importObject);
  go.run(instance); // runs main until it waits for calls: the functions are defined on return
  if (typeof globalThis.cocoonCheckAnswer !== "function") {
    throw new Error(`${base}verifier.wasm is not a verifier this library speaks to (no cocoonCheckAnswer): an older host?`);
  }
}

/** call runs the verifier's function name and returns its JSON result, parsed. */
export function call(name, ...args) {
  return JSON.parse(globalThis[name](...args));
}
