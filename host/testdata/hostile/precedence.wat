;; A call that goes wrong in two ways at once, to check SPEC.md §9.1's order. The first
;; byte of the config picks the pair:
;;   r  cocoon.reject(403), then unreachable          -> rejected
;;   l  cocoon.reject(403), then log spam              -> rejected (before log_limit)
;;   t  memory.grow refused, then an endless loop      -> timeout (before memory_limit)
;;   s  memory.grow refused, then endless recursion    -> memory_limit (before stack_overflow)
;;   x  memory.grow refused, then proc_exit(3)         -> memory_limit (before module_exit)
;;   o  endless recursion                              -> stack_overflow
(module
  (import "cocoon" "config" (func $config (param i32 i32) (result i32)))
  (import "cocoon" "reject" (func $reject (param i32 i32 i32)))
  (import "cocoon" "log" (func $log (param i32 i32 i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1 2)
  (data (i32.const 16) "no")
  (func (export "cocoon_abi_v1"))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 1024))
  (func $recurse (param $n i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get $n) (i32.const 1))) (i32.const 1)))
  (func (export "cocoon_pre") (param i32 i32) (result i64)
    (local $mode i32)
    (drop (call $config (i32.const 0) (i32.const 1)))
    (local.set $mode (i32.load8_u (i32.const 0)))
    (if (i32.or (i32.eq (local.get $mode) (i32.const 114)) (i32.eq (local.get $mode) (i32.const 108))) ;; r, l
      (then (call $reject (i32.const 403) (i32.const 16) (i32.const 2))))
    (if (i32.eq (local.get $mode) (i32.const 114)) (then (unreachable)))                              ;; r
    (if (i32.eq (local.get $mode) (i32.const 108))                                                     ;; l
      (then (loop $spam (call $log (i32.const 1) (i32.const 16) (i32.const 2)) (br $spam))))
    (if (i32.ne (local.get $mode) (i32.const 111))                                                     ;; all but o
      (then (drop (memory.grow (i32.const 5)))))
    (if (i32.eq (local.get $mode) (i32.const 116)) (then (loop $forever (br $forever))))              ;; t
    (if (i32.eq (local.get $mode) (i32.const 120)) (then (call $exit (i32.const 3))))                 ;; x
    (drop (call $recurse (i32.const 0)))                                                               ;; s, o
    (i64.const 0)))
