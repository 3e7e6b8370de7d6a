;; Red team on snapshots: initialization whose outcome depends on the request. The
;; memory a growth in _initialize gets is refused when the request's other instances
;; hold nearly all of its 512 MiB (SPEC.md §7.2), and this module keeps what its growth
;; of 16 pages returned. Its cocoon_chunk then grows its memory a page at a time until
;; refused (so that it holds what its limit allows) and returns those 4 bytes: -1 when
;; the growth in initialization was refused, the old size (1) otherwise. A host that
;; starts the instance from a snapshot taken in a request of its own must still show
;; it the -1 a fresh initialization sees (snapshot_test.go, TestSnapshotSeesRequestMemory).
(module
  (memory (export "memory") 1)
  (global $initGrow (mut i32) (i32.const 0))
  (func (export "cocoon_abi_v1"))
  (func (export "_initialize")
    (global.set $initGrow (memory.grow (i32.const 16))))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cocoon_chunk") (param i32 i32) (result i64)
    (loop $grow
      (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    (i32.store (i32.const 0) (global.get $initGrow))
    (i64.const 4)) ;; 4 bytes at 0
  (func (export "cocoon_end") (result i64) (i64.const 0)))
