// The SDK's core: logging, rejections, config, and the machinery every hook shares
// (cocoon_alloc, running a handler, returning its output). abi/SPEC.md is the contract.

import { hostConfig, hostLog, hostReject, wasiRandomGet } from "./host";
import { Kind, Reader, RawJSON, equalFoldName } from "./json";
// The replacements of Date, performance and console, which asconfig.json "use" names:
// importing the file here, which every module reaches, is what makes the compiler load it.
import "./globals";

// Severity of a log record (SPEC §4.1).
export const enum Level {
  Debug = 0,
  Info = 1,
  Warn = 2,
  Error = 3,
}

// log appends one record to the request's log, which the pipeline's owner sees and the
// end user does not. Everything a module logs in a request counts against its log
// limit (16 KiB by default); going over fails the request, so log sparingly in
// cocoon_chunk.
export function log(level: Level, msg: string): void {
  const b = String.UTF8.encode(msg, false, String.UTF8.ErrorMode.REPLACE);
  hostLog(level, changetype<usize>(b), <usize>b.byteLength);
}

// Statuses a module may reject a request with (SPEC §4.2). The host turns a rejection
// with any other status into module_error.
export namespace Status {
  export const BadRequest: i32 = 400;
  export const Policy: i32 = 403;
  export const Conflict: i32 = 409;
  export const TooLarge: i32 = 413;
  export const Unprocessable: i32 = 422;
  export const TooManyRequests: i32 = 429;
  export const UnavailableForLegal: i32 = 451;
}

// allowedStatus reports whether the host accepts status as a rejection status.
export function allowedStatus(status: i32): bool {
  return status == 400 || status == 403 || status == 409 || status == 413 ||
    status == 422 || status == 429 || status == 451;
}

// The outcome a handler declared during the current hook call.
let rejectStatus: i32 = 0;
let rejectMessage: string = "";
let failed: bool = false;

// reject makes the current hook call reject the request with status and message; the
// handler then returns null. The message is shown to the client as is (the host cuts
// it at 1024 bytes), so it must not contain anything the client may not see. A status
// outside the list of SPEC §4.2 fails the request with module_error instead, and the
// SDK logs why. The first reject of a call wins.
export function reject(status: i32, message: string): void {
  if (rejectStatus == 0) {
    rejectStatus = status;
    rejectMessage = message;
  }
}

// fail logs why the current hook call fails, at error level; the handler then returns
// null, and the request fails with module_error.
export function fail(reason: string): void {
  failed = true;
  log(Level.Error, currentHook + ": " + reason);
}

// The config, read from the host on first use.
let configLoaded: bool = false;
let configBytes: Uint8Array = new Uint8Array(0);

// config returns the module's config from the pipeline manifest: opaque bytes, usually
// JSON, at most 64 KiB; empty if the pipeline sets none. Read from the host once, then
// cached. The caller must not modify the bytes.
export function config(): Uint8Array {
  if (!configLoaded) {
    const size = hostConfig(0, 0);
    const b = new Uint8Array(<i32>size);
    if (size > 0) hostConfig(b.dataStart, size);
    configBytes = b;
    configLoaded = true;
  }
  return configBytes;
}

// ConfigObject decodes a JSON config object strictly, as the Go SDK's DecodeConfig
// decodes into a struct, so that a module reads its config the same in either
// language: member names match the fields case-insensitively (as encoding/json does),
// the last of duplicate members counts, a null member is as if absent, and a member
// that is not a field, a value of the wrong type, or anything after the object is an
// error whose message names the member. Read the fields, then check error:
//
//   const c = ConfigObject.decode(config(), ["system", "words"]);
//   const system = c.string("system", "");
//   if (c.error != null) { fail(c.error!); return null; }
export class ConfigObject {
  // error is the first problem found, prefixed with "config: ", or null.
  error: string | null = null;
  private fields: string[];
  private values: Array<RawJSON | null>;

  private constructor(fields: string[]) {
    this.fields = fields;
    this.values = new Array<RawJSON | null>(fields.length);
  }

