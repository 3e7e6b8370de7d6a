;; Rejects from _initialize, before any hook runs: SPEC.md §4 allows host calls there.
(module
  (import "cocoon" "reject" (func $reject (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "closed for maintenance")
  (func (export "cocoon_abi_v1"))
  (func (export "_initialize") (call $reject (i32.const 429) (i32.const 16) (i32.const 22)))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cocoon_pre") (param i32 i32) (result i64) (i64.const 0)))
