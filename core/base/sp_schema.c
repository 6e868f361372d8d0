/* Schema conversion follows Spark's from_json where it can: missing
 * fields and JSON nulls are null, unknown fields are ignored, a string
 * holding a number converts to a number field (the tutorial's trips have
 * every value quoted) and an empty string is null for non-string fields.
 * Where Spark would silently null a value that does not convert, sproc
 * raises, so the pipeline's error policy sees the record. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_schema.h"
#include "sp_ffi.h"

static const char *type_names[] = {"string", "int64", "double", "boolean",
                                   "timestamp", "struct"};

static int add_node(sp_schema *s, int32_t parent, const char *name,
                    size_t nlen) {
    sp_schema_node *t = realloc(s->nodes, (size_t)(s->nnodes + 1) * sizeof *t);
    if (!t) return -1;
    s->nodes = t;
    sp_schema_node *nd = &s->nodes[s->nnodes];
    memset(nd, 0, sizeof *nd);
    nd->parent = parent;
    nd->column = -1;
    nd->name = strndup(name, nlen);
    nd->name_len = nlen;
    if (!nd->name) return -1;
    if (parent >= 0) {
        sp_schema_node *p = &s->nodes[parent];
        int32_t *k = realloc(p->kids, (size_t)(p->nkids + 1) * sizeof *k);
        if (!k) {
            free(nd->name);
            return -1;
        }
        p->kids = k;
        p->kids[p->nkids++] = s->nnodes;
        nd->depth = (int16_t)(p->depth + 1);
    }
    return s->nnodes++;
}

/* fields := field (',' field)* ; field := name ':' type ['!'] */
static int parse_fields(sp_schema *s, const char **pp, int32_t parent,
                        const char **err) {
    const char *p = *pp;
    for (;;) {
        size_t nlen = strcspn(p, ":,{}!");
        if (nlen == 0 || p[nlen] != ':') {
            *err = "schema: a field needs a name and a type (name:type)";
            return -1;
        }
        /* names become JSON keys and Parquet column names: UTF-8 only */
        for (size_t i = 0, n; i < nlen; i += n)
            if (!(n = sp_utf8_len(p + i, p + nlen))) {
                *err = "schema: a field name is not UTF-8";
                return -1;
            }
        /* a name twice would convert one JSON field twice, and its
         * unescaped strings would outgrow the scratch sized for the text */
        const sp_schema_node *up = &s->nodes[parent];
        for (int32_t k = 0; k < up->nkids; k++)
            if (s->nodes[up->kids[k]].name_len == nlen &&
                memcmp(s->nodes[up->kids[k]].name, p, nlen) == 0) {
                *err = "schema: a field name twice in one struct";
                return -1;
            }
        int32_t id = add_node(s, parent, p, nlen);
        if (id < 0) {
            *err = "out of memory";
            return -1;
        }
        if (s->nodes[id].depth >= SP_SCHEMA_DEPTH) {
            *err = "schema: structs nest too deep";
            return -1;
        }
        p += nlen + 1;
        size_t tlen = strcspn(p, ",{}!");
        int type = -1;
        for (int t = 0; t <= SP_SCH_STRUCT; t++)
            if (strlen(type_names[t]) == tlen &&
                memcmp(p, type_names[t], tlen) == 0)
                type = t;
        if (type < 0) {
            *err = "schema: unknown type (string, int64, double, boolean, "
                   "timestamp or a struct)";
            return -1;
        }
        p += tlen;
        s->nodes[id].type = type;
        s->nodes[id].nullable = 1;
        if (type == SP_SCH_STRUCT) {
            if (*p != '{') {
                *err = "schema: a struct needs its fields";
                return -1;
            }
            p++;
            if (parse_fields(s, &p, id, err) != 0) return -1;
            if (*p != '}') {
                *err = "schema: unclosed struct";
                return -1;
            }
            p++;
        }
        if (*p == '!') {
            s->nodes[id].nullable = 0;
            p++;
        }
        if (*p != ',') break;
        p++;
    }
    *pp = p;
    return 0;
}

/* Definition levels and columns, in depth-first order. */
static int number(sp_schema *s, int32_t n, int16_t def) {
    sp_schema_node *nd = &s->nodes[n];
    nd->max_def = (int16_t)(def + (n > 0 && nd->nullable));
    if (n > 0 && nd->type != SP_SCH_STRUCT) {
        nd->column = s->ncolumns;
        s->leaves[s->ncolumns++] = n;
        return 0;
    }
    for (int32_t k = 0; k < nd->nkids; k++)
        if (number(s, nd->kids[k], nd->max_def) != 0) return -1;
    return 0;
}

