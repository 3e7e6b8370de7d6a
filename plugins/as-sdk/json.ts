// JSON for modules: a reader that decodes UTF-8 JSON straight from linear memory, and
// a writer that encodes it. There is no reflection in AssemblyScript, so the chat types
// (types.ts) and config decoding (config.ts) walk objects member by member with a
// Reader. Values they have no field for are kept as RawJSON: the exact bytes, checked
// but never decoded, so a module passes on what it does not know verbatim, however
// deeply it nests, without recursion.
//
// There are no exceptions: a Reader records its first error in `error` and every
// later call fails at once. Decoding follows Go's encoding/json, which the Go SDK
// uses, so that a module gives the same answer in either language: invalid UTF-8 and
// unpaired surrogate escapes become U+FFFD, and member names of a config match as
// encoding/json matches struct fields (see equalFoldName).

// RawJSON is one JSON value, kept as its UTF-8 bytes.
export class RawJSON {
  constructor(public bytes: Uint8Array) {}

  // fromString returns the value whose JSON text is s. s is not checked: a module
  // that puts invalid JSON here sends invalid JSON on (and the host refuses it).
  static fromString(s: string): RawJSON {
    return new RawJSON(Uint8Array.wrap(String.UTF8.encode(s, false, String.UTF8.ErrorMode.REPLACE)));
  }

  // toString returns the JSON text.
  toString(): string {
    return String.UTF8.decodeUnsafe(this.bytes.dataStart, this.bytes.length);
  }

  // isNull reports whether the value is the literal null.
  isNull(): bool {
    const b = this.bytes;
    return b.length == 4 && b[0] == 0x6e && b[1] == 0x75 && b[2] == 0x6c && b[3] == 0x6c;
  }
}

// Kind of the next value, as Reader.kind() reports it.
export const enum Kind {
  End = 0, // nothing left, or an error
  Null,
  Bool,
  Number,
  String,
  Array,
  Object,
}

// Reader decodes JSON from len bytes at ptr, which must stay alive and unchanged while
// it reads. Cost: one pass over the bytes; strings are decoded into new strings.
export class Reader {
  pos: usize;
  end: usize;
  // error is the first thing found wrong, for a log message; null while all is well.
  error: string | null = null;

  constructor(ptr: usize, len: usize) {
    this.pos = ptr;
    this.end = ptr + len;
  }

  static fromBytes(b: Uint8Array): Reader {
    return new Reader(b.dataStart, <usize>b.length);
  }

  // fail records msg unless an error is already recorded, and returns false.
  fail(msg: string): bool {
    if (this.error == null) this.error = msg;
    this.pos = this.end;
    return false;
  }

