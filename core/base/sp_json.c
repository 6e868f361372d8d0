/* JSON: a strict validating scanner that indexes top-level fields without
 * copying, and an appending writer. Runs once per record, so the scanner
 * skips string bodies with memchr-like loops and never allocates once the
 * field array has grown. */
#include "sp_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct scan {
    const char *p, *end, *start;
    const char *err;
    int depth;
    int escaped; /* set by scan_string */
} scan;

static inline void ws(scan *s) {
    while (s->p < s->end &&
           (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

static inline int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int fail(scan *s, const char *msg) {
    if (!s->err) s->err = msg;
    return -1;
}

size_t sp_utf8_len(const char *s, const char *end) {
    const unsigned char *p = (const unsigned char *)s;
    size_t left = (size_t)(end - s);
    if (left == 0) return 0;
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    /* RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF */
    if (c >= 0xC2 && c <= 0xDF)
        return left >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return left >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return left >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 &&
                       (p[3] & 0xC0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

static uint32_t hex4(const char *p);

/* At the opening quote; leaves p after the closing quote. */
static int scan_string(scan *s) {
    const char *p = s->p + 1;
    s->escaped = 0;
    for (;;) {
        /* the common case: plain ASCII up to the next quote or backslash */
        while (p < s->end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20 &&
               (unsigned char)*p < 0x80)
            p++;
        if (p >= s->end) {
            s->p = p;
            return fail(s, "unterminated string");
        }
        if ((unsigned char)*p >= 0x80) {
            size_t n = sp_utf8_len(p, s->end);
            if (!n) {
                s->p = p;
                return fail(s, "invalid UTF-8 in string");
            }
            p += n;
            continue;
        }
        if (*p == '"') {
            s->p = p + 1;
            return 0;
        }
        if ((unsigned char)*p < 0x20) {
            s->p = p;
            return fail(s, "control character in string");
        }
        /* backslash */
        s->escaped = 1;
        if (p + 1 >= s->end) {
            s->p = p;
            return fail(s, "unterminated string");
        }
        switch (p[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n':
        case 'r': case 't':
            p += 2;
            break;
        case 'u': {
            if (p + 6 > s->end || hexval(p[2]) < 0 || hexval(p[3]) < 0 ||
                hexval(p[4]) < 0 || hexval(p[5]) < 0) {
                s->p = p;
                return fail(s, "invalid \\u escape");
            }
            uint32_t cp = hex4(p + 2);
            /* UTF-16 surrogates come in pairs: a high one, then a low one */
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                s->p = p;
                return fail(s, "lone surrogate in \\u escape");
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (p + 12 > s->end || p[6] != '\\' || p[7] != 'u' || hexval(p[8]) < 0 ||
                    hexval(p[9]) < 0 || hexval(p[10]) < 0 || hexval(p[11]) < 0 ||
                    hex4(p + 8) < 0xDC00 || hex4(p + 8) > 0xDFFF) {
                    s->p = p;
                    return fail(s, "lone surrogate in \\u escape");
                }
                p += 6;
            }
            p += 6;
            break;
        }
        default:
            s->p = p;
            return fail(s, "invalid escape");
        }
    }
}

static int scan_number(scan *s) {
    const char *p = s->p;
    if (p < s->end && *p == '-') p++;
    if (p >= s->end) goto bad;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < s->end && *p >= '0' && *p <= '9') p++;
    } else {
        goto bad;
    }
    if (p < s->end && *p == '.') {
        p++;
        if (p >= s->end || *p < '0' || *p > '9') goto bad;
        while (p < s->end && *p >= '0' && *p <= '9') p++;
    }
    int big = p - s->p > 300; /* digits enough to pass a double's range */
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < s->end && (*p == '+' || *p == '-')) p++;
        if (p >= s->end || *p < '0' || *p > '9') goto bad;
        while (p < s->end && *p >= '0' && *p <= '9') p++;
        big = 1;
    }
    /* "01" and "1x" end here with a digit or letter that no value allows
     * after a number; the caller's delimiter check reports it. */
    if (p < s->end && ((*p >= '0' && *p <= '9') || *p == '.')) goto bad;
    /* 1e999 would read as infinity (and be written as null) */
    if (big && isinf(sp_json_number(s->p, (size_t)(p - s->p)))) {
        return fail(s, "number out of range (beyond a double)");
    }
    s->p = p;
    return 0;
bad:
    s->p = p;
    return fail(s, "invalid number");
}

static int scan_literal(scan *s, const char *lit, size_t n) {
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return fail(s, "unexpected character");
    s->p += n;
    return 0;
}

static int scan_value(scan *s, uint8_t *type);

/* Indexes the value that starts at v and ends at s->p. */
static int add_field(scan *s, sp_json_index *ix, const char *k, uint32_t klen, int kesc,
                     const char *v, uint8_t type) {
    if (ix->n == ix->cap) {
        uint32_t cap = ix->cap ? ix->cap * 2 : 32;
        sp_json_field *f = realloc(ix->fields, cap * sizeof *f);
        if (!f) return fail(s, "out of memory");
        ix->fields = f;
        ix->cap = cap;
    }
    sp_json_field *f = &ix->fields[ix->n++];
    f->key = k;
    f->key_len = klen;
    f->key_escaped = (uint8_t)kesc;
    f->type = type;
    if (type == SP_JSON_STRING) {
        f->val = v + 1;
        f->val_len = (uint32_t)(s->p - v - 2);
        f->val_escaped = (uint8_t)s->escaped;
    } else {
        f->val = v;
        f->val_len = (uint32_t)(s->p - v);
        f->val_escaped = 0;
    }
    return 0;
}

static int scan_object_body(scan *s, sp_json_index *ix) {
    /* p is after '{' */
    ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    for (;;) {
        ws(s);
        if (s->p >= s->end) return fail(s, "unterminated object");
        if (*s->p != '"') return fail(s, "expected a string key");
        const char *k = s->p + 1;
        if (scan_string(s)) return -1;
        const char *kend = s->p - 1;
        int kesc = s->escaped;
        ws(s);
        if (s->p >= s->end || *s->p != ':') return fail(s, "expected ':'");
        s->p++;
        ws(s);
        if (s->p >= s->end) return fail(s, "unterminated object");
        const char *v = s->p;
        uint8_t type;
        if (scan_value(s, &type)) return -1;
        if (ix && add_field(s, ix, k, (uint32_t)(kend - k), kesc, v, type) != 0) return -1;
        ws(s);
        if (s->p >= s->end) return fail(s, "unterminated object");
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p == '}') {
            s->p++;
            return 0;
        }
        return fail(s, "expected ',' or '}'");
    }
}

