/*
 * cocoon.h: write a Cocoon module (ABI v1, abi/SPEC.md) in C, without libc.
 *
 * Header-only, stb style: every .c file may include it, and exactly one of them
 * defines COCOON_IMPLEMENTATION first, which emits the definitions, the
 * cocoon_abi_v1 marker and the cocoon_alloc export:
 *
 *     #define COCOON_IMPLEMENTATION
 *     #include "cocoon.h"
 *
 *     __attribute__((export_name("cocoon_pre")))
 *     int64_t cocoon_pre(const uint8_t *in, uint32_t len) {
 *         return cocoon_result(in, len);   // pass the request through
 *     }
 *
 * Build: clang --target=wasm32 -O2 -nostdlib -ffreestanding -Iplugins/c-sdk
 *        -Wl,--no-entry -Wl,--strip-all main.c  (see the Makefile).
 *
 * Memory: a bump allocator over __heap_base that grows linear memory on demand
 * and never frees on its own. That is sound because the host gives every request a
 * fresh instance (SPEC §8). A module that serves many calls in one request
 * (cocoon_chunk) reclaims per-call memory with cocoon_heap_mark/cocoon_heap_release.
 * memcpy, memmove and memset compile to the bulk-memory instructions memory.copy
 * and memory.fill, which every ABI v1 host (wazero) supports.
 */
#ifndef COCOON_H
#define COCOON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COCOON_EXPORT(name) __attribute__((export_name(name)))
#define COCOON_IMPORT(name) __attribute__((import_module("cocoon"), import_name(name)))

/* Log levels of cocoon.log (SPEC §4.1). */
enum { COCOON_DEBUG = 0, COCOON_INFO = 1, COCOON_WARN = 2, COCOON_ERROR = 3 };

/* Host imports (SPEC §4). A module imports only those it calls. */
COCOON_IMPORT("log") void cocoon_host_log(int32_t level, const void *ptr, uint32_t len);
COCOON_IMPORT("reject") void cocoon_host_reject(int32_t status, const void *ptr, uint32_t len);
COCOON_IMPORT("config") uint32_t cocoon_host_config(void *ptr, uint32_t cap);

/* The compiler may emit calls to these; COCOON_IMPLEMENTATION defines them. */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);

/*
 * cocoon_alloc returns size writable bytes, 8-byte aligned, or NULL (0) when memory
 * cannot grow that far. It is also the cocoon_alloc export the host calls before
 * each hook that takes input (SPEC §3.1). Cost: O(1) plus a memory.grow when the
 * heap runs past the end of memory.
 */
void *cocoon_alloc(uint32_t size);

/* cocoon_heap_mark returns the current top of the heap. */
void *cocoon_heap_mark(void);

/*
 * cocoon_heap_release frees every allocation at or above mark, which must come from
 * cocoon_heap_mark or point into memory allocated since. A mark above the current
 * top is ignored. Memory given back is reused by later allocations, not returned to
 * the host.
 */
void cocoon_heap_release(void *mark);

/*
 * cocoon_config returns the module's config from the pipeline manifest (SPEC §4.3) and
 * stores its length in *len. It is read from the host once per instance and cached on
 * the heap. Returns NULL with *len = 0 when there is no config, NULL with *len set to
 * the config size when memory for it cannot be allocated.
 */
const uint8_t *cocoon_config(uint32_t *len);

/* cocoon_result packs a successful hook result: len bytes at ptr (SPEC §3.2). */
static inline int64_t cocoon_result(const void *ptr, uint32_t len) {
    return (int64_t)(((uint64_t)(uintptr_t)ptr << 32) | len);
}

/* cocoon_fail is the result of a failed hook; log why before returning it. */
static inline int64_t cocoon_fail(void) { return -1; }

static inline size_t cocoon_strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

/* cocoon_log records a NUL-terminated message at level for the pipeline's owner. */
static inline void cocoon_log(int32_t level, const char *msg) {
    cocoon_host_log(level, msg, (uint32_t)cocoon_strlen(msg));
}