sp_schema *sp_schema_create(const char *spec, const char **err) {
    sp_schema *s = calloc(1, sizeof *s);
    const char *p = spec;
    if (!s) {
        *err = "out of memory";
        return NULL;
    }
    for (int i = 0; i < SP_SCHEMA_DEPTH; i++) sp_json_index_init(&s->ix[i]);
    sp_buf_init(&s->scratch);
    if (add_node(s, -1, "schema", 6) != 0) {
        *err = "out of memory";
        goto fail;
    }
    s->nodes[0].type = SP_SCH_STRUCT;
    if (!spec || !*spec) {
        *err = "schema: no fields";
        goto fail;
    }
    if (parse_fields(s, &p, 0, err) != 0) goto fail;
    if (*p) {
        *err = "schema: unexpected text after the fields";
        goto fail;
    }
    s->leaves = calloc((size_t)s->nnodes, sizeof *s->leaves);
    s->vals = calloc((size_t)s->nnodes, sizeof *s->vals);
    if (!s->leaves || !s->vals) {
        *err = "out of memory";
        goto fail;
    }
    number(s, 0, 0);
    for (int32_t i = 0; i < s->nnodes; i++)
        if (s->nodes[i].type == SP_SCH_STRUCT && s->nodes[i].nkids == 0) {
            *err = "schema: a struct without fields";
            goto fail;
        }
    return s;
fail:
    sp_schema_destroy(s);
    return NULL;
}

void sp_schema_destroy(sp_schema *s) {
    if (!s) return;
    for (int32_t i = 0; i < s->nnodes; i++) {
        free(s->nodes[i].name);
        free(s->nodes[i].kids);
    }
    free(s->nodes);
    free(s->leaves);
    free(s->vals);
    for (int i = 0; i < SP_SCHEMA_DEPTH; i++) sp_json_index_destroy(&s->ix[i]);
    sp_buf_destroy(&s->scratch);
    free(s);
}

static void node_path(const sp_schema *s, int32_t n, char *buf, size_t size) {
    int32_t chain[SP_SCHEMA_DEPTH];
    int k = 0;
    size_t at = 0;
    for (; n > 0 && k < SP_SCHEMA_DEPTH; n = s->nodes[n].parent) chain[k++] = n;
    buf[0] = '\0';
    while (k-- > 0 && at + 1 < size) {
        int w = snprintf(buf + at, size - at, "%s%s", at ? "." : "",
                         s->nodes[chain[k]].name);
        if (w < 0) break;
        at += (size_t)w;
    }
}

void sp_schema_path(const sp_schema *s, int32_t column, char *buf, size_t n) {
    node_path(s, s->leaves[column], buf, n);
}

static int fail_value(sp_schema *s, int32_t n, const char *p, size_t len,
                      const char *what, const char **err) {
    char path[128];
    node_path(s, n, path, sizeof path);
    if (p)
        snprintf(s->errbuf, sizeof s->errbuf, "field \"%s\": \"%.*s%s\" %s",
                 path, (int)(len > 40 ? 40 : len), p, len > 40 ? "..." : "",
                 what);
    else
        snprintf(s->errbuf, sizeof s->errbuf, "field \"%s\" %s", path, what);
    *err = s->errbuf;
    return -1;
}

/* A field at the hinted position is the usual case: records tend to keep
 * the declared order. */
static int lookup(const sp_json_index *ix, const sp_schema_node *nd,
                  uint32_t *hint) {
    if (*hint < ix->n) {
        const sp_json_field *f = &ix->fields[*hint];
        if (!f->key_escaped && f->key_len == nd->name_len &&
            memcmp(f->key, nd->name, nd->name_len) == 0)
            return (int)(*hint)++;
    }
    int i = sp_json_index_find(ix, nd->name, nd->name_len);
    if (i >= 0) *hint = (uint32_t)i + 1;
    return i;
}

static void set_null(sp_schema *s, int32_t n, int def) {
    sp_schema_node *nd = &s->nodes[n];
    s->vals[n].present = 0;
    s->vals[n].def = (uint8_t)def;
    for (int32_t k = 0; k < nd->nkids; k++) set_null(s, nd->kids[k], def);
}

