;; A stream module that burns time on every chunk, under its time limit per call: the
;; first 4 bytes of its config are the loop iterations per chunk (little-endian). Its
;; chunks could hold a generation slot for minutes; a request's modules share 10 s of
;; module time, after which the request fails with timeout.
(module
  (import "cocoon" "config" (func $config (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "cocoon_abi_v1"))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cocoon_chunk") (param $ptr i32) (param $len i32) (result i64)
    (local $n i32)
    (drop (call $config (i32.const 0) (i32.const 4)))
    (local.set $n (i32.load (i32.const 0)))
    (loop $burn
      (br_if $burn (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len))))
  (func (export "cocoon_end") (result i64) (i64.const 0)))
