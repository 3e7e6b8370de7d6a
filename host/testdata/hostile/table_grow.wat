;; Issue 10, attack 2: table.grow by 1M elements per step took the host's RSS up by
;; 517 MiB in one request. Now a table has a limit (table_elements) and its elements
;; count against the request's memory: the growth is refused, table.grow returns -1,
;; and the trap that follows is memory_limit. With config "g" it grows by 1,000 only,
;; within every limit, and returns the old size as 4 decimal digits.
(module
  (import "cocoon" "config" (func $config (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (func (export "cocoon_abi_v1"))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cocoon_pre") (param i32 i32) (result i64)
    (local $old i32)
    (drop (call $config (i32.const 0) (i32.const 1)))
    (if (i32.eq (i32.load8_u (i32.const 0)) (i32.const 103)) ;; g
      (then
        (local.set $old (table.grow $t (ref.null func) (i32.const 1000)))
        (i32.store8 (i32.const 100) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $old) (i32.const 1000)) (i32.const 10))))
        (i32.store8 (i32.const 101) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $old) (i32.const 100)) (i32.const 10))))
        (i32.store8 (i32.const 102) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $old) (i32.const 10)) (i32.const 10))))
        (i32.store8 (i32.const 103) (i32.add (i32.const 48) (i32.rem_u (local.get $old) (i32.const 10))))
        (return (i64.or (i64.shl (i64.const 100) (i64.const 32)) (i64.const 4)))))
    (loop $grow
      (br_if $grow (i32.ne (table.grow $t (ref.null func) (i32.const 1000000)) (i32.const -1))))
    (unreachable)))
