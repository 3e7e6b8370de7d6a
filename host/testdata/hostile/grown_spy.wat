;; Red team on snapshots: the snapshot's pages, and pages grown past it, from one
;; request to the next of the same module. Its snapshot is 3 pages (over the 128 KiB
;; that are reset by a copy, so the written pages are found in the page map). The
;; first byte of a chunk says what to do: "P" grows the memory by 64 pages and paints
;; all of it, the data segment included, with 0xa5; "Q" paints it without growing
;; (the instance is then kept, and reset, for the next request); both return "pp".
;; "G" grows by 64 pages and spies, anything else spies without growing: a spy returns
;; the number of 8-byte words not zero from 2048 to the end of memory (4 bytes) and
;; the data segment's 16 bytes, which must read "initial content.". No spy may see
;; what a painter did (snapshot_test.go, TestPooledMemoryIsolation).
(module
  (memory (export "memory") 3)
  (data (i32.const 1024) "initial content.")
  (func (export "cocoon_abi_v1"))
  (func (export "_initialize"))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 512))
  (func (export "cocoon_chunk") (param $ptr i32) (param $len i32) (result i64)
    (local $op i32) (local $p i32) (local $end i32) (local $count i32)
    (local.set $op (i32.load8_u (local.get $ptr)))
    (if (i32.or (i32.eq (local.get $op) (i32.const 80)) (i32.eq (local.get $op) (i32.const 71))) ;; P, G
      (then (if (i32.eq (memory.grow (i32.const 64)) (i32.const -1)) (then unreachable))))
    (local.set $end (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.or (i32.eq (local.get $op) (i32.const 80)) (i32.eq (local.get $op) (i32.const 81))) ;; P, Q
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
    (memory.copy (i32.const 4) (i32.const 1024) (i32.const 16))
    (i64.const 20))
  (func (export "cocoon_end") (result i64) (i64.const 0)))
