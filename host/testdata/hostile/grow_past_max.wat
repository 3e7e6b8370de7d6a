;; Issue 10, deviation 5: a memory.grow refused by the module's own declared maximum,
;; followed by a trap, was reported as trap: wazero refused it before the host's
;; allocator was asked. The instrumented memory.grow now tells the host, and the code
;; is memory_limit.
(module
  (memory (export "memory") 1 2)
  (func (export "cocoon_abi_v1"))
  (func (export "cocoon_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "cocoon_pre") (param i32 i32) (result i64)
    (if (i32.eq (memory.grow (i32.const 5)) (i32.const -1)) (then (unreachable)))
    (i64.const 0)))