  // decode reads b, which must hold a JSON object whose members are among fields.
  // Empty b (no config) is the error "config: the module has no config".
  static decode(b: Uint8Array, fields: string[]): ConfigObject {
    const c = new ConfigObject(fields);
    const r = Reader.fromBytes(b);
    if (r.kind() == Kind.End && r.error == null) {
      c.error = "config: the module has no config";
      return c;
    }
    if (r.readNull()) {
      r.done();
    } else if (r.beginObject("the config")) {
      while (true) {
        const name = r.nextMember();
        if (name == null) break;
        const i = c.field(name);
        if (i < 0) {
          r.fail("unknown field \"" + name + "\"");
          break;
        }
        const v = r.readRaw();
        if (!v.isNull()) c.values[i] = v;
      }
      r.done();
    }
    if (r.error != null) c.error = "config: " + r.error!;
    return c;
  }

  // field returns the index of the field name matches: exactly, else as encoding/json
  // folds case; -1 if none.
  private field(name: string): i32 {
    const i = this.fields.indexOf(name);
    if (i >= 0) return i;
    for (let j = 0; j < this.fields.length; j++) {
      if (equalFoldName(name, this.fields[j])) return j;
    }
    return -1;
  }

  // has reports whether the member was present and not null.
  has(name: string): bool {
    return this.value(name) != null;
  }

  // raw returns the member's JSON value, or null if it is absent or null.
  raw(name: string): RawJSON | null {
    return this.value(name);
  }

  private value(name: string): RawJSON | null {
    const i = this.fields.indexOf(name);
    if (i < 0) {
      this.setError("no field \"" + name + "\" was declared");
      return null;
    }
    return this.values[i];
  }

  private setError(msg: string): void {
    if (this.error == null) this.error = "config: " + msg;
  }

  private reader(name: string): Reader | null {
    const v = this.value(name);
    return v == null ? null : Reader.fromBytes(v.bytes);
  }

  private check(r: Reader): void {
    if (r.error != null) this.setError(r.error!);
  }

  // string returns the member's string, or def if it is absent or null.
  string(name: string, def: string): string {
    const r = this.reader(name);
    if (r == null) return def;
    const s = r.readString(name);
    this.check(r);
    return s;
  }

  // bool returns the member's boolean, or def.
  bool(name: string, def: bool): bool {
    const r = this.reader(name);
    if (r == null) return def;
    const v = r.readBool(name);
    this.check(r);
    return v;
  }

  // number returns the member's number, or def.
  number(name: string, def: f64): f64 {
    const r = this.reader(name);
    if (r == null) return def;
    const v = r.readNumber(name);
    this.check(r);
    return v;
  }

  // strings returns the member's array of strings (a null element is ""), or def.
  strings(name: string, def: string[]): string[] {
    const r = this.reader(name);
    if (r == null) return def;
    const out = new Array<string>();
    if (r.beginArray(name)) {
      while (r.nextElement()) {
        out.push(r.readNull() ? "" : r.readString(name + "[" + out.length.toString() + "]"));
      }
    }
    this.check(r);
    return out;
  }
}

// input is the buffer of the last cocoon_alloc. Holding it here keeps the collector
// from freeing it while the host writes to it and the hook reads it.
let input: ArrayBuffer | null = null;
// output is the last hook's result; the host copies it after the hook returns, and
// holding it until the next call keeps it alive until then.
let output: Uint8Array | null = null;
// currentHook names the export being served, for log messages.
let currentHook: string = "";

// cocoon_alloc is the export the host calls before each hook with input (SPEC §3.1).
// A size above 1 GiB returns 0: outputs start below 2 GiB (SPEC §3.2), and
// AssemblyScript cannot allocate more than 1 GiB at once.
export function cocoon_alloc(size: u32): usize {
  if (size > (1 << 30) - 16) return 0;
  const b = new ArrayBuffer(max(<i32>size, 1));
  input = b;
  return changetype<usize>(b);
}

// cocoon_abi_v1 is the marker of ABI version 1 (SPEC §2).
export function cocoon_abi_v1(): void {}

// begin starts serving a hook call.
export function begin(hook: string): void {
  currentHook = hook;
  rejectStatus = 0;
  rejectMessage = "";
  failed = false;
}

