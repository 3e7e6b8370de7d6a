/*
 * prompt-template (C): a pre module that injects a system prompt, decides what happens
 * to the client's own system messages, and wraps user text in a template. Same
 * behaviour as ../go; see ../README.md for the rules.
 */
#define COCOON_IMPLEMENTATION
#include "cocoon.h"
#include "cocoon_json.h"

#define PLACEHOLDER "{{content}}"
#define PLACEHOLDER_LEN 11

enum on_existing { KEEP, DROP, REJECT };

/* The parsed config, prepared for output: strings are stored JSON-escaped. */
static struct {
    bool loaded, ok;
    cocoon_buf system_message; /* {"role":"system","content":"..."}, or empty */
    enum on_existing on_existing;
    /* user_template split at each {{content}}: nseg escaped segments, seg_end[i] is
     * where segment i ends in segs. nseg == 0 means no template. */
    cocoon_buf segs;
    uint32_t *seg_end, nseg;
} cfg;

/* Go's guest SDK decodes the request into typed structs before the module's logic
 * runs; these are the checks that decoding makes, so that both versions fail on the
 * same requests. */
static const cj_span message_fields[] = {CJ_SPAN("role"), CJ_SPAN("content"), CJ_SPAN("name")};
static const uint32_t message_kinds[] = {CJ_KINDS(CJ_STRING), CJ_KINDS(CJ_STRING) | CJ_KINDS(CJ_ARRAY),
                                         CJ_KINDS(CJ_STRING)};
enum { ROLE, CONTENT, NAME };
static const cj_span part_fields[] = {CJ_SPAN("type"), CJ_SPAN("text")};
static const uint32_t part_kinds[] = {CJ_KINDS(CJ_STRING), CJ_KINDS(CJ_STRING)};
enum { TYPE, TEXT };

/* config_error logs "prompt-template config: <what><msg>" and returns false. */
static bool config_error(const char *what, const char *msg) {
    cocoon_buf b = {0};
    cocoon_buf_str(&b, "prompt-template config: ");
    cocoon_buf_str(&b, what);
    cocoon_buf_str(&b, msg);
    cocoon_buf_log(COCOON_ERROR, &b);
    return false;
}

/* read_string decodes the string value at s into *out; null leaves *out as it is, as
 * Go's encoding/json does. */
static bool read_string(cj_scanner *s, cocoon_buf *out, const char *field) {
    cj_span body;
    switch (cj_peek(s)) {
    case CJ_NULL:
        return cj_skip(s, NULL);
    case CJ_STRING:
        if (!cj_string(s, &body)) return false;
        out->len = 0;
        cj_unescape(out, body);
        return true;
    default:
        return config_error(field, " must be a string");
    }
}

/* find_placeholder returns the first {{content}} at or after p, or end. It looks for
 * '{' 8 bytes per step (SWAR, see cocoon.h), since the sandbox charges per iteration. */
static const uint8_t *find_placeholder(const uint8_t *p, const uint8_t *end) {
    while (end - p >= PLACEHOLDER_LEN) {
        uint64_t m = cocoon_eq_mask(cocoon_load64(p, end), '{');
        if (!m) {
            p += 8;
            continue;
        }
        p += cocoon_first(m);
        if (end - p >= PLACEHOLDER_LEN && memcmp(p, PLACEHOLDER, PLACEHOLDER_LEN) == 0) return p;
        p++;
    }
    return end;
}

/* split_template stores tmpl, split at each {{content}}, as escaped segments. */
static bool split_template(const cocoon_buf *tmpl) {
    const uint8_t *p = tmpl->data, *end = p + tmpl->len;
    cocoon_buf ends = {0}; /* uint32_t per segment: where it ends in cfg.segs */
    for (;;) {
        const uint8_t *at = find_placeholder(p, end);
        cj_escape(&cfg.segs, p, (uint32_t)(at - p));
        cocoon_buf_append(&ends, &cfg.segs.len, sizeof cfg.segs.len);
        if (at == end) break;
        p = at + PLACEHOLDER_LEN;
    }
    if (cfg.segs.oom || ends.oom) return config_error("", "out of memory");
    cfg.nseg = ends.len / sizeof *cfg.seg_end;
    if (cfg.nseg == 1) {
        cfg.nseg = 0;
        return config_error("user_template", " must contain {{content}}");
    }
    cfg.seg_end = (uint32_t *)ends.data;
    return true;
}

