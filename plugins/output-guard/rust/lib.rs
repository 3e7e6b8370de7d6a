//! output-guard (Rust): a post module that masks configured words in the assistant's
//! answer, whole words only, ASCII case-insensitively, in full responses (cocoon_post)
//! and in streams (cocoon_chunk/cocoon_end). Same behaviour as ../go and ../c, passing
//! the same vectors (../testdata); the rules are in ../README.md.
//!
//! Only the standard library (no crates, so no registry): built by `make plugins` with
//! Debian's rustc for wasm32-unknown-unknown, which has no WASI, so the module imports
//! only the two `cocoon` functions it calls. The response is checked member by member
//! as the Go SDK decodes it, and rewritten in place: only the masked strings change.

use std::cell::RefCell;
use std::collections::HashSet;

#[link(wasm_import_module = "cocoon")]
extern "C" {
    #[link_name = "log"]
    fn host_log(level: i32, ptr: *const u8, len: usize);
    #[link_name = "config"]
    fn host_config(ptr: *mut u8, cap: usize) -> usize;
}

const ERROR: i32 = 3;

fn log_error(msg: &str) {
    // SAFETY: the host reads msg.len() bytes at msg's address, which lie in memory.
    unsafe { host_log(ERROR, msg.as_ptr(), msg.len()) }
}

/// The parsed config: words in ASCII lower case, and the replacement, or None to mask
/// each character with a star.
struct Config {
    words: HashSet<Vec<u8>>,
    longest: usize,
    replacement: Option<String>,
}

/// The module's state: one instance serves one request (the host makes a fresh one per
/// request), so the config is parsed once and the stream's held-back text lives here.
struct State {
    config: Option<Result<Config, String>>,
    input: Vec<u8>,
    output: Vec<u8>,
    held: String,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State { config: None, input: Vec::new(), output: Vec::new(), held: String::new() });
}

#[no_mangle]
pub extern "C" fn cocoon_abi_v1() {}

/// cocoon_alloc returns a buffer of size bytes for the next hook's input (SPEC §3.1);
/// it lives until the next cocoon_alloc.
#[no_mangle]
pub extern "C" fn cocoon_alloc(size: u32) -> *mut u8 {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.input = vec![0; size.max(1) as usize];
        s.input.as_mut_ptr()
    })
}

#[no_mangle]
pub extern "C" fn cocoon_post(_ptr: *const u8, len: usize) -> i64 {
    hook(len, |config, input, _| post(config, input))
}

#[no_mangle]
pub extern "C" fn cocoon_chunk(_ptr: *const u8, len: usize) -> i64 {
    hook(len, |config, input, held| {
        held.push_str(&go_string(input));
        // Emit up to the start of the trailing run of word bytes, which the next delta
        // may continue.
        let cut = held.bytes().rposition(|b| !is_word(b)).map_or(0, |i| i + 1);
        let out = guard(config, &held[..cut]);
        held.replace_range(..cut, "");
        Ok(out.into_bytes())
    })
}

#[no_mangle]
pub extern "C" fn cocoon_end() -> i64 {
    hook(0, |config, _, held| {
        let out = guard(config, held);
        held.clear();
        Ok(out.into_bytes())
    })
}

/// hook runs f on the config and the input the host wrote into the last cocoon_alloc
/// buffer (its first len bytes), and returns f's output as SPEC §3.2 says, or -1 after
/// logging why f failed.
fn hook(len: usize, f: impl FnOnce(&Config, &[u8], &mut String) -> Result<Vec<u8>, String>) -> i64 {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        let s = &mut *s;
        let config = s.config.get_or_insert_with(parse_config);
        let config = match config {
            Ok(c) => c,
            Err(e) => {
                log_error(e);
                return -1;
            }
        };
        let input = &s.input[..len.min(s.input.len())];
        match f(config, input, &mut s.held) {
            Ok(out) => {
                s.output = out;
                if s.output.is_empty() {
                    0
                } else {
                    ((s.output.as_ptr() as i64) << 32) | s.output.len() as i64
                }
            }
            Err(e) => {
                log_error(&e);
                -1
            }
        }
    })
}

// ---- Words ----

/// is_word reports whether b is a word byte: an ASCII letter or digit, '_', or part of
/// a non-ASCII UTF-8 sequence.
fn is_word(b: u8) -> bool {
    b >= 0x80 || b == b'_' || b.is_ascii_alphanumeric()
}

