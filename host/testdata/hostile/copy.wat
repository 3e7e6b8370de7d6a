;; Issue 10, attack 1: a loop around memory.copy of 32 MiB, in a module within every
;; default limit. Before bulk operations were charged by the bytes they touch, a 250 ms
;; limit answered 504 only after 29-38 s.
(module
  (memory (export "memory") 1024)
  (func (export "cocoon_abi_v1"))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cocoon_pre") (param i32 i32) (result i64)
    (loop $forever
      (memory.copy (i32.const 0) (i32.const 0x2000000) (i32.const 0x2000000))
      (br $forever))
    (i64.const 0)))
