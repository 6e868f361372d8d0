#include "sp_avro.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_json.h"
#include "sp_time.h"

enum { AV_NULL, AV_BOOLEAN, AV_INT, AV_LONG, AV_FLOAT, AV_DOUBLE, AV_BYTES, AV_STRING,
       AV_RECORD, AV_ENUM, AV_ARRAY, AV_MAP, AV_UNION, AV_FIXED };
enum { LT_NONE, LT_DECIMAL, LT_DATE, LT_TIME_MILLIS, LT_TIMESTAMP_MILLIS, LT_TIMESTAMP_MICROS,
       LT_UUID };

/* A schema is a table of nodes; a node names others by index, so a named
 * type may refer to itself (a linked list of records). */
typedef struct node {
    int type, logical;
    char *name;           /* named types: the full name */
    int32_t *kids;        /* record: fields' types; union: branches; array,
                           * map: one */
    char **names;         /* record: field names; enum: symbols */
    char **defaults;      /* record: a field's default as JSON text, or NULL */
    int32_t nkids, nnames;
    int64_t size;         /* fixed */
    int precision, scale; /* decimal */
} node;

struct sp_avro_schema {
    node *n;
    int32_t count, cap;
};

typedef struct parser {
    sp_avro_schema *s;
    char *err;
    size_t errsize;
} parser;

static int fail(char *err, size_t errsize, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
    return -1;
}

static void free_node(node *n) {
    for (int32_t i = 0; i < n->nnames; i++) {
        free(n->names[i]);
        if (n->defaults) free(n->defaults[i]);
    }
    free(n->names);
    free(n->defaults);
    free(n->kids);
    free(n->name);
}

void sp_avro_destroy(sp_avro_schema *s) {
    if (!s) return;
    for (int32_t i = 0; i < s->count; i++) free_node(&s->n[i]);
    free(s->n);
    free(s);
}

static int32_t new_node(parser *p, int type) {
    sp_avro_schema *s = p->s;
    if (s->count == s->cap) {
        int32_t cap = s->cap ? s->cap * 2 : 16;
        node *n = realloc(s->n, (size_t)cap * sizeof *n);
        if (!n) return fail(p->err, p->errsize, "out of memory");
        s->n = n;
        s->cap = cap;
    }
    memset(&s->n[s->count], 0, sizeof s->n[0]);
    s->n[s->count].type = type;
    return s->count++;
}

/* A JSON string's contents, unescaped, as a new C string. */
static char *str_of(const sp_json_field *f) {
    char *out = malloc((size_t)f->val_len + 1);
    if (!out) return NULL;
    size_t n = f->val_escaped ? sp_json_unescape(f->val, f->val_len, out) : f->val_len;
    if (!f->val_escaped) memcpy(out, f->val, f->val_len);
    out[n] = '\0';
    return out;
}

static const sp_json_field *field(const sp_json_index *ix, const char *name) {
    int i = sp_json_index_find(ix, name, strlen(name));
    return i < 0 ? NULL : &ix->fields[i];
}

static const char *const primitives[] = {"null", "boolean", "int", "long", "float", "double",
                                         "bytes", "string"};

static int32_t find_named(parser *p, const char *name, const char *ns) {
    char full[512];
    snprintf(full, sizeof full, "%s%s%s", ns && *ns && !strchr(name, '.') ? ns : "",
             ns && *ns && !strchr(name, '.') ? "." : "", name);
    for (int32_t i = 0; i < p->s->count; i++)
        if (p->s->n[i].name && (strcmp(p->s->n[i].name, full) == 0 || strcmp(p->s->n[i].name, name) == 0))
            return i;
    return -1;
}

static int32_t parse_value(parser *p, const char *text, size_t len, const char *ns, int depth);

/* The type a field of a schema object gives (a string's text keeps its
 * quotes: parse_value tells names from objects by the first byte). */
static int32_t parse_field(parser *p, const sp_json_field *f, const char *ns, int depth) {
    int str = f->type == SP_JSON_STRING;
    return parse_value(p, str ? f->val - 1 : f->val, str ? f->val_len + 2 : f->val_len, ns, depth);
}

/* A type given by name: a primitive or a named type defined before. */
static int32_t parse_name(parser *p, const char *name, const char *ns) {
    for (int t = AV_NULL; t <= AV_STRING; t++)
        if (strcmp(name, primitives[t]) == 0) return new_node(p, t);
    int32_t i = find_named(p, name, ns);
    return i >= 0 ? i : fail(p->err, p->errsize, "unknown type '%s'", name);
}

static int logical(parser *p, int32_t id, const sp_json_index *ix) {
    const sp_json_field *lt = field(ix, "logicalType");
    node *n = &p->s->n[id];
    if (!lt || lt->type != SP_JSON_STRING) return 0;
    char *name = str_of(lt);
    if (!name) return fail(p->err, p->errsize, "out of memory");
    /* a logical type on the wrong type is ignored, as the spec says */
    if (!strcmp(name, "decimal") && (n->type == AV_BYTES || n->type == AV_FIXED)) {
        const sp_json_field *pr = field(ix, "precision"), *sc = field(ix, "scale");
        n->precision = pr && pr->type == SP_JSON_NUMBER ? (int)sp_json_number(pr->val, pr->val_len) : 0;
        n->scale = sc && sc->type == SP_JSON_NUMBER ? (int)sp_json_number(sc->val, sc->val_len) : 0;
        if (n->precision >= 1 && n->scale >= 0 && n->scale <= n->precision && n->precision <= 38)
            n->logical = LT_DECIMAL;
    } else if (!strcmp(name, "date") && n->type == AV_INT) {
        n->logical = LT_DATE;
    } else if (!strcmp(name, "time-millis") && n->type == AV_INT) {
        n->logical = LT_TIME_MILLIS;
    } else if (!strcmp(name, "timestamp-millis") && n->type == AV_LONG) {
        n->logical = LT_TIMESTAMP_MILLIS;
    } else if (!strcmp(name, "timestamp-micros") && n->type == AV_LONG) {
        n->logical = LT_TIMESTAMP_MICROS;
    } else if (!strcmp(name, "uuid") && n->type == AV_STRING) {
        n->logical = LT_UUID;
    }
    free(name);
    return 0;
}