static bool parse_config(void) {
    uint32_t len;
    const uint8_t *data = cocoon_config(&len);
    if (!data) return config_error("", len ? "out of memory" : "missing: this module needs one");
    cocoon_buf system = {0}, on_existing = {0}, tmpl = {0};
    cj_scanner s;
    cj_iter it;
    cj_span key;
    int r = 0;
    cj_init(&s, data, len);
    switch (cj_peek(&s)) {
    case CJ_OBJECT:
        break;
    case CJ_NULL: /* as in Go: null decodes to the zero config */
        cj_skip(&s, NULL);
        r = -1;
        break;
    default:
        if (cj_skip(&s, NULL) && cj_finish(&s)) return config_error("", "must be a JSON object");
        cj_log_error(&s, "prompt-template config");
        return false;
    }
    if (r == 0) {
        cj_object_begin(&s, &it);
        while ((r = cj_object_next(&s, &it, &key)) > 0) {
            bool ok;
            if (cj_key_matches(key, "system"))
                ok = read_string(&s, &system, "system");
            else if (cj_key_matches(key, "on_existing"))
                ok = read_string(&s, &on_existing, "on_existing");
            else if (cj_key_matches(key, "user_template"))
                ok = read_string(&s, &tmpl, "user_template");
            else
                return config_error("", "unknown field (known: system, on_existing, user_template)");
            if (!ok && !s.err) return false;
        }
    }
    if (r > 0 || !cj_finish(&s)) {
        cj_log_error(&s, "prompt-template config");
        return false;
    }
    if (system.oom || on_existing.oom || tmpl.oom) return config_error("", "out of memory");

    if (on_existing.len == 0 || (on_existing.len == 4 && memcmp(on_existing.data, "keep", 4) == 0))
        cfg.on_existing = KEEP;
    else if (on_existing.len == 4 && memcmp(on_existing.data, "drop", 4) == 0)
        cfg.on_existing = DROP;
    else if (on_existing.len == 6 && memcmp(on_existing.data, "reject", 6) == 0)
        cfg.on_existing = REJECT;
    else
        return config_error("on_existing", " must be \"keep\", \"drop\" or \"reject\"");

    if (system.len) {
        cocoon_buf_str(&cfg.system_message, "{\"role\":\"system\",\"content\":");
        cj_write_string(&cfg.system_message, system.data, system.len);
        cocoon_buf_byte(&cfg.system_message, '}');
        if (cfg.system_message.oom) return config_error("", "out of memory");
    }
    return tmpl.len == 0 || split_template(&tmpl);
}

static bool config(void) {
    if (!cfg.loaded) {
        cfg.loaded = true;
        cfg.ok = parse_config();
    }
    return cfg.ok;
}

/* write_templated appends, as a JSON string, the template applied to a string body
 * (still escaped: an escaped body pasted between escaped segments is the escaped
 * result). */
static void write_templated(cocoon_buf *out, cj_span text) {
    uint32_t start = 0;
    cocoon_buf_byte(out, '"');
    for (uint32_t i = 0; i < cfg.nseg; i++) {
        if (i) cocoon_buf_append(out, text.ptr, text.len);
        cocoon_buf_append(out, cfg.segs.data + start, cfg.seg_end[i] - start);
        start = cfg.seg_end[i];
    }
    cocoon_buf_byte(out, '"');
}

/* check logs and returns false when the raw value v of field is present, not null and
 * of no kind in kinds (named by want). */
static bool check(cj_span v, uint32_t kinds, const char *field, const char *want) {
    if (cj_is_optional(v, kinds)) return true;
    cocoon_buf b = {0};
    cocoon_buf_str(&b, "request: ");
    cocoon_buf_str(&b, field);
    cocoon_buf_str(&b, ": want ");
    cocoon_buf_str(&b, want);
    cocoon_buf_log(COCOON_ERROR, &b);
    return false;
}

/* write_part checks one content part at s and appends it: null becomes {} (Go decodes it
 * to an empty part); with template set, the text of a part of type "text" is templated.
 * A text part without text gets the template applied to "", as in Go. */
