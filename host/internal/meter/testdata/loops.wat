;; Guests for the termination tests of meter: every export either runs forever or for a
;; long time, and only the instrumented module's tick can stop it.
(module
  (memory (export "memory") 1)
  ;; spin never returns: one loop, no call.
  (func (export "spin")
    (loop $l (br $l)))
  ;; explode calls itself twice per level without any loop: 2^n calls.
  (func $explode (export "explode") (param $n i32)
    (if (local.get $n)
      (then
        (call $explode (i32.sub (local.get $n) (i32.const 1)))
        (call $explode (i32.sub (local.get $n) (i32.const 1))))))
  ;; sum returns 0 + 1 + ... + (n-1), reading each term back from memory: the loop
  ;; header runs n times, the function entry once.
  (func (export "sum") (param $n i32) (result i64)
    (local $i i32) (local $acc i64)
    (if (i32.eqz (local.get $n)) (then (return (i64.const 0))))
    (loop $l
      (i32.store (i32.const 0) (local.get $i))
      (local.set $acc (i64.add (local.get $acc) (i64.load32_u (i32.const 0))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $acc))
  ;; sum_memory adds the n bytes of memory starting at 0, n times over 64 KiB: the tight
  ;; loop of the benchmarks.
  (func (export "sum_memory") (param $n i32) (result i32)
    (local $i i32) (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (local.get $acc)
        (i32.load8_u (i32.and (local.get $i) (i32.const 0xffff)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $acc))
  (data (i32.const 0) "\01\02\03\04\05\06\07\08"))