  private skipSpace(): void {
    while (this.pos < this.end) {
      const c = load<u8>(this.pos);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) return;
      this.pos++;
    }
  }

  // peek returns the next non-space byte, or -1 at the end.
  private peek(): i32 {
    this.skipSpace();
    return this.pos < this.end ? <i32>load<u8>(this.pos) : -1;
  }

  private expect(c: i32, what: string): bool {
    if (this.peek() != c) return this.fail("invalid JSON: want " + what + at(this.pos, this.end));
    this.pos++;
    return true;
  }

  // kind returns the kind of the next value without consuming it.
  kind(): Kind {
    if (this.error != null) return Kind.End;
    switch (this.peek()) {
      case -1: return Kind.End;
      case 0x6e: return Kind.Null; // n
      case 0x74: case 0x66: return Kind.Bool; // t, f
      case 0x22: return Kind.String;
      case 0x5b: return Kind.Array;
      case 0x7b: return Kind.Object;
    }
    return Kind.Number;
  }

  // done checks that nothing but space follows the value just read.
  done(): bool {
    if (this.error != null) return false;
    if (this.peek() != -1) return this.fail("invalid JSON: unexpected data after the value" + at(this.pos, this.end));
    return true;
  }

  // beginObject consumes the '{' of an object; what names the object in the error if
  // the next value is not one.
  beginObject(what: string): bool {
    if (this.kind() != Kind.Object) return this.fail(what + ": want an object, got " + kindName(this.kind()));
    this.pos++;
    this.first = true;
    return true;
  }

  private first: bool = false;

  // nextMember returns the name of the object's next member and consumes the ':' after
  // it, or returns null at the object's end (consuming the '}') or on an error. The
  // caller must consume the member's value before it calls nextMember again. Objects
  // are read one level at a time: to read a nested object, call beginObject and read
  // it to its end before the next member of the outer one.
  nextMember(): string | null {
    if (this.error != null) return null;
    const c = this.peek();
    if (c == 0x7d) { // }
      this.pos++;
      this.first = false;
      return null;
    }
    if (!this.first && !this.expect(0x2c, "',' or '}'")) return null;
    this.first = false;
    if (this.peek() != 0x22) {
      this.fail("invalid JSON: want a member name" + at(this.pos, this.end));
      return null;
    }
    const name = this.readString();
    if (!this.expect(0x3a, "':'")) return null;
    this.first = false;
    return name;
  }

  // beginArray consumes the '[' of an array.
  beginArray(what: string): bool {
    if (this.kind() != Kind.Array) return this.fail(what + ": want an array, got " + kindName(this.kind()));
    this.pos++;
    this.first = true;
    return true;
  }

  // nextElement reports whether the array has another element (consuming the ',' before
  // it), or consumes the ']' and returns false.
  nextElement(): bool {
    if (this.error != null) return false;
    const c = this.peek();
    if (c == 0x5d) { // ]
      this.pos++;
      this.first = false;
      return false;
    }
    if (!this.first && !this.expect(0x2c, "',' or ']'")) return false;
    this.first = false;
    if (this.peek() == 0x5d) return this.fail("invalid JSON: want a value" + at(this.pos, this.end));
    return true;
  }

  // readNull consumes a null and returns true if the next value is null.
  readNull(): bool {
    if (this.kind() != Kind.Null) return false;
    return this.literal("null");
  }

  // readString decodes a string; what names the value in the error if it is not one.
  readString(what: string = "value"): string {
    if (this.kind() != Kind.String) {
      this.fail(what + ": want a string, got " + kindName(this.kind()));
      return "";
    }
    const start = this.pos;
    if (!this.skipString()) return "";
    return decodeJSONString(start + 1, this.pos - 1);
  }

  // readBool decodes true or false.
  readBool(what: string = "value"): bool {
    if (this.kind() != Kind.Bool) return this.fail(what + ": want a boolean, got " + kindName(this.kind()));
    return load<u8>(this.pos) == 0x74 ? this.literal("true") : !this.literal("false");
  }

  // readInt decodes a whole number in the range of i64, as encoding/json decodes into a
  // Go int on wasm: a fraction or exponent ("1.0", "1e2") is an error.
  readInt(what: string = "value"): i64 {
    if (this.kind() != Kind.Number) {
      this.fail(what + ": want a number, got " + kindName(this.kind()));
      return 0;
    }
    const start = this.pos;
    if (!this.skipNumber()) return 0;
    let p = start;
    const neg = load<u8>(p) == 0x2d;
    if (neg) p++;
    let v: u64 = 0;
    const limit: u64 = neg ? (<u64>1 << 63) : (<u64>1 << 63) - 1;
    for (; p < this.pos; p++) {
      const d = <u32>load<u8>(p) - 0x30;
      if (d > 9 || v > (limit - d) / 10) {
        this.fail(what + ": want an integer, got " + String.UTF8.decodeUnsafe(start, this.pos - start));
        return 0;
      }
      v = v * 10 + d;
    }
    return neg ? -(<i64>v) : <i64>v;
  }

  // readNumber decodes a number as f64.
  readNumber(what: string = "value"): f64 {
    if (this.kind() != Kind.Number) {
      this.fail(what + ": want a number, got " + kindName(this.kind()));
      return 0;
    }
    const start = this.pos;
    if (!this.skipNumber()) return 0;
    return parseFloat(String.UTF8.decodeUnsafe(start, this.pos - start));
  }

  // readRaw checks the next value and returns a copy of its bytes.
  readRaw(): RawJSON {
    this.skipSpace();
    const start = this.pos;
    if (!this.skip()) return new RawJSON(new Uint8Array(0));
    const n = <i32>(this.pos - start);
    const b = new Uint8Array(n);
    memory.copy(b.dataStart, start, n);
    return new RawJSON(b);
  }

  // skip checks the next value, of any depth, and moves past it. It keeps the open
  // arrays and objects on a heap stack, not the call stack, so no nesting overflows it.
  skip(): bool {
    const open = new Array<u8>();
    while (true) {
      // A value is expected here.
      const c = this.peek();
      if (c == 0x7b || c == 0x5b) {
        this.pos++;
        const close: u8 = c == 0x7b ? 0x7d : 0x5d;
        if (this.peek() == close) {
          this.pos++;
        } else {
          open.push(close);
          if (close == 0x7d && !this.memberName()) return false;
          continue;
        }
      } else if (!this.scalar()) {
        return false;
      }
      // A value ended: close what it ends, then expect ',' and the next value.
      while (true) {
        if (open.length == 0) return true;
        const d = this.peek();
        const top = open[open.length - 1];
        if (d == <i32>top) {
          this.pos++;
          open.pop();
          continue;
        }
        if (d != 0x2c) return this.fail("invalid JSON: want ',' or '" + String.fromCharCode(top) + "'" + at(this.pos, this.end));
        this.pos++;
        if (top == 0x7d && !this.memberName()) return false;
        break;
      }
    }
  }

  private memberName(): bool {
    if (this.peek() != 0x22) return this.fail("invalid JSON: want a member name" + at(this.pos, this.end));
    return this.skipString() && this.expect(0x3a, "':'");
  }

  // scalar checks a string, number, true, false or null and moves past it.
  private scalar(): bool {
    switch (this.peek()) {
      case 0x22: return this.skipString();
      case 0x74: return this.literal("true");
      case 0x66: return this.literal("false");
      case 0x6e: return this.literal("null");
      case -1: return this.fail("invalid JSON: unexpected end of input");
    }
    return this.skipNumber();
  }

  private literal(word: string): bool {
    const n = <usize>word.length;
    if (this.end - this.pos < n) return this.fail("invalid JSON: unexpected end of input");
    for (let i: usize = 0; i < n; i++) {
      if (<i32>load<u8>(this.pos + i) != word.charCodeAt(<i32>i)) return this.fail("invalid JSON: invalid literal" + at(this.pos, this.end));
    }
    this.pos += n;
    return true;
  }

  // skipString checks the string at pos (RFC 8259: no raw control characters, only
  // the defined escapes) and moves past its closing quote.
  private skipString(): bool {
    let p = this.pos + 1;
    while (p < this.end) {
      const c = load<u8>(p);
      if (c == 0x22) {
        this.pos = p + 1;
        return true;
      }
      if (c < 0x20) return this.fail("invalid JSON: control character in a string" + at(p, this.end));
      if (c == 0x5c) {
        if (p + 1 >= this.end) break;
        const e = load<u8>(p + 1);
        if (e == 0x75) { // \uXXXX
          if (p + 6 > this.end) break;
          for (let i: usize = 2; i < 6; i++) {
            if (hexValue(load<u8>(p + i)) < 0) return this.fail("invalid JSON: bad \\u escape" + at(p, this.end));
          }
          p += 6;
          continue;
        }
        if (e != 0x22 && e != 0x5c && e != 0x2f && e != 0x62 && e != 0x66 && e != 0x6e && e != 0x72 && e != 0x74) {
          return this.fail("invalid JSON: bad escape" + at(p, this.end));
        }
        p += 2;
        continue;
      }
      p++;
    }
    return this.fail("invalid JSON: unexpected end of input in a string");
  }

  // skipNumber checks -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? and moves past it.
  private skipNumber(): bool {
    let p = this.pos;
    const e = this.end;
    if (p < e && load<u8>(p) == 0x2d) p++;
    if (p >= e || !isDigit(load<u8>(p))) return this.fail("invalid JSON: invalid value" + at(this.pos, e));
    if (load<u8>(p) == 0x30) {
      p++;
    } else {
      while (p < e && isDigit(load<u8>(p))) p++;
    }
    if (p < e && load<u8>(p) == 0x2e) {
      p++;
      if (p >= e || !isDigit(load<u8>(p))) return this.fail("invalid JSON: invalid number" + at(this.pos, e));
      while (p < e && isDigit(load<u8>(p))) p++;
    }
    if (p < e && (load<u8>(p) | 0x20) == 0x65) {
      p++;
      if (p < e && (load<u8>(p) == 0x2b || load<u8>(p) == 0x2d)) p++;
      if (p >= e || !isDigit(load<u8>(p))) return this.fail("invalid JSON: invalid number" + at(this.pos, e));
      while (p < e && isDigit(load<u8>(p))) p++;
    }
    this.pos = p;
    return true;
  }
}