/// guard returns text with every listed word masked. Cost: O(len), plus one lookup per
/// run of word bytes no longer than the longest word.
fn guard(c: &Config, text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        if !is_word(b[i]) {
            i += 1;
            continue;
        }
        let j = b[i..].iter().position(|&x| !is_word(x)).map_or(b.len(), |k| i + k);
        if j - i <= c.longest && c.words.contains(&b[i..j].to_ascii_lowercase()) {
            out.push_str(&text[copied..i]);
            match &c.replacement {
                Some(r) => out.push_str(r),
                // One star per character: the bytes that are not continuation bytes.
                None => out.extend(b[i..j].iter().filter(|&&x| x & 0xC0 != 0x80).map(|_| '*')),
            }
            copied = j;
        }
        i = j;
    }
    out.push_str(&text[copied..]);
    out
}

fn parse_config() -> Result<Config, String> {
    // SAFETY: a zero-capacity call writes nothing; the second writes at most size bytes
    // into a buffer of that size.
    let size = unsafe { host_config(std::ptr::null_mut(), 0) };
    let mut b = vec![0u8; size];
    if size > 0 {
        unsafe { host_config(b.as_mut_ptr(), size) };
    }
    config_from(&b).map_err(|e| format!("output-guard config: {}", e))
}

fn config_from(b: &[u8]) -> Result<Config, String> {
    let mut s = Scanner::new(b);
    if s.peek() == b'\0' && s.pos == b.len() {
        return Err("the module has no config".into());
    }
    let mut words: Option<Vec<String>> = None;
    let mut replacement: Option<String> = None;
    if !s.null() {
        s.object("the config", |s, key| {
            if fold_is(&key, "words") {
                words = None;
                if !s.null() {
                    let mut list = Vec::new();
                    s.array("words", |s| {
                        list.push(s.string_or_null("words element")?.unwrap_or_default());
                        Ok(())
                    })?;
                    words = Some(list);
                }
                Ok(())
            } else if fold_is(&key, "replacement") {
                replacement = s.string_or_null("replacement")?;
                Ok(())
            } else {
                Err(format!("unknown field {:?}", key))
            }
        })?;
    }
    s.end()?;
    let words = words.unwrap_or_default();
    if words.is_empty() {
        return Err("words must list at least one word".into());
    }
    let mut c = Config { words: HashSet::new(), longest: 0, replacement };
    for (i, w) in words.iter().enumerate() {
        if w.is_empty() {
            return Err(format!("words[{}] is empty", i));
        }
        if let Some(x) = w.bytes().find(|&x| !is_word(x)) {
            return Err(format!("words[{}] {:?} contains {:?}: a word may only contain letters, digits and '_'", i, w, x as char));
        }
        c.longest = c.longest.max(w.len());
        c.words.insert(w.as_bytes().to_ascii_lowercase());
    }
    Ok(c)
}

// ---- The response, as the Go SDK decodes it ----

/// Edit replaces input[start..end] with json in the output.
struct Edit {
    start: usize,
    end: usize,
    json: Vec<u8>,
}

impl Edit {
    /// text replaces the string at start..end with text, masked.
    fn text(c: &Config, start: usize, end: usize, text: &str) -> Edit {
        let mut json = Vec::new();
        quote(&mut json, &guard(c, text));
        Edit { start, end, json }
    }
}

/// object_or_empty reads an object with object_or_null, and makes a null an empty
/// object in the output, as the Go SDK re-encodes a null element of a list of objects.
fn object_or_empty(s: &mut Scanner, edits: &mut Vec<Edit>, name: &str, member: impl FnMut(&mut Scanner, String) -> Result<(), String>) -> Result<(), String> {
    let start = s.pos;
    if s.null() {
        edits.push(Edit { start, end: start + 4, json: b"{}".to_vec() });
        return Ok(());
    }
    s.object(name, member)
}

