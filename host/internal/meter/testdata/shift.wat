;; Every place a function index can appear, for the index-shifting test of meter: an
;; import before the defined functions, calls, call_indirect through tables filled by
;; element segments of all eight encodings, ref.func in code and in a global
;; initializer, function exports and a start function. run returns a number that
;; depends on every one of them reaching the right function.
(module
  (import "env" "base" (func $base (result i32)))
  (type $get (func (result i32)))
  (table $t 8 funcref)
  (table $u 8 funcref)
  (global $g (mut i32) (i32.const 0))
  (global $fref funcref (ref.func $f5))

  (func $f1 (result i32) (i32.const 1))
  (func $f2 (result i32) (i32.const 20))
  (func $f3 (result i32) (i32.const 300))
  (func $f4 (result i32) (i32.const 4000))
  (func $f5 (result i32) (i32.const 50000))
  (func $f6 (result i32) (i32.const 600000))
  (func $f7 (result i32) (i32.const 7000000))
  (func $init (global.set $g (i32.add (call $base) (i32.const 100000000))))
  (start $init)

  (elem (i32.const 0) $f1 $f2)                                   ;; 0: active, table 0, indices
  (elem $p1 func $f3)                                            ;; 1: passive, indices
  (elem (table $u) (i32.const 0) func $f4)                       ;; 2: active, table u, indices
  (elem declare func $f6)                                        ;; 3: declarative, indices
  (elem (i32.const 2) funcref (ref.func $f5) (ref.null func))    ;; 4: active, table 0, exprs
  (elem $p5 funcref (ref.func $f6) (ref.null func))              ;; 5: passive, exprs
  (elem (table $u) (i32.const 1) funcref (ref.func $f7) (ref.null func)) ;; 6: active, table u, exprs
  (elem declare funcref (ref.func $f7) (ref.null func))          ;; 7: declarative, exprs
  ;; (the null entries keep wat2wasm from encoding 4-7 as indices)

  (func $at (param $table i32) (param $i i32) (result i32)
    (if (result i32) (local.get $table)
      (then (call_indirect $u (type $get) (local.get $i)))
      (else (call_indirect $t (type $get) (local.get $i)))))

  (func (export "run") (result i32)
    (table.init $t $p1 (i32.const 4) (i32.const 0) (i32.const 1))
    (table.init $t $p5 (i32.const 5) (i32.const 0) (i32.const 1))
    (table.set $t (i32.const 6) (ref.func $f7))
    (table.set $t (i32.const 7) (global.get $fref))
    (i32.add (global.get $g)
    (i32.add (call $f1)
    (i32.add (call $at (i32.const 0) (i32.const 0))   ;; f1
    (i32.add (call $at (i32.const 0) (i32.const 1))   ;; f2
    (i32.add (call $at (i32.const 0) (i32.const 2))   ;; f5
    (i32.add (call $at (i32.const 0) (i32.const 4))   ;; f3
    (i32.add (call $at (i32.const 0) (i32.const 5))   ;; f6
    (i32.add (call $at (i32.const 0) (i32.const 6))   ;; f7
    (i32.add (call $at (i32.const 0) (i32.const 7))   ;; f5
    (i32.add (call $at (i32.const 1) (i32.const 0))   ;; f4
             (call $at (i32.const 1) (i32.const 1))))))))))))) ;; f7
  (export "f3" (func $f3))
  (export "table" (table $t)))
