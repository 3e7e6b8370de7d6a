;; Red team on snapshots: segments dropped in initialization, used per request. Its
;; _initialize drops the passive data segment when the config is "d", the passive
;; element segment when it is "e". cocoon_chunk copies the data segment into memory
;; with memory.init and the element segment into the table with table.init, and
;; returns the 8 bytes it copied: "secret!!" when nothing was dropped; a trap at the
;; instruction that uses the dropped segment otherwise, in every request, as in a fresh
;; instance (snapshot_test.go, TestSnapshotFallsBack).
(module
  (import "cocoon" "config" (func $config (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (table $t 2 funcref)
  (func $f)
  (elem $e func $f)
  (data $d "secret!!")
  (func (export "cocoon_abi_v1"))
  (func (export "_initialize")
    (drop (call $config (i32.const 0) (i32.const 1)))
    (if (i32.eq (i32.load8_u (i32.const 0)) (i32.const 100)) (then (data.drop $d))) ;; d
    (if (i32.eq (i32.load8_u (i32.const 0)) (i32.const 101)) (then (elem.drop $e)))) ;; e
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cocoon_chunk") (param i32 i32) (result i64)
    (memory.init $d (i32.const 16) (i32.const 0) (i32.const 8))
    (table.init $t $e (i32.const 0) (i32.const 0) (i32.const 1))
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 8)))
  (func (export "cocoon_end") (result i64) (i64.const 0)))