static int scan_array_body(scan *s, sp_json_index *ix) {
    ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 0;
    }
    for (;;) {
        ws(s);
        if (s->p >= s->end) return fail(s, "unterminated array");
        uint8_t type;
        const char *v = s->p;
        if (scan_value(s, &type)) return -1;
        if (ix && add_field(s, ix, NULL, 0, 0, v, type) != 0) return -1;
        ws(s);
        if (s->p >= s->end) return fail(s, "unterminated array");
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p == ']') {
            s->p++;
            return 0;
        }
        return fail(s, "expected ',' or ']'");
    }
}

static int scan_value(scan *s, uint8_t *type) {
    if (s->p >= s->end) return fail(s, "unexpected end");
    switch (*s->p) {
    case '"':
        *type = SP_JSON_STRING;
        return scan_string(s);
    case '{': {
        *type = SP_JSON_OBJECT;
        if (++s->depth > MAX_DEPTH) return fail(s, "nesting too deep");
        s->p++;
        int rc = scan_object_body(s, NULL);
        s->depth--;
        return rc;
    }
    case '[': {
        *type = SP_JSON_ARRAY;
        if (++s->depth > MAX_DEPTH) return fail(s, "nesting too deep");
        s->p++;
        int rc = scan_array_body(s, NULL);
        s->depth--;
        return rc;
    }
    case 't':
        *type = SP_JSON_TRUE;
        return scan_literal(s, "true", 4);
    case 'f':
        *type = SP_JSON_FALSE;
        return scan_literal(s, "false", 5);
    case 'n':
        *type = SP_JSON_NULL;
        return scan_literal(s, "null", 4);
    default:
        *type = SP_JSON_NUMBER;
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
            return scan_number(s);
        return fail(s, "unexpected character");
    }
}

void sp_json_index_init(sp_json_index *ix) { memset(ix, 0, sizeof *ix); }

void sp_json_index_destroy(sp_json_index *ix) {
    free(ix->fields);
    sp_json_index_init(ix);
}

