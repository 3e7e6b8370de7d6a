// Re-export this file from a module's entry file to implement cocoon_chunk and
// cocoon_end:
//
//   export * from "@cocoonhost/as-sdk/stream";
//
// and register the handlers with onStream. It also exports the ABI marker and
// cocoon_alloc.
import { runChunk, runEnd } from "./hooks";
export { cocoon_abi_v1, cocoon_alloc } from "./guest";

export function cocoon_chunk(ptr: usize, len: usize): i64 {
  return runChunk(ptr, len);
}

export function cocoon_end(): i64 {
  return runEnd();
}
