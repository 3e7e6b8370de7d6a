/*
 * output-guard (C): a post module that masks configured words in the assistant's
 * answer, whole words only, ASCII case-insensitively, in full responses (cocoon_post)
 * and in streams (cocoon_chunk/cocoon_end). Same behaviour as ../go; see ../README.md.
 */
#define COCOON_IMPLEMENTATION
#include "cocoon.h"
#include "cocoon_json.h"

/* A word is a maximal run of word bytes: ASCII letters and digits, '_', and every byte
 * of a non-ASCII UTF-8 sequence. A table lookup is the fastest test in wasm. */
static const bool word_bytes[256] = {
    ['0' ... '9'] = true, ['A' ... 'Z'] = true, ['_'] = true, ['a' ... 'z'] = true,
    [0x80 ... 0xFF] = true,
};

static inline bool is_word(uint8_t c) { return word_bytes[c]; }

/*
 * word_mask flags the word bytes of x (see cocoon.h for SWAR). A byte is a word byte
 * when its high bit is set, or its low 7 bits are a digit, '_', or a letter: or-ing
 * 0x20 folds 'A'-'Z' onto 'a'-'z' and maps no other byte into that range, so one range
 * test covers both cases. The zero padding of cocoon_load64 is not a word byte.
 */
static inline uint64_t word_mask(uint64_t x) {
    uint64_t a = x & ~COCOON_HIGH, f = a | COCOON_ONES(0x20);
    uint64_t digit = cocoon_ge7(a, '0') & ~cocoon_ge7(a, '9' + 1);
    uint64_t letter = cocoon_ge7(f, 'a') & ~cocoon_ge7(f, 'z' + 1);
    uint64_t underscore = cocoon_ge7(a, '_') & ~cocoon_ge7(a, '_' + 1);
    return (x | digit | letter | underscore) & COCOON_HIGH;
}

/* run_stop flags the bytes of the 8 at p that end a run of word bytes (word set) or of
 * other bytes; past end, the first. */
static inline uint64_t run_stop(const uint8_t *p, const uint8_t *end, bool word) {
    return p < end ? word_mask(cocoon_load64(p, end)) ^ (word ? COCOON_HIGH : 0) : 0x80;
}

/* run_end returns the end of the run at p of word bytes (word set) or of other bytes,
 * 8 bytes per step. The first step is written before the loop (clang would test it in
 * the loop header): most runs, a space or a word, end in it and cost no iteration. */
static inline const uint8_t *run_end(const uint8_t *p, const uint8_t *end, bool word) {
    uint64_t m = run_stop(p, end, word);
    while (!m) {
        p += 8;
        m = run_stop(p, end, word);
    }
    p += cocoon_first(m);
    return p < end ? p : end; /* a padding byte flagged past end */
}

/* chars returns the number of UTF-8 characters in p[:n]: the bytes that are not
 * continuation bytes (10xxxxxx, flagged where bit 7 is set and bit 6, shifted up to
 * it, is not), counted 8 at a time. The zero padding is not a continuation byte. */
static uint32_t chars(const uint8_t *p, uint32_t n) {
    uint32_t count = n;
    for (const uint8_t *end = p + n; p < end; p += 8) {
        uint64_t x = cocoon_load64(p, end);
        count -= (uint32_t)__builtin_popcountll(x & ~(x << 1) & COCOON_HIGH);
    }
    return count;
}

static inline uint8_t lower(uint8_t c) { return (uint8_t)(c - 'A') < 26 ? c | 0x20 : c; }

/* The parsed config: the words, lowercased, in an open-addressing hash set. */
static struct {
    bool loaded, ok;
    cocoon_buf words;     /* the words, lowercased, one after another */
    cocoon_buf ends;      /* uint32_t per word: where it ends in words */
    uint32_t *slots, mask; /* word index + 1, or 0 for an empty slot */
    uint32_t max_len;     /* longest word in bytes: longer runs cannot match */
    /* Cheap filters that reject most words before hashing: bit n of lengths is set if a
     * word has n bytes (n < 64, longer ones share bit 63); firsts has a bit per byte
     * that starts a word, in either ASCII case. */
    uint64_t lengths;
    uint32_t firsts[8];
    bool has_replacement; /* false: mask each rune with '*' */
    cocoon_buf replacement, replacement_json;
} cfg;