int sp_json_index_parse(sp_json_index *ix, const char *text, size_t len,
                        const char **err, size_t *err_pos) {
    scan s = {text, text + len, text, NULL, 0, 0};
    ix->n = 0;
    ix->root_type = SP_JSON_MISSING;
    ws(&s);
    if (s.p >= s.end) {
        s.err = "empty value";
        goto bad;
    }
    if (*s.p == '{') {
        s.p++;
        s.depth = 1;
        if (scan_object_body(&s, ix)) goto bad;
        ix->root_type = SP_JSON_OBJECT;
    } else if (*s.p == '[') {
        s.p++;
        s.depth = 1;
        if (scan_array_body(&s, ix)) goto bad;
        ix->root_type = SP_JSON_ARRAY;
    } else {
        uint8_t type;
        if (scan_value(&s, &type)) goto bad;
        ix->root_type = type;
    }
    ws(&s);
    if (s.p != s.end) {
        s.err = "trailing characters";
        goto bad;
    }
    return 0;
bad:
    ix->n = 0;
    ix->root_type = SP_JSON_MISSING;
    *err = s.err;
    *err_pos = (size_t)(s.p - text);
    return -1;
}

static size_t put_utf8(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static uint32_t hex4(const char *p) {
    return (uint32_t)(hexval(p[0]) << 12 | hexval(p[1]) << 8 |
                      hexval(p[2]) << 4 | hexval(p[3]));
}

/* Input was validated by the scanner. A lone surrogate is written as the
 * UTF-8 of its code point (as many decoders do) rather than rejected. A
 * \u escape is 6 bytes and its UTF-8 at most 3 (4 for a 12-byte pair), so
 * output never outgrows input. */
size_t sp_json_unescape(const char *in, size_t len, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (in[i] != '\\') {
            out[o++] = in[i++];
            continue;
        }
        char c = in[i + 1];
        i += 2;
        switch (c) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            uint32_t cp = hex4(in + i);
            i += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && i + 6 <= len && in[i] == '\\' &&
                in[i + 1] == 'u') {
                uint32_t lo = hex4(in + i + 2);
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
            }
            o += put_utf8(out + o, cp);
            break;
        }
        default: out[o++] = c; break; /* " \ / */
        }
    }
    return o;
}

int sp_json_index_find(const sp_json_index *ix, const char *name, size_t len) {
    if (ix->root_type != SP_JSON_OBJECT) return -1; /* an array's elements have no keys */
    for (int i = (int)ix->n - 1; i >= 0; i--) {
        const sp_json_field *f = &ix->fields[i];
        if (!f->key_escaped) {
            if (f->key_len == len && memcmp(f->key, name, len) == 0) return i;
            continue;
        }
        /* unescaping never grows a key: longer than name, it may still
         * unescape to it; shorter, it cannot */
        if (f->key_len < len) continue;
        char buf[256], *k = f->key_len <= sizeof buf ? buf : malloc(f->key_len);
        if (!k) continue;
        size_t n = sp_json_unescape(f->key, f->key_len, k);
        int same = n == len && memcmp(k, name, len) == 0;
        if (k != buf) free(k);
        if (same) return i;
    }
    return -1;
}

const double sp_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                             1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                             1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

int sp_json_decimal(const char *p, size_t len, uint64_t *mant, int *frac, int *neg) {
    size_t i = 0;
    int digits = 0, dot = -1;
    uint64_t m = 0;
    *neg = 0;
    if (i < len && (p[i] == '-' || p[i] == '+')) *neg = p[i++] == '-';
    for (; i < len; i++) {
        char c = p[i];
        if (c >= '0' && c <= '9') {
            if (++digits > 15) return -1;
            m = m * 10 + (uint64_t)(c - '0');
        } else if (c == '.' && dot < 0) {
            dot = digits;
        } else {
            return -1;
        }
    }
    if (digits == 0) return -1;
    *mant = m;
    *frac = dot < 0 ? 0 : digits - dot;
    return 0;
}

double sp_json_number(const char *p, size_t len) {
    /* a mantissa of at most 15 digits and a power of ten up to 22 are both
     * exact doubles, so one division rounds as strtod does */
    uint64_t m;
    int frac, neg;
    if (sp_json_decimal(p, len, &m, &frac, &neg) == 0) {
        double d = (double)m / sp_pow10[frac];
        return neg ? -d : d;
    }
    char buf[64];
    if (len < sizeof buf) {
        memcpy(buf, p, len);
        buf[len] = '\0';
        return strtod(buf, NULL);
    }
    char *tmp = malloc(len + 1);
    if (!tmp) return NAN;
    memcpy(tmp, p, len);
    tmp[len] = '\0';
    double v = strtod(tmp, NULL);
    free(tmp);
    return v;
}