function isDigit(c: u8): bool {
  return c >= 0x30 && c <= 0x39;
}

function hexValue(c: u8): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  c |= 0x20;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

function at(p: usize, end: usize): string {
  return p < end ? " near '" + String.fromCharCode(load<u8>(p)) + "'" : " at the end of input";
}

export function kindName(k: Kind): string {
  switch (k) {
    case Kind.Null: return "null";
    case Kind.Bool: return "a boolean";
    case Kind.Number: return "a number";
    case Kind.String: return "a string";
    case Kind.Array: return "an array";
    case Kind.Object: return "an object";
  }
  return "nothing";
}

// Builds a string of UTF-16 code units.
class Units {
  buf: Uint16Array;
  n: i32 = 0;
  constructor(cap: i32) {
    this.buf = new Uint16Array(max(cap, 8));
  }
  push(u: u32): void {
    if (this.n == this.buf.length) {
      const bigger = new Uint16Array(this.n * 2);
      memory.copy(bigger.dataStart, this.buf.dataStart, <usize>this.n << 1);
      this.buf = bigger;
    }
    unchecked(this.buf[this.n++] = <u16>u);
  }
  code(cp: u32): void {
    if (cp < 0x10000) {
      this.push(cp);
    } else {
      cp -= 0x10000;
      this.push(0xd800 | (cp >> 10));
      this.push(0xdc00 | (cp & 0x3ff));
    }
  }
  toString(): string {
    return String.UTF16.decodeUnsafe(this.buf.dataStart, <usize>this.n << 1);
  }
}