static uint32_t word_end(uint32_t i) { return ((const uint32_t *)cfg.ends.data)[i]; }

/* lower64 lowercases the ASCII letters among the 8 bytes of x (SWAR, see cocoon.h): a
 * byte in 'A'-'Z' gets 0x20, its flag shifted down from bit 7 to bit 5. */
static inline uint64_t lower64(uint64_t x) {
    uint64_t a = x & ~COCOON_HIGH;
    uint64_t upper = cocoon_ge7(a, 'A') & ~cocoon_ge7(a, 'Z' + 1) & ~x & COCOON_HIGH;
    return x | upper >> 2;
}

/* hash mixes the lowercased bytes p[:n], 8 per step, the first before the loop: a word
 * of up to 8 bytes costs no loop iteration. Multiplying by an odd constant spreads each
 * byte over the high bits, which are the ones kept. */
static uint32_t hash(const uint8_t *p, uint32_t n) {
    const uint8_t *end = p + n;
    uint64_t h = ((uint64_t)n ^ lower64(cocoon_load64(p, end))) * 0x9E3779B97F4A7C15ull;
    while (end - p > 8) {
        p += 8;
        h = (h ^ lower64(cocoon_load64(p, end))) * 0x9E3779B97F4A7C15ull;
    }
    return (uint32_t)(h >> 32);
}

/* same_word reports whether p[:n] lowercased is the configured word w[:n] (stored
 * lowercased), 8 bytes per step as in hash. */
static bool same_word(const uint8_t *w, const uint8_t *p, uint32_t n) {
    const uint8_t *wend = w + n, *end = p + n;
    bool same = lower64(cocoon_load64(p, end)) == cocoon_load64(w, wend);
    while (same && end - p > 8) {
        p += 8;
        w += 8;
        same = lower64(cocoon_load64(p, end)) == cocoon_load64(w, wend);
    }
    return same;
}

/* slot_fits reports whether slot value w (word index + 1) is empty or the word p[:n]. */
static bool slot_fits(uint32_t w, const uint8_t *p, uint32_t n) {
    if (w == 0) return true;
    uint32_t start = w > 1 ? word_end(w - 2) : 0;
    return word_end(w - 1) - start == n && same_word(cfg.words.data + start, p, n);
}

/* slot_of returns the slot holding the word p[:n] (any case), or an empty slot. */
static uint32_t *slot_of(const uint8_t *p, uint32_t n) {
    uint32_t i = hash(p, n) & cfg.mask;
    while (!slot_fits(cfg.slots[i], p, n)) i = (i + 1) & cfg.mask;
    return &cfg.slots[i];
}

static bool matches(const uint8_t *p, uint32_t n) {
    return (cfg.lengths >> (n < 63 ? n : 63) & 1) && (cfg.firsts[p[0] >> 5] >> (p[0] & 31) & 1) &&
           n <= cfg.max_len && *slot_of(p, n) != 0;
}

/* config_error logs "output-guard config: <what><msg>" and returns false. */
static bool config_error(const char *what, const char *msg) {
    cocoon_buf b = {0};
    cocoon_buf_str(&b, "output-guard config: ");
    cocoon_buf_str(&b, what);
    cocoon_buf_str(&b, msg);
    cocoon_buf_log(COCOON_ERROR, &b);
    return false;
}

