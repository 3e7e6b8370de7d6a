;; Red team on pooled memory: can one module read what another wrote? With config "P"
;; (painter) cocoon_chunk grows the memory by 64 pages, fills all of it with 0xa5 and
;; returns "pp" (for the next module of its pipeline to run); otherwise (spy) it grows by 64 pages and counts the bytes that are not zero from
;; 2048 to the end of its memory (its input is at 1024), and returns the count as 4
;; bytes at 0. A table.set it never runs keeps it from being snapshot, so its memories
;; come from the warm pool that every such module's memories go back to
;; (memory.go): a spy must count 0 however many painters ran before it, beside it,
;; or in the same request (snapshot_test.go, TestPooledMemoryIsolation).
(module
  (import "cocoon" "config" (func $config (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (func (export "cocoon_abi_v1"))
  (func $never (table.set $t (i32.const 0) (ref.null func)))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cocoon_chunk") (param i32 i32) (result i64)
    (local $p i32) (local $end i32) (local $count i32)
    (drop (call $config (i32.const 0) (i32.const 1)))
    (if (i32.eq (memory.grow (i32.const 64)) (i32.const -1)) (then unreachable))
    (local.set $end (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.eq (i32.load8_u (i32.const 0)) (i32.const 80)) ;; P
      (then
        (memory.fill (i32.const 0) (i32.const 0xa5) (local.get $end))
        (i32.store16 (i32.const 0) (i32.const 0x7070)) ;; "pp"
        (return (i64.const 2))))
    (local.set $p (i32.const 2048))
    (loop $scan
      (if (i64.ne (i64.load (local.get $p)) (i64.const 0))
        (then (local.set $count (i32.add (local.get $count) (i32.const 1)))))
      (local.set $p (i32.add (local.get $p) (i32.const 8)))
      (br_if $scan (i32.lt_u (local.get $p) (local.get $end))))
    (i32.store (i32.const 0) (local.get $count))
    (i64.const 4))
  (func (export "cocoon_end") (result i64) (i64.const 0)))