/* Plain decimals ("-73.928642", "12") without strtod (sp_json_decimal).
 * 0 when taken. */
static int fast_decimal(const char *p, size_t len, int64_t *mant, int *frac) {
    uint64_t m;
    int neg;
    if (len == 0 || sp_json_decimal(p, len, &m, frac, &neg) != 0) return -1;
    *mant = neg ? -(int64_t)m : (int64_t)m;
    return 0;
}

static int parse_int(const char *p, size_t len, int64_t *out) {
    int64_t m;
    int frac;
    if (fast_decimal(p, len, &m, &frac) == 0 && frac == 0) {
        *out = m;
        return 0;
    }
    char buf[64];
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (*end == '\0' && errno == 0) {
        *out = v;
        return 0;
    }
    /* 3.0 or 1e3 is an integer written another way; 3.5 is not */
    errno = 0;
    double d = strtod(buf, &end);
    if (*end != '\0' || errno != 0 || d != floor(d) || fabs(d) >= 9.2e18)
        return -1;
    *out = (int64_t)d;
    return 0;
}

static int parse_double(const char *p, size_t len, double *out) {
    int64_t m;
    int frac;
    if (fast_decimal(p, len, &m, &frac) == 0) {
        *out = (double)m / sp_pow10[frac];
        return 0;
    }
    char buf[64];
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    char *end;
    *out = strtod(buf, &end);
    /* "nan", "inf" or "1e999" in a string: JSON has no such number, so the
     * value could not be written as it was read (sinks would disagree) */
    return *end == '\0' && isfinite(*out) ? 0 : -1;
}

static int parse_time(const char *p, size_t len, int64_t *out) {
    char buf[64];
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    if (sp_time_parse(buf, out) == 0) return 0;
    return parse_int(p, len, out); /* epoch milliseconds as text */
}

static int convert_leaf(sp_schema *s, int32_t n, const sp_json_field *f,
                        int def, const char **err) {
    const sp_schema_node *nd = &s->nodes[n];
    sp_value *v = &s->vals[n];
    int jt = f ? f->type : SP_JSON_MISSING;
    const char *p = f ? f->val : NULL;
    size_t len = f ? f->val_len : 0;
    int rc = 0;
    if (jt == SP_JSON_STRING && f->val_escaped) {
        char *dst = s->scratch.data + s->scratch.len;
        len = sp_json_unescape(p, len, dst);
        s->scratch.len += len;
        p = dst;
    }
    /* an empty string is null for anything but a string */
    if (jt <= SP_JSON_NULL ||
        (jt == SP_JSON_STRING && len == 0 && nd->type != SP_SCH_STRING)) {
        if (!nd->nullable)
            return fail_value(s, n, NULL, 0,
                              jt == SP_JSON_MISSING ? "is missing and not nullable"
                                                    : "is null and not nullable",
                              err);
        v->present = 0;
        v->def = (uint8_t)def;
        return 0;
    }
    v->present = 1;
    v->def = (uint8_t)(def + nd->nullable);
    switch (nd->type) {
    case SP_SCH_STRING:
        v->v.s = p;
        v->len = (uint32_t)len;
        return 0;
    case SP_SCH_INT64:
    case SP_SCH_DOUBLE:
        if (jt != SP_JSON_NUMBER && jt != SP_JSON_STRING)
            rc = -1;
        else if (nd->type == SP_SCH_INT64)
            rc = parse_int(p, len, &v->v.i);
        else
            rc = parse_double(p, len, &v->v.d);
        return rc == 0 ? 0
                       : fail_value(s, n, p, len,
                                    nd->type == SP_SCH_INT64 ? "is not an int64"
                                                             : "is not a double",
                                    err);
    case SP_SCH_BOOLEAN:
        if (jt == SP_JSON_TRUE || jt == SP_JSON_FALSE)
            v->v.i = jt == SP_JSON_TRUE;
        else if (jt == SP_JSON_STRING && len == 4 && memcmp(p, "true", 4) == 0)
            v->v.i = 1;
        else if (jt == SP_JSON_STRING && len == 5 && memcmp(p, "false", 5) == 0)
            v->v.i = 0;
        else
            return fail_value(s, n, p, len, "is not a boolean", err);
        return 0;
    case SP_SCH_TIMESTAMP:
        if (jt == SP_JSON_NUMBER)
            rc = parse_int(p, len, &v->v.i);
        else if (jt == SP_JSON_STRING)
            rc = parse_time(p, len, &v->v.i);
        else
            rc = -1;
        return rc == 0 ? 0
                       : fail_value(s, n, p, len,
                                    "is not a timestamp (ISO-8601 or epoch ms)",
                                    err);
    }
    return fail_value(s, n, NULL, 0, "has an unknown type", err);
}

