// Replacements for the AssemblyScript globals whose standard versions import from
// "env" (Date.now, performance.now, console), which the host refuses at upload. The
// SDK's build options route them here (asconfig.json "use"), so that a module written
// the way a web developer writes TypeScript uploads and behaves the same on every
// host: time comes from the sandbox's fixed clock, console output goes to the
// request's log. The other std features that import from "env" (process, crypto,
// JSMath) are not replaced; see README.md.

import { wasiClockTimeGet } from "./host";
import { Level, log } from "./guest";

// clock reads WASI clock id (0 realtime, 1 monotonic) in nanoseconds. The sandbox's
// clocks (SPEC §6) start at 2022-01-01T00:00:00Z and at 0, and advance 1 ms per
// reading of either; they cannot fail for these two ids. It allocates nothing.
function clock(id: u32): u64 {
  const out = memory.data(8);
  wasiClockTimeGet(id, 1, out);
  return load<u64>(out);
}

// CocoonDate is Date with now() read from the sandbox's realtime clock: the first
// call in an instance gives 1640995200000 (2022-01-01T00:00:00Z), each later call 1 ms
// more. Everything else is AssemblyScript's Date.
export class CocoonDate extends Date {
  // @ts-ignore: decorator
  @inline static now(): i64 {
    return <i64>(clock(0) / 1_000_000);
  }
}

// cocoonPerformance is performance with now() read from the sandbox's monotonic
// clock, in milliseconds: 0 at the first reading of an instance, 1 ms more per
// reading. It measures nothing real (a module must not depend on how fast it runs).
export namespace cocoonPerformance {
  export function now(): f64 {
    return <f64>clock(1) / 1e6;
  }
}

// cocoonConsole is console writing to the request's log (which counts against the
// module's log limit): log and info at info level, debug at debug level, warn at warn
// level, error and a failed assert at error level. time, timeLog and timeEnd log the
// milliseconds of the monotonic clock between them, which count readings, not time.
export namespace cocoonConsole {
  export function assert<T>(condition: T, message: string = ""): void {
    if (!condition) logAt(Level.Error, "Assertion failed: " + message);
  }

  export function log(message: string = ""): void {
    logAt(Level.Info, message);
  }

  export function debug(message: string = ""): void {
    logAt(Level.Debug, message);
  }

  export function info(message: string = ""): void {
    logAt(Level.Info, message);
  }

  export function warn(message: string = ""): void {
    logAt(Level.Warn, message);
  }

  export function error(message: string = ""): void {
    logAt(Level.Error, message);
  }

  export function time(label: string = "default"): void {
    startedTimers().set(label, cocoonPerformance.now());
  }

  export function timeLog(label: string = "default"): void {
    logTimer(label, false);
  }

  export function timeEnd(label: string = "default"): void {
    logTimer(label, true);
  }
}

// logAt is log under a name the console namespace does not shadow.
function logAt(level: Level, message: string): void {
  log(level, message);
}

// timers holds console.time's start readings; made on first use, so that modules that
// never time anything do not build it at instantiation.
let timers: Map<string, f64> | null = null;

function startedTimers(): Map<string, f64> {
  if (timers == null) timers = new Map<string, f64>();
  return timers!;
}

function logTimer(label: string, end: bool): void {
  const timers = startedTimers();
  if (!timers.has(label)) {
    log(Level.Warn, "Timer \"" + label + "\" does not exist");
    return;
  }
  log(Level.Info, label + ": " + (cocoonPerformance.now() - timers.get(label)).toString() + " ms");
  if (end) timers.delete(label);
}