/* name and namespace of a named type: its full name */
static char *full_name(const sp_json_index *ix, const char *ns) {
    const sp_json_field *nf = field(ix, "name"), *nsf = field(ix, "namespace");
    if (!nf || nf->type != SP_JSON_STRING) return NULL;
    char *name = str_of(nf), *space = nsf && nsf->type == SP_JSON_STRING ? str_of(nsf) : NULL;
    const char *use = space ? space : ns;
    char *full = NULL;
    if (name && (strchr(name, '.') || !use || !*use)) {
        full = name;
        name = NULL;
    } else if (name) {
        size_t n = strlen(use) + strlen(name) + 2;
        full = malloc(n);
        if (full) snprintf(full, n, "%s.%s", use, name);
    }
    free(name);
    free(space);
    return full;
}

/* The namespace a named type gives the types inside it. */
static void ns_of(const char *full, char *out, size_t size) {
    const char *dot = full ? strrchr(full, '.') : NULL;
    size_t n = dot ? (size_t)(dot - full) : 0;
    if (n >= size) n = size - 1;
    memcpy(out, full ? full : "", n);
    out[n] = '\0';
}

static int32_t parse_record(parser *p, int32_t id, const sp_json_index *ix, int depth) {
    const sp_json_field *ff = field(ix, "fields");
    char inner[256];
    ns_of(p->s->n[id].name, inner, sizeof inner);
    sp_json_index fx;
    sp_json_index_init(&fx);
    const char *e;
    size_t pos;
    int32_t rc = id;
    if (!ff || ff->type != SP_JSON_ARRAY || sp_json_index_parse(&fx, ff->val, ff->val_len, &e, &pos)) {
        rc = fail(p->err, p->errsize, "record %s: fields must be an array", p->s->n[id].name);
        goto done;
    }
    node *n = &p->s->n[id];
    n->kids = calloc(fx.n + 1, sizeof *n->kids);
    n->names = calloc(fx.n + 1, sizeof *n->names);
    n->defaults = calloc(fx.n + 1, sizeof *n->defaults);
    if (!n->kids || !n->names || !n->defaults) {
        rc = fail(p->err, p->errsize, "out of memory");
        goto done;
    }
    for (uint32_t i = 0; i < fx.n && rc >= 0; i++) {
        sp_json_index f;
        sp_json_index_init(&f);
        const sp_json_field *name = NULL, *type = NULL, *def = NULL;
        if (fx.fields[i].type == SP_JSON_OBJECT &&
            sp_json_index_parse(&f, fx.fields[i].val, fx.fields[i].val_len, &e, &pos) == 0) {
            name = field(&f, "name");
            type = field(&f, "type");
            def = field(&f, "default");
        }
        if (!name || name->type != SP_JSON_STRING || !type) {
            rc = fail(p->err, p->errsize, "record %s: field %u needs a name and a type",
                      p->s->n[id].name, i + 1);
        } else {
            char *fname = str_of(name);
            /* the node table may move while the field's type is parsed */
            int32_t kid = fname ? parse_field(p, type, inner, depth + 1)
                                : fail(p->err, p->errsize, "out of memory");
            n = &p->s->n[id];
            n->names[n->nnames] = fname;
            n->defaults[n->nnames] = NULL;
            if (kid >= 0 && def) {
                n->defaults[n->nnames] = malloc((size_t)def->val_len + 3);
                if (n->defaults[n->nnames]) {
                    /* a string's text comes without its quotes */
                    size_t q = def->type == SP_JSON_STRING;
                    if (q) n->defaults[n->nnames][0] = '"';
                    memcpy(n->defaults[n->nnames] + q, def->val, def->val_len);
                    if (q) n->defaults[n->nnames][def->val_len + 1] = '"';
                    n->defaults[n->nnames][def->val_len + 2 * q] = '\0';
                }
            }
            n->kids[n->nnames++] = kid;
            n->nkids = n->nnames;
            if (fname && kid < 0) rc = -1;
            if (!fname) rc = -1;
        }
        sp_json_index_destroy(&f);
    }
done:
    sp_json_index_destroy(&fx);
    return rc;
}