/* read_words reads the "words" array into cfg.words and cfg.ends. */
static bool read_words(cj_scanner *s) {
    cj_iter it;
    cj_span body;
    int r;
    cfg.words.len = cfg.ends.len = cfg.max_len = 0;
    cfg.lengths = 0;
    memset(cfg.firsts, 0, sizeof cfg.firsts);
    if (cj_peek(s) == CJ_NULL) return cj_skip(s, NULL);
    if (cj_peek(s) != CJ_ARRAY) return s->err ? false : config_error("words", " must be an array of strings");
    cj_array_begin(s, &it);
    while ((r = cj_array_next(s, &it)) > 0) {
        if (cj_peek(s) != CJ_STRING) return s->err ? false : config_error("words", " must be an array of strings");
        if (!cj_string(s, &body)) return false;
        uint32_t start = cfg.words.len;
        cj_unescape(&cfg.words, body);
        if (cfg.words.oom) return config_error("", "out of memory");
        uint32_t n = cfg.words.len - start;
        if (n == 0) return config_error("words", " must not contain an empty word");
        for (uint8_t *p = cfg.words.data + start; p < cfg.words.data + cfg.words.len; p++) {
            if (!is_word(*p))
                return config_error("words", ": each word must be letters, digits, '_' or non-ASCII characters only");
            *p = lower(*p);
        }
        if (n > cfg.max_len) cfg.max_len = n;
        cfg.lengths |= 1ull << (n < 63 ? n : 63);
        uint8_t first = cfg.words.data[start], upper = (uint8_t)(first - 'a') < 26 ? first - 32 : first;
        cfg.firsts[first >> 5] |= 1u << (first & 31);
        cfg.firsts[upper >> 5] |= 1u << (upper & 31);
        cocoon_buf_append(&cfg.ends, &cfg.words.len, sizeof cfg.words.len);
    }
    return r == 0;
}

/* index_words builds the hash set, at most half full. */
static bool index_words(void) {
    uint32_t n = cfg.ends.len / sizeof(uint32_t), size = 8;
    while (size < 2 * n) size *= 2;
    cfg.slots = cocoon_alloc(size * sizeof *cfg.slots);
    if (!cfg.slots) return config_error("", "out of memory");
    memset(cfg.slots, 0, size * sizeof *cfg.slots);
    cfg.mask = size - 1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t start = i ? word_end(i - 1) : 0;
        uint32_t *slot = slot_of(cfg.words.data + start, word_end(i) - start);
        if (*slot == 0) *slot = i + 1; /* duplicates keep the first */
    }
    return true;
}

static bool parse_config(void) {
    uint32_t len;
    const uint8_t *data = cocoon_config(&len);
    if (!data) return config_error("", len ? "out of memory" : "missing: this module needs one");
    cj_scanner s;
    cj_iter it;
    cj_span key, body;
    int r;
    cj_init(&s, data, len);
    if (cj_peek(&s) != CJ_OBJECT) {
        if (cj_skip(&s, NULL) && cj_finish(&s)) return config_error("", "must be a JSON object");
        cj_log_error(&s, "output-guard config");
        return false;
    }
    cj_object_begin(&s, &it);
    while ((r = cj_object_next(&s, &it, &key)) > 0) {
        if (cj_key_matches(key, "words")) {
            if (!read_words(&s) && !s.err) return false;
        } else if (cj_key_matches(key, "replacement")) {
            cfg.replacement.len = 0;
            cfg.has_replacement = false;
            if (cj_peek(&s) == CJ_NULL) {
                cj_skip(&s, NULL);
            } else if (cj_peek(&s) == CJ_STRING) {
                cj_string(&s, &body);
                cj_unescape(&cfg.replacement, body);
                cfg.has_replacement = true;
            } else if (!s.err) {
                return config_error("replacement", " must be a string");
            }
        } else {
            return config_error("", "unknown field (known: words, replacement)");
        }
    }
    if (r < 0 || !cj_finish(&s)) {
        cj_log_error(&s, "output-guard config");
        return false;
    }
    if (cfg.ends.len == 0) return config_error("words", " must list at least one word");
    cj_escape(&cfg.replacement_json, cfg.replacement.data, cfg.replacement.len);
    if (cfg.replacement.oom || cfg.replacement_json.oom || cfg.ends.oom)
        return config_error("", "out of memory");
    return index_words();
}

static bool config(void) {
    if (!cfg.loaded) {
        cfg.loaded = true;
        cfg.ok = parse_config();
    }
    return cfg.ok;
}

/* How guard writes its output. */
enum mode {
    RAW,        /* raw text (streams) */
    JSON_PLAIN, /* a JSON string body, from text that needs no escaping */
    JSON,       /* a JSON string body, from text that may need escaping */
};

