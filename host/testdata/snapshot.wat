;; A module whose initialization leaves state in every place a snapshot must capture,
;; and whose hook reports that state and then overwrites it, as a module trying to
;; carry data from one request to the next would (snapshot_test.go).
;;
;; Initialization: the start function grows memory from 2 pages to 4, writes
;; "heap by init...." at 196608 (a page that did not exist before), keeps the realtime
;; clock in $clock and 16 random bytes at 256, sets $count to 1 and logs
;; "initialized"; then _initialize adds 1 to $count, unless the config's first byte is
;; T, when it traps.
;;
;; cocoon_chunk returns 88 bytes: the data segment's 16 bytes at 1024, the 16 bytes at
;; 196608, $clock (8), $count (4), memory.size in pages (4), the 16 random bytes at
;; 256, a clock reading now (8) and 16 random bytes now; then it overwrites the bytes
;; at 1024, 196608 and 256 with X, sets $clock to -1 and adds 100 to $count.
(module
  (import "cocoon" "log" (func $log (param i32 i32 i32)))
  (import "cocoon" "config" (func $config (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 8192))
  (global $clock (mut i64) (i64.const 0))
  (global $count (mut i32) (i32.const 0))
  (data (i32.const 1024) "data segment....")
  (data (i32.const 1100) "initialized")
  (data (i32.const 1120) "heap by init....")

  (func (export "cocoon_abi_v1"))

  (func $start
    (drop (memory.grow (i32.const 2)))
    (memory.copy (i32.const 196608) (i32.const 1120) (i32.const 16))
    (drop (call $clock_get (i32.const 0) (i64.const 1) (i32.const 512)))
    (global.set $clock (i64.load (i32.const 512)))
    (drop (call $random (i32.const 256) (i32.const 16)))
    (global.set $count (i32.const 1))
    (call $log (i32.const 1) (i32.const 1100) (i32.const 11)))
  (start $start)

  (func (export "_initialize")
    (drop (call $config (i32.const 0) (i32.const 1)))
    (if (i32.eq (i32.load8_u (i32.const 0)) (i32.const 84)) (then unreachable)) ;; T
    (global.set $count (i32.add (global.get $count) (i32.const 1))))

  (func (export "cocoon_alloc") (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $ptr))

  (func (export "cocoon_chunk") (param $ptr i32) (param $len i32) (result i64)
    (memory.copy (i32.const 4096) (i32.const 1024) (i32.const 16))
    (memory.copy (i32.const 4112) (i32.const 196608) (i32.const 16))
    (i64.store (i32.const 4128) (global.get $clock))
    (i32.store (i32.const 4136) (global.get $count))
    (i32.store (i32.const 4140) (memory.size))
    (memory.copy (i32.const 4144) (i32.const 256) (i32.const 16))
    (drop (call $clock_get (i32.const 0) (i64.const 1) (i32.const 4160)))
    (drop (call $random (i32.const 4168) (i32.const 16)))
    (memory.fill (i32.const 1024) (i32.const 88) (i32.const 16))
    (memory.fill (i32.const 196608) (i32.const 88) (i32.const 16))
    (memory.fill (i32.const 256) (i32.const 88) (i32.const 16))
    (global.set $clock (i64.const -1))
    (global.set $count (i32.add (global.get $count) (i32.const 100)))
    (i64.or (i64.shl (i64.const 4096) (i64.const 32)) (i64.const 88)))

  (func (export "cocoon_end") (result i64) (i64.const 0)))
