/*
 * cocoon_json.h: a small, strict, pull-style JSON reader and writer for Cocoon modules
 * in C. Include it after cocoon.h; like cocoon.h, the one .c file that defines
 * COCOON_IMPLEMENTATION gets the definitions.
 *
 * The reader validates RFC 8259 as it goes (UTF-8 included) and never reads outside the
 * input. It does not build a tree: the caller walks the structure it cares about with
 * cj_object_next/cj_array_next and copies everything else verbatim as raw spans
 * (cj_skip), which is what a module that must pass unknown fields through wants.
 * Nesting is bounded by CJ_MAX_DEPTH (Go's encoding/json limit) and walked without
 * recursion, so hostile input cannot overflow the stack.
 *
 * Errors are sticky: the first one is kept in the scanner (message and byte offset),
 * every later call fails, and cj_log_error reports it.
 *
 *     cj_scanner s;
 *     cj_iter it;
 *     cj_span key;
 *     cj_init(&s, in, len);
 *     if (!cj_object_begin(&s, &it)) ...;
 *     while (cj_object_next(&s, &it, &key) > 0) {
 *         if (cj_str_eq(key, "model")) ... else cj_skip(&s, NULL);
 *     }
 *     if (!cj_finish(&s)) { cj_log_error(&s, "request"); return cocoon_fail(); }
 */
#ifndef COCOON_JSON_H
#define COCOON_JSON_H

#include "cocoon.h"

/* CJ_MAX_DEPTH is the deepest nesting of objects and arrays accepted. */
#define CJ_MAX_DEPTH 10000

/* cj_span is a run of input bytes. For strings it is the raw body between the quotes,
 * still escaped, which is itself a valid JSON string body. */
typedef struct {
    const uint8_t *ptr;
    uint32_t len;
} cj_span;

typedef enum { CJ_INVALID, CJ_OBJECT, CJ_ARRAY, CJ_STRING, CJ_NUMBER, CJ_BOOL, CJ_NULL } cj_kind;

typedef struct {
    const uint8_t *base, *p, *end;
    uint32_t depth;
    bool escaped;    /* whether the last string or key read had escapes */
    const char *err; /* first error, NULL while none */
} cj_scanner;

/* cj_iter is the state of one object or array being walked. */
typedef struct {
    bool started;
} cj_iter;

/* cj_init starts reading the len bytes at data. */
void cj_init(cj_scanner *s, const void *data, uint32_t len);

/* cj_peek returns the kind of the next value, without consuming it (CJ_INVALID at a
 * byte that cannot start a value, or after an error). */
cj_kind cj_peek(cj_scanner *s);

/* cj_kind_of returns the kind of the raw value val (as cj_skip returns it). */
cj_kind cj_kind_of(cj_span val);

/* cj_skip validates and consumes the next value; its raw bytes go to *raw if not NULL. */
bool cj_skip(cj_scanner *s, cj_span *raw);

/* cj_string consumes a string value; *body gets its raw (escaped) body. */
bool cj_string(cj_scanner *s, cj_span *body);

/* cj_object_begin consumes '{'. */
bool cj_object_begin(cj_scanner *s, cj_iter *it);

/*
 * cj_object_next advances to the next member: it returns 1 with the member's key in
 * *key and the scanner at its value, which the caller must consume; 0 when the closing
 * '}' was consumed; -1 on error.
 */
int cj_object_next(cj_scanner *s, cj_iter *it, cj_span *key);

/* cj_array_begin consumes '['. */
bool cj_array_begin(cj_scanner *s, cj_iter *it);

/* cj_array_next returns 1 with the scanner at the next element, which the caller must
 * consume; 0 when the closing ']' was consumed; -1 on error. */
int cj_array_next(cj_scanner *s, cj_iter *it);

/* cj_finish checks that only whitespace is left and no error occurred. */
bool cj_finish(cj_scanner *s);

/* cj_log_error logs "<what> is not valid JSON: <error> at byte <offset>" at error level. */
void cj_log_error(const cj_scanner *s, const char *what);

/* cj_str_eqn reports whether the string body (from cj_string or a key) decodes to the
 * n bytes at lit. Cost: O(1) for most bodies that differ (by their length or first
 * byte), about n/8 loop iterations for a match; a body with escapes is decoded. */
bool cj_str_eqn(cj_span body, const void *lit, uint32_t n);

