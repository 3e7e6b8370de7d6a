;; Declares ABI v2, which this host does not support.
(module
  (memory (export "memory") 1)
  (func (export "cocoon_abi_v2"))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cocoon_pre") (param i32 i32) (result i64) (i64.const 0)))