static bool write_part(cj_scanner *s, cocoon_buf *out, void *template) {
    cj_span raw, v[2], key, val;
    cj_iter it;
    cj_kind kind = cj_peek(s);
    if (kind != CJ_OBJECT && kind != CJ_NULL) {
        if (!s->err) cocoon_log(COCOON_ERROR, "request: content part: want an object");
        return false;
    }
    if (!cj_object_find(s, part_fields, part_kinds, v, 2, &raw)) return false;
    if (!check(v[TYPE], CJ_KINDS(CJ_STRING), "content part type", "a string") ||
        !check(v[TEXT], CJ_KINDS(CJ_STRING), "content part text", "a string"))
        return false;
    if (kind == CJ_NULL) {
        cocoon_buf_append(out, "{}", 2);
        return true;
    }
    if (!*(bool *)template || !cj_is_string(v[TYPE], "text")) {
        cocoon_buf_append(out, raw.ptr, raw.len);
        return true;
    }
    /* Go writes text when it is non-empty or was there: a missing or null text becomes
     * the template applied to "" unless that is empty too. */
    bool empty = cfg.segs.len == 0, string = cj_kind_of(v[TEXT]) == CJ_STRING;
    cj_scanner sub;
    cj_init(&sub, raw.ptr, raw.len);
    cj_object_begin(&sub, &it);
    cocoon_buf_byte(out, '{');
    for (bool first = true; cj_object_next(&sub, &it, &key) > 0; first = false) {
        if (!first) cocoon_buf_byte(out, ',');
        cj_write_key(out, key);
        cj_skip(&sub, &val);
        if (val.ptr != v[TEXT].ptr || (!string && empty)) cocoon_buf_append(out, val.ptr, val.len);
        else if (string) write_templated(out, (cj_span){val.ptr + 1, val.len - 2});
        else write_templated(out, (cj_span){NULL, 0});
    }
    if (!v[TEXT].len && !empty) {
        cocoon_buf_str(out, ",\"text\":");
        write_templated(out, (cj_span){NULL, 0});
    }
    cocoon_buf_byte(out, '}');
    return true;
}

/* write_content checks a message's content at s and appends it, with parts through
 * write_part and, if *template, string content templated. */
static bool write_content(cj_scanner *s, cocoon_buf *out, void *template) {
    cj_span body;
    switch (cj_peek(s)) {
    case CJ_STRING:
        if (!*(bool *)template) return cj_copy(s, out);
        if (!cj_string(s, &body)) return false;
        write_templated(out, body);
        return true;
    case CJ_ARRAY:
        return cj_rewrite_elements(s, out, write_part, template);
    default:
        return cj_copy(s, out); /* null: check() refused every other kind */
    }
}

/* The message list being built. */
typedef struct {
    uint32_t kept;    /* messages written */
    bool system_seen; /* a client system or developer message was found */
} messages;

/* write_message checks the message at s and appends it, or leaves it out when
 * on_existing says to. */
static bool write_message(cj_scanner *s, cocoon_buf *out, messages *m) {
    cj_span raw, v[3];
    cj_kind kind = cj_peek(s);
    if (kind != CJ_OBJECT && kind != CJ_NULL) {
        if (!s->err) cocoon_log(COCOON_ERROR, "request: every message must be an object");
        return false;
    }
    if (!cj_object_find(s, message_fields, message_kinds, v, 3, &raw)) return false;
    if (!check(v[ROLE], CJ_KINDS(CJ_STRING), "message role", "a string") ||
        !check(v[NAME], CJ_KINDS(CJ_STRING), "message name", "a string") ||
        !check(v[CONTENT], CJ_KINDS(CJ_STRING) | CJ_KINDS(CJ_ARRAY), "message content",
               "a string or an array of parts"))
        return false;
    bool system = cj_is_string(v[ROLE], "system") || cj_is_string(v[ROLE], "developer");
    m->system_seen |= system;
    uint32_t mark = out->len; /* to take the message back out */
    if (m->kept) cocoon_buf_byte(out, ',');
    bool template = cfg.nseg && cj_is_string(v[ROLE], "user");
    if (kind == CJ_NULL) cocoon_buf_append(out, "{}", 2); /* Go decodes null to an empty message */
    else if (!template && cj_kind_of(v[CONTENT]) != CJ_ARRAY) cocoon_buf_append(out, raw.ptr, raw.len);
    else if (!cj_rewrite_member(out, raw, v[CONTENT], write_content, &template)) return false;
    if (system && cfg.on_existing != KEEP) out->len = mark;
    else m->kept++;
    return true;
}

/* The ways handling a request can end other than with a result. */
enum outcome { DONE, REJECTED, MALFORMED };

/* write_messages appends the new message list, from the messages array at s or, when
 * s is NULL (no messages, or null), from an empty one. */
