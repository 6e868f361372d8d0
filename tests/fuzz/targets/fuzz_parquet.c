/* libFuzzer target: the Parquet writer (sp_pq, sp_thrift) on random
 * schemas and rows. The input's bytes choose the writer's options, a
 * schema (nested structs, nullable or not, every type) and rows written
 * as JSON the way producers write it (numbers as strings, ISO times,
 * dates, decimals, lists, escapes, nulls, missing and unknown fields); the rows that convert go
 * through the writer into memory. The file must be framed (PAR1 at both
 * ends), and its footer must decode as Thrift compact to exactly its
 * length, with the schema's node count and the row count written.
 *
 * With SPROC_FUZZ_PARQUET_DUMP=DIR, each input also leaves
 * DIR/<hash>.parquet and DIR/<hash>.jsonl (the rows as the schema
 * renders them): test_parquet_pyarrow.py reads the files back with
 * pyarrow and compares. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fuzz_input.h"
#include "sp_pq.h"

#define MAX_ROWS 64

/* --- the schema --------------------------------------------------------- */

static const char *const type_names[] = {"string", "int64", "double", "boolean", "timestamp",
                                         "struct", "date", "decimal", "list"};

/* A plain type (a list's elements' too) into spec. */
static void gen_plain(fz_in *in, sp_buf *spec, int type) {
    char t[32];
    if (type == SP_SCH_DECIMAL) {
        unsigned p = 1 + fz_below(in, SP_SCHEMA_DECIMAL_MAX_PRECISION);
        snprintf(t, sizeof t, "decimal(%u,%u)", p, fz_below(in, p + 1));
    } else {
        snprintf(t, sizeof t, "%s", type_names[type]);
    }
    FZ_CHECK(sp_buf_append(spec, t, strlen(t)) == 0);
}

static int plain_type(fz_in *in) {
    static const int plain[] = {SP_SCH_STRING, SP_SCH_INT64, SP_SCH_DOUBLE, SP_SCH_BOOLEAN,
                                SP_SCH_TIMESTAMP, SP_SCH_DATE, SP_SCH_DECIMAL};
    return plain[fz_below(in, sizeof plain / sizeof *plain)];
}

static void gen_fields(fz_in *in, sp_buf *spec, int depth, int *names) {
    unsigned n = 1 + fz_below(in, depth ? 3 : 5);
    for (unsigned i = 0; i < n; i++) {
        char name[32];
        unsigned pick = fz_below(in, depth < 3 ? 9 : 7);
        int type = pick == 7 ? SP_SCH_STRUCT : pick == 8 ? SP_SCH_LIST : plain_type(in);
        snprintf(name, sizeof name, "%sf%d:", i ? "," : "", (*names)++);
        FZ_CHECK(sp_buf_append(spec, name, strlen(name)) == 0);
        if (type == SP_SCH_LIST) {
            FZ_CHECK(sp_buf_append(spec, "list<", 5) == 0);
            gen_plain(in, spec, plain_type(in));
            FZ_CHECK(sp_buf_putc(spec, '>') == 0);
        } else if (type != SP_SCH_STRUCT) {
            gen_plain(in, spec, type);
        } else {
            FZ_CHECK(sp_buf_append(spec, "struct", 6) == 0);
        }
        if (type == SP_SCH_STRUCT) {
            FZ_CHECK(sp_buf_putc(spec, '{') == 0);
            gen_fields(in, spec, depth + 1, names);
            FZ_CHECK(sp_buf_putc(spec, '}') == 0);
        }
        if (fz_below(in, 4) == 0) FZ_CHECK(sp_buf_putc(spec, '!') == 0);
    }
}

/* --- rows, as JSON text ------------------------------------------------- */

static void put(sp_buf *b, const char *s) { FZ_CHECK(sp_buf_append(b, s, strlen(s)) == 0); }

static void putf_i64(sp_buf *b, int64_t v, int quoted) {
    char t[32];
    snprintf(t, sizeof t, quoted ? "\"%" PRId64 "\"" : "%" PRId64, v);
    put(b, t);
}

static void gen_string(fz_in *in, sp_buf *b) {
    static const char *const pieces[] = {"a", "Z", " ", "7", "\\n", "\\\"", "\\\\", "\\u0000",
                                         "\\u00e9", "\xc3\xa9", "\\ud834\\udd1e",
                                         "\xf0\x9d\x84\x9e", "\xe2\x82\xac", "\\/", "{", ","};
    unsigned n = fz_below(in, 12);
    put(b, "\"");
    for (unsigned i = 0; i < n; i++)
        put(b, pieces[fz_below(in, sizeof pieces / sizeof *pieces)]);
    put(b, "\"");
}

