// output-guard: a post module that masks listed words in the assistant's answer, whole
// words only, ASCII case-insensitively, in full responses (cocoon_post) and in streams
// (cocoon_chunk/cocoon_end). The same module as ../go and ../c, passing the same
// vectors (../testdata); the rules are in ../README.md.
//
// AssemblyScript strings are UTF-16, the rules are about UTF-8 bytes, and they agree:
// a byte >= 0x80 is part of a non-ASCII character, and so is a code unit >= 0x80.
import { ChatResponse, ConfigObject, config, fail, onPost, onStream } from "@cocoonhost/as-sdk";
export * from "@cocoonhost/as-sdk/post";
export * from "@cocoonhost/as-sdk/stream";

// The config, parsed on first use, so that a bad config fails the hook with a logged
// reason: words (ASCII lower case), and the replacement, or stars when it is absent.
let configLoaded = false;
let configError: string | null = null;
let words = new Set<string>();
let longest = 0;
let stars = true;
let replacement = "";

// isWord reports whether code unit c belongs to a word: an ASCII letter, digit or '_',
// or part of a non-ASCII character. Or-ing 0x20 folds 'A'-'Z' onto 'a'-'z' and maps no
// other code unit below 0x80 into that range.
// @ts-ignore: decorator
@inline function isWord(c: u32): bool {
  return c >= 0x80 || c == 0x5f || c - 0x30 < 10 || (c | 0x20) - 0x61 < 26;
}

// unit returns the code unit of s at i, which the caller keeps in range.
// @ts-ignore: decorator
@inline function unit(s: string, i: i32): u32 {
  return load<u16>(changetype<usize>(s) + (<usize>i << 1));
}

// parseConfig reads {"words": [...], "replacement": "..."} strictly, with the Go
// version's messages; it returns the problem, or null.
function parseConfig(): string | null {
  const c = ConfigObject.decode(config(), ["words", "replacement"]);
  const list = c.strings("words", []);
  stars = !c.has("replacement");
  replacement = c.string("replacement", "");
  if (c.error != null) return c.error;
  if (list.length == 0) return "config: words must list at least one word";
  for (let i = 0; i < list.length; i++) {
    const w = list[i];
    if (w.length == 0) return "config: words[" + i.toString() + "] is empty";
    for (let j = 0; j < w.length; j++) {
      if (!isWord(unit(w, j))) {
        return "config: words[" + i.toString() + "] \"" + w + "\" contains '" + w.charAt(j) +
          "': a word may only contain letters, digits and '_'";
      }
    }
    words.add(folded(w, 0, w.length));
    if (w.length > longest) longest = w.length;
  }
  return null;
}

// loaded reports whether the config is good, failing the hook call with the reason
// when it is not (on every call: each is a separate hook call with its own outcome).
function loaded(): bool {
  if (!configLoaded) {
    configLoaded = true;
    configError = parseConfig();
  }
  if (configError != null) fail(configError!);
  return configError == null;
}

// folded returns s[from:to] with ASCII letters in lower case.
function folded(s: string, from: i32, to: i32): string {
  const n = to - from;
  const out = changetype<string>(__new(<usize>n << 1, idof<string>()));
  for (let k = 0; k < n; k++) {
    let c = unit(s, from + k);
    if (c - 0x41 < 26) c |= 0x20;
    store<u16>(changetype<usize>(out) + (<usize>k << 1), <u16>c);
  }
  return out;
}

// masked returns the mask of the word s[from:to]: the replacement, or one '*' per
// character (a surrogate pair is one character).
function masked(s: string, from: i32, to: i32): string {
  if (!stars) return replacement;
  let n = to - from;
  for (let k = from + 1; k < to; k++) {
    if (unit(s, k) - 0xdc00 < 0x400 && unit(s, k - 1) - 0xd800 < 0x400) n--;
  }
  return "*".repeat(n);
}

// guard returns s with every listed word masked; s itself when nothing matches.
// Cost: O(len), plus one folded copy and set lookup per run of word units no longer
// than the longest listed word.
function guard(s: string): string {
  let pieces: string[] | null = null;
  let copied = 0; // s[:copied] is in pieces
  const n = s.length;
  for (let i = 0; i < n; ) {
    if (!isWord(unit(s, i))) {
      i++;
      continue;
    }
    let j = i + 1;
    while (j < n && isWord(unit(s, j))) j++;
    if (j - i <= longest && words.has(folded(s, i, j))) {
      if (pieces == null) pieces = new Array<string>();
      pieces.push(s.substring(copied, i));
      pieces.push(masked(s, i, j));
      copied = j;
    }
    i = j;
  }
  if (pieces == null) return s;
  pieces.push(s.substring(copied));
  return pieces.join("");
}

onPost((resp: ChatResponse): ChatResponse | null => {
  if (!loaded()) return null;
  for (let i = 0; i < resp.choices.length; i++) resp.choices[i].message.content.mapText(guard);
  return resp;
});

// The stream's state: the text held back, the start of a word the next delta may
// continue, as the deltas that make it up. A delta that is all word units is only
// added to the list, so a long word costs O(its length) however it is split, and the
// collector reclaims everything else each call allocates: memory stays bounded by the
// longest word however many chunks arrive (the host gives every answer a fresh
// instance).
let held = new Array<string>();

onStream((delta: string): string | null => {
  if (!loaded()) return null;
  let cut = delta.length;
  while (cut > 0 && isWord(unit(delta, cut - 1))) cut--;
  if (cut == 0) {
    if (delta.length > 0) held.push(delta);
    return "";
  }
  held.push(delta.substring(0, cut));
  const text = held.join("");
  held = cut < delta.length ? [delta.substring(cut)] : new Array<string>();
  return guard(text);
}, (): string | null => {
  if (!loaded()) return null;
  const text = held.join("");
  held = new Array<string>();
  return guard(text);
});