// decodeUTF8 decodes the UTF-8 bytes from p to end into a string; each byte that does
// not start a valid sequence becomes U+FFFD, as Go's utf8.DecodeRune reads it.
export function decodeUTF8(p: usize, end: usize): string {
  const u = new Units(<i32>(end - p));
  while (p < end) p = decodeRune(p, end, u);
  return u.toString();
}

// decodeRune decodes one UTF-8 sequence at p into u and returns where the next starts.
function decodeRune(p: usize, end: usize, u: Units): usize {
  const c0 = <u32>load<u8>(p);
  if (c0 < 0x80) {
    u.push(c0);
    return p + 1;
  }
  let n: usize = 0;
  let cp: u32 = 0;
  let min: u32 = 0;
  if (c0 >= 0xc2 && c0 <= 0xdf) { n = 2; cp = c0 & 0x1f; min = 0x80; }
  else if (c0 >= 0xe0 && c0 <= 0xef) { n = 3; cp = c0 & 0x0f; min = 0x800; }
  else if (c0 >= 0xf0 && c0 <= 0xf4) { n = 4; cp = c0 & 0x07; min = 0x10000; }
  if (n == 0 || end - p < n) {
    u.push(0xfffd);
    return p + 1;
  }
  for (let i: usize = 1; i < n; i++) {
    const c = <u32>load<u8>(p + i);
    if ((c & 0xc0) != 0x80) {
      u.push(0xfffd);
      return p + 1;
    }
    cp = (cp << 6) | (c & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
    u.push(0xfffd);
    return p + 1;
  }
  u.code(cp);
  return p + n;
}

// decodeJSONString decodes the inside of a string literal already checked by
// skipString: escapes resolved, invalid UTF-8 and unpaired surrogates as U+FFFD.
function decodeJSONString(p: usize, end: usize): string {
  const u = new Units(<i32>(end - p));
  while (p < end) {
    const c = load<u8>(p);
    if (c != 0x5c) {
      p = decodeRune(p, end, u);
      continue;
    }
    const e = load<u8>(p + 1);
    p += 2;
    switch (e) {
      case 0x62: u.push(0x08); break;
      case 0x66: u.push(0x0c); break;
      case 0x6e: u.push(0x0a); break;
      case 0x72: u.push(0x0d); break;
      case 0x74: u.push(0x09); break;
      case 0x75: {
        let cp = hex4(p);
        p += 4;
        if (cp >= 0xd800 && cp < 0xdc00) {
          // A high surrogate counts only with a low one right after it.
          if (p + 6 <= end && load<u8>(p) == 0x5c && load<u8>(p + 1) == 0x75) {
            const lo = hex4(p + 2);
            if (lo >= 0xdc00 && lo < 0xe000) {
              u.code(0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00));
              p += 6;
              break;
            }
          }
          cp = 0xfffd;
        } else if (cp >= 0xdc00 && cp < 0xe000) {
          cp = 0xfffd;
        }
        u.push(cp);
        break;
      }
      default: u.push(e); // " \ /
    }
  }
  return u.toString();
}

function hex4(p: usize): u32 {
  return (<u32>hexValue(load<u8>(p)) << 12) | (<u32>hexValue(load<u8>(p + 1)) << 8) |
    (<u32>hexValue(load<u8>(p + 2)) << 4) | <u32>hexValue(load<u8>(p + 3));
}

