// Re-export this file from a module's entry file to implement cocoon_post:
//
//   export * from "@cocoonhost/as-sdk/post";
//
// and register the handler with onPost. It also exports the ABI marker and cocoon_alloc.
import { runPost } from "./hooks";
export { cocoon_abi_v1, cocoon_alloc } from "./guest";

export function cocoon_post(ptr: usize, len: usize): i64 {
  return runPost(ptr, len);
}
