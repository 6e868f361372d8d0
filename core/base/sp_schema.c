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

#include "sp_time.h"

/* the leaf types, by their SP_SCH_* number */
static const char *type_names[] = {"string", "int64", "double", "boolean",
                                   "timestamp", NULL, "date"};

#define TYPES_HINT "string, int64, double, boolean, timestamp, date, decimal(p,s), " \
                   "struct{...} or list<type>"

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

static int parse_fields(sp_schema *s, const char **pp, int32_t parent,
                        const char **err);

/* decimal(p,s): 0 with p at what follows, or -1 */
static int parse_decimal(sp_schema_node *nd, const char **pp, const char **err) {
    const char *p = *pp;
    char *end;
    long prec = strtol(p, &end, 10), scale = -1;
    if (end != p && *end == ',') {
        p = end + 1;
        scale = strtol(p, &end, 10);
    }
    if (end == p || *end != ')' || prec < 1 || prec > SP_SCHEMA_DECIMAL_MAX_PRECISION ||
        scale < 0 || scale > prec) {
        *err = "schema: decimal(p,s) needs a precision p from 1 to 18 and a scale s from 0 to p";
        return -1;
    }
    nd->precision = (int16_t)prec;
    nd->scale = (int16_t)scale;
    *pp = end + 1;
    return 0;
}

/* type := leaf | decimal(p,s) | struct{fields} | list<leaf or decimal>;
 * in_list: an element's type (no struct, no list) */