/// post checks the response as the Go SDK decodes it (members named exactly as the
/// fields, after unescaping; known members of the wrong type fail the hook) and returns it with the text of every choice's message content
/// masked. Everything else is copied as it came.
fn post(c: &Config, input: &[u8]) -> Result<Vec<u8>, String> {
    let mut s = Scanner::new(input);
    let mut edits: Vec<Edit> = Vec::new();
    s.object("the response", |s, key| {
        if ["id", "object", "model"].contains(&key.as_str()) {
            s.string_or_null(&key).map(drop)
        } else if key == "created" {
            s.integer_or_null(&key)
        } else if key == "usage" {
            s.object_or_null("usage", |s, key| {
                if ["prompt_tokens", "completion_tokens", "total_tokens"].contains(&key.as_str()) {
                    s.integer_or_null(&key)
                } else {
                    s.skip()
                }
            })
        } else if key == "choices" {
            s.array_or_null("choices", |s| choice(c, s, &mut edits))
        } else {
            s.skip()
        }
    })
    .map_err(|e| format!("decoding the response: {}", e))?;
    s.end().map_err(|e| format!("decoding the response: {}", e))?;
    let mut out = Vec::with_capacity(input.len());
    let mut copied = 0;
    for e in edits {
        out.extend_from_slice(&input[copied..e.start]);
        out.extend_from_slice(&e.json);
        copied = e.end;
    }
    out.extend_from_slice(&input[copied..]);
    Ok(out)
}

fn choice(c: &Config, s: &mut Scanner, edits: &mut Vec<Edit>) -> Result<(), String> {
    let mut inner = Vec::new();
    object_or_empty(s, edits, "choice", |s, key| {
        if key == "index" {
            s.integer_or_null("index")
        } else if key == "finish_reason" {
            s.string_or_null("finish_reason").map(drop)
        } else if key == "message" {
            s.object_or_null("message", |s, key| {
                if key == "role" || key == "name" {
                    s.string_or_null(&key).map(drop)
                } else if key == "content" {
                    content(c, s, &mut inner)
                } else {
                    s.skip()
                }
            })
        } else {
            s.skip()
        }
    })?;
    edits.append(&mut inner);
    Ok(())
}

/// content masks a message's content: a string, or the text of every part of type
/// "text" (the last type member counts, as in Go).
fn content(c: &Config, s: &mut Scanner, edits: &mut Vec<Edit>) -> Result<(), String> {
    match s.peek() {
        b'"' => {
            let start = s.pos;
            let text = s.string("content")?;
            edits.push(Edit::text(c, start, s.pos, &text));
            Ok(())
        }
        b'[' => s.array("content", |s| {
            // Every text member is masked, not only the last one Go reads, so that no
            // reader of the output that takes the first of duplicates sees the word.
            let (mut kind, mut texts) = (String::new(), Vec::new());
            object_or_empty(s, edits, "content part", |s, key| {
                if key == "type" {
                    kind = s.string_or_null("type")?.unwrap_or_default();
                } else if key == "text" {
                    let start = s.pos;
                    if let Some(t) = s.string_or_null("text")? {
                        texts.push((start, s.pos, t));
                    }
                } else {
                    s.skip()?;
                }
                Ok(())
            })?;
            if kind == "text" {
                edits.extend(texts.iter().map(|(start, end, t)| Edit::text(c, *start, *end, t)));
            }
            Ok(())
        }),
        _ if s.null() => Ok(()),
        _ => Err("content: want a string, an array of parts or null".into()),
    }
}

/// fold_is reports whether config member name key selects the field named field
/// (ASCII, lower case), as Go's encoding/json matches them (the Go SDK decodes the
/// config with it, and the response with exact names): equal under Unicode case folding, where
/// 'ſ' (U+017F) folds to 's' and the Kelvin sign (U+212A) to 'k'.
fn fold_is(key: &str, field: &str) -> bool {
    let mut k = key.chars();
    for f in field.chars() {
        match k.next() {
            Some(x) if x.to_ascii_lowercase() == f => {}
            Some('\u{17F}') if f == 's' => {}
            Some('\u{212A}') if f == 'k' => {}
            _ => return false,
        }
    }
    k.next().is_none()
}

/// quote appends s as a JSON string.
fn quote(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1F => out.extend_from_slice(format!("\\u{:04x}", b).as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// go_string decodes b as Go does a []byte to string conversion for JSON: every byte
/// that does not start a valid UTF-8 sequence becomes U+FFFD.
fn go_string(mut b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    loop {
        match std::str::from_utf8(b) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let n = e.valid_up_to();
                out.push_str(std::str::from_utf8(&b[..n]).unwrap_or_default());
                out.push('\u{FFFD}');
                b = &b[n + 1..];
            }
        }
    }
}