static void gen_double(fz_in *in, sp_buf *b) {
    char t[64];
    switch (fz_below(in, 4)) {
    case 0: { /* any finite double, in its shortest-enough text */
        uint64_t u = fz_u64(in);
        double d;
        memcpy(&d, &u, 8);
        if (!isfinite(d)) d = (double)(int64_t)u;
        snprintf(t, sizeof t, "%.17g", d);
        break;
    }
    case 1: /* a price or a coordinate */
        snprintf(t, sizeof t, "%s%u.%u", fz_below(in, 2) ? "-" : "", fz_byte(in) * 7,
                 fz_byte(in) * 13);
        break;
    case 2: /* the same, quoted, as the taxi trips have them */
        snprintf(t, sizeof t, "\"%u.%02u\"", fz_byte(in), fz_below(in, 100));
        break;
    default:
        snprintf(t, sizeof t, "%de%d", (int)fz_byte(in) - 128, (int)fz_below(in, 40) - 20);
    }
    put(b, t);
}

static void gen_time(fz_in *in, sp_buf *b) {
    char t[64];
    if (fz_below(in, 3) == 0) { /* epoch ms, within the years 0..9999 */
        int64_t ms = (int64_t)(fz_u64(in) % 315537897600000ULL) - 62167219200000LL;
        putf_i64(b, ms, fz_below(in, 2));
        return;
    }
    static const char *const zones[] = {"Z", "", "+05:30", "-08:00", "+0100", "z"};
    snprintf(t, sizeof t, "\"%04u-%02u-%02uT%02u:%02u:%02u.%03u%s\"", 1900 + fz_byte(in) % 250,
             1 + fz_below(in, 12), 1 + fz_below(in, 28), fz_below(in, 24), fz_below(in, 60),
             fz_below(in, 60), fz_below(in, 1000), zones[fz_below(in, 6)]);
    put(b, t);
}

static void gen_object(fz_in *in, const sp_schema *s, int32_t n, sp_buf *b);

static void gen_date(fz_in *in, sp_buf *b) {
    char t[64];
    if (fz_below(in, 2)) return gen_time(in, b); /* the day of a time */
    snprintf(t, sizeof t, "\"%04u-%02u-%02u\"", fz_below(in, 10000), 1 + fz_below(in, 12),
             1 + fz_below(in, 31));
    put(b, t);
}

/* Digits around a point, perhaps an exponent, perhaps quoted: some do
 * not fit the column's decimal (the row is then left out). */
static void gen_decimal(fz_in *in, sp_buf *b) {
    char t[64];
    int quoted = (int)fz_below(in, 3) == 0, n = 0;
    if (quoted) t[n++] = '"';
    if (fz_below(in, 3) == 0) t[n++] = '-';
    unsigned ints = fz_below(in, 12), fracs = fz_below(in, 8);
    t[n++] = (char)('1' + fz_below(in, 9));
    for (unsigned i = 0; i < ints; i++) t[n++] = (char)('0' + fz_below(in, 10));
    if (fracs) t[n++] = '.';
    for (unsigned i = 0; i < fracs; i++) t[n++] = (char)('0' + fz_below(in, 10));
    if (fz_below(in, 6) == 0) n += snprintf(t + n, sizeof t - (size_t)n, "e%d", (int)fz_below(in, 9) - 4);
    if (quoted) t[n++] = '"';
    t[n] = '\0';
    put(b, t);
}

static void gen_value(fz_in *in, const sp_schema *s, int32_t n, sp_buf *b);

static void gen_list(fz_in *in, const sp_schema *s, int32_t n, sp_buf *b) {
    unsigned k = fz_below(in, 6);
    put(b, "[");
    for (unsigned i = 0; i < k; i++) {
        if (i) put(b, ",");
        gen_value(in, s, s->nodes[n].kids[0], b);
    }
    put(b, "]");
}