static int convert_struct(sp_schema *s, int32_t n, const sp_json_index *ix,
                          int def, const char **err) {
    const sp_schema_node *nd = &s->nodes[n];
    uint32_t hint = 0;
    for (int32_t k = 0; k < nd->nkids; k++) {
        int32_t kid = nd->kids[k];
        const sp_schema_node *kn = &s->nodes[kid];
        int i = lookup(ix, kn, &hint);
        const sp_json_field *f = i >= 0 ? &ix->fields[i] : NULL;
        if (kn->type != SP_SCH_STRUCT) {
            if (convert_leaf(s, kid, f, def, err) != 0) return -1;
            continue;
        }
        if (!f || f->type == SP_JSON_NULL) {
            if (!kn->nullable)
                return fail_value(s, kid, NULL, 0,
                                  f ? "is null and not nullable"
                                    : "is missing and not nullable",
                                  err);
            set_null(s, kid, def);
            continue;
        }
        if (f->type != SP_JSON_OBJECT)
            return fail_value(s, kid, f->val, f->val_len, "is not an object", err);
        sp_json_index *sub = &s->ix[kn->depth];
        const char *perr;
        size_t pos;
        if (sp_json_index_parse(sub, f->val, f->val_len, &perr, &pos) != 0)
            return fail_value(s, kid, NULL, 0, perr, err);
        s->vals[kid].present = 1;
        if (convert_struct(s, kid, sub, def + kn->nullable, err) != 0) return -1;
    }
    return 0;
}

int sp_schema_convert(sp_schema *s, const char *text, size_t len,
                      const sp_json_index *top, const char **err) {
    sp_buf_reset(&s->scratch);
    /* unescaping never grows text: views into the scratch stay put */
    if (sp_buf_reserve(&s->scratch, len + 1) != 0) {
        *err = "out of memory";
        return -1;
    }
    if (!top) {
        const char *perr;
        size_t pos;
        if (sp_json_index_parse(&s->ix[0], text, len, &perr, &pos) != 0) {
            snprintf(s->errbuf, sizeof s->errbuf,
                     "malformed JSON at byte %zu: %s", pos, perr);
            *err = s->errbuf;
            return -1;
        }
        top = &s->ix[0];
    }
    if (top->root_type != SP_JSON_OBJECT) {
        *err = "the value is not a JSON object";
        return -1;
    }
    s->vals[0].present = 1;
    return convert_struct(s, 0, top, 0, err);
}

static int write_node(const sp_schema *s, int32_t n, sp_buf *out) {
    const sp_schema_node *nd = &s->nodes[n];
    const sp_value *v = &s->vals[n];
    if (!v->present) return sp_buf_append(out, "null", 4);
    switch (nd->type) {
    case SP_SCH_STRING:
        return sp_json_write_string(out, v->v.s, v->len);
    case SP_SCH_INT64:
    case SP_SCH_TIMESTAMP:
        return sp_json_write_int(out, v->v.i);
    case SP_SCH_DOUBLE:
        return sp_json_write_number(out, v->v.d);
    case SP_SCH_BOOLEAN:
        return v->v.i ? sp_buf_append(out, "true", 4)
                      : sp_buf_append(out, "false", 5);
    }
    if (sp_buf_putc(out, '{') != 0) return -1;
    for (int32_t k = 0; k < nd->nkids; k++) {
        const sp_schema_node *kn = &s->nodes[nd->kids[k]];
        if ((k && sp_buf_putc(out, ',') != 0) ||
            sp_json_write_string(out, kn->name, kn->name_len) != 0 ||
            sp_buf_putc(out, ':') != 0 || write_node(s, nd->kids[k], out) != 0)
            return -1;
    }
    return sp_buf_putc(out, '}');
}

int sp_schema_write_json(const sp_schema *s, sp_buf *out) {
    return write_node(s, 0, out);
}
