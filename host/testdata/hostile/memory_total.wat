;; Issue 10, attack 4: 8 pre modules each filling their 256 MiB ceiling took the host
;; up by 2 GB for one request, and the host kept it. A request's instances now share
;; 512 MiB: this module grows to 4096 pages, writes every page, and passes its input
;; through; the third of a pipeline of them finds its growth refused (memory.grow
;; returns -1) and traps, which is memory_limit naming the request's total.
(module
  (memory (export "memory") 1)
  (func (export "cocoon_abi_v1"))
  (func (export "cocoon_alloc") (param $size i32) (result i32) (i32.const 1024))
  (func (export "cocoon_pre") (param $ptr i32) (param $len i32) (result i64)
    (if (i32.eq (memory.grow (i32.const 4095)) (i32.const -1)) (then (unreachable)))
    (memory.fill (i32.const 0x10000) (i32.const 1) (i32.const 0xfff0000))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len)))))
