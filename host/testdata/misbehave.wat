;; A module that misbehaves on demand, for the sandbox's tests. The first byte of its
;; config picks what cocoon_pre, cocoon_alloc and cocoon_chunk do; with no config it
;; echoes. Written against SPEC.md directly, without an SDK.
;;
;; cocoon_pre:  L infinite loop      M memory bomb (grow until refused, then trap)
;;              R deep recursion     H huge output (2 MiB)     O output outside memory
;;              T unreachable        Z divide by zero          X proc_exit(3)
;;              S cocoon.log spam    P stdout spam (fd_write)  r reject 403
;;              B reject with 200    E return -1               J return "not json"
;;              G log "pre ran" and echo (other modes echo too)
;; cocoon_alloc: A returns 0         W returns a pointer past the end of memory
;; cocoon_chunk: D returns realtime clock (8 bytes), monotonic clock (8), random (16)
;;               C returns "<n>:<previous chunk>", n = chunks seen by this instance,
;;                 and keeps this chunk: it tries to carry data to the next request
;; cocoon_end returns nothing.
(module
  (import "cocoon" "log" (func $log (param i32 i32 i32)))
  (import "cocoon" "reject" (func $reject (param i32 i32 i32)))
  (import "cocoon" "config" (func $config (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 8192))
  (global $chunks (mut i32) (i32.const 0))
  (data (i32.const 64) "blocked by policy")                        ;; 17 bytes
  (data (i32.const 96) "spam spam spam spam spam spam spam spam ") ;; 40 bytes
  (data (i32.const 160) "not json")                                ;; 8 bytes
  (data (i32.const 176) "pre ran")                                 ;; 7 bytes
  ;; an iovec for fd_write at 240: {ptr 96, len 40}
  (data (i32.const 240) "\60\00\00\00\28\00\00\00")

  (func (export "cocoon_abi_v1"))

  (func $mode (result i32)
    (drop (call $config (i32.const 0) (i32.const 1)))
    (i32.load8_u (i32.const 0)))

  (func $result (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len))))

  (func (export "cocoon_alloc") (param $size i32) (result i32)
    (local $ptr i32)
    (if (i32.eq (call $mode) (i32.const 65)) (then (return (i32.const 0))))          ;; A
    (if (i32.eq (call $mode) (i32.const 87)) (then (return (i32.const 0xfffffff0)))) ;; W
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (local.get $size) (i32.const 16)) (i32.const 1)))
                        (i32.const -1))
              (then (return (i32.const 0))))))
    (local.get $ptr))

  (func $recurse (param $n i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get $n) (i32.const 1))) (i32.const 1)))

  (func (export "cocoon_pre") (param $ptr i32) (param $len i32) (result i64)
    (local $m i32)
    (local.set $m (call $mode))
    (if (i32.eq (local.get $m) (i32.const 76)) (then (loop $forever (br $forever))))     ;; L
    (if (i32.eq (local.get $m) (i32.const 77)) (then                                    ;; M
      (block $refused (loop $grow
        (br_if $refused (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
        (br $grow)))
      (unreachable)))
    (if (i32.eq (local.get $m) (i32.const 82)) (then (drop (call $recurse (i32.const 0))))) ;; R
    (if (i32.eq (local.get $m) (i32.const 72)) (then                                    ;; H
      (drop (memory.grow (i32.const 32)))
      (return (call $result (i32.const 0) (i32.const 2097152)))))
    (if (i32.eq (local.get $m) (i32.const 79))                                          ;; O
      (then (return (call $result (i32.const 65000) (i32.const 1000)))))
    (if (i32.eq (local.get $m) (i32.const 84)) (then (unreachable)))                    ;; T
    (if (i32.eq (local.get $m) (i32.const 90))                                          ;; Z
      (then (drop (i32.div_u (local.get $len) (i32.sub (local.get $m) (i32.const 90))))))
    (if (i32.eq (local.get $m) (i32.const 88)) (then (call $exit (i32.const 3))))      ;; X
    (if (i32.eq (local.get $m) (i32.const 83)) (then                                    ;; S
      (loop $spam (call $log (i32.const 1) (i32.const 96) (i32.const 40)) (br $spam))))
    (if (i32.eq (local.get $m) (i32.const 80)) (then                                    ;; P
      (loop $print
        (drop (call $fd_write (i32.const 1) (i32.const 240) (i32.const 1) (i32.const 248)))
        (br $print))))
    (if (i32.eq (local.get $m) (i32.const 114)) (then                                   ;; r
      (call $reject (i32.const 403) (i32.const 64) (i32.const 17))
      (return (i64.const -1))))
    (if (i32.eq (local.get $m) (i32.const 66)) (then                                    ;; B
      (call $reject (i32.const 200) (i32.const 64) (i32.const 17))
      (return (i64.const -1))))
    (if (i32.eq (local.get $m) (i32.const 69)) (then (return (i64.const -1))))         ;; E
    (if (i32.eq (local.get $m) (i32.const 74))                                          ;; J
      (then (return (call $result (i32.const 160) (i32.const 8)))))
    (if (i32.eq (local.get $m) (i32.const 71))                                          ;; G
      (then (call $log (i32.const 1) (i32.const 176) (i32.const 7))))
    (call $result (local.get $ptr) (local.get $len)))

  ;; Memory for chunk mode C: 1020 previous length, 1024.. previous chunk (max 1024),
  ;; 3072.. output.
  (func (export "cocoon_chunk") (param $ptr i32) (param $len i32) (result i64)
    (local $m i32) (local $prev i32)
    (local.set $m (call $mode))
    (if (i32.eq (local.get $m) (i32.const 68)) (then                                   ;; D
      (drop (call $clock (i32.const 0) (i64.const 1) (i32.const 200)))
      (drop (call $clock (i32.const 1) (i64.const 1) (i32.const 208)))
      (drop (call $random (i32.const 216) (i32.const 16)))
      (return (call $result (i32.const 200) (i32.const 32)))))
    (if (i32.eq (local.get $m) (i32.const 67)) (then                                   ;; C
      (global.set $chunks (i32.add (global.get $chunks) (i32.const 1)))
      (local.set $prev (i32.load (i32.const 1020)))
      (i32.store8 (i32.const 3072) (i32.add (i32.const 48) (global.get $chunks)))
      (i32.store8 (i32.const 3073) (i32.const 58))
      (memory.copy (i32.const 3074) (i32.const 1024) (local.get $prev))
      (if (i32.gt_u (local.get $len) (i32.const 1024)) (then (local.set $len (i32.const 1024))))
      (memory.copy (i32.const 1024) (local.get $ptr) (local.get $len))
      (i32.store (i32.const 1020) (local.get $len))
      (return (call $result (i32.const 3072) (i32.add (local.get $prev) (i32.const 2))))))
    (call $result (local.get $ptr) (local.get $len)))

  (func (export "cocoon_end") (result i64) (i64.const 0)))
