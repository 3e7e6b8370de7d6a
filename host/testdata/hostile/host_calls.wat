;; Loops of cheap host calls, each of which did nothing the time limit could see. The
;; first byte of the config picks the call: c cocoon.config(0, 0), w clock_time_get,
;; l an empty cocoon.log record, p an empty write to stdout.
(module
  (import "cocoon" "config" (func $config (param i32 i32) (result i32)))
  (import "cocoon" "log" (func $log (param i32 i32 i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "cocoon_abi_v1"))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cocoon_pre") (param i32 i32) (result i64)
    (local $mode i32)
    (drop (call $config (i32.const 0) (i32.const 1)))
    (local.set $mode (i32.load8_u (i32.const 0)))
    (loop $forever
      (if (i32.eq (local.get $mode) (i32.const 99)) ;; c
        (then (drop (call $config (i32.const 0) (i32.const 0)))))
      (if (i32.eq (local.get $mode) (i32.const 119)) ;; w
        (then (drop (call $clock (i32.const 1) (i64.const 0) (i32.const 8)))))
      (if (i32.eq (local.get $mode) (i32.const 108)) ;; l
        (then (call $log (i32.const 1) (i32.const 0) (i32.const 0))))
      (if (i32.eq (local.get $mode) (i32.const 112)) ;; p: an iovec {16, 0} at 16
        (then (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32)))))
      (br $forever))
    (i64.const 0)))
