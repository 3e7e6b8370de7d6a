;; A stream module that answers every chunk with 1 MiB: within its output limit per
;; call, but a module's output over one request is bounded too (16 MiB), so the 17th
;; chunk fails with output_too_large.
(module
  (memory (export "memory") 17)
  (func (export "cocoon_abi_v1"))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 0x100000))
  (func (export "cocoon_chunk") (param i32 i32) (result i64) (i64.const 0x100000))
  (func (export "cocoon_end") (result i64) (i64.const 0)))
