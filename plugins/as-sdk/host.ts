// The host's imports (abi/SPEC.md §4). A module imports only those it calls: the
// compiler drops the ones nothing reaches.

// @ts-ignore: decorator
@external("cocoon", "log")
export declare function hostLog(level: i32, ptr: usize, len: usize): void;

// @ts-ignore: decorator
@external("cocoon", "reject")
export declare function hostReject(status: i32, ptr: usize, len: usize): void;

// @ts-ignore: decorator
@external("cocoon", "config")
export declare function hostConfig(ptr: usize, cap: usize): usize;

// random_get of the sandbox's WASI (SPEC §6): a fixed stream, the same in every
// instance. Only Math.random's seed reaches it.
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "random_get")
export declare function wasiRandomGet(ptr: usize, len: usize): u16;

// clock_time_get of the sandbox's WASI (SPEC §6): a fake clock that advances 1 ms per
// reading. Only Date.now and performance.now reach it (globals.ts).
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "clock_time_get")
export declare function wasiClockTimeGet(id: u32, precision: u64, out: usize): u16;
