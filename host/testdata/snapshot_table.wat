;; A module whose code can change a table (table.set), so its state after
;; initialization is not memory and globals alone: the host initializes it per request
;; (snapshot_test.go). Its initialization sets $count to 7; cocoon_chunk returns $count
;; (4 bytes) and adds 1 to it.
(module
  (memory (export "memory") 1)
  (table 1 funcref)
  (global $count (mut i32) (i32.const 0))
  (func (export "cocoon_abi_v1"))
  (func (export "_initialize")
    (table.set 0 (i32.const 0) (ref.null func))
    (global.set $count (i32.const 7)))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cocoon_chunk") (param i32 i32) (result i64)
    (i32.store (i32.const 2048) (global.get $count))
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (i64.or (i64.shl (i64.const 2048) (i64.const 32)) (i64.const 4)))
  (func (export "cocoon_end") (result i64) (i64.const 0)))