static int parse_type(sp_schema *s, const char **pp, int32_t id, int in_list,
                      const char **err) {
    const char *p = *pp;
    size_t tlen = strcspn(p, ",{}!<>(");
    sp_schema_node *nd = &s->nodes[id];
    nd->nullable = 1;
    nd->type = -1;
    for (int t = 0; t < (int)(sizeof type_names / sizeof *type_names); t++)
        if (type_names[t] && strlen(type_names[t]) == tlen && memcmp(p, type_names[t], tlen) == 0)
            nd->type = t;
    if (tlen == 7 && memcmp(p, "decimal", 7) == 0 && p[7] == '(') {
        nd->type = SP_SCH_DECIMAL;
        p += 8;
        if (parse_decimal(nd, &p, err) != 0) return -1;
        *pp = p;
        return 0;
    }
    int compound = (tlen == 6 && memcmp(p, "struct", 6) == 0) ||
                   (tlen == 4 && memcmp(p, "list", 4) == 0);
    if (in_list && compound) {
        *err = "schema: a list's elements are of a plain type (no struct, no list)";
        return -1;
    }
    if (tlen == 6 && memcmp(p, "struct", 6) == 0) {
        nd->type = SP_SCH_STRUCT;
        p += 6;
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
        *pp = p + 1;
        return 0;
    }
    if (tlen == 4 && memcmp(p, "list", 4) == 0) {
        nd->type = SP_SCH_LIST;
        p += 4;
        if (*p != '<') {
            *err = "schema: a list needs its element type: list<type>";
            return -1;
        }
        p++;
        int32_t el = add_node(s, id, "element", 7);
        if (el < 0) {
            *err = "out of memory";
            return -1;
        }
        if (parse_type(s, &p, el, 1, err) != 0) return -1;
        if (*p != '>') {
            *err = "schema: unclosed list<type>";
            return -1;
        }
        s->nlists++;
        *pp = p + 1;
        return 0;
    }
    if (nd->type < 0) {
        *err = "schema: unknown type (" TYPES_HINT ")";
        return -1;
    }
    *pp = p + tlen;
    return 0;
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
        if (parse_type(s, &p, id, 0, err) != 0) return -1;
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

/* Definition and repetition levels and columns, in depth-first order.
 * A list is Parquet's three levels: the list (optional or required), a
 * repeated group (one more level: an empty list is defined up to it),
 * then its element (optional). */
static void number(sp_schema *s, int32_t n, int16_t def, int16_t rep) {
    sp_schema_node *nd = &s->nodes[n];
    nd->max_def = (int16_t)(def + (n > 0 && nd->nullable));
    nd->max_rep = rep;
    if (nd->type == SP_SCH_LIST) {
        number(s, nd->kids[0], (int16_t)(nd->max_def + 1), 1);
        return;
    }
    if (n > 0 && nd->type != SP_SCH_STRUCT) {
        nd->column = s->ncolumns;
        s->leaves[s->ncolumns++] = n;
        return;
    }
    for (int32_t k = 0; k < nd->nkids; k++) number(s, nd->kids[k], nd->max_def, rep);
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
    s->items = calloc((size_t)s->nnodes, sizeof *s->items);
    if (!s->leaves || !s->vals || !s->items) {
        *err = "out of memory";
        goto fail;
    }
    number(s, 0, 0, 0);
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
    for (int32_t i = 0; s->items && i < s->nnodes; i++) free(s->items[i].v);
    free(s->items);
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
    if (nd->type == SP_SCH_LIST) s->items[nd->kids[0]].n = 0;
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

/* decimal(prec,scale) from a JSON number's text (or a string holding
 * one): the unscaled value, rounded half up past the scale as Spark's
 * Decimal does. 0, or -1 when it is no number or does not fit. */
static int parse_decimal_value(const char *p, size_t len, int prec, int scale, int64_t *out) {
    char d[96];
    size_t nd = 0, i = 0;
    int nfrac = 0, neg = 0, seen_point = 0;
    long exp = 0;
    if (i < len && (p[i] == '-' || p[i] == '+')) neg = p[i++] == '-';
    for (; i < len && ((p[i] >= '0' && p[i] <= '9') || (p[i] == '.' && !seen_point)); i++) {
        if (p[i] == '.') {
            seen_point = 1;
            continue;
        }
        if (nd == sizeof d) return -1;
        d[nd++] = p[i];
        nfrac += seen_point;
    }
    if (nd == 0) return -1;
    if (i < len && (p[i] == 'e' || p[i] == 'E')) {
        char *end;
        char buf[16];
        size_t el = len - i - 1;
        if (el == 0 || el >= sizeof buf) return -1;
        memcpy(buf, p + i + 1, el);
        buf[el] = '\0';
        exp = strtol(buf, &end, 10);
        if (*end || exp > 400 || exp < -400) return -1;
        i = len;
    }
    if (i != len) return -1;
    long keep = (long)nd + scale - nfrac + exp; /* digits of d left of the unscaled point */
    int64_t limit = 1, v = 0;
    for (int k = 0; k < prec; k++) limit *= 10;
    for (long k = 0; k < keep; k++) {
        int digit = k < (long)nd ? d[k] - '0' : 0;
        if (v > (limit - 1 - digit) / 10) return -1;
        v = v * 10 + digit;
    }
    if (keep >= 0 && keep < (long)nd && d[keep] >= '5' && ++v >= limit) return -1;
    *out = neg ? -v : v;
    return 0;
}

/* A date: "YYYY-MM-DD", or the UTC day of an ISO-8601 time. */
static int parse_date(const char *p, size_t len, int64_t *days) {
    char buf[64];
    int64_t ms;
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, p, len);
    buf[len] = '\0';
    if (sp_time_parse(buf, &ms) != 0) return -1;
    *days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
    return 0;
}

/* One value of leaf node n from JSON field f (NULL: missing) into v,
 * below def defined levels. */
static int convert_leaf(sp_schema *s, int32_t n, const sp_json_field *f, int def, sp_value *v,
                        const char **err) {
    const sp_schema_node *nd = &s->nodes[n];
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
    int number = jt == SP_JSON_NUMBER || jt == SP_JSON_STRING;
    switch (nd->type) {
    case SP_SCH_STRING:
        v->v.s = p;
        v->len = (uint32_t)len;
        return 0;
    case SP_SCH_INT64:
    case SP_SCH_DOUBLE:
        if (!number)
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
    case SP_SCH_DECIMAL:
        if (number && parse_decimal_value(p, len, nd->precision, nd->scale, &v->v.i) == 0)
            return 0;
        char what[48];
        snprintf(what, sizeof what, "is not a decimal(%d,%d)", nd->precision, nd->scale);
        return fail_value(s, n, p, len, what, err);
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
    case SP_SCH_DATE:
        if (jt == SP_JSON_STRING && parse_date(p, len, &v->v.i) == 0) return 0;
        return fail_value(s, n, p, len, "is not a date (YYYY-MM-DD or ISO-8601)", err);
    }
    return fail_value(s, n, NULL, 0, "has an unknown type", err);
}

/* A list field: its elements into the element node's items. */
static int convert_list(sp_schema *s, int32_t n, const sp_json_field *f, int def,
                        const char **err) {
    const sp_schema_node *nd = &s->nodes[n];
    int32_t el = nd->kids[0];
    sp_items *it = &s->items[el];
    it->n = 0;
    if (!f || f->type == SP_JSON_NULL) {
        if (!nd->nullable)
            return fail_value(s, n, NULL, 0,
                              f ? "is null and not nullable" : "is missing and not nullable", err);
        set_null(s, n, def);
        return 0;
    }
    if (f->type != SP_JSON_ARRAY) return fail_value(s, n, f->val, f->val_len, "is not an array", err);
    sp_json_index *sub = &s->ix[nd->depth];
    const char *perr;
    size_t pos;
    if (sp_json_index_parse(sub, f->val, f->val_len, &perr, &pos) != 0)
        return fail_value(s, n, NULL, 0, perr, err);
    if (sub->n > it->cap) {
        uint32_t cap = it->cap ? it->cap : 16;
        while (cap < sub->n) cap *= 2;
        sp_value *t = realloc(it->v, cap * sizeof *t);
        if (!t) {
            *err = "out of memory";
            return -1;
        }
        it->v = t;
        it->cap = cap;
    }
    s->vals[n].present = 1;
    s->vals[n].def = (uint8_t)(def + nd->nullable); /* defined, perhaps empty */
    for (uint32_t i = 0; i < sub->n; i++)
        if (convert_leaf(s, el, &sub->fields[i], def + nd->nullable + 1, &it->v[i], err) != 0)
            return -1;
    it->n = sub->n;
    return 0;
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
        if (kn->type == SP_SCH_LIST) {
            if (convert_list(s, kid, f, def, err) != 0) return -1;
            continue;
        }
        if (kn->type != SP_SCH_STRUCT) {
            if (convert_leaf(s, kid, f, def, &s->vals[kid], err) != 0) return -1;
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

/* decimal text of an unscaled value: "-12.30" for -1230 at scale 2 */
static int write_decimal(sp_buf *out, int64_t v, int scale) {
    char rev[24], buf[48];
    int nd = 0;
    size_t n = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        rev[nd++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (nd <= scale) rev[nd++] = '0'; /* a digit before the point */
    if (v < 0) buf[n++] = '-';
    for (int i = nd - 1; i >= scale; i--) buf[n++] = rev[i];
    if (scale > 0) buf[n++] = '.';
    for (int i = scale - 1; i >= 0; i--) buf[n++] = rev[i];
    return sp_buf_append(out, buf, n);
}

int sp_schema_value_text(const sp_schema_node *nd, const sp_value *v, sp_buf *out) {
    char buf[32];
    switch (nd->type) {
    case SP_SCH_STRING: return sp_buf_append(out, v->v.s, v->len);
    case SP_SCH_DOUBLE: return sp_json_write_number(out, v->v.d);
    case SP_SCH_BOOLEAN: return v->v.i ? sp_buf_append(out, "true", 4) : sp_buf_append(out, "false", 5);
    case SP_SCH_DATE: return sp_buf_append(out, buf, sp_time_format_date(v->v.i, buf));
    case SP_SCH_TIMESTAMP: return sp_buf_append(out, buf, sp_time_format_ms(v->v.i, buf));
    case SP_SCH_DECIMAL: return write_decimal(out, v->v.i, nd->scale);
    default: return sp_json_write_int(out, v->v.i);
    }
}

static int write_leaf(const sp_schema_node *nd, const sp_value *v, sp_buf *out) {
    char buf[16];
    if (!v->present) return sp_buf_append(out, "null", 4);
    switch (nd->type) {
    case SP_SCH_STRING:
        return sp_json_write_string(out, v->v.s, v->len);
    case SP_SCH_INT64:
    case SP_SCH_TIMESTAMP:
        return sp_json_write_int(out, v->v.i);
    case SP_SCH_DATE:
        return sp_buf_putc(out, '"') || sp_buf_append(out, buf, sp_time_format_date(v->v.i, buf)) ||
               sp_buf_putc(out, '"');
    }
    return sp_schema_value_text(nd, v, out);
}

static int write_node(const sp_schema *s, int32_t n, sp_buf *out) {
    const sp_schema_node *nd = &s->nodes[n];
    const sp_value *v = &s->vals[n];
    if (!v->present) return sp_buf_append(out, "null", 4);
    if (nd->type == SP_SCH_LIST) {
        const sp_items *it = &s->items[nd->kids[0]];
        if (sp_buf_putc(out, '[') != 0) return -1;
        for (uint32_t i = 0; i < it->n; i++)
            if ((i && sp_buf_putc(out, ',') != 0) ||
                write_leaf(&s->nodes[nd->kids[0]], &it->v[i], out) != 0)
                return -1;
        return sp_buf_putc(out, ']');
    }
    if (nd->type != SP_SCH_STRUCT) return write_leaf(nd, v, out);
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