static void gen_value(fz_in *in, const sp_schema *s, int32_t n, sp_buf *b) {
    const sp_schema_node *nd = &s->nodes[n];
    unsigned how = fz_below(in, 10);
    if (how == 0) return put(b, "null");
    if (how == 1 && nd->type != SP_SCH_STRING && nd->type != SP_SCH_STRUCT &&
        nd->type != SP_SCH_LIST)
        return put(b, "\"\""); /* null too, for anything but a string */
    switch (nd->type) {
    case SP_SCH_STRING: return gen_string(in, b);
    case SP_SCH_INT64: {
        int64_t v = (int64_t)fz_u64(in);
        if (fz_below(in, 2)) v >>= fz_below(in, 64); /* small numbers too */
        return putf_i64(b, v, fz_below(in, 3) == 0);
    }
    case SP_SCH_DOUBLE: return gen_double(in, b);
    case SP_SCH_BOOLEAN: {
        static const char *const v[] = {"true", "false", "\"true\"", "\"false\""};
        return put(b, v[fz_below(in, 4)]);
    }
    case SP_SCH_TIMESTAMP: return gen_time(in, b);
    case SP_SCH_DATE: return gen_date(in, b);
    case SP_SCH_DECIMAL: return gen_decimal(in, b);
    case SP_SCH_LIST: return gen_list(in, s, n, b);
    default: return gen_object(in, s, n, b);
    }
}

static void gen_object(fz_in *in, const sp_schema *s, int32_t n, sp_buf *b) {
    const sp_schema_node *nd = &s->nodes[n];
    int first = 1;
    put(b, "{");
    for (int32_t k = 0; k < nd->nkids; k++) {
        const sp_schema_node *kn = &s->nodes[nd->kids[k]];
        unsigned how = fz_below(in, 12);
        if (how == 0) continue; /* missing */
        if (!first) put(b, ",");
        first = 0;
        if (how == 1) put(b, "\"unknown\":[1,{\"x\":2}],");
        put(b, "\"");
        FZ_CHECK(sp_buf_append(b, kn->name, kn->name_len) == 0);
        put(b, "\":");
        gen_value(in, s, nd->kids[k], b);
    }
    put(b, "}");
}

/* --- reading the footer back: Thrift compact, any struct ---------------- */

typedef struct rd {
    const uint8_t *p, *end;
} rd;

static uint64_t r_varint(rd *r) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        FZ_CHECK(r->p < r->end);
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return v;
    }
    FZ_CHECK(!"varint longer than 10 bytes");
    return 0;
}

