;; Issue 10, deviation 5: unbounded recursion in a start section was reported as trap
;; (wazero wraps a start function's error, so the host did not recognise the stack
;; overflow). The call depth is the host's now: stack_overflow.
(module
  (memory (export "memory") 1)
  (func $recurse (param $n i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get $n) (i32.const 1))) (i32.const 1)))
  (func $start (drop (call $recurse (i32.const 0))))
  (start $start)
  (func (export "cocoon_abi_v1"))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cocoon_pre") (param i32 i32) (result i64) (i64.const 0)))