/* cj_str_eq is cj_str_eqn for a NUL-terminated lit. Inline, so that the compiler
 * computes the length of a string literal. */
static inline bool cj_str_eq(cj_span body, const char *lit) {
    return cj_str_eqn(body, lit, (uint32_t)cocoon_strlen(lit));
}

/* CJ_SPAN makes a cj_span of a string literal, e.g. for the names of cj_object_find. */
#define CJ_SPAN(lit) {(const uint8_t *)("" lit), sizeof(lit) - 1}

/*
 * cj_unescape appends the decoded text of a string body that the scanner validated.
 * \uXXXX escapes, surrogate pairs included, become UTF-8; a lone surrogate becomes
 * U+FFFD, as Go's encoding/json does. The decoded text is never longer than the body.
 */
void cj_unescape(cocoon_buf *out, cj_span body);

/*
 * cj_unescape_in_place decodes a validated string body over itself, as cj_unescape
 * does, and returns the decoded length. It needs no memory, and destroys the body: use
 * it only on input the module owns and has finished scanning.
 */
uint32_t cj_unescape_in_place(cj_span body);

/*
 * cj_object_find consumes the object at s, stores its raw bytes in *raw and, for each
 * of the n (at most 32) member names (see CJ_SPAN), a raw value of that member in
 * vals[i] (len 0 if absent), chosen as Go's guest SDK decodes typed fields: the last
 * value that is not null (null only if every one is), or, when kinds is not NULL, the
 * first value that is neither null nor of a kind in the set kinds[i] (see CJ_KINDS), so
 * that the caller's type check sees it. A value at s that is not an object is consumed
 * with every vals[i] empty. Returns false, with s->err set, on invalid JSON. Cost: one
 * pass.
 */
bool cj_object_find(cj_scanner *s, const cj_span *names, const uint32_t *kinds, cj_span *vals,
                    uint32_t n, cj_span *raw);

/* cj_is_string reports whether the raw value val is a string that decodes to want. */
static inline bool cj_is_string(cj_span val, const char *want) {
    return val.len >= 2 && val.ptr[0] == '"' &&
           cj_str_eq((cj_span){val.ptr + 1, val.len - 2}, want);
}

/* CJ_KINDS makes a set of kinds for cj_is_optional, e.g. CJ_KINDS(CJ_STRING). */
#define CJ_KINDS(k) (1u << (k))

/* cj_is_optional reports whether the raw value val is absent (len 0), null, or of a
 * kind in the set kinds: what Go's encoding/json accepts for a typed field, since it
 * treats absent and null alike. */
bool cj_is_optional(cj_span val, uint32_t kinds);

/* cj_is_int64 reports whether the raw value val is a number that Go's encoding/json
 * decodes into an int64: no fraction or exponent, and in range. */
bool cj_is_int64(cj_span val);

/*
 * cj_key_matches reports whether the key body matches the ASCII field name as Go's
 * encoding/json matches a key to a struct field: case-insensitively, where U+017F
 * (long s) folds to 's' and U+212A (Kelvin sign) to 'k'. Strict config parsers use it
 * to accept exactly the keys the Go SDK accepts.
 */
bool cj_key_matches(cj_span key, const char *name);

/* cj_copy consumes the next value and appends it to out verbatim. */
bool cj_copy(cj_scanner *s, cocoon_buf *out);

/* cj_write_key appends a key as cj_object_next gave it, and the ':' after it. */
void cj_write_key(cocoon_buf *out, cj_span key);

/* A cj_rewrite_fn consumes the value at s and appends its replacement to out; ctx is
 * the caller's. It returns false on an error, set in s or logged. */
typedef bool cj_rewrite_fn(cj_scanner *s, cocoon_buf *out, void *ctx);

/*
 * cj_rewrite_member appends the object obj (raw, validated by cj_object_find) with the
 * member whose value is target (from cj_object_find) rewritten by fn, and the other
 * members of the same name left out (Go's SDK keeps one; fn still sees them, so that
 * its checks fail where Go's decoding would).
 * Everything else is copied. An empty target copies obj unchanged.
 */
bool cj_rewrite_member(cocoon_buf *out, cj_span obj, cj_span target, cj_rewrite_fn *fn,
                       void *ctx);

/* cj_rewrite_elements consumes the array at s and appends it to out with every element
 * rewritten by fn; any other value is copied. */
