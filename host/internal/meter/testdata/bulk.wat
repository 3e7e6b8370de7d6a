;; Guests for meter's tests of what Instrument rewrites besides loops: the bulk memory
;; and table instructions (which become calls that charge fuel and run in chunks), the
;; growth of memory and tables, and the call depth. Every export does one thing, so
;; that the tests can compare the module before and after instrumentation.
(module
  (memory (export "memory") 48 64) ;; 3 MiB: room for fills and copies of several chunks
  (table $t 2 10 funcref)
  (table $x 0 externref)
  (data $seg "0123456789abcdef")
  (elem $fns func $leaf $leaf $leaf)

  (func (export "fill") (param i32 i32 i32) (memory.fill (local.get 0) (local.get 1) (local.get 2)))
  (func (export "copy") (param i32 i32 i32) (memory.copy (local.get 0) (local.get 1) (local.get 2)))
  (func (export "init") (param i32 i32 i32) (memory.init $seg (local.get 0) (local.get 1) (local.get 2)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "table_grow") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0)))
  (func (export "externref_grow") (param i32) (result i32) (table.grow $x (ref.null extern) (local.get 0)))
  (func (export "table_fill") (param i32 i32) (table.fill $t (local.get 0) (ref.func $leaf) (local.get 1)))
  (func (export "table_copy") (param i32 i32 i32) (table.copy $t $t (local.get 0) (local.get 1) (local.get 2)))
  (func (export "table_init") (param i32 i32 i32) (table.init $t $fns (local.get 0) (local.get 1) (local.get 2)))
  (func (export "table_size") (result i32) (table.size $t))

  ;; fill_loop fills n bytes at 0, times times: the loop of the issue's attack, finite.
  (func (export "fill_loop") (param $n i32) (param $times i32)
    (loop $again
      (memory.fill (i32.const 0) (i32.const 7) (local.get $n))
      (br_if $again (local.tee $times (i32.sub (local.get $times) (i32.const 1))))))

  ;; deep recurses n levels.
  (func $deep (export "deep") (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 0))
      (else (i32.add (call $deep (i32.sub (local.get $n) (i32.const 1))) (i32.const 1)))))

  ;; heavy recurses n levels holding 32 values across each call: its frames weigh 3.
  (func $heavy (export "heavy") (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 0))
      (else
        (i32.load (i32.const 0)) (i32.load (i32.const 4)) (i32.load (i32.const 8)) (i32.load (i32.const 12))
        (i32.load (i32.const 16)) (i32.load (i32.const 20)) (i32.load (i32.const 24)) (i32.load (i32.const 28))
        (i32.load (i32.const 32)) (i32.load (i32.const 36)) (i32.load (i32.const 40)) (i32.load (i32.const 44))
        (i32.load (i32.const 48)) (i32.load (i32.const 52)) (i32.load (i32.const 56)) (i32.load (i32.const 60))
        (i32.load (i32.const 64)) (i32.load (i32.const 68)) (i32.load (i32.const 72)) (i32.load (i32.const 76))
        (i32.load (i32.const 80)) (i32.load (i32.const 84)) (i32.load (i32.const 88)) (i32.load (i32.const 92))
        (i32.load (i32.const 96)) (i32.load (i32.const 100)) (i32.load (i32.const 104)) (i32.load (i32.const 108))
        (i32.load (i32.const 112)) (i32.load (i32.const 116)) (i32.load (i32.const 120)) (i32.load (i32.const 124))
        (call $heavy (i32.sub (local.get $n) (i32.const 1)))
        i32.add i32.add i32.add i32.add i32.add i32.add i32.add i32.add
        i32.add i32.add i32.add i32.add i32.add i32.add i32.add i32.add
        i32.add i32.add i32.add i32.add i32.add i32.add i32.add i32.add
        i32.add i32.add i32.add i32.add i32.add i32.add i32.add i32.add)))

  ;; leaf leaves through each way out a function has, by its argument: falling off the
  ;; end, return, br to the body's label, br_if, br_table.
  (func $leaf (param $how i32) (result i32)
    (if (i32.eq (local.get $how) (i32.const 1)) (then (return (i32.const 1))))
    (if (i32.eq (local.get $how) (i32.const 2)) (then (br 1 (i32.const 2))))
    (drop (br_if 0 (i32.const 3) (i32.eq (local.get $how) (i32.const 3))))
    (if (i32.eq (local.get $how) (i32.const 4)) (then (br_table 1 1 (i32.const 4) (i32.const 0))))
    (i32.const 0))

  ;; leaves calls leaf n times, cycling through its ways out: if any of them left its
  ;; frame counted, the depth would overflow long before n calls.
  (func (export "leaves") (param $n i32) (result i32)
    (local $sum i32)
    (loop $again
      (local.set $sum (i32.add (local.get $sum) (call $leaf (i32.rem_u (local.get $n) (i32.const 5)))))
      (br_if $again (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
    (local.get $sum)))