// finish ends a hook call whose handler returned out (null: it failed) and returns
// the hook's result (SPEC §3.2). A rejection wins over any output.
export function finish(out: Uint8Array | null): i64 {
  input = null;
  output = null;
  if (rejectStatus != 0) {
    if (!allowedStatus(rejectStatus)) {
      log(Level.Error, currentHook + ": rejected with status " + rejectStatus.toString() +
        ": the host only accepts statuses 400, 403, 409, 413, 422, 429 and 451");
      return -1;
    }
    const m = String.UTF8.encode(rejectMessage, false, String.UTF8.ErrorMode.REPLACE);
    hostReject(rejectStatus, changetype<usize>(m), <usize>m.byteLength);
    return -1;
  }
  if (out == null) {
    if (!failed) log(Level.Error, currentHook + ": the handler returned null without calling reject or fail");
    return -1;
  }
  output = out;
  if (out.length == 0) return 0;
  return (<i64>out.dataStart << 32) | <i64>out.length;
}

// inputBytes returns a copy of the len input bytes at ptr.
export function inputBytes(ptr: usize, len: usize): Uint8Array {
  const b = new Uint8Array(<i32>len);
  memory.copy(b.dataStart, ptr, len);
  return b;
}

// textBytes returns s as UTF-8, unpaired surrogates as U+FFFD.
export function textBytes(s: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(s, false, String.UTF8.ErrorMode.REPLACE));
}

// abortBuffer holds the record cocoonAbort logs: abort may come from the allocator
// itself (out of memory, a corrupted heap), so it must not allocate.
// (Its size, 512, is written out: abort can run before this file's globals exist.)

// putASCII copies s into the buffer at n, replacing characters beyond ASCII with '?',
// and returns the new length.
function putASCII(abortBuffer: usize, n: usize, s: string): usize {
  for (let i = 0; i < s.length && n < 512; i++, n++) {
    const c = s.charCodeAt(i);
    store<u8>(abortBuffer + n, c < 0x80 ? <u8>c : 0x3f);
  }
  return n;
}

function putNumber(abortBuffer: usize, n: usize, v: u32): usize {
  let digits: usize = 1;
  for (let x = v; x >= 10; x /= 10) digits++;
  if (n + digits > 512) return n;
  for (let i = digits; i > 0; i--, v /= 10) store<u8>(abortBuffer + n + i - 1, <u8>(0x30 + v % 10));
  return n + digits;
}

// cocoonAbort replaces AssemblyScript's abort (failed assertions, out-of-range
// indexes, out of memory, `throw`): it logs what and where, at error level, and traps,
// so the request fails with trap (or memory_limit after a refused growth) and the
// owner's log says why. The SDK's build options route abort here (asconfig.json); the
// default would import env.abort, which the host refuses. It allocates nothing.
export function cocoonAbort(message: string | null, file: string | null, line: u32, column: u32): void {
  const b = memory.data(512);
  let n = putASCII(b, 0, "abort");
  if (message != null) n = putASCII(b, putASCII(b, n, ": "), message);
  if (file != null) {
    n = putASCII(b, putASCII(b, n, " at "), file);
    n = putNumber(b, putASCII(b, putNumber(b, putASCII(b, n, ":"), line), ":"), column);
  }
  hostLog(Level.Error, b, n);
  unreachable();
}

// cocoonTrace replaces AssemblyScript's trace: a debug-level log record.
export function cocoonTrace(message: string, n: i32 = 0, a0: f64 = 0, a1: f64 = 0, a2: f64 = 0, a3: f64 = 0, a4: f64 = 0): void {
  let msg = message;
  const args = [a0, a1, a2, a3, a4];
  for (let i = 0; i < min(n, 5); i++) msg += " " + args[i].toString();
  log(Level.Debug, msg);
}

// cocoonSeed replaces the seed of Math.random with the sandbox's random_get: a fixed
// stream, so Math.random gives the same numbers in every instance (SPEC §6).
export function cocoonSeed(): f64 {
  const b = new ArrayBuffer(8);
  wasiRandomGet(changetype<usize>(b), 8);
  return <f64>load<u64>(changetype<usize>(b));
}