bool cj_rewrite_elements(cj_scanner *s, cocoon_buf *out, cj_rewrite_fn *fn, void *ctx);

/* cj_escape appends text as a JSON string body (no quotes): '"', '\\' and control
 * characters are escaped, everything else is copied. */
void cj_escape(cocoon_buf *out, const uint8_t *text, uint32_t len);

/* cj_write_string appends text as a quoted JSON string. */
void cj_write_string(cocoon_buf *out, const uint8_t *text, uint32_t len);

#ifdef COCOON_IMPLEMENTATION

/* One bit per open container below the walk in cj_skip: 1 object, 0 array. */
static uint8_t cj__stack[CJ_MAX_DEPTH / 8 + 1];

static bool cj__fail(cj_scanner *s, const char *msg) {
    if (!s->err) s->err = msg;
    return false;
}

void cj_init(cj_scanner *s, const void *data, uint32_t len) {
    s->base = s->p = data;
    s->end = s->base + len;
    s->depth = 0;
    s->err = NULL;
}

static inline bool cj__is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* cj__non_ws flags the bytes of x that are not JSON whitespace; zero padding is one. */
static inline uint64_t cj__non_ws(uint64_t x) {
    uint64_t ws = cocoon_eq_mask(x, ' ') | cocoon_eq_mask(x, '\t') | cocoon_eq_mask(x, '\n') |
                  cocoon_eq_mask(x, '\r');
    return ~ws & COCOON_HIGH;
}

/* cj__ws skips whitespace and returns the next byte, or -1 at the end or on error.
 * Compact JSON has none, so the first byte is tested before any loop; a run of
 * indentation is skipped 8 bytes per iteration. */
static int cj__ws(cj_scanner *s) {
    if (s->err) return -1;
    if (s->p < s->end && cj__is_ws(*s->p)) {
        uint64_t other = cj__non_ws(cocoon_load64(s->p, s->end));
        while (!other) { /* first step before the loop, as in cj__plain_run */
            s->p += 8;
            other = cj__non_ws(cocoon_load64(s->p, s->end));
        }
        s->p += cocoon_first(other);
    }
    return s->p < s->end ? *s->p : -1;
}

/* cj__expect consumes byte c after optional whitespace. */
static bool cj__expect(cj_scanner *s, uint8_t c, const char *msg) {
    if (cj__ws(s) != c) return cj__fail(s, msg);
    s->p++;
    return true;
}

static bool cj__push(cj_scanner *s) {
    if (s->depth >= CJ_MAX_DEPTH) return cj__fail(s, "nesting too deep");
    s->depth++;
    return true;
}

