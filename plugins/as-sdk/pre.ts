// Re-export this file from a module's entry file to implement cocoon_pre:
//
//   export * from "@cocoonhost/as-sdk/pre";
//
// and register the handler with onPre. It also exports the ABI marker and cocoon_alloc.
import { runPre } from "./hooks";
export { cocoon_abi_v1, cocoon_alloc } from "./guest";

export function cocoon_pre(ptr: usize, len: usize): i64 {
  return runPre(ptr, len);
}