static int32_t parse_object(parser *p, const char *text, size_t len, const char *ns, int depth) {
    sp_json_index ix;
    sp_json_index_init(&ix);
    const char *e;
    size_t pos;
    int32_t id = -1;
    const sp_json_field *tf = NULL;
    char *type = NULL;
    if (sp_json_index_parse(&ix, text, len, &e, &pos) != 0 || !(tf = field(&ix, "type"))) {
        id = fail(p->err, p->errsize, "a schema object needs a type");
        goto done;
    }
    if (tf->type != SP_JSON_STRING) {
        /* {"type": {...}} or {"type": [...]}: the type is the inner one */
        id = parse_value(p, tf->val, tf->val_len, ns, depth + 1);
        goto done;
    }
    type = str_of(tf);
    if (!type) {
        id = fail(p->err, p->errsize, "out of memory");
    } else if (!strcmp(type, "record") || !strcmp(type, "error") || !strcmp(type, "enum") ||
               !strcmp(type, "fixed")) {
        int t = type[0] == 'e' && type[1] == 'n' ? AV_ENUM : type[0] == 'f' ? AV_FIXED : AV_RECORD;
        char *full = full_name(&ix, ns);
        if (!full) {
            id = fail(p->err, p->errsize, "a %s needs a name", type);
        } else if (find_named(p, full, NULL) >= 0) {
            id = fail(p->err, p->errsize, "type %s is defined twice", full);
            free(full);
        } else if ((id = new_node(p, t)) < 0) {
            free(full);
        } else {
            p->s->n[id].name = full;
            if (t == AV_RECORD) {
                id = parse_record(p, id, &ix, depth);
            } else if (t == AV_FIXED) {
                const sp_json_field *sz = field(&ix, "size");
                double v = sz && sz->type == SP_JSON_NUMBER ? sp_json_number(sz->val, sz->val_len) : -1;
                if (v < 0 || v > 1 << 24 || v != floor(v)) id = fail(p->err, p->errsize, "fixed %s needs a size", full);
                else p->s->n[id].size = (int64_t)v;
                if (id >= 0 && logical(p, id, &ix) != 0) id = -1;
            } else {
                const sp_json_field *sy = field(&ix, "symbols");
                sp_json_index sx;
                sp_json_index_init(&sx);
                node *n = &p->s->n[id];
                if (!sy || sy->type != SP_JSON_ARRAY || sp_json_index_parse(&sx, sy->val, sy->val_len, &e, &pos) ||
                    sx.n == 0 || !(n->names = calloc(sx.n, sizeof *n->names))) {
                    id = fail(p->err, p->errsize, "enum %s needs symbols", full);
                } else {
                    for (uint32_t i = 0; i < sx.n && id >= 0; i++) {
                        if (sx.fields[i].type != SP_JSON_STRING || !(n->names[i] = str_of(&sx.fields[i])))
                            id = fail(p->err, p->errsize, "enum %s: a symbol is not a string", full);
                        else
                            n->nnames = (int32_t)i + 1;
                    }
                }
                sp_json_index_destroy(&sx);
            }
        }
    } else if (!strcmp(type, "array") || !strcmp(type, "map")) {
        const sp_json_field *it = field(&ix, type[0] == 'a' ? "items" : "values");
        int32_t kid = !it ? fail(p->err, p->errsize, "an %s needs its %s", type, type[0] == 'a' ? "items" : "values")
                          : parse_field(p, it, ns, depth + 1);
        if (kid >= 0 && (id = new_node(p, type[0] == 'a' ? AV_ARRAY : AV_MAP)) >= 0) {
            p->s->n[id].kids = malloc(sizeof(int32_t));
            if (!p->s->n[id].kids) id = fail(p->err, p->errsize, "out of memory");
            else p->s->n[id].kids[0] = kid, p->s->n[id].nkids = 1;
        }
    } else {
        id = parse_name(p, type, ns);
        if (id >= 0 && p->s->n[id].type <= AV_STRING && logical(p, id, &ix) != 0) id = -1;
    }
done:
    free(type);
    sp_json_index_destroy(&ix);
    return id;
}

static int32_t parse_union(parser *p, const char *text, size_t len, const char *ns, int depth) {
    sp_json_index ix;
    sp_json_index_init(&ix);
    const char *e;
    size_t pos;
    int32_t id = -1;
    if (sp_json_index_parse(&ix, text, len, &e, &pos) != 0 || ix.n == 0) {
        id = fail(p->err, p->errsize, "a union needs at least one type");
    } else if ((id = new_node(p, AV_UNION)) >= 0) {
        int32_t *kids = calloc(ix.n, sizeof *kids);
        for (uint32_t i = 0; kids && i < ix.n && id >= 0; i++) {
            const sp_json_field *f = &ix.fields[i];
            int32_t k = parse_field(p, f, ns, depth + 1);
            if (k < 0) id = -1;
            else if (p->s->n[k].type == AV_UNION) id = fail(p->err, p->errsize, "a union in a union");
            else kids[i] = k;
        }
        if (!kids) id = fail(p->err, p->errsize, "out of memory");
        if (id >= 0) {
            p->s->n[id].kids = kids;
            p->s->n[id].nkids = (int32_t)ix.n;
        } else {
            free(kids);
        }
    }
    sp_json_index_destroy(&ix);
    return id;
}

/* text: a whole JSON value (a string with its quotes). */
static int32_t parse_value(parser *p, const char *text, size_t len, const char *ns, int depth) {
    if (depth > SP_AVRO_DEPTH) return fail(p->err, p->errsize, "a schema nested too deep");
    while (len && (*text == ' ' || *text == '\n' || *text == '\t' || *text == '\r')) text++, len--;
    if (len && *text == '{') return parse_object(p, text, len, ns, depth);
    if (len && *text == '[') return parse_union(p, text, len, ns, depth);
    if (len >= 2 && *text == '"') {
        sp_json_field f = {0};
        f.val = text + 1;
        f.val_len = (uint32_t)(len - 2);
        while (f.val_len && f.val[f.val_len] != '"') f.val_len--;
        f.val_escaped = memchr(f.val, '\\', f.val_len) != NULL;
        char *name = str_of(&f);
        int32_t id = name ? parse_name(p, name, ns) : fail(p->err, p->errsize, "out of memory");
        free(name);
        return id;
    }
    return fail(p->err, p->errsize, "a schema is a name, an object or a union");
}