static int cj__hex(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* cj__special flags the bytes of x that a JSON string cannot hold unescaped: control
 * characters, '"' and '\\'; with ascii set, also every byte from 0x80 up. Zero bytes are
 * control characters, so cocoon_load64's padding stops a scan at its end. */
static inline uint64_t cj__special(uint64_t x, bool ascii) {
    return cocoon_lt_mask(x, 0x20) | cocoon_eq_mask(x, '"') | cocoon_eq_mask(x, '\\') |
           (ascii ? x & COCOON_HIGH : 0);
}

/* cj__special_at flags the bytes of the 8 at p + i as cj__special does; past end it
 * flags the first, where the run ends. */
static inline uint64_t cj__special_at(const uint8_t *p, const uint8_t *end, uint32_t i,
                                      bool ascii) {
    return end - p > (ptrdiff_t)i ? cj__special(cocoon_load64(p + i, end), ascii) : 0x80;
}

/* cj__plain32 returns the offset of the first byte in the 32 at p that cj__special
 * flags, or 32 if there is none: a position at end counts as flagged. The four steps
 * are written out because clang keeps a loop of four as a loop, and a loop iteration is
 * what costs: this way a short run (most keys and values) costs none. */
static inline uint32_t cj__plain32(const uint8_t *p, const uint8_t *end, bool ascii) {
    uint64_t m;
    if ((m = cj__special_at(p, end, 0, ascii))) return cocoon_first(m);
    if ((m = cj__special_at(p, end, 8, ascii))) return 8 + cocoon_first(m);
    if ((m = cj__special_at(p, end, 16, ascii))) return 16 + cocoon_first(m);
    if ((m = cj__special_at(p, end, 24, ascii))) return 24 + cocoon_first(m);
    return 32;
}

/* cj__plain128 is cj__plain32 for 128 bytes, in straight-line steps. cj__plain32
 * returns 32 only when 32 bytes remain before end, so each step starts in the input. */
static inline uint32_t cj__plain128(const uint8_t *p, const uint8_t *end, bool ascii) {
    uint32_t n = cj__plain32(p, end, ascii);
    if (n == 32) n += cj__plain32(p + 32, end, ascii);
    if (n == 64) n += cj__plain32(p + 64, end, ascii);
    if (n == 96) n += cj__plain32(p + 96, end, ascii);
    return n;
}

/* cj__plain_run returns how far from p the bytes need no escaping in a JSON string:
 * no control characters, '"' or '\\'; with ascii set, also nothing from 0x80 up.
 * Cost: one loop iteration per 128 bytes after the first 128. */
static inline const uint8_t *cj__plain_run(const uint8_t *p, const uint8_t *end, bool ascii) {
    /* The first step is written before the loop: clang puts a while loop's test in the
     * loop header, so even a run that ends in the first step would cost one check. */
    uint32_t n = cj__plain128(p, end, ascii);
    while (n == 128) {
        p += 128;
        n = cj__plain128(p, end, ascii);
    }
    return p + n;
}

/* cj__string_rest continues cj__string at p, a byte that is not plain ASCII: it
 * consumes escapes and non-ASCII characters up to the closing quote and returns it, or
 * NULL with an error. Each escape and non-ASCII character costs a loop iteration. Kept
 * out of line so that clang cannot put the fast path's test inside this loop. */
__attribute__((noinline)) static const uint8_t *cj__string_rest(cj_scanner *s,
                                                                const uint8_t *p) {
    const uint8_t *end = s->end;
    while (p >= end || *p != '"') {
        if (p >= end) {
            s->p = p;
            cj__fail(s, "unterminated string");
            return NULL;
        }
        const char *err = NULL;
        uint8_t c = *p;
        if (c == '\\') {
            s->escaped = true;
            if (end - p < 2) {
                err = "unterminated string";
            } else {
                switch (p[1]) {
                case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                    p += 2;
                    break;
                case 'u':
                    if (end - p < 6 || cj__hex(p[2]) < 0 || cj__hex(p[3]) < 0 ||
                        cj__hex(p[4]) < 0 || cj__hex(p[5]) < 0)
                        err = "invalid \\u escape in string";
                    else
                        p += 6;
                    break;
                default:
                    err = "invalid escape in string";
                }
            }
        } else if (c < 0x20) {
            err = "control character in string";
        } else {
            uint32_t n = cocoon_utf8_len(p, end);
            if (n) p += n;
            else err = "invalid UTF-8 in string";
        }
        if (err) {
            s->p = p;
            cj__fail(s, err);
            return NULL;
        }
        p = cj__plain_run(p, end, true);
    }
    return p;
}

/* cj__string consumes a string at s->p (which is '"'). A string that is plain ASCII up
 * to its closing quote, the common case, costs no loop iteration beyond its scan's. */
static bool cj__string(cj_scanner *s, cj_span *body) {
    const uint8_t *p = cj__plain_run(++s->p, s->end, true);
    s->escaped = false;
    if ((p >= s->end || *p != '"') && !(p = cj__string_rest(s, p))) return false;
    if (body) {
        body->ptr = s->p;
        body->len = (uint32_t)(p - s->p);
    }
    s->p = p + 1;
    return true;
}

/* cj__non_digit flags the bytes of x that are not '0'-'9' (zero padding included): a
 * digit has its high bit clear and its low 7 bits in ['0', '9' + 1). */
static inline uint64_t cj__non_digit(uint64_t x) {
    uint64_t a = x & ~COCOON_HIGH;
    return (x | ~cocoon_ge7(a, '0') | cocoon_ge7(a, '9' + 1)) & COCOON_HIGH;
}

/* cj__digits consumes one or more digits, 8 per step (the first before the loop). */
static bool cj__digits(cj_scanner *s) {
    const uint8_t *start = s->p;
    uint64_t m = cj__non_digit(cocoon_load64(s->p, s->end));
    while (!m) {
        s->p += 8;
        m = cj__non_digit(cocoon_load64(s->p, s->end));
    }
    s->p += cocoon_first(m); /* padding past end is flagged, so this stops at end */
    return s->p > start || cj__fail(s, "invalid number");
}

/* cj__number consumes -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? at s->p. */
static bool cj__number(cj_scanner *s) {
    if (*s->p == '-') s->p++;
    if (s->p < s->end && *s->p == '0') s->p++;
    else if (!cj__digits(s)) return false;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!cj__digits(s)) return false;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
        if (!cj__digits(s)) return false;
    }
    return true;
}