/*
 * guard appends text with every matching word masked. Cost: O(len) plus one hash
 * lookup per word no longer than the longest configured word.
 */
static void guard(cocoon_buf *out, const uint8_t *text, uint32_t len, enum mode mode) {
    const uint8_t *p = text, *end = text + len, *copied = text;
    const cocoon_buf *repl = mode == RAW ? &cfg.replacement : &cfg.replacement_json;
    while (p < end) {
        const uint8_t *word = run_end(p, end, false);
        p = run_end(word, end, true);
        if (p == word || !matches(word, (uint32_t)(p - word))) continue;
        if (mode == JSON) cj_escape(out, copied, (uint32_t)(word - copied));
        else cocoon_buf_append(out, copied, (uint32_t)(word - copied));
        copied = p;
        if (cfg.has_replacement) {
            cocoon_buf_append(out, repl->data, repl->len);
            continue;
        }
        uint32_t stars = chars(word, (uint32_t)(p - word)); /* one per character */
        if (cocoon_buf_reserve(out, stars)) {
            memset(out->data + out->len, '*', stars);
            out->len += stars;
        }
    }
    if (mode == JSON) cj_escape(out, copied, (uint32_t)(end - copied));
    else cocoon_buf_append(out, copied, (uint32_t)(end - copied));
}

/* guard_string consumes a string at s and appends it guarded. A string with escapes is
 * decoded over the input, which the module owns and has already scanned. */
static bool guard_string(cj_scanner *s, cocoon_buf *out, void *ctx) {
    (void)ctx;
    cj_span body;
    if (!cj_string(s, &body)) return false;
    cocoon_buf_byte(out, '"');
    if (s->escaped) guard(out, body.ptr, cj_unescape_in_place(body), JSON);
    else guard(out, body.ptr, body.len, JSON_PLAIN);
    cocoon_buf_byte(out, '"');
    return true;
}

/* check logs and returns false when the raw value v of field is present, not null and
 * of no kind in kinds (named by want). Go's guest SDK decodes the response into typed
 * structs before the module's logic runs; these are the checks that decoding makes, so
 * that both versions fail on the same responses. */
static bool check(cj_span v, uint32_t kinds, const char *field, const char *want) {
    if (cj_is_optional(v, kinds) && (kinds != CJ_KINDS(CJ_NUMBER) || !v.len ||
                                     cj_kind_of(v) == CJ_NULL || cj_is_int64(v)))
        return true;
    cocoon_buf b = {0};
    cocoon_buf_str(&b, "response: ");
    cocoon_buf_str(&b, field);
    cocoon_buf_str(&b, ": want ");
    cocoon_buf_str(&b, want);
    cocoon_buf_log(COCOON_ERROR, &b);
    return false;
}

#define STRING CJ_KINDS(CJ_STRING)
#define INTEGER CJ_KINDS(CJ_NUMBER) /* check() also wants it to fit an int64 */
#define OBJECT CJ_KINDS(CJ_OBJECT)
#define ARRAY CJ_KINDS(CJ_ARRAY)

static const cj_span part_fields[] = {CJ_SPAN("type"), CJ_SPAN("text")};
static const uint32_t part_kinds[] = {STRING, STRING};
enum { TYPE, TEXT };

/* rewrite_part guards the text of a part of type "text"; null becomes {}, as Go decodes
 * it to an empty part. */
static bool rewrite_part(cj_scanner *s, cocoon_buf *out, void *ctx) {
    (void)ctx;
    cj_span raw, v[2];
    cj_kind kind = cj_peek(s);
    if (kind != CJ_OBJECT && kind != CJ_NULL) {
        cocoon_log(COCOON_ERROR, "response: content part: want an object");
        return false;
    }
    cj_object_find(s, part_fields, part_kinds, v, 2, &raw);
    if (!check(v[TYPE], STRING, "content part type", "a string") ||
        !check(v[TEXT], STRING, "content part text", "a string"))
        return false;
    if (kind == CJ_NULL) cocoon_buf_append(out, "{}", 2);
    else if (cj_is_string(v[TYPE], "text") && cj_kind_of(v[TEXT]) == CJ_STRING)
        return cj_rewrite_member(out, raw, v[TEXT], guard_string, NULL);
    else cocoon_buf_append(out, raw.ptr, raw.len);
    return true;
}

