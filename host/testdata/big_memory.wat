;; Starts with 100 pages (6.25 MiB) of memory: a pipeline that limits it to less is refused.
(module
  (memory (export "memory") 100)
  (func (export "cocoon_abi_v1"))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cocoon_pre") (param i32 i32) (result i64) (i64.const 0)))