static enum outcome write_messages(cj_scanner *s, cocoon_buf *out) {
    messages m = {0};
    cj_iter it;
    int r = 0;
    cocoon_buf_byte(out, '[');
    if (cfg.system_message.len) {
        cocoon_buf_append(out, cfg.system_message.data, cfg.system_message.len);
        m.kept++;
    }
    if (s) {
        cj_array_begin(s, &it);
        while ((r = cj_array_next(s, &it)) > 0)
            if (!write_message(s, out, &m)) return MALFORMED;
        if (r < 0) return MALFORMED;
    }
    cocoon_buf_byte(out, ']');
    /* Decided after every message was checked, as Go decodes them all first. */
    if (m.system_seen && cfg.on_existing == REJECT) {
        cocoon_reject(403, "this pipeline does not accept system messages");
        return REJECTED;
    }
    if (m.kept == 0 && cfg.on_existing == DROP) {
        cocoon_reject(400, "request has no messages left after removing system messages");
        return REJECTED;
    }
    return DONE;
}

static const cj_span request_fields[] = {CJ_SPAN("model"), CJ_SPAN("messages")};
static const uint32_t request_kinds[] = {CJ_KINDS(CJ_STRING), CJ_KINDS(CJ_ARRAY)};
enum { MODEL, MESSAGES };

/* rewrite checks the request at s and appends the rewritten one to out. */
static enum outcome rewrite(cj_scanner *s, cocoon_buf *out) {
    cj_span raw, v[2], key;
    cj_iter it;
    if (cj_peek(s) != CJ_OBJECT) {
        if (cj_skip(s, NULL) && cj_finish(s)) cocoon_log(COCOON_ERROR, "request: not a JSON object");
        return MALFORMED;
    }
    /* A first pass validates the request and finds the members Go decodes (the last
     * of duplicates); the second writes. */
    if (!cj_object_find(s, request_fields, request_kinds, v, 2, &raw) || !cj_finish(s)) return MALFORMED;
    if (!check(v[MODEL], CJ_KINDS(CJ_STRING), "model", "a string") ||
        !check(v[MESSAGES], CJ_KINDS(CJ_ARRAY), "messages", "an array"))
        return MALFORMED;
    /* Without a messages array (absent or null) the list starts empty; it is written
     * if a system message makes it non-empty, and otherwise left as it was. */
    bool list = cj_kind_of(v[MESSAGES]) == CJ_ARRAY || cfg.system_message.len;
    bool first = true;
    cj_scanner sub;
    cj_init(&sub, raw.ptr, raw.len);
    cj_object_begin(&sub, &it);
    cocoon_buf_byte(out, '{');
    while (cj_object_next(&sub, &it, &key) > 0) {
        cj_peek(&sub); /* to the value, past whitespace */
        if (cj_str_eq(key, "messages") && (sub.p != v[MESSAGES].ptr || list)) {
            /* An earlier duplicate, or the list written below, which the first pass
             * has scanned already: jump over that one. */
            if (sub.p == v[MESSAGES].ptr) sub.p += v[MESSAGES].len;
            else cj_skip(&sub, NULL);
            continue;
        }
        if (!first) cocoon_buf_byte(out, ',');
        first = false;
        cj_write_key(out, key);
        cj_copy(&sub, out);
    }
    if (list) {
        if (!first) cocoon_buf_byte(out, ',');
        cocoon_buf_str(out, "\"messages\":");
        cj_scanner msgs;
        cj_init(&msgs, v[MESSAGES].ptr, v[MESSAGES].len);
        enum outcome o = write_messages(cj_kind_of(v[MESSAGES]) == CJ_ARRAY ? &msgs : NULL, out);
        if (o != DONE) return o;
    } else if (cfg.on_existing == DROP) {
        cocoon_reject(400, "request has no messages left after removing system messages");
        return REJECTED;
    }
    cocoon_buf_byte(out, '}');
    return DONE;
}

COCOON_EXPORT("cocoon_pre") int64_t cocoon_pre(const uint8_t *in, uint32_t len) {
    if (!config()) return cocoon_fail();
    cocoon_buf out = {0};
    cj_scanner s;
    /* Room for the input, the system message and a few templated texts: most
     * requests then need no copying growth. */
    cocoon_buf_reserve(&out, len + cfg.system_message.len + cfg.segs.len * 4 + 64);
    cj_init(&s, in, len);
    switch (rewrite(&s, &out)) {
    case DONE:
        return cocoon_buf_result(&out);
    case MALFORMED:
        if (s.err) cj_log_error(&s, "request");
        return cocoon_fail();
    default:
        return cocoon_fail();
    }
}