int sp_json_write_string(sp_buf *b, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    /* worst case: every byte becomes \u00XX */
    if (sp_buf_reserve(b, len * 6 + 2) != 0) return -1;
    char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t n = sp_utf8_len(s + i, s + len);
            if (!n) return SP_JSON_EUTF8; /* b->len unchanged */
            memcpy(o, s + i, n);
            o += n;
            i += n - 1;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

/* Writes the decimal digits of u ending just before end; returns where
 * they start. */
static char *digits(uint64_t u, char *end) {
    do {
        *--end = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    return end;
}

int sp_json_write_int(sp_buf *b, int64_t v) {
    char tmp[24], *end = tmp + sizeof tmp;
    char *p = digits(v < 0 ? 0 - (uint64_t)v : (uint64_t)v, end);
    if (v < 0) *--p = '-';
    return sp_buf_append(b, p, (size_t)(end - p));
}

int sp_json_write_number(sp_buf *b, double v) {
    if (isnan(v) || isinf(v)) return sp_buf_append(b, "null", 4);
    /* integral values print as integers, -0 as 0 */
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
        return sp_json_write_int(b, (int64_t)v);
    /* Most doubles in data are short decimals (prices, readings): the
     * fewest decimals k for which m / 10^k gives back v exactly (one
     * correctly rounded division, as reading the text does) print as m
     * with a point in it, the shortest text, at a fraction of the cost of
     * printf and strtod. */
    double a = fabs(v);
    /* (below 1e-4 the exponent form is shorter, as printf's %g has it) */
    for (int k = 1; a >= 1e-4 && k <= 17; k++) {
        double s = a * sp_pow10[k];
        if (s >= 9007199254740992.0) break;
        double m = nearbyint(s);
        if (m / sp_pow10[k] != a) continue;
        char tmp[48], *end = tmp + sizeof tmp;
        char *p = digits((uint64_t)m, end);
        int len = (int)(end - p);
        /* 0.00ddd when there are fewer digits than decimals */
        while (len <= k) {
            *--p = '0';
            len++;
        }
        /* the point goes k digits from the right */
        memmove(p - 1, p, (size_t)(len - k));
        p--;
        p[len - k] = '.';
        if (v < 0) *--p = '-';
        return sp_buf_append(b, p, (size_t)(end - p));
    }
    /* The fewest significant digits that read back as v: if p digits do,
     * so do p + 1 (the nearest (p+1)-digit decimal is at least as close),
     * so 15 first (most results of arithmetic need 16 or 17), and below
     * it a binary search. */
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%.15g", v);
    if (strtod(tmp, NULL) == v) {
        int lo = 1, hi = 15;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            char t[32];
            snprintf(t, sizeof t, "%.*g", mid, v);
            if (strtod(t, NULL) == v) hi = mid; else lo = mid + 1;
        }
        if (hi < 15) n = snprintf(tmp, sizeof tmp, "%.*g", hi, v);
    } else {
        n = snprintf(tmp, sizeof tmp, "%.16g", v);
        if (strtod(tmp, NULL) != v) n = snprintf(tmp, sizeof tmp, "%.17g", v);
    }
    return sp_buf_append(b, tmp, (size_t)n);
}

int sp_json_write_base64(sp_buf *b, const void *p, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *u = p;
    int rc = sp_buf_putc(b, '"');
    for (size_t i = 0; i < n && rc == 0; i += 3) {
        uint32_t v = (uint32_t)u[i] << 16 | (i + 1 < n ? (uint32_t)u[i + 1] << 8 : 0) |
                     (i + 2 < n ? u[i + 2] : 0);
        char q[4] = {tab[v >> 18], tab[(v >> 12) & 63], i + 1 < n ? tab[(v >> 6) & 63] : '=',
                     i + 2 < n ? tab[v & 63] : '='};
        rc = sp_buf_append(b, q, 4);
    }
    return rc || sp_buf_putc(b, '"') ? -1 : 0;
}

int sp_json_write_text(sp_buf *b, const char *s, size_t len) {
    size_t at = b->len;
    int rc = sp_json_write_string(b, s, len);
    if (rc != SP_JSON_EUTF8) return rc;
    b->len = at;
    return sp_buf_append(b, "{\"b64\":", 7) || sp_json_write_base64(b, s, len) ||
           sp_buf_putc(b, '}') ? -1 : 0;
}

int sp_json_append_line(sp_buf *b, const char *json, size_t len) {
    size_t at = b->len;
    if (sp_buf_append(b, json, len)) return -1;
    for (size_t i = at; i < b->len; i++)
        if (b->data[i] == '\n' || b->data[i] == '\r') b->data[i] = ' ';
    return 0;
}