/* rewrite_content guards a message's content: a string, or its text parts. */
static bool rewrite_content(cj_scanner *s, cocoon_buf *out, void *ctx) {
    switch (cj_peek(s)) {
    case CJ_STRING: return guard_string(s, out, ctx);
    case CJ_ARRAY: return cj_rewrite_elements(s, out, rewrite_part, ctx);
    default: return cj_copy(s, out); /* null: check() refused every other kind */
    }
}

static const cj_span message_fields[] = {CJ_SPAN("role"), CJ_SPAN("content"), CJ_SPAN("name")};
static const uint32_t message_kinds[] = {STRING, STRING | ARRAY, STRING};
enum { ROLE, CONTENT, NAME };

static bool rewrite_message(cj_scanner *s, cocoon_buf *out, void *ctx) {
    (void)ctx;
    cj_span raw, v[3];
    if (cj_peek(s) != CJ_OBJECT) return cj_copy(s, out); /* null: checked by the choice */
    cj_object_find(s, message_fields, message_kinds, v, 3, &raw);
    if (!check(v[ROLE], STRING, "message role", "a string") ||
        !check(v[NAME], STRING, "message name", "a string") ||
        !check(v[CONTENT], STRING | ARRAY, "message content", "a string or an array of parts"))
        return false;
    return cj_rewrite_member(out, raw, v[CONTENT], rewrite_content, NULL);
}

static const cj_span choice_fields[] = {CJ_SPAN("index"), CJ_SPAN("message"),
                                        CJ_SPAN("finish_reason")};
static const uint32_t choice_kinds[] = {INTEGER, OBJECT, STRING};
enum { INDEX, MESSAGE, FINISH_REASON };

/* rewrite_choice guards a choice's message; null becomes {}, as Go decodes it to an
 * empty choice. */
static bool rewrite_choice(cj_scanner *s, cocoon_buf *out, void *ctx) {
    (void)ctx;
    cj_span raw, v[3];
    cj_kind kind = cj_peek(s);
    if (kind != CJ_OBJECT && kind != CJ_NULL) {
        cocoon_log(COCOON_ERROR, "response: choice: want an object");
        return false;
    }
    cj_object_find(s, choice_fields, choice_kinds, v, 3, &raw);
    if (!check(v[INDEX], INTEGER, "choice index", "an integer") ||
        !check(v[MESSAGE], OBJECT, "choice message", "an object") ||
        !check(v[FINISH_REASON], STRING, "choice finish_reason", "a string"))
        return false;
    if (kind == CJ_NULL) {
        cocoon_buf_append(out, "{}", 2);
        return true;
    }
    return cj_rewrite_member(out, raw, v[MESSAGE], rewrite_message, NULL);
}

static bool rewrite_choices(cj_scanner *s, cocoon_buf *out, void *ctx) {
    return cj_rewrite_elements(s, out, rewrite_choice, ctx);
}

static const cj_span response_fields[] = {CJ_SPAN("id"),    CJ_SPAN("object"),  CJ_SPAN("created"),
                                          CJ_SPAN("model"), CJ_SPAN("choices"), CJ_SPAN("usage")};
enum { ID, OBJECT_, CREATED, MODEL, CHOICES, USAGE };
static const uint32_t response_kinds[] = {STRING, STRING, INTEGER, STRING, ARRAY, OBJECT};
static const cj_span usage_fields[] = {CJ_SPAN("prompt_tokens"), CJ_SPAN("completion_tokens"),
                                       CJ_SPAN("total_tokens")};
static const uint32_t usage_kinds[] = {INTEGER, INTEGER, INTEGER};