static int64_t r_zigzag(rd *r) {
    uint64_t u = r_varint(r);
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static void r_struct(rd *r, int depth, int64_t *top_fields);

static void r_value(rd *r, int type, int depth) {
    switch (type) {
    case 1: case 2: return;                    /* booleans, in the field header */
    case 3: FZ_CHECK(r->p < r->end); r->p++; return;
    case 4: case 5: case 6: r_zigzag(r); return;
    case 7: FZ_CHECK(r->end - r->p >= 8); r->p += 8; return;
    case 8: {
        uint64_t n = r_varint(r);
        FZ_CHECK(n <= (uint64_t)(r->end - r->p));
        r->p += n;
        return;
    }
    case 9: case 10: {
        FZ_CHECK(r->p < r->end);
        uint8_t h = *r->p++;
        uint64_t n = h >> 4 == 15 ? r_varint(r) : h >> 4;
        for (uint64_t i = 0; i < n; i++) {
            if ((h & 15) == 1 || (h & 15) == 2) { /* list booleans: a byte each */
                FZ_CHECK(r->p < r->end);
                r->p++;
            } else {
                r_value(r, h & 15, depth);
            }
        }
        return;
    }
    case 12: return r_struct(r, depth + 1, NULL);
    default: FZ_CHECK(!"unknown Thrift compact type");
    }
}

/* top_fields: for the footer itself, the values of its i32/i64 fields
 * and the length of its lists, by field id (1..8). */
static void r_struct(rd *r, int depth, int64_t *top_fields) {
    FZ_CHECK(depth < 32);
    int16_t last = 0;
    for (;;) {
        FZ_CHECK(r->p < r->end);
        uint8_t h = *r->p++;
        if (h == 0) return;
        int16_t id = h >> 4 ? (int16_t)(last + (h >> 4)) : (int16_t)r_zigzag(r);
        FZ_CHECK(id > last); /* sp_thrift writes ids in increasing order */
        last = id;
        int type = h & 15;
        if (top_fields && id >= 1 && id <= 8 && (type == 5 || type == 6)) {
            top_fields[id] = r_zigzag(r);
            continue;
        }
        if (top_fields && id >= 1 && id <= 8 && type == 9) {
            rd peek = *r;
            uint8_t lh = *peek.p++;
            top_fields[id] = lh >> 4 == 15 ? (int64_t)r_varint(&peek) : lh >> 4;
        }
        r_value(r, type, depth);
    }
}

static void check_file(const uint8_t *f, size_t len, const sp_schema *s, int64_t rows) {
    FZ_CHECK(len >= 12);
    FZ_CHECK(memcmp(f, "PAR1", 4) == 0 && memcmp(f + len - 4, "PAR1", 4) == 0);
    uint32_t flen = (uint32_t)f[len - 8] | (uint32_t)f[len - 7] << 8 |
                    (uint32_t)f[len - 6] << 16 | (uint32_t)f[len - 5] << 24;
    FZ_CHECK(flen <= len - 12);
    rd r = {f + len - 8 - flen, f + len - 8};
    int64_t fields[9];
    for (int i = 0; i < 9; i++) fields[i] = -1;
    r_struct(&r, 0, fields);
    FZ_CHECK(r.p == r.end);          /* the footer is exactly its length */
    FZ_CHECK(fields[1] == 1);        /* version */
    FZ_CHECK(fields[2] == s->nnodes + s->nlists); /* the root, every field, lists' groups */
    FZ_CHECK(fields[3] == rows);     /* num_rows */
}

/* --- the target ----------------------------------------------------------- */

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static void dump(const char *dir, const uint8_t *data, size_t size, const char *file,
                 size_t flen, const sp_buf *rows) {
    char path[4096];
    uint64_t h = fnv1a(data, size);
    snprintf(path, sizeof path, "%s/%016" PRIx64 ".parquet", dir, h);
    FILE *f = fopen(path, "wb");
    FZ_CHECK(f && fwrite(file, 1, flen, f) == flen && fclose(f) == 0);
    snprintf(path, sizeof path, "%s/%016" PRIx64 ".jsonl", dir, h);
    f = fopen(path, "wb");
    FZ_CHECK(f && fwrite(rows->data ? rows->data : "", 1, rows->len, f) == rows->len &&
             fclose(f) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_in in = {data, size};
    static const int codecs[] = {SP_CODEC_NONE, SP_CODEC_SNAPPY, SP_CODEC_ZSTD};
    sp_pq_opts o = {0};
    o.codec = codecs[fz_below(&in, 3)];
    o.dictionary = (int)fz_below(&in, 2);
    o.row_group_rows = fz_below(&in, 6);           /* 0: no limit */
    o.row_group_bytes = 1 + fz_below(&in, 4) * 256; /* several row groups */
    o.page_bytes = 1 + fz_below(&in, 4) * 64;       /* several pages a chunk */

    sp_buf spec, json, rendered;
    sp_buf_init(&spec);
    sp_buf_init(&json);
    sp_buf_init(&rendered);
    int names = 0;
    gen_fields(&in, &spec, 0, &names);
    FZ_CHECK(sp_buf_putc(&spec, '\0') == 0);
    const char *err = NULL;
    sp_schema *s = sp_schema_create(spec.data, &err);
    if (!s) fprintf(stderr, "spec %s: %s\n", spec.data, err);
    FZ_CHECK(s); /* every generated spec is a valid one */

    char *file = NULL;
    size_t flen = 0;
    FILE *f = open_memstream(&file, &flen);
    FZ_CHECK(f);
    sp_pq_writer *w = sp_pq_create(s, &o, f, &err);
    FZ_CHECK(w);
    unsigned nrows = fz_below(&in, MAX_ROWS + 1);
    int64_t written = 0;
    for (unsigned i = 0; i < nrows; i++) {
        sp_buf_reset(&json);
        gen_object(&in, s, 0, &json);
        if (sp_schema_convert(s, json.data, json.len, NULL, &err) != 0) continue;
        FZ_CHECK(sp_pq_append(w, &err) == 0);
        written++;
        FZ_CHECK(sp_schema_write_json(s, &rendered) == 0);
        FZ_CHECK(sp_buf_putc(&rendered, '\n') == 0);
        FZ_CHECK(sp_pq_rows(w) == written);
    }
    FZ_CHECK(sp_pq_finish(w, &err) == 0);
    sp_pq_destroy(w);
    FZ_CHECK(fclose(f) == 0);
    check_file((const uint8_t *)file, flen, s, written);

    const char *dir = getenv("SPROC_FUZZ_PARQUET_DUMP");
    if (dir) dump(dir, data, size, file, flen, &rendered);
    free(file);
    sp_schema_destroy(s);
    sp_buf_destroy(&spec);
    sp_buf_destroy(&json);
    sp_buf_destroy(&rendered);
    return 0;
}