// ---- A JSON scanner ----

/// Scanner reads one JSON document. Values the module has no use for are checked and
/// skipped without recursion, so no nesting depth can overflow the stack.
struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(b: &'a [u8]) -> Self {
        let mut s = Scanner { b, pos: 0 };
        s.ws();
        s
    }

    fn ws(&mut self) {
        while self.pos < self.b.len() && matches!(self.b[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    /// peek returns the next byte, or 0 at the end.
    fn peek(&self) -> u8 {
        self.b.get(self.pos).copied().unwrap_or(0)
    }

    fn fail<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{} at offset {}", what, self.pos))
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() != c {
            return self.fail(&format!("want {:?}", c as char));
        }
        self.pos += 1;
        self.ws();
        Ok(())
    }

    /// end checks that nothing but white space follows.
    fn end(&self) -> Result<(), String> {
        if self.pos != self.b.len() {
            return self.fail("unexpected data after the value");
        }
        Ok(())
    }

    /// null consumes a null if one comes next.
    fn null(&mut self) -> bool {
        if self.b[self.pos..].starts_with(b"null") {
            self.pos += 4;
            self.ws();
            return true;
        }
        false
    }

    fn kind_name(&self) -> &'static str {
        match self.peek() {
            b'"' => "string",
            b'{' => "object",
            b'[' => "array",
            b't' | b'f' => "bool",
            b'n' => "null",
            _ => "number",
        }
    }

    fn want<T>(&self, name: &str, kind: &str) -> Result<T, String> {
        self.fail(&format!("{}: want {}, got {}", name, kind, self.kind_name()))
    }

    /// object reads an object, calling member with each member's (unescaped) name; member
    /// must consume the value.
    fn object(&mut self, name: &str, mut member: impl FnMut(&mut Self, String) -> Result<(), String>) -> Result<(), String> {
        if self.peek() != b'{' {
            return self.want(name, "an object");
        }
        self.expect(b'{')?;
        if self.peek() == b'}' {
            return self.expect(b'}');
        }
        loop {
            let key = self.string("member name")?;
            self.expect(b':')?;
            member(self, key)?;
            if self.peek() == b',' {
                self.expect(b',')?;
            } else {
                return self.expect(b'}');
            }
        }
    }

    fn object_or_null(&mut self, name: &str, member: impl FnMut(&mut Self, String) -> Result<(), String>) -> Result<(), String> {
        if self.null() {
            return Ok(());
        }
        self.object(name, member)
    }

    /// array reads an array, calling element for each element, which it must consume.
    fn array(&mut self, name: &str, mut element: impl FnMut(&mut Self) -> Result<(), String>) -> Result<(), String> {
        if self.peek() != b'[' {
            return self.want(name, "an array");
        }
        self.expect(b'[')?;
        if self.peek() == b']' {
            return self.expect(b']');
        }
        loop {
            element(self)?;
            if self.peek() == b',' {
                self.expect(b',')?;
            } else {
                return self.expect(b']');
            }
        }
    }

    fn array_or_null(&mut self, name: &str, element: impl FnMut(&mut Self) -> Result<(), String>) -> Result<(), String> {
        if self.null() {
            return Ok(());
        }
        self.array(name, element)
    }

    fn string_or_null(&mut self, name: &str) -> Result<Option<String>, String> {
        if self.null() {
            return Ok(None);
        }
        if self.peek() != b'"' {
            return self.want(name, "a string");
        }
        self.string(name).map(Some)
    }

    /// integer_or_null reads an integer that fits an int64, as Go decodes one, or null.
    fn integer_or_null(&mut self, name: &str) -> Result<(), String> {
        if self.null() {
            return Ok(());
        }
        let start = self.pos;
        if !matches!(self.peek(), b'-' | b'0'..=b'9') {
            return self.want(name, "an integer");
        }
        self.number()?;
        let text = std::str::from_utf8(&self.b[start..self.pos]).unwrap_or("").trim_end();
        if text.parse::<i64>().is_err() {
            self.pos = start;
            return self.fail(&format!("{}: want an integer, got {}", name, text));
        }
        Ok(())
    }

    /// string reads a string and returns it unescaped; invalid UTF-8 and unpaired
    /// surrogate escapes become U+FFFD, as in Go.
    fn string(&mut self, name: &str) -> Result<String, String> {
        if self.peek() != b'"' {
            return self.want(name, "a string");
        }
        self.pos += 1;
        let mut raw = Vec::new();
        loop {
            let c = match self.b.get(self.pos) {
                Some(&c) => c,
                None => return self.fail("unterminated string"),
            };
            self.pos += 1;
            match c {
                b'"' => break,
                0..=0x1F => return self.fail("control character in string"),
                b'\\' => {
                    let e = self.peek();
                    self.pos += 1;
                    match e {
                        b'"' | b'\\' | b'/' => raw.push(e),
                        b'b' => raw.push(8),
                        b'f' => raw.push(12),
                        b'n' => raw.push(b'\n'),
                        b'r' => raw.push(b'\r'),
                        b't' => raw.push(b'\t'),
                        b'u' => {
                            let mut r = self.hex4()?;
                            if (0xD800..0xDC00).contains(&r) && self.b[self.pos..].starts_with(b"\\u") {
                                let save = self.pos;
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    r = 0x10000 + ((r - 0xD800) << 10) + (lo - 0xDC00);
                                } else {
                                    self.pos = save;
                                }
                            }
                            let ch = char::from_u32(r).unwrap_or('\u{FFFD}');
                            raw.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                        }
                        _ => return self.fail("invalid escape"),
                    }
                }
                _ => raw.push(c),
            }
        }
        self.ws();
        Ok(go_string(&raw))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.b.get(self.pos..self.pos + 4).and_then(|h| std::str::from_utf8(h).ok());
        match digits.and_then(|h| u32::from_str_radix(h, 16).ok()).filter(|_| digits.map_or(false, |h| h.bytes().all(|x| x.is_ascii_hexdigit()))) {
            Some(v) => {
                self.pos += 4;
                Ok(v)
            }
            None => self.fail("invalid \\u escape"),
        }
    }

    /// number checks a number as JSON defines it.
    fn number(&mut self) -> Result<(), String> {
        let b = self.b;
        let mut p = self.pos;
        let digits = |p: &mut usize| {
            let s = *p;
            while *p < b.len() && b[*p].is_ascii_digit() {
                *p += 1;
            }
            *p > s
        };
        if b.get(p) == Some(&b'-') {
            p += 1;
        }
        if b.get(p) == Some(&b'0') {
            p += 1;
        } else if !digits(&mut p) {
            return self.fail("invalid number");
        }
        if b.get(p) == Some(&b'.') {
            p += 1;
            if !digits(&mut p) {
                return self.fail("invalid number");
            }
        }
        if matches!(b.get(p), Some(b'e' | b'E')) {
            p += 1;
            if matches!(b.get(p), Some(b'+' | b'-')) {
                p += 1;
            }
            if !digits(&mut p) {
                return self.fail("invalid number");
            }
        }
        self.pos = p;
        self.ws();
        Ok(())
    }

    /// skip checks and skips one value of any kind, keeping the open brackets in a
    /// list rather than on the call stack.
    fn skip(&mut self) -> Result<(), String> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            // A value.
            match self.peek() {
                b'{' | b'[' => {
                    let c = self.peek();
                    self.expect(c)?;
                    let close = if c == b'{' { b'}' } else { b']' };
                    if self.peek() == close {
                        self.expect(close)?;
                    } else {
                        open.push(close);
                        if close == b'}' {
                            self.string("member name")?;
                            self.expect(b':')?;
                        }
                        continue;
                    }
                }
                b'"' => drop(self.string("string")?),
                b't' | b'f' | b'n' => {
                    let lit: &[u8] = match self.peek() {
                        b't' => b"true",
                        b'f' => b"false",
                        _ => b"null",
                    };
                    if !self.b[self.pos..].starts_with(lit) {
                        return self.fail("invalid literal");
                    }
                    self.pos += lit.len();
                    self.ws();
                }
                _ => self.number()?,
            }
            // After a value: the next member or element, or the end of containers.
            loop {
                let close = match open.last() {
                    None => return Ok(()),
                    Some(&c) => c,
                };
                if self.peek() == b',' {
                    self.expect(b',')?;
                    if close == b'}' {
                        self.string("member name")?;
                        self.expect(b':')?;
                    }
                    break;
                }
                self.expect(close)?;
                open.pop();
            }
        }
    }
}