/* cocoon_fail_msg logs msg at error level and returns cocoon_fail(). */
static inline int64_t cocoon_fail_msg(const char *msg) {
    cocoon_log(COCOON_ERROR, msg);
    return cocoon_fail();
}

/*
 * cocoon_reject rejects the request with an HTTP status from SPEC §4.2 and a message
 * for the client, and returns the hook result to return with it.
 */
static inline int64_t cocoon_reject(int32_t status, const char *msg) {
    cocoon_host_reject(status, msg, (uint32_t)cocoon_strlen(msg));
    return cocoon_fail();
}

/*
 * cocoon_buf is a growable byte buffer on the heap. The zero value is an empty buffer.
 * Appends that cannot get memory set oom and are dropped, so a caller appends freely
 * and checks oom once at the end (cocoon_buf_result does). Growth is in place when the
 * buffer is the most recent allocation, and doubles otherwise, so n appended bytes
 * cost O(n) time and at most about 2n bytes of heap.
 */
typedef struct {
    uint8_t *data;
    uint32_t len, cap;
    bool oom;
} cocoon_buf;

/* cocoon_buf_reserve makes room for n more bytes; false (and oom set) if it cannot. */
bool cocoon_buf_reserve(cocoon_buf *b, uint32_t n);
void cocoon_buf_append(cocoon_buf *b, const void *p, uint32_t n);
void cocoon_buf_byte(cocoon_buf *b, uint8_t c);
void cocoon_buf_str(cocoon_buf *b, const char *s);
/* cocoon_buf_u32 appends n in decimal. */
void cocoon_buf_u32(cocoon_buf *b, uint32_t n);

/* cocoon_buf_log logs the buffer's bytes at level (or a fixed note if it ran out of memory). */
void cocoon_buf_log(int32_t level, const cocoon_buf *b);

/* cocoon_buf_result returns the buffer as a hook result, or fails with a log if oom. */
int64_t cocoon_buf_result(const cocoon_buf *b);

/*
 * SWAR ("SIMD within a register"): test 8 bytes per step in a uint64_t. A host must be
 * able to stop a runaway guest, so it meters or checks every loop iteration (the Cocoon
 * host adds about 1 ns per iteration; wazero's own check costs about 29 ns): scanning
 * text 8 bytes (or more) per iteration keeps that cost small on any host. Memory is little-endian: the byte at p + i is bits 8i..8i+7
 * of the word loaded from p, so the first matching byte is the lowest flagged one.
 * The masks below are exact: the high bit of each byte says whether that byte matches,
 * whatever the other bytes are, so any flagged byte can be used, not just the first.
 */
#define COCOON_ONES(c) (0x0101010101010101ull * (uint8_t)(c))
#define COCOON_HIGH COCOON_ONES(0x80)

/*
 * cocoon_load64 returns the 8 bytes at p, zero-padded past end (0 when p == end), so a
 * scan needs no byte loop for its tail: a caller that flags zero bytes stops at end.
 * p <= end is required. A full load is one i64.load; a partial one a memory.copy.
 */
static inline uint64_t cocoon_load64(const uint8_t *p, const uint8_t *end) {
    uint64_t x = 0;
    if (end - p >= 8) __builtin_memcpy(&x, p, 8);
    else if (p < end) memcpy(&x, p, (size_t)(end - p));
    return x;
}

/* cocoon_ge7 sets the high bit of each byte of x that is >= n, for x with no high bit
 * set (every byte < 0x80) and 1 <= n <= 0x80; the other bits are garbage. Adding
 * 0x80 - n carries into the high bit iff byte >= n, and no carry leaves a byte:
 * 0x7F + 0x7F fits in one. */
#define cocoon_ge7(x, n) ((x) + COCOON_ONES(0x80 - (n)))

/* cocoon_lt_mask flags each byte of x below n (1 <= n <= 0x80): a byte is below n iff
 * its high bit is clear and its low 7 bits are below n. */
