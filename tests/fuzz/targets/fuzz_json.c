/* libFuzzer target: the JSON scanner, field access and the writer.
 * Whatever the scanner accepts must
 *  - give every top-level field back by its unescaped name (the last of
 *    duplicates, as documented), with numbers that read as strtod reads
 *    them and strings that unescape to UTF-8;
 *  - re-encode, through sproc's writer (sp_json_write_string,
 *    sp_json_write_number), to valid UTF-8 JSON that the scanner accepts
 *    and that re-encodes to the same text: the same value.
 * Rejected input must come with a message and a position inside it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_input.h"
#include "sp_json.h"

#define MAX_DEPTH 70 /* above the scanner's 64: its limit is what stops us */

static int canon(const char *text, size_t len, sp_buf *out, int depth);

/* A string's contents (between the quotes), unescaped and written back. */
static void canon_string(const char *p, size_t len, int escaped, sp_buf *out) {
    char *tmp = malloc(len + 1);
    FZ_CHECK(tmp);
    size_t n = escaped ? sp_json_unescape(p, len, tmp) : (memcpy(tmp, p, len), len);
    FZ_CHECK(n <= len); /* documented: unescaping never grows text */
    FZ_CHECK(fz_utf8_valid(tmp, n));
    FZ_CHECK(sp_json_write_string(out, tmp, n) == 0);
    free(tmp);
}

static void canon_number(const char *p, size_t len, sp_buf *out) {
    double d = sp_json_number(p, len);
    /* the fast path must agree with strtod (a correctly rounding one) */
    char *z = strndup(p, len);
    FZ_CHECK(z);
    double want = strtod(z, NULL);
    free(z);
    FZ_CHECK(d == want || (isnan(d) && isnan(want)));
    FZ_CHECK(isfinite(d)); /* the scanner refuses what overflows */
    size_t at = out->len;
    FZ_CHECK(sp_json_write_number(out, d) == 0);
    /* the shortest text must read back as the same double (-0 as 0) */
    double back = sp_json_number(out->data + at, out->len - at);
    FZ_CHECK(back == d);
}

/* A scalar, object or array value's text as the scanner delimits it. */
static void canon_value(const char *p, size_t len, int type, int escaped, sp_buf *out,
                        int depth) {
    switch (type) {
    case SP_JSON_NULL: FZ_CHECK(sp_buf_append(out, "null", 4) == 0); break;
    case SP_JSON_TRUE: FZ_CHECK(sp_buf_append(out, "true", 4) == 0); break;
    case SP_JSON_FALSE: FZ_CHECK(sp_buf_append(out, "false", 5) == 0); break;
    case SP_JSON_NUMBER: canon_number(p, len, out); break;
    case SP_JSON_STRING: canon_string(p, len, escaped, out); break;
    default: FZ_CHECK(canon(p, len, out, depth + 1) == 0);
    }
}

/* The elements of a validated array's text: commas outside strings at
 * the array's own level. */
static void canon_array(const char *p, size_t len, sp_buf *out, int depth) {
    size_t i = 0;
    while (p[i] != '[') i++;
    i++;
    FZ_CHECK(sp_buf_putc(out, '[') == 0);
    int level = 0, instr = 0, first = 1;
    size_t start = i;
    for (; i < len; i++) {
        char c = p[i];
        if (instr) {
            if (c == '\\') i++;
            else if (c == '"') instr = 0;
            continue;
        }
        if (c == '"') instr = 1;
        else if (c == '[' || c == '{') level++;
        else if ((c == ']' || c == '}') && level > 0) level--;
        else if ((c == ',' || c == ']') && level == 0) {
            const char *e = p + start;
            size_t elen = i - start;
            while (elen && strchr(" \t\r\n", *e)) e++, elen--;
            while (elen && strchr(" \t\r\n", e[elen - 1])) elen--;
            if (elen) { /* "[]" has none */
                if (!first) FZ_CHECK(sp_buf_putc(out, ',') == 0);
                first = 0;
                FZ_CHECK(canon(e, elen, out, depth) == 0);
            }
            start = i + 1;
            if (c == ']') break;
        }
    }
    FZ_CHECK(sp_buf_putc(out, ']') == 0);
}

/* Canonical JSON of a whole value: keys and strings unescaped and
 * written by sp_json_write_string, numbers through a double. */
