;; cocoon.reject with a message of 256 MiB: the host cuts messages at 1 KiB, and must do
;; so without first copying the whole message into a string.
(module
  (import "cocoon" "reject" (func $reject (param i32 i32 i32)))
  (memory (export "memory") 1)
  (func (export "cocoon_abi_v1"))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cocoon_pre") (param i32 i32) (result i64)
    (if (i32.eq (memory.grow (i32.const 4095)) (i32.const -1)) (then (unreachable)))
    (memory.fill (i32.const 0) (i32.const 65) (i32.const 0x10000000))
    (call $reject (i32.const 403) (i32.const 0) (i32.const 0x10000000))
    (i64.const -1)))