static inline uint64_t cocoon_lt_mask(uint64_t x, uint8_t n) {
    return ~(cocoon_ge7(x & ~COCOON_HIGH, n) | x) & COCOON_HIGH;
}

/* cocoon_eq_mask flags each byte of x equal to c: those where x ^ c is zero. A byte t
 * is nonzero iff its high bit is set or its low 7 bits plus 0x7F carry into it. */
static inline uint64_t cocoon_eq_mask(uint64_t x, uint8_t c) {
    uint64_t t = x ^ COCOON_ONES(c);
    return ~(((t & ~COCOON_HIGH) + ~COCOON_HIGH) | t) & COCOON_HIGH;
}

/* cocoon_first returns the index (0-7) of the first flagged byte of a nonzero mask. */
static inline uint32_t cocoon_first(uint64_t mask) { return (uint32_t)__builtin_ctzll(mask) / 8; }

/*
 * cocoon_utf8_len returns the length (1-4) of the valid UTF-8 sequence at p, or 0 when
 * the bytes at p (up to end) are not one: overlong forms, surrogates and code points
 * above U+10FFFF are invalid. p < end is required.
 */
static inline uint32_t cocoon_utf8_len(const uint8_t *p, const uint8_t *end) {
    uint8_t c = p[0];
    if (c < 0x80) return 1;
    uint32_t n;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;      /* overlong */
        else if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;      /* overlong */
        else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    if ((uint32_t)(end - p) < n || p[1] < lo || p[1] > hi) return 0;
    /* Unrolled: a loop here would cost a host check per non-ASCII character. */
    if (n >= 3 && (p[2] & 0xC0) != 0x80) return 0;
    if (n == 4 && (p[3] & 0xC0) != 0x80) return 0;
    return n;
}

#ifdef COCOON_IMPLEMENTATION

COCOON_EXPORT("cocoon_abi_v1") void cocoon_abi_v1(void) {}

__attribute__((target("bulk-memory"))) void *memcpy(void *dst, const void *src, size_t n) {
    return __builtin_memcpy(dst, src, n);
}

__attribute__((target("bulk-memory"))) void *memmove(void *dst, const void *src, size_t n) {
    return __builtin_memmove(dst, src, n);
}

__attribute__((target("bulk-memory"))) void *memset(void *dst, int c, size_t n) {
    return __builtin_memset(dst, c, n);
}

/* cocoon__diff64 returns the XOR of the words at offset i of x and y (both n bytes long,
 * i < n or 0): its lowest set bit is in the first byte where they differ. */
static inline uint64_t cocoon__diff64(const uint8_t *x, const uint8_t *y, size_t i, size_t n) {
    return i < n ? cocoon_load64(x + i, x + n) ^ cocoon_load64(y + i, y + n) : 0;
}

int memcmp(const void *a, const void *b, size_t n) {
    const uint8_t *x = a, *y = b;
    /* 8 bytes per step (SWAR, see above), the first before the loop: comparing up to 8
     * bytes costs no loop iteration. Past n both words are zero-padded alike. */
    size_t i = 0;
    uint64_t d = cocoon__diff64(x, y, 0, n);
    while (d == 0 && n - i > 8) {
        i += 8;
        d = cocoon__diff64(x, y, i, n);
    }
    if (d == 0) return 0;
    i += cocoon_first(d);
    return x[i] < y[i] ? -1 : 1;
}

extern uint8_t __heap_base;

static uint32_t cocoon__top; /* next free byte; 0 until the first allocation */

