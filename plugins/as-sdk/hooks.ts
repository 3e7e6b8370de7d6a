// Registering a module's handlers, and running them when the host calls a hook. The
// exports themselves are in pre.ts, post.ts and stream.ts: a module re-exports the
// ones it implements (`export * from "@cocoonhost/as-sdk/pre"`), and registers the
// handlers from its top-level code, which runs once at instantiation.

import { ChatRequest, ChatResponse } from "./types";
import { begin, fail, finish, inputBytes, log, Level, textBytes } from "./guest";
import { Reader, Writer, decodeUTF8 } from "./json";

export type PreHandler = (req: ChatRequest) => ChatRequest | null;
export type PostHandler = (resp: ChatResponse) => ChatResponse | null;
export type RawHandler = (input: Uint8Array) => Uint8Array | null;
export type ChunkHandler = (delta: string) => string | null;
export type EndHandler = () => string | null;

let preHandler: PreHandler | null = null;
let preRawHandler: RawHandler | null = null;
let postHandler: PostHandler | null = null;
let postRawHandler: RawHandler | null = null;
let chunkHandler: ChunkHandler | null = null;
let endHandler: EndHandler | null = null;

// onPre makes f the module's pre hook: it gets the decoded request and returns the
// request to send on, or null after reject or fail. Members the types have no field
// for are passed through (see ChatRequest). A module must not change the request's
// stream member: the host restores the client's value. A later call replaces f.
export function onPre(f: PreHandler): void {
  preHandler = f;
  preRawHandler = null;
}

// onPreRaw makes f the module's pre hook on the raw request JSON, for modules that do
// their own JSON handling. f returns the request JSON to send on, or null.
export function onPreRaw(f: RawHandler): void {
  preRawHandler = f;
  preHandler = null;
}

// onPost makes f the module's post hook: it gets the decoded chat.completion and
// returns the one to send, or null after reject or fail. The host restores usage.
export function onPost(f: PostHandler): void {
  postHandler = f;
  postRawHandler = null;
}

// onPostRaw makes f the module's post hook on the raw response JSON.
export function onPostRaw(f: RawHandler): void {
  postRawHandler = f;
  postHandler = null;
}

// onStream makes chunk and end the module's stream hooks. chunk gets one delta (text,
// never split inside a character) and returns the text to emit now, possibly empty;
// end returns whatever was held back. The same instance serves the whole answer, so
// module-level variables carry state from one call to the next; the collector frees
// what the calls allocate.
export function onStream(chunk: ChunkHandler, end: EndHandler): void {
  chunkHandler = chunk;
  endHandler = end;
}

function missing(hook: string, register: string): i64 {
  begin(hook);
  log(Level.Error, hook + ": no handler is registered; call " + register + " from the module's top-level code");
  return finish(null);
}

export function runPre(ptr: usize, len: usize): i64 {
  return runJSON<ChatRequest>("cocoon_pre", "onPre", "request", ptr, len, preRawHandler, preHandler, ChatRequest.decode);
}

export function runPost(ptr: usize, len: usize): i64 {
  return runJSON<ChatResponse>("cocoon_post", "onPost", "response", ptr, len, postRawHandler, postHandler, ChatResponse.decode);
}

// runJSON serves a hook whose input and output are one JSON document of type T (the
// request for cocoon_pre, the response for cocoon_post): the raw handler if one is
// registered, else the typed one on the input decoded with decode. Input that does not
// decode fails the hook, naming what (the decoder's message says where).
function runJSON<T>(hook: string, register: string, what: string, ptr: usize, len: usize,
  raw: RawHandler | null, typed: ((v: T) => T | null) | null, decode: (r: Reader) => T | null): i64 {
  if (raw != null) {
    begin(hook);
    return finish(raw(inputBytes(ptr, len)));
  }
  if (typed == null) return missing(hook, register);
  begin(hook);
  const r = new Reader(ptr, len);
  const v = decode(r);
  if (v == null || !r.done()) {
    fail("decoding the " + what + ": " + r.error!);
    return finish(null);
  }
  const out = typed(v);
  if (out == null) return finish(null);
  const w = new Writer();
  out.encode(w);
  return finish(w.result());
}

export function runChunk(ptr: usize, len: usize): i64 {
  const f = chunkHandler;
  if (f == null) return missing("cocoon_chunk", "onStream");
  begin("cocoon_chunk");
  const out = f(decodeUTF8(ptr, ptr + len));
  return finish(out == null ? null : textBytes(out));
}

export function runEnd(): i64 {
  const f = endHandler;
  if (f == null) return missing("cocoon_end", "onStream");
  begin("cocoon_end");
  const out = f();
  return finish(out == null ? null : textBytes(out));
}