static bool cj__literal(cj_scanner *s, const char *lit, uint32_t n) {
    if ((uint32_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return cj__fail(s, "invalid literal");
    s->p += n;
    return true;
}

cj_kind cj_peek(cj_scanner *s) {
    switch (cj__ws(s)) {
    case '{': return CJ_OBJECT;
    case '[': return CJ_ARRAY;
    case '"': return CJ_STRING;
    case 't': case 'f': return CJ_BOOL;
    case 'n': return CJ_NULL;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9': return CJ_NUMBER;
    default: return CJ_INVALID;
    }
}

cj_kind cj_kind_of(cj_span val) {
    cj_scanner s;
    cj_init(&s, val.ptr, val.len);
    return cj_peek(&s);
}

/* cj__key consumes `"key" :` after optional whitespace. */
static bool cj__key(cj_scanner *s, cj_span *key) {
    if (cj__ws(s) != '"') return cj__fail(s, "expected a string key");
    return cj__string(s, key) && cj__expect(s, ':', "expected ':' after key");
}

/* cj__scalar consumes the string, number or literal that starts with byte c at s->p. */
static bool cj__scalar(cj_scanner *s, int c) {
    switch (c) {
    case '"': return cj__string(s, NULL);
    case 't': return cj__literal(s, "true", 4);
    case 'f': return cj__literal(s, "false", 5);
    case 'n': return cj__literal(s, "null", 4);
    case -1: return cj__fail(s, "unexpected end of input");
    default:
        if (c != '-' && (c < '0' || c > '9')) return cj__fail(s, "unexpected character");
        return cj__number(s);
    }
}

/* cj__walk consumes the object or array at s->p, iteratively: nested containers push a
 * bit on cj__stack instead of recursing. */
static bool cj__walk(cj_scanner *s) {
    uint32_t base = s->depth;
    for (;;) {
        /* A value starts at s->p. */
        int c = cj__ws(s);
        if (c == '{' || c == '[') {
            if (!cj__push(s)) return false;
            s->p++;
            if (c == '{') cj__stack[s->depth / 8] |= (uint8_t)(1u << (s->depth % 8));
            else cj__stack[s->depth / 8] &= (uint8_t) ~(1u << (s->depth % 8));
            if (cj__ws(s) != (c == '{' ? '}' : ']')) {
                if (c == '{' && !cj__key(s, NULL)) return false;
                continue; /* the first element or member value */
            }
            s->p++; /* an empty container is a complete value */
            s->depth--;
        } else if (!cj__scalar(s, c)) {
            return false;
        }
        /* A value ended: close containers until one continues with ','. */
        for (;;) {
            if (s->depth == base) return true;
            bool object = cj__stack[s->depth / 8] & (1u << (s->depth % 8));
            c = cj__ws(s);
            if (c == ',') {
                s->p++;
                if (object && !cj__key(s, NULL)) return false;
                break;
            }
            if (c != (object ? '}' : ']'))
                return cj__fail(s, object ? "expected ',' or '}'" : "expected ',' or ']'");
            s->p++;
            s->depth--;
        }
    }
}

bool cj_skip(cj_scanner *s, cj_span *raw) {
    int c = cj__ws(s);
    if (c < 0) return cj__fail(s, "unexpected end of input");
    const uint8_t *start = s->p;
    /* A scalar, the most common value, needs no walk (and costs no loop iteration). */
    if (!(c == '{' || c == '[' ? cj__walk(s) : cj__scalar(s, c))) return false;
    if (raw) {
        raw->ptr = start;
        raw->len = (uint32_t)(s->p - start);
    }
    return true;
}

bool cj_string(cj_scanner *s, cj_span *body) {
    if (cj__ws(s) != '"') return cj__fail(s, "expected a string");
    return cj__string(s, body);
}

bool cj_object_begin(cj_scanner *s, cj_iter *it) {
    it->started = false;
    return cj__expect(s, '{', "expected an object") && cj__push(s);
}

int cj_object_next(cj_scanner *s, cj_iter *it, cj_span *key) {
    int c = cj__ws(s);
    if (c == '}') {
        s->p++;
        s->depth--;
        return 0;
    }
    if (it->started) {
        if (c != ',') {
            cj__fail(s, "expected ',' or '}'");
            return -1;
        }
        s->p++;
    }
    it->started = true;
    return cj__key(s, key) ? 1 : -1;
}

bool cj_array_begin(cj_scanner *s, cj_iter *it) {
    it->started = false;
    return cj__expect(s, '[', "expected an array") && cj__push(s);
}

int cj_array_next(cj_scanner *s, cj_iter *it) {
    int c = cj__ws(s);
    if (c < 0) {
        cj__fail(s, "unexpected end of input");
        return -1;
    }
    if (c == ']') {
        s->p++;
        s->depth--;
        return 0;
    }
    if (it->started) {
        if (c != ',') {
            cj__fail(s, "expected ',' or ']'");
            return -1;
        }
        s->p++;
    }
    it->started = true;
    return 1;
}

bool cj_finish(cj_scanner *s) {
    if (cj__ws(s) >= 0) return cj__fail(s, "unexpected data after the top-level value");
    return !s->err;
}

void cj_log_error(const cj_scanner *s, const char *what) {
    cocoon_buf b = {0};
    cocoon_buf_str(&b, what);
    cocoon_buf_str(&b, " is not valid JSON: ");
    cocoon_buf_str(&b, s->err ? s->err : "unknown error");
    cocoon_buf_str(&b, " at byte ");
    cocoon_buf_u32(&b, (uint32_t)(s->p - s->base));
    cocoon_buf_log(COCOON_ERROR, &b);
}

/* cj__put writes code point r as UTF-8 at dst and returns the bytes written. */
static uint32_t cj__put(uint8_t *dst, uint32_t r) {
    if (r < 0x80) {
        dst[0] = (uint8_t)r;
        return 1;
    }
    if (r < 0x800) {
        dst[0] = (uint8_t)(0xC0 | r >> 6);
        dst[1] = (uint8_t)(0x80 | (r & 0x3F));
        return 2;
    }
    if (r < 0x10000) {
        dst[0] = (uint8_t)(0xE0 | r >> 12);
        dst[1] = (uint8_t)(0x80 | (r >> 6 & 0x3F));
        dst[2] = (uint8_t)(0x80 | (r & 0x3F));
        return 3;
    }
    dst[0] = (uint8_t)(0xF0 | r >> 18);
    dst[1] = (uint8_t)(0x80 | (r >> 12 & 0x3F));
    dst[2] = (uint8_t)(0x80 | (r >> 6 & 0x3F));
    dst[3] = (uint8_t)(0x80 | (r & 0x3F));
    return 4;
}

/* cj__u4 decodes the 4 hex digits after "\u" at p, or returns -1 if p is not "\uXXXX". */
static int32_t cj__u4(const uint8_t *p, const uint8_t *end) {
    if (end - p < 6 || p[0] != '\\' || p[1] != 'u') return -1;
    int32_t r = 0;
    for (int i = 2; i < 6; i++) {
        int h = cj__hex(p[i]);
        if (h < 0) return -1;
        r = r << 4 | h;
    }
    return r;
}

/* cj__find_backslash returns the first '\\' at or after p, or end. */
static const uint8_t *cj__find_backslash(const uint8_t *p, const uint8_t *end) {
    uint64_t m = 0;
    while (p < end && !(m = cocoon_eq_mask(cocoon_load64(p, end), '\\'))) p += 8;
    if (p >= end) return end;
    p += cocoon_first(m);
    return p < end ? p : end;
}

/*
 * cj__decode writes the decoded body to dst, which may be body.ptr itself: every escape
 * decodes to at most as many bytes as it has, so writing never overtakes reading.
 */
static uint32_t cj__decode(uint8_t *dst, cj_span body) {
    const uint8_t *p = body.ptr, *end = p + body.len;
    uint8_t *w = dst;
    while (p < end) {
        const uint8_t *run = p;
        p = cj__find_backslash(p, end);
        if (w != run) memmove(w, run, (size_t)(p - run));
        w += p - run;
        if (end - p < 2) break;
        uint8_t c = p[1];
        if (c != 'u') {
            switch (c) {
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            default: break; /* '"', '\\', '/' stand for themselves */
            }
            *w++ = c;
            p += 2;
            continue;
        }
        int32_t r = cj__u4(p, end);
        if (r < 0) break; /* not validated by the scanner: stop rather than guess */
        p += 6;
        if (r >= 0xD800 && r < 0xDC00) {
            int32_t lo = cj__u4(p, end);
            if (lo >= 0xDC00 && lo < 0xE000) {
                r = 0x10000 + ((r - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else {
                r = 0xFFFD;
            }
        } else if (r >= 0xDC00 && r < 0xE000) {
            r = 0xFFFD;
        }
        w += cj__put(w, (uint32_t)r);
    }
    return (uint32_t)(w - dst);
}

void cj_unescape(cocoon_buf *out, cj_span body) {
    if (body.len && cocoon_buf_reserve(out, body.len))
        out->len += cj__decode(out->data + out->len, body);
}

uint32_t cj_unescape_in_place(cj_span body) {
    return cj__decode((uint8_t *)body.ptr, body);
}

bool cj_object_find(cj_scanner *s, const cj_span *names, const uint32_t *kinds, cj_span *vals,
                    uint32_t n, cj_span *raw) {
    cj_iter it;
    cj_span key, v;
    uint32_t bad = 0; /* bit i: vals[i] holds a wrongly typed value */
    int r;
    for (uint32_t i = 0; i < n; i++) vals[i] = (cj_span){NULL, 0};
    if (cj_peek(s) != CJ_OBJECT) return cj_skip(s, raw);
    raw->ptr = s->p;
    cj_object_begin(s, &it);
    while ((r = cj_object_next(s, &it, &key)) > 0) {
        uint32_t i = 0;
        while (i < n && !cj_str_eqn(key, names[i].ptr, names[i].len)) i++;
        if (!cj_skip(s, &v)) return false;
        if (i == n || (bad >> i & 1)) continue;
        cj_kind k = cj_kind_of(v);
        if (k != CJ_NULL && kinds && !(kinds[i] & CJ_KINDS(k))) bad |= 1u << i;
        if (k != CJ_NULL || !vals[i].len) vals[i] = v;
    }
    raw->len = (uint32_t)(s->p - raw->ptr);
    return r == 0;
}

bool cj_is_optional(cj_span val, uint32_t kinds) {
    cj_kind k = val.len ? cj_kind_of(val) : CJ_NULL;
    return k == CJ_NULL || (kinds & CJ_KINDS(k));
}

bool cj_is_int64(cj_span val) {
    const uint8_t *p = val.ptr, *end = p + val.len;
    bool neg = p < end && *p == '-';
    uint64_t limit = neg ? (uint64_t)1 << 63 : ((uint64_t)1 << 63) - 1, n = 0;
    if (neg) p++;
    if (p == end) return false;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9') return false;
        uint64_t d = *p - '0';
        if (n > (limit - d) / 10) return false;
        n = n * 10 + d;
    }
    return true;
}

bool cj_key_matches(cj_span key, const char *name) {
    void *mark = cocoon_heap_mark();
    cocoon_buf b = {0};
    cj_unescape(&b, key);
    const uint8_t *p = b.data, *end = p + b.len;
    bool eq = !b.oom;
    for (; eq && p < end && *name; name++) {
        uint8_t want = (uint8_t)*name;
        if (want >= 'A' && want <= 'Z') want |= 0x20;
        if (end - p >= 2 && p[0] == 0xC5 && p[1] == 0xBF) { /* U+017F */
            eq = want == 's';
            p += 2;
        } else if (end - p >= 3 && p[0] == 0xE2 && p[1] == 0x84 && p[2] == 0xAA) { /* U+212A */
            eq = want == 'k';
            p += 3;
        } else {
            uint8_t c = *p++;
            eq = (c >= 'A' && c <= 'Z' ? c | 0x20 : c) == want;
        }
    }
    eq = eq && p == end && !*name;
    cocoon_heap_release(mark);
    return eq;
}

bool cj_str_eqn(cj_span body, const void *lit, uint32_t n) {
    const uint8_t *end = body.ptr + body.len;
    /* Every escape decodes to fewer bytes than it has, so a body shorter than lit cannot
     * match, and one as long matches only without escapes, when its raw bytes are its
     * decoding. A first byte that differs and starts no escape decides at once. */
    if (body.len < n) return false;
    if (n == 0) return body.len == 0;
    if (body.ptr[0] != *(const uint8_t *)lit && body.ptr[0] != '\\') return false;
    if (body.len == n)
        return memcmp(body.ptr, lit, n) == 0 && cj__find_backslash(body.ptr, end) == end;
    if (cj__find_backslash(body.ptr, end) == end) return false;
    /* Rare: decode into scratch heap and give it back. */
    void *mark = cocoon_heap_mark();
    cocoon_buf b = {0};
    cj_unescape(&b, body);
    bool eq = !b.oom && b.len == n && memcmp(b.data, lit, n) == 0;
    cocoon_heap_release(mark);
    return eq;
}

void cj_escape(cocoon_buf *out, const uint8_t *text, uint32_t len) {
    static const char hex[] = "0123456789abcdef";
    const uint8_t *p = text, *end = text + len;
    while (p < end) {
        const uint8_t *run = p;
        p = cj__plain_run(p, end, false);
        cocoon_buf_append(out, run, (uint32_t)(p - run));
        if (p == end) break;
        uint8_t c = *p++;
        char e[6] = {'\\', 0, 0, 0, 0, 0};
        uint32_t n = 2;
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        default:
            e[1] = 'u';
            e[2] = '0';
            e[3] = '0';
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            n = 6;
        }
        cocoon_buf_append(out, e, n);
    }
}

bool cj_copy(cj_scanner *s, cocoon_buf *out) {
    cj_span raw;
    if (!cj_skip(s, &raw)) return false;
    cocoon_buf_append(out, raw.ptr, raw.len);
    return true;
}

void cj_write_key(cocoon_buf *out, cj_span key) {
    cocoon_buf_byte(out, '"');
    cocoon_buf_append(out, key.ptr, key.len);
    cocoon_buf_append(out, "\":", 2);
}

bool cj_rewrite_member(cocoon_buf *out, cj_span obj, cj_span target, cj_rewrite_fn *fn,
                       void *ctx) {
    cj_scanner s, t;
    cj_iter it;
    cj_span key, name = {NULL, 0};
    bool first = true;
    if (!target.len) {
        cocoon_buf_append(out, obj.ptr, obj.len);
        return true;
    }
    /* Find the target's name: the key of the member whose value starts at target. */
    cj_init(&t, obj.ptr, obj.len);
    cj_object_begin(&t, &it);
    while (cj_object_next(&t, &it, &key) > 0) {
        cj_peek(&t);
        if (t.p == target.ptr) {
            name = key; /* found: the target itself need not be scanned */
            break;
        }
        cj_skip(&t, NULL);
    }
    cj_init(&s, obj.ptr, obj.len);
    cj_object_begin(&s, &it);
    cocoon_buf_byte(out, '{');
    while (cj_object_next(&s, &it, &key) > 0) {
        cj_peek(&s); /* to the value, past whitespace */
        bool match = s.p == target.ptr;
        if (!match && key.len == name.len && memcmp(key.ptr, name.ptr, key.len) == 0) {
            /* An earlier duplicate (same raw key): Go decodes it too, so it goes
             * through fn for fn's checks, and its output is dropped. */
            uint32_t mark = out->len;
            if (!fn(&s, out, ctx)) return false;
            out->len = mark;
            continue;
        }
        if (!first) cocoon_buf_byte(out, ',');
        first = false;
        cj_write_key(out, key);
        if (!(match ? fn(&s, out, ctx) : cj_copy(&s, out))) return false;
    }
    cocoon_buf_byte(out, '}');
    return true;
}

bool cj_rewrite_elements(cj_scanner *s, cocoon_buf *out, cj_rewrite_fn *fn, void *ctx) {
    cj_iter it;
    int r;
    if (cj_peek(s) != CJ_ARRAY) return cj_copy(s, out);
    cj_array_begin(s, &it);
    cocoon_buf_byte(out, '[');
    for (bool first = true; (r = cj_array_next(s, &it)) > 0; first = false) {
        if (!first) cocoon_buf_byte(out, ',');
        if (!fn(s, out, ctx)) return false;
    }
    cocoon_buf_byte(out, ']');
    return r == 0;
}

void cj_write_string(cocoon_buf *out, const uint8_t *text, uint32_t len) {
    cocoon_buf_byte(out, '"');
    cj_escape(out, text, len);
    cocoon_buf_byte(out, '"');
}

#endif /* COCOON_IMPLEMENTATION */
#endif /* COCOON_JSON_H */