int sp_avro_parse(const char *json, size_t len, sp_avro_schema **out, char *err, size_t errsize) {
    sp_json_index ix;
    sp_json_index_init(&ix);
    const char *e;
    size_t pos;
    parser p = {calloc(1, sizeof(sp_avro_schema)), err, errsize};
    int rc = -1;
    *out = NULL;
    if (!p.s) {
        fail(err, errsize, "out of memory");
    } else if (sp_json_index_parse(&ix, json, len, &e, &pos) != 0) {
        fail(err, errsize, "the schema is not JSON: %s at byte %zu", e, pos);
    } else {
        /* the root is node 0: a placeholder the parsed type is copied into */
        int32_t root = new_node(&p, AV_NULL);
        int32_t id = root < 0 ? -1 : parse_value(&p, json, len, "", 0);
        if (id > 0) {
            /* the root is the last node a name can refer to: keep its index
             * by making node 0 a one-branch union-free alias */
            p.s->n[0].type = AV_UNION;
            p.s->n[0].kids = malloc(sizeof(int32_t));
            if (p.s->n[0].kids) {
                p.s->n[0].kids[0] = id;
                p.s->n[0].nkids = 1;
                rc = 0;
            } else {
                fail(err, errsize, "out of memory");
            }
        }
    }
    sp_json_index_destroy(&ix);
    if (rc == 0) *out = p.s;
    else sp_avro_destroy(p.s);
    return rc;
}

/* --- decoding ----------------------------------------------------------- */

typedef struct reader {
    const unsigned char *p, *end;
    sp_buf *out;
    char *err;
    size_t errsize;
} reader;

/* The outputs are set on failure too: an optimizing build cannot see that
 * callers never read them then, and -Werror stops at its warning. */
static int read_long(reader *r, int64_t *v) {
    uint64_t u = 0;
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return fail(r->err, r->errsize, "a datum ends inside a number");
        unsigned char b = *r->p++;
        u |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
            return 0;
        }
    }
    return fail(r->err, r->errsize, "a number longer than 10 bytes");
}

static int read_bytes(reader *r, const unsigned char **b, int64_t *n) {
    *b = NULL;
    if (read_long(r, n) != 0) return -1;
    if (*n < 0 || *n > r->end - r->p) return fail(r->err, r->errsize, "a length past the datum's end");
    *b = r->p;
    r->p += *n;
    return 0;
}

/* An unscaled two's complement big-endian integer of up to 16 bytes as
 * decimal text with scale digits after the point. */