static int canon(const char *text, size_t len, sp_buf *out, int depth) {
    FZ_CHECK(depth < MAX_DEPTH);
    sp_json_index ix;
    sp_json_index_init(&ix);
    const char *err = NULL;
    size_t pos = 0;
    if (sp_json_index_parse(&ix, text, len, &err, &pos) != 0) {
        sp_json_index_destroy(&ix);
        return -1;
    }
    switch (ix.root_type) {
    case SP_JSON_OBJECT:
        FZ_CHECK(sp_buf_putc(out, '{') == 0);
        for (uint32_t i = 0; i < ix.n; i++) {
            const sp_json_field *f = &ix.fields[i];
            if (i) FZ_CHECK(sp_buf_putc(out, ',') == 0);
            canon_string(f->key, f->key_len, f->key_escaped, out);
            FZ_CHECK(sp_buf_putc(out, ':') == 0);
            canon_value(f->val, f->val_len, f->type, f->val_escaped, out, depth);
        }
        FZ_CHECK(sp_buf_putc(out, '}') == 0);
        break;
    case SP_JSON_ARRAY:
        canon_array(text, len, out, depth);
        break;
    case SP_JSON_STRING: {
        const char *q = memchr(text, '"', len);
        const char *e = text + len;
        while (e[-1] != '"') e--;
        canon_string(q + 1, (size_t)(e - 1 - (q + 1)), memchr(q, '\\', (size_t)(e - q)) != NULL,
                     out);
        break;
    }
    default: {
        const char *p = text, *e = text + len;
        while (strchr(" \t\r\n", *p)) p++;
        while (strchr(" \t\r\n", e[-1])) e--;
        canon_value(p, (size_t)(e - p), ix.root_type, 0, out, depth);
    }
    }
    sp_json_index_destroy(&ix);
    return 0;
}

/* Field access: every top-level field is found by its unescaped name,
 * and the one found is the last with that name. */
static void check_fields(const sp_json_index *ix) {
    for (uint32_t i = 0; i < ix->n; i++) {
        const sp_json_field *f = &ix->fields[i];
        char *name = malloc(f->key_len + 1);
        FZ_CHECK(name);
        size_t n = f->key_escaped ? sp_json_unescape(f->key, f->key_len, name)
                                  : (memcpy(name, f->key, f->key_len), f->key_len);
        int j = sp_json_index_find(ix, name, n);
        FZ_CHECK(j >= (int)i);
        for (uint32_t k = (uint32_t)j + 1; k < ix->n; k++) {
            const sp_json_field *g = &ix->fields[k];
            char *other = malloc(g->key_len + 1);
            FZ_CHECK(other);
            size_t m = g->key_escaped ? sp_json_unescape(g->key, g->key_len, other)
                                      : (memcpy(other, g->key, g->key_len), g->key_len);
            FZ_CHECK(m != n || memcmp(other, name, n) != 0);
            free(other);
        }
        free(name);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    sp_json_index ix;
    sp_json_index_init(&ix);
    const char *err = NULL;
    size_t pos = (size_t)-1;
    if (sp_json_index_parse(&ix, text, size, &err, &pos) != 0) {
        FZ_CHECK(err && *err);
        FZ_CHECK(pos <= size);
        FZ_CHECK(ix.n == 0 && ix.root_type == SP_JSON_MISSING);
        sp_json_index_destroy(&ix);
        return 0;
    }
    FZ_CHECK(ix.root_type != SP_JSON_MISSING);
    FZ_CHECK(ix.root_type == SP_JSON_OBJECT || ix.root_type == SP_JSON_ARRAY || ix.n == 0);
    if (ix.root_type == SP_JSON_OBJECT) check_fields(&ix);
    for (uint32_t i = 0; ix.root_type == SP_JSON_ARRAY && i < ix.n; i++) {
        /* an element: no key, and a value that parses alone */
        const sp_json_field *f = &ix.fields[i];
        FZ_CHECK(f->key == NULL && f->key_len == 0);
        sp_json_index one;
        sp_json_index_init(&one);
        const char *e2;
        size_t p2;
        if (f->type == SP_JSON_STRING) {
            FZ_CHECK(f->val[-1] == '"' && f->val[f->val_len] == '"');
            FZ_CHECK(sp_json_index_parse(&one, f->val - 1, f->val_len + 2, &e2, &p2) == 0);
        } else {
            FZ_CHECK(sp_json_index_parse(&one, f->val, f->val_len, &e2, &p2) == 0);
        }
        FZ_CHECK(one.root_type == f->type);
        sp_json_index_destroy(&one);
    }
    FZ_CHECK(sp_json_index_find(&ix, "", 0) < 0 || ix.root_type == SP_JSON_OBJECT);

    sp_buf once, twice;
    sp_buf_init(&once);
    sp_buf_init(&twice);
    FZ_CHECK(canon(text, size, &once, 0) == 0);
    FZ_CHECK(fz_utf8_valid(once.data, once.len));
    sp_json_index back;
    sp_json_index_init(&back);
    FZ_CHECK(sp_json_index_parse(&back, once.data, once.len, &err, &pos) == 0);
    FZ_CHECK(back.root_type == ix.root_type && back.n == ix.n);
    FZ_CHECK(canon(once.data, once.len, &twice, 0) == 0);
    FZ_CHECK(twice.len == once.len && memcmp(twice.data, once.data, once.len) == 0);
    sp_json_index_destroy(&back);
    sp_buf_destroy(&once);
    sp_buf_destroy(&twice);
    sp_json_index_destroy(&ix);
    return 0;
}