// equalFoldName reports whether the member name a matches the field name b as
// encoding/json matches them: exactly, or after folding each character to upper case
// of its lower case, so that ASCII letters match in any case, U+017F (ſ) matches 's'
// and U+212A (Kelvin sign) matches 'k'. b must be ASCII, as the SDK's field names are.
export function equalFoldName(a: string, b: string): bool {
  if (a.length != b.length) {
    // ſ and K are one UTF-16 unit each, like the letters they fold to.
    return false;
  }
  for (let i = 0; i < a.length; i++) {
    let x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x == 0x17f) x = 0x53; // ſ -> S
    else if (x == 0x212a) x = 0x4b; // K -> K
    if (x >= 0x61 && x <= 0x7a) x -= 0x20;
    let yy = y;
    if (yy >= 0x61 && yy <= 0x7a) yy -= 0x20;
    if (x != yy) return false;
  }
  return true;
}

// Writer builds UTF-8 JSON (or text) in a growing buffer. Strings are escaped as Go's
// encoder escapes them with HTML escaping off; unpaired surrogates become U+FFFD, so
// the output is always valid UTF-8.
export class Writer {
  buf: Uint8Array = new Uint8Array(256);
  len: i32 = 0;

  private grow(n: i32): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const bigger = new Uint8Array(cap);
    memory.copy(bigger.dataStart, this.buf.dataStart, this.len);
    this.buf = bigger;
  }

  // result returns what was written so far.
  result(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }

  byte(c: u8): void {
    this.grow(1);
    unchecked(this.buf[this.len++] = c);
  }

  ascii(s: string): void {
    for (let i = 0; i < s.length; i++) this.byte(<u8>s.charCodeAt(i));
  }

  bytes(p: usize, n: i32): void {
    this.grow(n);
    memory.copy(this.buf.dataStart + this.len, p, n);
    this.len += n;
  }

  raw(v: RawJSON): void {
    this.bytes(v.bytes.dataStart, v.bytes.length);
  }

  // text appends s as UTF-8, not quoted.
  text(s: string): void {
    for (let i = 0; i < s.length; i++) {
      const c = <u32>s.charCodeAt(i);
      if (c < 0x80) {
        this.byte(<u8>c);
        continue;
      }
      i = this.codePoint(s, i, c);
    }
  }

  // codePoint appends the character starting with unit c at s[i] and returns the
  // index of its last unit.
  private codePoint(s: string, i: i32, c: u32): i32 {
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
      const lo = <u32>s.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo < 0xe000) {
        this.utf8(0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00));
        return i + 1;
      }
    }
    this.utf8(c >= 0xd800 && c < 0xe000 ? 0xfffd : c);
    return i;
  }

  private utf8(cp: u32): void {
    this.grow(4);
    const b = this.buf;
    if (cp < 0x80) {
      b[this.len++] = <u8>cp;
    } else if (cp < 0x800) {
      b[this.len++] = <u8>(0xc0 | (cp >> 6));
      b[this.len++] = <u8>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      b[this.len++] = <u8>(0xe0 | (cp >> 12));
      b[this.len++] = <u8>(0x80 | ((cp >> 6) & 0x3f));
      b[this.len++] = <u8>(0x80 | (cp & 0x3f));
    } else {
      b[this.len++] = <u8>(0xf0 | (cp >> 18));
      b[this.len++] = <u8>(0x80 | ((cp >> 12) & 0x3f));
      b[this.len++] = <u8>(0x80 | ((cp >> 6) & 0x3f));
      b[this.len++] = <u8>(0x80 | (cp & 0x3f));
    }
  }

  // string appends s as a JSON string.
  string(s: string): void {
    this.byte(0x22);
    for (let i = 0; i < s.length; i++) {
      const c = <u32>s.charCodeAt(i);
      if (c >= 0x80) {
        if (c == 0x2028 || c == 0x2029) {
          this.ascii(c == 0x2028 ? "\\u2028" : "\\u2029");
        } else {
          i = this.codePoint(s, i, c);
        }
        continue;
      }
      switch (c) {
        case 0x22: this.ascii("\\\""); break;
        case 0x5c: this.ascii("\\\\"); break;
        case 0x0a: this.ascii("\\n"); break;
        case 0x0d: this.ascii("\\r"); break;
        case 0x09: this.ascii("\\t"); break;
        default:
          if (c < 0x20) {
            this.ascii("\\u00");
            this.byte(<u8>"0123456789abcdef".charCodeAt(c >> 4));
            this.byte(<u8>"0123456789abcdef".charCodeAt(c & 15));
          } else {
            this.byte(<u8>c);
          }
      }
    }
    this.byte(0x22);
  }

  int(v: i64): void {
    this.ascii(v.toString());
  }

  // member appends "name": after a ',' unless it is the object's first.
  member(name: string, first: bool): void {
    if (!first) this.byte(0x2c);
    this.string(name);
    this.byte(0x3a);
  }
}