static int put_decimal(sp_buf *out, const unsigned char *b, int64_t n, int scale, int precision) {
    if (n > 16) return -2;
    __int128 v = n > 0 && (b[0] & 0x80) ? -1 : 0;
    for (int64_t i = 0; i < n; i++) v = (__int128)(((unsigned __int128)v << 8) | b[i]);
    char digits[64];
    int k = 0, neg = v < 0;
    unsigned __int128 u = neg ? -(unsigned __int128)v : (unsigned __int128)v;
    do {
        digits[k++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    if (k > precision) return -3; /* more digits than the type holds */
    while (k <= scale) digits[k++] = '0';
    int rc = neg ? sp_buf_putc(out, '-') : 0;
    for (int i = k - 1; i >= 0 && rc == 0; i--) {
        rc = sp_buf_putc(out, digits[i]);
        if (rc == 0 && i == scale && scale > 0) rc = sp_buf_putc(out, '.');
    }
    return rc;
}

static int decode(const sp_avro_schema *s, int32_t id, reader *r, int depth);

static int decode_blocks(const sp_avro_schema *s, const node *n, reader *r, int depth) {
    int map = n->type == AV_MAP, first = 1;
    if (sp_buf_putc(r->out, map ? '{' : '[')) return fail(r->err, r->errsize, "out of memory");
    for (;;) {
        int64_t count, bytes;
        if (read_long(r, &count) != 0) return -1;
        if (count == 0) break;
        if (count < 0) {
            if (count == INT64_MIN || read_long(r, &bytes) != 0) return fail(r->err, r->errsize, "a bad block");
            count = -count;
        }
        /* every item takes a byte at least: a count past the end is a lie */
        if (count > r->end - r->p) return fail(r->err, r->errsize, "a block count past the datum's end");
        for (int64_t i = 0; i < count; i++) {
            if (!first && sp_buf_putc(r->out, ',')) return fail(r->err, r->errsize, "out of memory");
            first = 0;
            if (map) {
                const unsigned char *k;
                int64_t kl;
                if (read_bytes(r, &k, &kl) != 0) return -1;
                int rc = sp_json_write_string(r->out, (const char *)k, (size_t)kl);
                if (rc == SP_JSON_EUTF8) return fail(r->err, r->errsize, "a map key is not UTF-8");
                if (rc || sp_buf_putc(r->out, ':')) return fail(r->err, r->errsize, "out of memory");
            }
            if (decode(s, n->kids[0], r, depth + 1) != 0) return -1;
        }
    }
    return sp_buf_putc(r->out, map ? '}' : ']') ? fail(r->err, r->errsize, "out of memory") : 0;
}

static int decode(const sp_avro_schema *s, int32_t id, reader *r, int depth) {
    const node *n = &s->n[id];
    sp_buf *out = r->out;
    int64_t v;
    const unsigned char *b;
    int rc = 0;
    if (depth > SP_AVRO_DEPTH) return fail(r->err, r->errsize, "a datum nested too deep");
    switch (n->type) {
    case AV_NULL: rc = sp_buf_append(out, "null", 4); break;
    case AV_BOOLEAN:
        if (r->p >= r->end || *r->p > 1) return fail(r->err, r->errsize, "a boolean is 0 or 1");
        rc = *r->p++ ? sp_buf_append(out, "true", 4) : sp_buf_append(out, "false", 5);
        break;
    case AV_INT: case AV_LONG:
        if (read_long(r, &v) != 0) return -1;
        if (n->type == AV_INT && (v < INT32_MIN || v > INT32_MAX)) return fail(r->err, r->errsize, "an int out of range");
        if (n->logical == LT_DATE && v >= sp_time_days(1, 1, 1) && v <= sp_time_days(9999, 12, 31)) {
            /* as sproc's schemas and Parquet take a date (one ISO-8601
             * cannot write stays a number of days) */
            char d[32];
            size_t dl = sp_time_format_date(v, d);
            rc = sp_buf_putc(out, '"') | sp_buf_append(out, d, dl) | sp_buf_putc(out, '"');
            break;
        }
        rc = sp_json_write_int(out, v);
        break;
    case AV_FLOAT: case AV_DOUBLE: {
        size_t w = n->type == AV_FLOAT ? 4 : 8;
        if ((size_t)(r->end - r->p) < w) return fail(r->err, r->errsize, "a datum ends inside a number");
        double d;
        if (w == 4) {
            float f;
            uint32_t u = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
            memcpy(&f, &u, 4);
            d = f;
        } else {
            uint64_t u = 0;
            for (int i = 7; i >= 0; i--) u = u << 8 | r->p[i];
            memcpy(&d, &u, 8);
        }
        r->p += w;
        rc = isfinite(d) ? sp_json_write_number(out, d) : sp_buf_append(out, "null", 4);
        break;
    }
    case AV_BYTES: case AV_STRING: case AV_FIXED:
        if (n->type == AV_FIXED) {
            if (n->size > r->end - r->p) return fail(r->err, r->errsize, "a fixed past the datum's end");
            b = r->p;
            v = n->size;
            r->p += n->size;
        } else if (read_bytes(r, &b, &v) != 0) {
            return -1;
        }
        if (n->logical == LT_DECIMAL) {
            rc = put_decimal(out, b, v, n->scale, n->precision);
            if (rc == -2) return fail(r->err, r->errsize, "a decimal of more than 16 bytes");
            if (rc == -3) return fail(r->err, r->errsize, "a decimal of more than %d digits", n->precision);
        } else if (n->type == AV_STRING) {
            rc = sp_json_write_string(out, (const char *)b, (size_t)v);
            if (rc == SP_JSON_EUTF8) return fail(r->err, r->errsize, "a string that is not UTF-8");
        } else {
            rc = sp_json_write_text(out, (const char *)b, (size_t)v);
        }
        break;
    case AV_RECORD:
        rc = sp_buf_putc(out, '{');
        for (int32_t i = 0; i < n->nkids && rc == 0; i++) {
            rc = (i ? sp_buf_putc(out, ',') : 0) | sp_json_write_string(out, n->names[i], strlen(n->names[i])) |
                 sp_buf_putc(out, ':');
            if (rc == 0 && decode(s, n->kids[i], r, depth + 1) != 0) return -1;
        }
        rc |= sp_buf_putc(out, '}');
        break;
    case AV_ENUM:
        if (read_long(r, &v) != 0) return -1;
        if (v < 0 || v >= n->nnames) return fail(r->err, r->errsize, "an enum index out of range");
        rc = sp_json_write_string(out, n->names[v], strlen(n->names[v]));
        break;
    case AV_ARRAY: case AV_MAP:
        return decode_blocks(s, n, r, depth);
    case AV_UNION:
        if (n->nkids == 1 && id == 0) return decode(s, n->kids[0], r, depth); /* the root */
        if (read_long(r, &v) != 0) return -1;
        if (v < 0 || v >= n->nkids) return fail(r->err, r->errsize, "a union branch out of range");
        return decode(s, n->kids[v], r, depth + 1);
    }
    return rc ? fail(r->err, r->errsize, "out of memory") : 0;
}

int sp_avro_decode(const sp_avro_schema *s, const char *p, size_t n, sp_buf *out, char *err,
                   size_t errsize) {
    reader r = {(const unsigned char *)p, (const unsigned char *)p + n, out, err, errsize};
    if (decode(s, 0, &r, 0) != 0) return -1;
    return r.p == r.end ? 0 : fail(err, errsize, "%zu bytes after the datum", (size_t)(r.end - r.p));
}

/* --- encoding ----------------------------------------------------------- */

typedef struct writer {
    sp_buf *out;
    char *err;
    size_t errsize;
} writer;

static int put_long(sp_buf *out, int64_t v) {
    uint64_t u = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    unsigned char b[10];
    int k = 0;
    while (u >= 0x80) {
        b[k++] = (unsigned char)(u | 0x80);
        u >>= 7;
    }
    b[k++] = (unsigned char)u;
    return sp_buf_append(out, b, (size_t)k);
}

/* A JSON value: its type and text (a string's between its quotes). */
typedef struct jval {
    int type;
    const char *p;
    size_t n;
    int escaped;
} jval;

static int encode(const sp_avro_schema *s, int32_t id, const jval *v, writer *w, int depth);

static int as_int64(const jval *v, int64_t *out) {
    if (v->type != SP_JSON_NUMBER) return -1;
    char buf[32];
    /* plain digits exactly (a double would round past 2^53) */
    if (v->n < sizeof buf && !memchr(v->p, '.', v->n) && !memchr(v->p, 'e', v->n) &&
        !memchr(v->p, 'E', v->n)) {
        memcpy(buf, v->p, v->n);
        buf[v->n] = '\0';
        errno = 0;
        long long x = strtoll(buf, NULL, 10);
        if (errno == ERANGE) return -1;
        *out = x;
        return 0;
    }
    double d = sp_json_number(v->p, v->n);
    if (d != floor(d) || d < -9.2233720368547758e18 || d >= 9.2233720368547758e18) return -1;
    *out = (int64_t)d;
    return 0;
}

/* An unscaled decimal from a number or a numeric string: scale digits
 * after the point (more, unless zeros, are refused, never rounded) and
 * at most precision digits in all. */
static int decimal_of(const jval *v, int scale, int precision, __int128 *out) {
    char buf[96];
    size_t n = v->n;
    if ((v->type != SP_JSON_NUMBER && v->type != SP_JSON_STRING) || n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, v->p, n);
    buf[n] = '\0';
    const char *c = buf;
    int neg = *c == '-';
    if (*c == '-' || *c == '+') c++;
    unsigned __int128 u = 0;
    int frac = -1, digits = 0, significant = 0;
    for (; *c; c++) {
        if (*c == '.' && frac < 0) {
            frac = 0;
            continue;
        }
        if (*c < '0' || *c > '9') return -1;
        digits++;
        if (frac >= 0 && ++frac > scale) {
            if (*c != '0') return -1;
            continue;
        }
        if (significant || *c != '0') significant++;
        if (significant > precision) return -1;
        u = u * 10 + (unsigned)(*c - '0');
    }
    if (digits == 0) return -1;
    for (int f = frac < 0 ? 0 : frac; f < scale; f++) {
        if (significant && ++significant > precision) return -1;
        u *= 10;
    }
    *out = neg ? -(__int128)u : (__int128)u;
    return 0;
}

static int put_decimal_bytes(sp_buf *out, __int128 u, int64_t fixed) {
    unsigned char b[16];
    for (int i = 15; i >= 0; i--, u >>= 8) b[i] = (unsigned char)(u & 0xff);
    int start = 0;
    /* the shortest two's complement, or sign-extended to a fixed's size */
    while (start < 15 && ((b[start] == 0 && !(b[start + 1] & 0x80)) ||
                          (b[start] == 0xff && (b[start + 1] & 0x80))))
        start++;
    int64_t len = 16 - start;
    if (fixed >= 0) {
        if (len > fixed) return -2;
        int rc = 0;
        for (int64_t i = len; i < fixed; i++) rc |= sp_buf_putc(out, (b[start] & 0x80) ? (char)0xff : 0);
        return rc | sp_buf_append(out, b + start, (size_t)len);
    }
    return put_long(out, len) | sp_buf_append(out, b + start, (size_t)len);
}

/* The bytes of a JSON string, unescaped, into tmp. */
static int string_bytes(const jval *v, sp_buf *tmp) {
    sp_buf_reset(tmp);
    if (sp_buf_reserve(tmp, v->n + 1)) return -1;
    tmp->len = v->escaped ? sp_json_unescape(v->p, v->n, tmp->data) : v->n;
    if (!v->escaped) memcpy(tmp->data, v->p, v->n);
    return 0;
}

static int b64_value(int c) {
    return c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26
         : c >= '0' && c <= '9' ? c - '0' + 52 : c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* bytes, fixed: a string's UTF-8, or {"b64": ...} (what decoding gives). */
static int bytes_of(const jval *v, sp_buf *tmp) {
    if (v->type == SP_JSON_STRING) return string_bytes(v, tmp);
    sp_json_index ix;
    sp_json_index_init(&ix);
    const char *e;
    size_t pos;
    int rc = -1, i;
    if (v->type == SP_JSON_OBJECT && sp_json_index_parse(&ix, v->p, v->n, &e, &pos) == 0 &&
        (i = sp_json_index_find(&ix, "b64", 3)) >= 0 && ix.fields[i].type == SP_JSON_STRING) {
        const char *s = ix.fields[i].val;
        size_t n = ix.fields[i].val_len;
        uint32_t acc = 0;
        int bits = 0;
        sp_buf_reset(tmp);
        rc = 0;
        for (size_t k = 0; k < n && rc == 0 && s[k] != '='; k++) {
            int d = b64_value((unsigned char)s[k]);
            if (d < 0) {
                rc = -1;
                break;
            }
            acc = acc << 6 | (uint32_t)d;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                rc = sp_buf_putc(tmp, (char)((acc >> bits) & 0xff));
            }
        }
    }
    sp_json_index_destroy(&ix);
    return rc;
}

/* Whether a union branch takes a JSON value: the first that does is used. */
static int takes(const sp_avro_schema *s, int32_t id, const jval *v) {
    const node *n = &s->n[id];
    int64_t i;
    switch (n->type) {
    case AV_NULL: return v->type == SP_JSON_NULL;
    case AV_BOOLEAN: return v->type == SP_JSON_TRUE || v->type == SP_JSON_FALSE;
    case AV_INT: return n->logical == LT_DATE && v->type == SP_JSON_STRING ? 1
                      : as_int64(v, &i) == 0 && i >= INT32_MIN && i <= INT32_MAX;
    case AV_LONG: return (n->logical && v->type == SP_JSON_STRING) || as_int64(v, &i) == 0;
    case AV_FLOAT: case AV_DOUBLE: return v->type == SP_JSON_NUMBER;
    case AV_STRING: return v->type == SP_JSON_STRING;
    case AV_BYTES: case AV_FIXED:
        return n->logical == LT_DECIMAL ? v->type == SP_JSON_NUMBER || v->type == SP_JSON_STRING
                                        : v->type == SP_JSON_STRING || v->type == SP_JSON_OBJECT;
    case AV_ENUM:
        for (int32_t k = 0; k < n->nnames && v->type == SP_JSON_STRING; k++)
            if (strlen(n->names[k]) == v->n && memcmp(n->names[k], v->p, v->n) == 0) return 1;
        return 0;
    case AV_RECORD: case AV_MAP: return v->type == SP_JSON_OBJECT;
    case AV_ARRAY: return v->type == SP_JSON_ARRAY;
    }
    return 0;
}

static void jval_of(const sp_json_field *f, jval *v) {
    v->type = f->type;
    v->p = f->val;
    v->n = f->val_len;
    v->escaped = f->val_escaped;
}

static int encode_record(const sp_avro_schema *s, const node *n, const jval *v, writer *w, int depth) {
    sp_json_index ix;
    sp_json_index_init(&ix);
    const char *e;
    size_t pos;
    int rc = 0;
    if (v->type != SP_JSON_OBJECT || sp_json_index_parse(&ix, v->p, v->n, &e, &pos) != 0)
        rc = fail(w->err, w->errsize, "record %s: not an object", n->name);
    for (int32_t i = 0; i < n->nkids && rc == 0; i++) {
        int k = sp_json_index_find(&ix, n->names[i], strlen(n->names[i]));
        jval f;
        if (k >= 0) {
            jval_of(&ix.fields[k], &f);
        } else if (n->defaults[i]) {
            /* the schema's default, as JSON of the field's type */
            sp_json_index d;
            sp_json_index_init(&d);
            size_t dl = strlen(n->defaults[i]);
            int ok = sp_json_index_parse(&d, n->defaults[i], dl, &e, &pos) == 0;
            int t = d.root_type;
            sp_json_index_destroy(&d);
            f.type = t;
            f.p = n->defaults[i] + (t == SP_JSON_STRING);
            f.n = dl - 2 * (t == SP_JSON_STRING);
            f.escaped = memchr(f.p, '\\', f.n) != NULL;
            if (!ok) rc = fail(w->err, w->errsize, "field %s: its default is not JSON", n->names[i]);
        } else {
            /* a union with null takes a missing field as null */
            const node *t = &s->n[n->kids[i]];
            int nullable = 0;
            for (int32_t b = 0; t->type == AV_UNION && b < t->nkids; b++)
                nullable |= s->n[t->kids[b]].type == AV_NULL;
            f.type = SP_JSON_NULL;
            f.p = "null";
            f.n = 4;
            f.escaped = 0;
            if (!nullable) rc = fail(w->err, w->errsize, "record %s: no field %s", n->name, n->names[i]);
        }
        if (rc == 0 && encode(s, n->kids[i], &f, w, depth + 1) != 0) {
            /* the innermost message, with the path to its field */
            char inner[256];
            snprintf(inner, sizeof inner, "%s", w->err);
            rc = strncmp(inner, "field ", 6) == 0
                     ? fail(w->err, w->errsize, "field %s.%s", n->names[i], inner + 6)
                     : fail(w->err, w->errsize, "field %s: %s", n->names[i], inner);
        }
    }
    sp_json_index_destroy(&ix);
    return rc;
}

static int encode_blocks(const sp_avro_schema *s, const node *n, const jval *v, writer *w, int depth) {
    sp_json_index ix;
    sp_json_index_init(&ix);
    const char *e;
    size_t pos;
    int map = n->type == AV_MAP, rc = 0;
    if (v->type != (map ? SP_JSON_OBJECT : SP_JSON_ARRAY) ||
        sp_json_index_parse(&ix, v->p, v->n, &e, &pos) != 0)
        rc = fail(w->err, w->errsize, "not an %s", map ? "object (a map)" : "array");
    if (rc == 0 && ix.n > 0 && put_long(w->out, ix.n)) rc = fail(w->err, w->errsize, "out of memory");
    sp_buf key;
    sp_buf_init(&key);
    for (uint32_t i = 0; i < ix.n && rc == 0; i++) {
        jval f;
        jval_of(&ix.fields[i], &f);
        if (map) {
            jval k = {SP_JSON_STRING, ix.fields[i].key, ix.fields[i].key_len, ix.fields[i].key_escaped};
            if (string_bytes(&k, &key) || put_long(w->out, (int64_t)key.len) ||
                sp_buf_append(w->out, key.data, key.len))
                rc = fail(w->err, w->errsize, "out of memory");
        }
        if (rc == 0) rc = encode(s, n->kids[0], &f, w, depth + 1);
    }
    if (rc == 0 && put_long(w->out, 0)) rc = fail(w->err, w->errsize, "out of memory");
    sp_buf_destroy(&key);
    sp_json_index_destroy(&ix);
    return rc;
}

static int encode(const sp_avro_schema *s, int32_t id, const jval *v, writer *w, int depth) {
    const node *n = &s->n[id];
    sp_buf *out = w->out;
    int64_t i;
    int rc = 0;
    if (depth > SP_AVRO_DEPTH) return fail(w->err, w->errsize, "a value nested too deep");
    switch (n->type) {
    case AV_NULL:
        return v->type == SP_JSON_NULL ? 0 : fail(w->err, w->errsize, "expected null");
    case AV_BOOLEAN:
        if (v->type != SP_JSON_TRUE && v->type != SP_JSON_FALSE) return fail(w->err, w->errsize, "expected a boolean");
        rc = sp_buf_putc(out, v->type == SP_JSON_TRUE ? 1 : 0);
        break;
    case AV_INT: case AV_LONG:
        if (n->logical && v->type == SP_JSON_STRING) {
            /* an ISO-8601 date or time for date and the timestamps */
            char buf[64];
            int64_t ms;
            if (v->n >= sizeof buf) return fail(w->err, w->errsize, "not a date or time");
            memcpy(buf, v->p, v->n);
            buf[v->n] = '\0';
            if (sp_time_parse(buf, &ms) != 0) return fail(w->err, w->errsize, "'%s' is not an ISO-8601 time", buf);
            i = n->logical == LT_DATE ? (ms - (ms % 86400000 + 86400000) % 86400000) / 86400000
              : n->logical == LT_TIMESTAMP_MICROS ? ms * 1000
              : n->logical == LT_TIME_MILLIS ? (ms % 86400000 + 86400000) % 86400000 : ms;
        } else if (as_int64(v, &i) != 0) {
            return fail(w->err, w->errsize, "expected an integer");
        }
        if (n->type == AV_INT && (i < INT32_MIN || i > INT32_MAX)) return fail(w->err, w->errsize, "%lld is out of an int's range", (long long)i);
        rc = put_long(out, i);
        break;
    case AV_FLOAT: case AV_DOUBLE: {
        /* null is NaN: what decoding gives for NaN and the infinities */
        if (v->type != SP_JSON_NUMBER && v->type != SP_JSON_NULL)
            return fail(w->err, w->errsize, "expected a number");
        double d = v->type == SP_JSON_NULL ? NAN : sp_json_number(v->p, v->n);
        unsigned char b[8];
        if (n->type == AV_FLOAT) {
            float f = (float)d;
            uint32_t u;
            memcpy(&u, &f, 4);
            for (int k = 0; k < 4; k++) b[k] = (unsigned char)(u >> (8 * k));
            rc = sp_buf_append(out, b, 4);
        } else {
            uint64_t u;
            memcpy(&u, &d, 8);
            for (int k = 0; k < 8; k++) b[k] = (unsigned char)(u >> (8 * k));
            rc = sp_buf_append(out, b, 8);
        }
        break;
    }
    case AV_STRING: {
        sp_buf tmp;
        sp_buf_init(&tmp);
        if (v->type != SP_JSON_STRING) rc = fail(w->err, w->errsize, "expected a string");
        else if (string_bytes(v, &tmp) || put_long(out, (int64_t)tmp.len) || sp_buf_append(out, tmp.data, tmp.len))
            rc = fail(w->err, w->errsize, "out of memory");
        sp_buf_destroy(&tmp);
        return rc;
    }
    case AV_BYTES: case AV_FIXED: {
        if (n->logical == LT_DECIMAL) {
            __int128 u;
            if (decimal_of(v, n->scale, n->precision, &u) != 0)
                return fail(w->err, w->errsize, "not a decimal(%d,%d): at most %d digits, %d after the point",
                            n->precision, n->scale, n->precision, n->scale);
            rc = put_decimal_bytes(out, u, n->type == AV_FIXED ? n->size : -1);
            if (rc == -2) return fail(w->err, w->errsize, "a decimal too large for fixed %s", n->name);
            break;
        }
        sp_buf tmp;
        sp_buf_init(&tmp);
        if (bytes_of(v, &tmp) != 0) rc = fail(w->err, w->errsize, "expected a string or {\"b64\": ...}");
        else if (n->type == AV_FIXED && (int64_t)tmp.len != n->size)
            rc = fail(w->err, w->errsize, "fixed %s takes %lld bytes, not %zu", n->name, (long long)n->size, tmp.len);
        else if ((n->type == AV_BYTES && put_long(out, (int64_t)tmp.len)) || sp_buf_append(out, tmp.data, tmp.len))
            rc = fail(w->err, w->errsize, "out of memory");
        sp_buf_destroy(&tmp);
        return rc;
    }
    case AV_RECORD:
        return encode_record(s, n, v, w, depth);
    case AV_ENUM:
        for (int32_t k = 0; k < n->nnames && v->type == SP_JSON_STRING; k++)
            if (strlen(n->names[k]) == v->n && memcmp(n->names[k], v->p, v->n) == 0)
                return put_long(out, k) ? fail(w->err, w->errsize, "out of memory") : 0;
        return fail(w->err, w->errsize, "not a symbol of enum %s", n->name);
    case AV_ARRAY: case AV_MAP:
        return encode_blocks(s, n, v, w, depth);
    case AV_UNION:
        if (n->nkids == 1 && id == 0) return encode(s, n->kids[0], v, w, depth); /* the root */
        for (int32_t k = 0; k < n->nkids; k++)
            if (takes(s, n->kids[k], v))
                return put_long(out, k) ? fail(w->err, w->errsize, "out of memory")
                                        : encode(s, n->kids[k], v, w, depth + 1);
        return fail(w->err, w->errsize, "no branch of the union takes this value");
    }
    return rc ? fail(w->err, w->errsize, "out of memory") : 0;
}

int sp_avro_encode(const sp_avro_schema *s, const char *json, size_t len, sp_buf *out, char *err,
                   size_t errsize) {
    sp_json_index ix;
    sp_json_index_init(&ix);
    const char *e;
    size_t pos;
    writer w = {out, err, errsize};
    int rc;
    if (sp_json_index_parse(&ix, json, len, &e, &pos) != 0) {
        rc = fail(err, errsize, "not JSON: %s at byte %zu", e, pos);
    } else {
        /* the value's own text (a string's between its quotes) */
        jval v = {ix.root_type, json, len, 0};
        while (v.n && (*v.p == ' ' || *v.p == '\n' || *v.p == '\t' || *v.p == '\r')) v.p++, v.n--;
        while (v.n && (v.p[v.n - 1] == ' ' || v.p[v.n - 1] == '\n' || v.p[v.n - 1] == '\t' || v.p[v.n - 1] == '\r')) v.n--;
        if (v.type == SP_JSON_STRING && v.n >= 2) {
            v.p++;
            v.n -= 2;
            v.escaped = memchr(v.p, '\\', v.n) != NULL;
        }
        rc = encode(s, 0, &v, &w, 0);
    }
    sp_json_index_destroy(&ix);
    return rc;
}