static bool check_response(const cj_span *v) {
    cj_span u[3], raw;
    cj_scanner s;
    if (!check(v[ID], STRING, "id", "a string") || !check(v[OBJECT_], STRING, "object", "a string") ||
        !check(v[CREATED], INTEGER, "created", "an integer") ||
        !check(v[MODEL], STRING, "model", "a string") || !check(v[CHOICES], ARRAY, "choices", "an array") ||
        !check(v[USAGE], OBJECT, "usage", "an object"))
        return false;
    cj_init(&s, v[USAGE].ptr, v[USAGE].len);
    cj_object_find(&s, usage_fields, usage_kinds, u, 3, &raw);
    return check(u[0], INTEGER, "usage prompt_tokens", "an integer") &&
           check(u[1], INTEGER, "usage completion_tokens", "an integer") &&
           check(u[2], INTEGER, "usage total_tokens", "an integer");
}

COCOON_EXPORT("cocoon_post") int64_t cocoon_post(uint8_t *in, uint32_t len) {
    if (!config()) return cocoon_fail();
    cj_scanner s;
    cj_span raw, v[6];
    cj_init(&s, in, len);
    if (cj_peek(&s) != CJ_OBJECT) {
        if (cj_skip(&s, NULL) && cj_finish(&s)) return cocoon_fail_msg("response: not a JSON object");
        cj_log_error(&s, "response");
        return cocoon_fail();
    }
    /* A first pass validates the response and finds the members Go decodes; the
     * second writes, walking validated bytes. */
    if (!cj_object_find(&s, response_fields, response_kinds, v, 6, &raw) || !cj_finish(&s)) {
        cj_log_error(&s, "response");
        return cocoon_fail();
    }
    if (!check_response(v)) return cocoon_fail();
    cocoon_buf out = {0};
    cocoon_buf_reserve(&out, len + len / 4 + 64);
    cj_span choices = cj_kind_of(v[CHOICES]) == CJ_ARRAY ? v[CHOICES] : (cj_span){NULL, 0};
    if (!cj_rewrite_member(&out, raw, choices, rewrite_choices, NULL)) return cocoon_fail();
    return cocoon_buf_result(&out);
}

/*
 * Streaming state. held is the heap floor: everything above it is per-call scratch,
 * reclaimed by the next call. The first held_len bytes there are the text held back
 * from earlier chunks: the start of a word that the next chunk may continue.
 */
static uint8_t *held;
static uint32_t held_len;

COCOON_EXPORT("cocoon_chunk") int64_t cocoon_chunk(const uint8_t *in, uint32_t len) {
    if (!config()) return cocoon_fail();
    if (!held) held = cocoon_heap_mark();
    if (in && in < held) {
        /* Only on the first call: the input lies below the floor (config data was
         * allocated after it). Bring it above. */
        uint8_t *copy = cocoon_alloc(len);
        if (!copy) return cocoon_fail_msg("out of memory");
        memcpy(copy, in, len);
        in = copy;
    }
    /* Heap: [held: held text | last call's output | in]. Append in to the held text;
     * this only moves bytes down. */
    uint32_t total = held_len + len;
    if (len) memmove(held + held_len, in, len);
    cocoon_heap_release(held + total);

    /* Emit up to the start of the trailing word. The held text is all word bytes, so
     * only the new bytes need looking at. */
    uint32_t keep_from = total;
    while (keep_from > held_len && is_word(held[keep_from - 1])) keep_from--;
    if (keep_from == held_len) {
        held_len = total;
        return cocoon_result(NULL, 0);
    }
    cocoon_buf out = {0};
    cocoon_buf_reserve(&out, keep_from + 64);
    guard(&out, held, keep_from, RAW);
    /* The output lies above the held text, so moving the new held text down to the
     * floor cannot overwrite it. */
    held_len = total - keep_from;
    memmove(held, held + keep_from, held_len);
    return cocoon_buf_result(&out);
}

COCOON_EXPORT("cocoon_end") int64_t cocoon_end(void) {
    if (!config()) return cocoon_fail();
    if (!held_len) return cocoon_result(NULL, 0);
    cocoon_buf out = {0};
    guard(&out, held, held_len, RAW);
    held_len = 0;
    return cocoon_buf_result(&out);
}
