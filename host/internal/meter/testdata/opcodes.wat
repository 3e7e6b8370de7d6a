;; An ABI v1 module whose cocoon_pre uses instructions of every immediate shape of
;; WebAssembly 2.0 (block types by type index, br_table, select t, call_indirect,
;; bulk memory and table instructions, saturating truncation, SIMD loads, stores, lanes,
;; shuffles and constants, constants with long LEB128 encodings) to fold its input into
;; a 16-byte digest. meter's tests compare the digests of the module before and after
;; instrumentation, and its fuzz test starts from it.
(module
  (type $pair (func (param i32) (result i32 i32)))
  (type $un (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (table $fns 4 funcref)
  (table $refs 2 externref)
  (global $heap (mut i32) (i32.const 4096))
  (global $big (mut i64) (i64.const 0x7fffffffffffffff))
  (elem (i32.const 0) $double $square $neg $double)
  (elem $later func $square)
  (data $bytes "\10\32\54\76\98\ba\dc\fe\01\23\45\67\89\ab\cd\ef")

  (func (export "cocoon_abi_v1"))
  (func (export "cocoon_alloc") (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $ptr))

  (func $double (type $un) (i32.shl (local.get 0) (i32.const 1)))
  (func $square (type $un) (i32.mul (local.get 0) (local.get 0)))
  (func $neg (type $un) (i32.sub (i32.const 0) (local.get 0)))

  ;; classify maps a byte to 0..3 through br_table.
  (func $classify (param $c i32) (result i32)
    (block $d (block $c2 (block $c1 (block $c0
      (br_table $c0 $c1 $c2 $d (i32.rem_u (local.get $c) (i32.const 5))))
      (return (i32.const 0)))
      (return (i32.const 1)))
      (return (i32.const 2)))
    (i32.const 3))

  (func (export "cocoon_pre") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $acc i32) (local $v v128) (local $r externref) (local $f f64)
    (memory.init $bytes (i32.const 1024) (i32.const 0) (i32.const 16))
    (data.drop $bytes)
    (memory.fill (i32.const 1040) (i32.const 0xa5) (i32.const 16))
    (table.init $fns $later (i32.const 3) (i32.const 0) (i32.const 1))
    (elem.drop $later)
    (table.copy $fns $fns (i32.const 2) (i32.const 1) (i32.const 1))
    (drop (table.grow $refs (ref.null extern) (i32.const 2)))
    (table.fill $refs (i32.const 0) (ref.null extern) (table.size $refs))
    (local.set $r (table.get $refs (i32.const 1)))
    (table.set $refs (i32.const 0) (local.get $r))
    (local.set $v (v128.load (i32.const 1024)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        ;; a block typed by a type index, with a parameter and two results
        (local.get $i)
        (block (type $pair) (i32.load8_u offset=0 (local.get $ptr)))
        (local.set $acc (i32.add (local.get $acc)
          (call_indirect $fns (type $un)
            (i32.add (i32.load8_u (i32.add (local.get $ptr) (local.get $i)))
                     (select (result i32) (i32.const 0x7fffffff) (i32.const -1000000) (i32.and (local.get $i) (i32.const 1))))
            (call $classify (i32.load8_u (i32.add (local.get $ptr) (local.get $i)))))))
        (drop) (drop)
        (local.set $v (i8x16.add (local.get $v)
          (i8x16.splat (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))))
        (local.set $v (v128.load8_lane 3 (i32.add (local.get $ptr) (local.get $i)) (local.get $v)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.set $f (f64.convert_i32_s (local.get $acc)))
    (local.set $v (i8x16.shuffle 15 14 13 12 11 10 9 8 7 6 5 4 3 2 1 0
      (local.get $v) (v128.const i32x4 0x01020304 0x05060708 0x090a0b0c 0x0d0e0f10)))
    (local.set $v (i32x4.replace_lane 1 (local.get $v)
      (i32.add (i32x4.extract_lane 1 (local.get $v)) (local.get $acc))))
    (local.set $v (i32x4.add (local.get $v) (v128.load32_zero offset=4 align=4 (i32.const 1024))))
    (local.set $v (v128.xor (local.get $v) (v128.load64_splat (i32.const 1040))))
    (local.set $v (f64x2.replace_lane 0 (local.get $v)
      (f64.add (f64x2.extract_lane 0 (local.get $v)) (local.get $f))))
    (v128.store (i32.const 2048) (local.get $v))
    (v128.store16_lane offset=2 7 (i32.const 2048) (i16x8.add_sat_u (local.get $v) (local.get $v)))
    (i32.store offset=12 (i32.const 2048)
      (i32.xor (i32.load offset=12 (i32.const 2048))
        (i32.add (i32.trunc_sat_f64_s (f64.mul (local.get $f) (f64.const 1e300)))
                 (i32.extend8_s (i32.wrap_i64 (i64.rotl (global.get $big) (i64.const 3)))))))
    (memory.copy (i32.const 3072) (i32.const 2048) (i32.const 16))
    (i64.or (i64.shl (i64.const 3072) (i64.const 32)) (i64.const 16))))