COCOON_EXPORT("cocoon_alloc") void *cocoon_alloc(uint32_t size) {
    if (cocoon__top == 0) cocoon__top = (uint32_t)(uintptr_t)&__heap_base;
    uint64_t p = ((uint64_t)cocoon__top + 7) & ~(uint64_t)7;
    uint64_t end = p + size;
    if (end > UINT32_MAX) return NULL;
    uint64_t have = (uint64_t)__builtin_wasm_memory_size(0) << 16;
    if (end > have) {
        uint64_t need = (end - have + 0xFFFF) >> 16;
        /* Grow by at least half the current size, so a heap growing in small steps
         * costs O(log n) memory.grow calls; fall back to the exact need near the
         * module's memory limit. */
        uint64_t want = (have >> 17) > need ? (have >> 17) : need;
        if (__builtin_wasm_memory_grow(0, (size_t)want) == (size_t)-1 &&
            (want == need || __builtin_wasm_memory_grow(0, (size_t)need) == (size_t)-1))
            return NULL;
    }
    cocoon__top = (uint32_t)end;
    return (void *)(uintptr_t)p;
}

void *cocoon_heap_mark(void) {
    if (cocoon__top == 0) cocoon__top = (uint32_t)(uintptr_t)&__heap_base;
    return (void *)(uintptr_t)cocoon__top;
}

void cocoon_heap_release(void *mark) {
    uint32_t m = (uint32_t)(uintptr_t)mark;
    if (m >= (uint32_t)(uintptr_t)&__heap_base && m <= cocoon__top) cocoon__top = m;
}

const uint8_t *cocoon_config(uint32_t *len) {
    static bool loaded;
    static const uint8_t *data;
    static uint32_t size;
    if (!loaded) {
        size = cocoon_host_config(NULL, 0);
        uint8_t *p = size ? cocoon_alloc(size) : NULL;
        if (p) cocoon_host_config(p, size);
        data = p;
        loaded = true;
    }
    *len = size;
    return data;
}

bool cocoon_buf_reserve(cocoon_buf *b, uint32_t n) {
    if (b->oom) return false;
    if (n <= b->cap - b->len) return true;
    uint64_t need = (uint64_t)b->len + n;
    if (need > UINT32_MAX - 8) {
        b->oom = true;
        return false;
    }
    uint32_t top = (uint32_t)(uintptr_t)cocoon_heap_mark();
    if (b->data && (uint32_t)(uintptr_t)b->data + b->cap == top && (top & 7) == 0) {
        /* The buffer ends at the top of the heap: extend it in place. */
        uint32_t extra = (uint32_t)((need - b->cap + 7) & ~(uint64_t)7);
        if (!cocoon_alloc(extra)) {
            b->oom = true;
            return false;
        }
        b->cap += extra;
        return true;
    }
    uint64_t cap = (uint64_t)b->cap * 2;
    if (cap < need) cap = need;
    if (cap < 64) cap = 64;
    cap = (cap + 7) & ~(uint64_t)7;
    if (cap > UINT32_MAX - 8) cap = need;
    uint8_t *p = cocoon_alloc((uint32_t)cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    if (b->len) memcpy(p, b->data, b->len);
    b->data = p;
    b->cap = (uint32_t)cap;
    return true;
}

void cocoon_buf_append(cocoon_buf *b, const void *p, uint32_t n) {
    if (n && cocoon_buf_reserve(b, n)) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
    }
}

void cocoon_buf_byte(cocoon_buf *b, uint8_t c) {
    if (cocoon_buf_reserve(b, 1)) b->data[b->len++] = c;
}

void cocoon_buf_str(cocoon_buf *b, const char *s) {
    cocoon_buf_append(b, s, (uint32_t)cocoon_strlen(s));
}

void cocoon_buf_u32(cocoon_buf *b, uint32_t n) {
    char digits[10];
    uint32_t i = sizeof digits;
    do {
        digits[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    cocoon_buf_append(b, digits + i, sizeof digits - i);
}

void cocoon_buf_log(int32_t level, const cocoon_buf *b) {
    if (b->oom) cocoon_log(level, "(log message lost: out of memory)");
    else cocoon_host_log(level, b->data, b->len);
}

int64_t cocoon_buf_result(const cocoon_buf *b) {
    if (b->oom) return cocoon_fail_msg("out of memory building the result");
    return cocoon_result(b->data, b->len);
}

#endif /* COCOON_IMPLEMENTATION */
#endif /* COCOON_H */
