/* The Parquet layout written here: "PAR1", then per row group and column
 * an optional dictionary page and data pages (v1: 4-byte-length-prefixed
 * RLE repetition levels for a list's elements, the same for definition
 * levels, then the values), each after a Thrift page header; then the
 * FileMetaData footer, its length and "PAR1" again. A list is Parquet's
 * three-level LIST (list, repeated group "list", element). */
#include <snappy-c.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "sp_pq.h"
#include "sp_thrift.h"

enum { PQ_BOOLEAN = 0, PQ_INT32 = 1, PQ_INT64 = 2, PQ_DOUBLE = 5, PQ_BYTE_ARRAY = 6 };
enum { ENC_PLAIN = 0, ENC_PLAIN_DICTIONARY = 2, ENC_RLE = 3 };
enum { PAGE_DATA = 0, PAGE_DICTIONARY = 2 };
enum { CONV_UTF8 = 0, CONV_LIST = 3, CONV_DECIMAL = 5, CONV_DATE = 6, CONV_TIMESTAMP_MILLIS = 9 };
enum { REQUIRED = 0, OPTIONAL = 1, REPEATED = 2 };

/* Dictionaries stop paying (and readers' memory grows) past this. */
#define DICT_MAX_BYTES (1 << 20)
/* Longer strings leave a chunk without min and max (readers then read
 * it): statistics stay small in the footer. */
#define STAT_MAX_BYTES 1024

typedef struct pq_col {
    sp_buf defs;   /* a definition level per entry (a row, or a list's
                      element) */
    sp_buf reps;   /* a repetition level per entry: columns under a list */
    sp_buf vals;   /* non-null values, PLAIN-encoded (booleans a byte each) */
    int64_t nvals;
} pq_col;

typedef struct pq_chunk {
    int64_t dict_off; /* -1: none */
    int64_t data_off;
    int64_t uncomp, comp;
    int64_t levels, nulls;
    char *min, *max; /* PLAIN bytes (strings without their length); NULL: none */
    uint32_t min_len, max_len;
} pq_chunk;

typedef struct pq_rg {
    int64_t rows, offset, uncomp, comp;
    pq_chunk *cols;
} pq_rg;

typedef struct pq_slot {
    uint64_t h;
    uint32_t off, len; /* the value in the dictionary page */
    int32_t id;        /* -1: empty */
} pq_slot;

struct sp_pq_writer {
    const sp_schema *s;
    sp_pq_opts o;
    FILE *f;
    int64_t offset;
    int failed;
    pq_col *cols;
    int64_t rows, total_rows, buffered;
    pq_rg *rgs;
    int32_t nrgs, rgs_cap;
    sp_buf page, comp, hdr, lv, dict;
    uint32_t *idx, *tmp;
    size_t idx_cap, tmp_cap;
    pq_slot *ht;
    size_t ht_cap;
    uint32_t ndict;
    ZSTD_CCtx *zstd;
};

static int physical(int type) {
    switch (type) {
    case SP_SCH_STRING: return PQ_BYTE_ARRAY;
    case SP_SCH_DOUBLE: return PQ_DOUBLE;
    case SP_SCH_BOOLEAN: return PQ_BOOLEAN;
    case SP_SCH_DATE: return PQ_INT32;
    default: return PQ_INT64;
    }
}

/* Bytes of the PLAIN value at p. */
static size_t value_size(int ptype, const char *p);

/* Whether column c is written (not a partition column). */
static int column_on(const sp_pq_writer *w, int32_t c) {
    if (!w->o.omit) return 1;
    int32_t n = w->s->leaves[c];
    while (w->s->nodes[n].depth > 1) n = w->s->nodes[n].parent;
    return !w->o.omit[n];
}

static int bits(uint32_t v) {
    int b = 0;
    while (v) {
        b++;
        v >>= 1;
    }
    return b;
}

static void le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t rd32(const char *p) {
    const uint8_t *u = (const uint8_t *)p;
    return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 |
           (uint32_t)u[3] << 24;
}

static size_t value_size(int ptype, const char *p) {
    switch (ptype) {
    case PQ_BYTE_ARRAY: return 4 + rd32(p);
    case PQ_BOOLEAN: return 1;
    case PQ_INT32: return 4;
    default: return 8;
    }
}

static int put_le(sp_buf *b, uint64_t v, int n) {
    uint8_t tmp[8];
    for (int i = 0; i < n; i++) tmp[i] = (uint8_t)(v >> (8 * i));
    return sp_buf_append(b, tmp, (size_t)n);
}

/* --- RLE / bit-packing hybrid ------------------------------------------- */

static size_t run_at(const uint32_t *v, size_t n, size_t i) {
    size_t j = i + 1;
    while (j < n && v[j] == v[i]) j++;
    return j - i;
}

static int bitpack(sp_buf *out, const uint32_t *v, size_t n, size_t from,
                   size_t groups, int bw) {
    if (sp_uleb128(out, (uint64_t)(groups << 1 | 1)) != 0) return -1;
    uint64_t acc = 0;
    int nacc = 0;
    for (size_t i = from; i < from + groups * 8; i++) {
        acc |= (uint64_t)(i < n ? v[i] : 0) << nacc;
        nacc += bw;
        while (nacc >= 8) {
            if (sp_buf_putc(out, (char)(acc & 0xff)) != 0) return -1;
            acc >>= 8;
            nacc -= 8;
        }
    }
    return 0; /* 8 values of bw bits always end on a byte */
}

int sp_pq_rle(sp_buf *out, const uint32_t *v, size_t n, int bw) {
    size_t i = 0;
    int vbytes = (bw + 7) / 8;
    while (i < n) {
        size_t r = run_at(v, n, i);
        if (r >= 8) {
            if (sp_uleb128(out, (uint64_t)(r << 1)) != 0 ||
                put_le(out, v[i], vbytes) != 0)
                return -1;
            i += r;
            continue;
        }
        /* literals in groups of 8 until a long run starts on a group edge */
        size_t j = i;
        do {
            j += 8;
        } while (j < n && run_at(v, n, j) < 8);
        if (j > n) j = n;
        size_t groups = (j - i + 7) / 8;
        if (bitpack(out, v, n, i, groups, bw) != 0) return -1;
        i = j;
    }
    return 0;
}

/* --- writer ------------------------------------------------------------- */

sp_pq_writer *sp_pq_create(const sp_schema *s, const sp_pq_opts *o, FILE *f,
                           const char **err) {
    sp_pq_writer *w = calloc(1, sizeof *w);
    if (!w) goto oom;
    w->s = s;
    w->o = *o;
    if (w->o.row_group_bytes <= 0) w->o.row_group_bytes = 64 << 20;
    if (w->o.page_bytes <= 0) w->o.page_bytes = 1 << 20;
    w->f = f;
    sp_buf_init(&w->page);
    sp_buf_init(&w->comp);
    sp_buf_init(&w->hdr);
    sp_buf_init(&w->lv);
    sp_buf_init(&w->dict);
    w->cols = calloc((size_t)s->ncolumns, sizeof *w->cols);
    if (!w->cols) goto oom;
    for (int32_t c = 0; c < s->ncolumns; c++) {
        sp_buf_init(&w->cols[c].defs);
        sp_buf_init(&w->cols[c].reps);
        sp_buf_init(&w->cols[c].vals);
    }
    if (o->codec == SP_CODEC_ZSTD && !(w->zstd = ZSTD_createCCtx())) goto oom;
    if (fwrite("PAR1", 1, 4, f) != 4) {
        *err = "cannot write the Parquet file";
        sp_pq_destroy(w);
        return NULL;
    }
    w->offset = 4;
    return w;
oom:
    *err = "out of memory";
    sp_pq_destroy(w);
    return NULL;
}

void sp_pq_destroy(sp_pq_writer *w) {
    if (!w) return;
    if (w->cols)
        for (int32_t c = 0; c < w->s->ncolumns; c++) {
            sp_buf_destroy(&w->cols[c].defs);
            sp_buf_destroy(&w->cols[c].reps);
            sp_buf_destroy(&w->cols[c].vals);
        }
    free(w->cols);
    for (int32_t i = 0; i < w->nrgs; i++) {
        for (int32_t c = 0; w->rgs[i].cols && c < w->s->ncolumns; c++) {
            free(w->rgs[i].cols[c].min);
            free(w->rgs[i].cols[c].max);
        }
        free(w->rgs[i].cols);
    }
    free(w->rgs);
    sp_buf_destroy(&w->page);
    sp_buf_destroy(&w->comp);
    sp_buf_destroy(&w->hdr);
    sp_buf_destroy(&w->lv);
    sp_buf_destroy(&w->dict);
    free(w->idx);
    free(w->tmp);
    free(w->ht);
    ZSTD_freeCCtx(w->zstd);
    free(w);
}

int64_t sp_pq_size(const sp_pq_writer *w) { return w->offset + w->buffered; }
int64_t sp_pq_rows(const sp_pq_writer *w) { return w->total_rows + w->rows; }

static int grow_u32(uint32_t **a, size_t *cap, size_t n) {
    if (n <= *cap) return 0;
    size_t c = *cap ? *cap : 1024;
    while (c < n) c *= 2;
    uint32_t *t = realloc(*a, c * sizeof *t);
    if (!t) return -1;
    *a = t;
    *cap = c;
    return 0;
}

static int emit(sp_pq_writer *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->f) != n) return -1;
    w->offset += (int64_t)n;
    return 0;
}

/* Compresses the page body, writes its header and the body. */
static int write_page(sp_pq_writer *w, int type, int32_t num_values,
                      int encoding, pq_chunk *ch) {
    const char *body = w->page.data;
    size_t blen = w->page.len;
    sp_buf_reset(&w->comp);
    if (w->o.codec == SP_CODEC_SNAPPY) {
        size_t cap = snappy_max_compressed_length(blen);
        if (sp_buf_reserve(&w->comp, cap) != 0 ||
            snappy_compress(body, blen, w->comp.data, &cap) != SNAPPY_OK)
            return -1;
        body = w->comp.data;
        blen = cap;
    } else if (w->o.codec == SP_CODEC_ZSTD) {
        size_t cap = ZSTD_compressBound(blen);
        if (sp_buf_reserve(&w->comp, cap) != 0) return -1;
        size_t n = ZSTD_compressCCtx(w->zstd, w->comp.data, cap, body, blen, 1);
        if (ZSTD_isError(n)) return -1;
        body = w->comp.data;
        blen = n;
    }
    sp_thrift t;
    sp_buf_reset(&w->hdr);
    sp_thrift_init(&t, &w->hdr);
    sp_thrift_i32(&t, 1, type);
    sp_thrift_i32(&t, 2, (int32_t)w->page.len);
    sp_thrift_i32(&t, 3, (int32_t)blen);
    if (type == PAGE_DATA) {
        sp_thrift_begin(&t, 5);
        sp_thrift_i32(&t, 1, num_values);
        sp_thrift_i32(&t, 2, encoding);
        sp_thrift_i32(&t, 3, ENC_RLE);
        sp_thrift_i32(&t, 4, ENC_RLE);
        sp_thrift_end(&t);
    } else {
        sp_thrift_begin(&t, 7);
        sp_thrift_i32(&t, 1, num_values);
        sp_thrift_i32(&t, 2, ENC_PLAIN_DICTIONARY);
        sp_thrift_end(&t);
    }
    sp_thrift_end(&t);
    if (t.failed || emit(w, w->hdr.data, w->hdr.len) != 0 ||
        emit(w, body, blen) != 0)
        return -1;
    ch->uncomp += (int64_t)(w->hdr.len + w->page.len);
    ch->comp += (int64_t)(w->hdr.len + blen);
    return 0;
}

static uint64_t hash(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

/* Dictionary of a column chunk: the distinct values PLAIN-encoded in
 * w->dict, an index per value in w->idx. Returns 1 when it fits, 0 when
 * the chunk goes plain, -1 when out of memory. */
static int build_dict(sp_pq_writer *w, const pq_col *col, int ptype) {
    size_t cap = 64;
    while (cap < (size_t)col->nvals * 2) cap *= 2;
    if (cap > w->ht_cap) {
        pq_slot *t = realloc(w->ht, cap * sizeof *t);
        if (!t) return -1;
        w->ht = t;
        w->ht_cap = cap;
    }
    for (size_t i = 0; i < cap; i++) w->ht[i].id = -1;
    if (grow_u32(&w->idx, &w->idx_cap, (size_t)col->nvals) != 0) return -1;
    sp_buf_reset(&w->dict);
    w->ndict = 0;
    const char *p = col->vals.data;
    for (int64_t i = 0; i < col->nvals; i++) {
        size_t n = value_size(ptype, p);
        uint64_t h = hash(p, n);
        size_t at = h & (cap - 1);
        while (w->ht[at].id >= 0 &&
               !(w->ht[at].h == h && w->ht[at].len == n &&
                 memcmp(w->dict.data + w->ht[at].off, p, n) == 0))
            at = (at + 1) & (cap - 1);
        if (w->ht[at].id < 0) {
            if (w->dict.len + n > DICT_MAX_BYTES) return 0;
            w->ht[at] = (pq_slot){h, (uint32_t)w->dict.len, (uint32_t)n,
                                  (int32_t)w->ndict++};
            if (sp_buf_append(&w->dict, p, n) != 0) return -1;
        }
        w->idx[i] = (uint32_t)w->ht[at].id;
        p += n;
    }
    return 1;
}

/* -1, 0 or 1 as a is below, equal to or above b, in the column's sort
 * order (signed numbers; strings as unsigned bytes). */
static int compare(int ptype, const char *a, const char *b) {
    int64_t x = 0, y = 0;
    double dx, dy;
    switch (ptype) {
    case PQ_BYTE_ARRAY: {
        uint32_t la = rd32(a), lb = rd32(b);
        int c = memcmp(a + 4, b + 4, la < lb ? la : lb);
        return c ? (c < 0 ? -1 : 1) : (la > lb) - (la < lb);
    }
    case PQ_DOUBLE:
        memcpy(&dx, a, 8);
        memcpy(&dy, b, 8);
        return (dx > dy) - (dx < dy);
    case PQ_BOOLEAN: return (*a != 0) - (*b != 0);
    case PQ_INT32:
        x = (int32_t)rd32(a);
        y = (int32_t)rd32(b);
        return (x > y) - (x < y);
    default:
        memcpy(&x, a, 8); /* little-endian hosts only, as put_value */
        memcpy(&y, b, 8);
        return (x > y) - (x < y);
    }
}

static char *stat_copy(int ptype, const char *v, uint32_t *len) {
    if (ptype == PQ_BYTE_ARRAY) {
        *len = rd32(v);
        v += 4;
    } else {
        *len = (uint32_t)value_size(ptype, v);
    }
    char *c = malloc(*len ? *len : 1);
    if (c) memcpy(c, v, *len);
    return c;
}

/* The chunk's statistics: null count, and min and max of its values. */
static int chunk_stats(const pq_col *col, int ptype, pq_chunk *ch) {
    const char *p = col->vals.data, *lo = NULL, *hi = NULL;
    size_t longest = 0;
    ch->levels = (int64_t)col->defs.len;
    ch->nulls = ch->levels - col->nvals;
    for (int64_t i = 0; i < col->nvals; i++) {
        size_t n = value_size(ptype, p);
        if (n > longest) longest = n;
        if (!lo || compare(ptype, p, lo) < 0) lo = p;
        if (!hi || compare(ptype, p, hi) > 0) hi = p;
        p += n;
    }
    if (!lo || longest > 4 + STAT_MAX_BYTES) return 0;
    if (!(ch->min = stat_copy(ptype, lo, &ch->min_len)) ||
        !(ch->max = stat_copy(ptype, hi, &ch->max_len)))
        return -1;
    if (ptype == PQ_DOUBLE) {
        /* the format's rule for zeros: -0.0 as a min, +0.0 as a max */
        double d;
        memcpy(&d, ch->min, 8);
        if (d == 0) d = -0.0, memcpy(ch->min, &d, 8);
        memcpy(&d, ch->max, 8);
        if (d == 0) d = 0.0, memcpy(ch->max, &d, 8);
    }
    return 0;
}

/* Levels of entries [from, to) as 4-byte-length-prefixed RLE. */
static int put_levels(sp_pq_writer *w, const sp_buf *levels, size_t from, size_t to, int bw) {
    const uint8_t *l = (const uint8_t *)levels->data;
    uint8_t len[4];
    if (grow_u32(&w->tmp, &w->tmp_cap, to - from) != 0) return -1;
    for (size_t i = from; i < to; i++) w->tmp[i - from] = l[i];
    sp_buf_reset(&w->lv);
    if (sp_pq_rle(&w->lv, w->tmp, to - from, bw) != 0) return -1;
    le32(len, (uint32_t)w->lv.len);
    return sp_buf_append(&w->page, len, 4) || sp_buf_append(&w->page, w->lv.data, w->lv.len);
}

static int write_chunk(sp_pq_writer *w, int32_t c, pq_chunk *ch) {
    const pq_col *col = &w->cols[c];
    const sp_schema_node *nd = &w->s->nodes[w->s->leaves[c]];
    int ptype = physical(nd->type);
    int max_def = nd->max_def;
    int use_dict = 0;
    ch->dict_off = -1;
    if (chunk_stats(col, ptype, ch) != 0) return -1;
    if (w->o.dictionary && ptype != PQ_BOOLEAN && col->nvals > 0) {
        use_dict = build_dict(w, col, ptype);
        if (use_dict < 0) return -1;
    }
    if (use_dict) {
        ch->dict_off = w->offset;
        sp_buf_reset(&w->page);
        if (sp_buf_append(&w->page, w->dict.data, w->dict.len) != 0 ||
            write_page(w, PAGE_DICTIONARY, (int32_t)w->ndict, 0, ch) != 0)
            return -1;
    }
    ch->data_off = w->offset;
    const uint8_t *defs = (const uint8_t *)col->defs.data;
    const uint8_t *reps = nd->max_rep ? (const uint8_t *)col->reps.data : NULL;
    size_t entries = col->defs.len, at = 0, vpos = 0, vi = 0;
    int dbw = bits((uint32_t)max_def);
    int ibw = bits(w->ndict > 1 ? w->ndict - 1 : 1);
    while (at < entries) {
        size_t end = at, bytes = 0, nv = 0;
        /* a page holds whole rows: it ends before an entry that starts one */
        while (end < entries &&
               (bytes < (size_t)w->o.page_bytes || (reps && end > at && reps[end] != 0))) {
            if (defs[end] == max_def) {
                bytes += value_size(ptype, col->vals.data + vpos + bytes);
                nv++;
            }
            end++;
        }
        sp_buf_reset(&w->page);
        if ((reps && put_levels(w, &col->reps, at, end, 1) != 0) ||
            (max_def > 0 && put_levels(w, &col->defs, at, end, dbw) != 0))
            return -1;
        int rc = 0;
        if (use_dict) {
            rc = sp_buf_putc(&w->page, (char)ibw) ||
                 sp_pq_rle(&w->page, w->idx + vi, nv, ibw);
        } else if (ptype == PQ_BOOLEAN) {
            size_t nb = (nv + 7) / 8, pos = w->page.len;
            rc = sp_buf_reserve(&w->page, nb);
            if (rc == 0) {
                memset(w->page.data + pos, 0, nb);
                for (size_t i = 0; i < nv; i++)
                    if (col->vals.data[vpos + i])
                        w->page.data[pos + i / 8] |= (char)(1 << (i % 8));
                w->page.len += nb;
            }
        } else {
            /* a page of nulls only: no values, and perhaps no buffer */
            rc = bytes ? sp_buf_append(&w->page, col->vals.data + vpos, bytes) : 0;
        }
        if (rc != 0 ||
            write_page(w, PAGE_DATA, (int32_t)(end - at),
                       use_dict ? ENC_PLAIN_DICTIONARY : ENC_PLAIN, ch) != 0)
            return -1;
        at = end;
        vpos += bytes;
        vi += nv;
    }
    return 0;
}

static int write_row_group(sp_pq_writer *w) {
    if (w->rows == 0) return 0;
    if (w->nrgs == w->rgs_cap) {
        int32_t cap = w->rgs_cap ? w->rgs_cap * 2 : 8;
        pq_rg *t = realloc(w->rgs, (size_t)cap * sizeof *t);
        if (!t) return -1;
        w->rgs = t;
        w->rgs_cap = cap;
    }
    pq_rg *rg = &w->rgs[w->nrgs];
    memset(rg, 0, sizeof *rg);
    rg->cols = calloc((size_t)w->s->ncolumns, sizeof *rg->cols);
    if (!rg->cols) return -1;
    w->nrgs++;
    rg->rows = w->rows;
    rg->offset = w->offset;
    for (int32_t c = 0; c < w->s->ncolumns; c++) {
        if (!column_on(w, c)) continue;
        if (write_chunk(w, c, &rg->cols[c]) != 0) return -1;
        rg->uncomp += rg->cols[c].uncomp;
        rg->comp += rg->cols[c].comp;
        sp_buf_reset(&w->cols[c].defs);
        sp_buf_reset(&w->cols[c].reps);
        sp_buf_reset(&w->cols[c].vals);
        w->cols[c].nvals = 0;
    }
    w->total_rows += w->rows;
    w->rows = 0;
    w->buffered = 0;
    return 0;
}

/* Values go straight into the column buffers: a reserve, then stores. */
static int put_value(pq_col *col, const sp_schema_node *nd, const sp_value *v) {
    size_t need = nd->type == SP_SCH_STRING ? 4 + (size_t)v->len : 8;
    if (sp_buf_reserve(&col->vals, need) != 0) return -1;
    uint8_t *p = (uint8_t *)col->vals.data + col->vals.len;
    uint64_t u;
    int n = 8;
    switch (nd->type) {
    case SP_SCH_STRING:
        le32(p, v->len);
        memcpy(p + 4, v->v.s, v->len);
        col->vals.len += need;
        return 0;
    case SP_SCH_BOOLEAN:
        *p = (uint8_t)(v->v.i != 0);
        col->vals.len += 1;
        return 0;
    case SP_SCH_DOUBLE:
        memcpy(&u, &v->v.d, 8);
        break;
    case SP_SCH_DATE:
        u = (uint64_t)v->v.i;
        n = 4;
        break;
    default:
        u = (uint64_t)v->v.i;
    }
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(u >> (8 * i));
    col->vals.len += (size_t)n;
    return 0;
}

/* One entry of column col: its levels, and its value when present. */
static int put_entry(pq_col *col, const sp_schema_node *nd, const sp_value *v, int rep) {
    if (sp_buf_putc(&col->defs, (char)v->def) != 0 ||
        (nd->max_rep && sp_buf_putc(&col->reps, (char)rep) != 0))
        return -1;
    if (!v->present) return 0;
    col->nvals++;
    return put_value(col, nd, v);
}

int sp_pq_append(sp_pq_writer *w, const char **err) {
    const sp_schema *s = w->s;
    int64_t added = 0;
    int rc = w->failed;
    for (int32_t c = 0; c < s->ncolumns && rc == 0; c++) {
        if (!column_on(w, c)) continue;
        int32_t leaf = s->leaves[c];
        const sp_schema_node *nd = &s->nodes[leaf];
        pq_col *col = &w->cols[c];
        size_t before = col->vals.len + col->defs.len;
        const sp_items *it = &s->items[leaf];
        if (!nd->max_rep) {
            rc = put_entry(col, nd, &s->vals[leaf], 0);
        } else if (it->n == 0) {
            /* a null or empty list: one entry, defined as far as the list */
            sp_value none = {0};
            none.def = s->vals[nd->parent].def;
            rc = put_entry(col, nd, &none, 0);
        } else {
            for (uint32_t i = 0; i < it->n && rc == 0; i++)
                rc = put_entry(col, nd, &it->v[i], i > 0);
        }
        added += (int64_t)(col->vals.len + col->defs.len - before);
    }
    if (rc != 0) {
        w->failed = 1;
        *err = "out of memory";
        return -1;
    }
    w->rows++;
    w->buffered += added;
    if (w->buffered >= w->o.row_group_bytes ||
        (w->o.row_group_rows > 0 && w->rows >= w->o.row_group_rows)) {
        if (write_row_group(w) != 0) {
            w->failed = 1;
            *err = "cannot write a Parquet row group";
            return -1;
        }
    }
    return 0;
}

static void logical_empty(sp_thrift *t, int16_t kind) {
    sp_thrift_begin(t, 10);
    sp_thrift_begin(t, kind);
    sp_thrift_end(t);
    sp_thrift_end(t);
}

static void leaf_types(sp_thrift *t, const sp_schema_node *nd) {
    switch (nd->type) {
    case SP_SCH_STRING:
        sp_thrift_i32(t, 6, CONV_UTF8);
        logical_empty(t, 1); /* STRING */
        break;
    case SP_SCH_DATE:
        sp_thrift_i32(t, 6, CONV_DATE);
        logical_empty(t, 6); /* DATE */
        break;
    case SP_SCH_DECIMAL:
        sp_thrift_i32(t, 6, CONV_DECIMAL);
        sp_thrift_i32(t, 7, nd->scale);
        sp_thrift_i32(t, 8, nd->precision);
        sp_thrift_begin(t, 10); /* LogicalType.DECIMAL(scale, precision) */
        sp_thrift_begin(t, 5);
        sp_thrift_i32(t, 1, nd->scale);
        sp_thrift_i32(t, 2, nd->precision);
        sp_thrift_end(t);
        sp_thrift_end(t);
        break;
    case SP_SCH_TIMESTAMP:
        sp_thrift_i32(t, 6, CONV_TIMESTAMP_MILLIS);
        sp_thrift_begin(t, 10); /* LogicalType.TIMESTAMP(UTC, MILLIS) */
        sp_thrift_begin(t, 8);
        sp_thrift_bool(t, 1, 1);
        sp_thrift_begin(t, 2);
        sp_thrift_begin(t, 1);
        sp_thrift_end(t);
        sp_thrift_end(t);
        sp_thrift_end(t);
        sp_thrift_end(t);
        break;
    }
}

/* Top-level fields written (partition columns are not). */
static int32_t kids_on(const sp_pq_writer *w, int32_t n) {
    const sp_schema_node *nd = &w->s->nodes[n];
    int32_t k = 0;
    for (int32_t i = 0; i < nd->nkids; i++) k += !(n == 0 && w->o.omit && w->o.omit[nd->kids[i]]);
    return k;
}

/* Schema elements of node n and what is under it, in pre-order; the
 * count in *count. */
static void schema_elements(sp_thrift *t, const sp_pq_writer *w, int32_t n, int32_t *count) {
    const sp_schema *s = w->s;
    const sp_schema_node *nd = &s->nodes[n];
    if (n > 0 && nd->depth == 1 && w->o.omit && w->o.omit[n]) return;
    int group = nd->type == SP_SCH_STRUCT || nd->type == SP_SCH_LIST;
    (*count)++;
    if (!t) goto kids;
    sp_thrift_begin(t, 0);
    if (!group) sp_thrift_i32(t, 1, physical(nd->type));
    if (n > 0) sp_thrift_i32(t, 3, nd->nullable ? OPTIONAL : REQUIRED);
    sp_thrift_binary(t, 4, nd->name, nd->name_len);
    if (group) sp_thrift_i32(t, 5, nd->type == SP_SCH_LIST ? 1 : kids_on(w, n));
    if (nd->type == SP_SCH_LIST) {
        sp_thrift_i32(t, 6, CONV_LIST);
        logical_empty(t, 3); /* LIST */
    }
    leaf_types(t, nd);
    sp_thrift_end(t);
    if (nd->type == SP_SCH_LIST) {
        /* the repeated group between a list and its element */
        sp_thrift_begin(t, 0);
        sp_thrift_i32(t, 3, REPEATED);
        sp_thrift_binary(t, 4, "list", 4);
        sp_thrift_i32(t, 5, 1);
        sp_thrift_end(t);
    }
kids:
    if (nd->type == SP_SCH_LIST) (*count)++;
    for (int32_t k = 0; k < nd->nkids; k++) schema_elements(t, w, nd->kids[k], count);
}

static void column_chunk(sp_thrift *t, const sp_pq_writer *w, int32_t c,
                         const pq_rg *rg) {
    const sp_schema *s = w->s;
    const pq_chunk *ch = &rg->cols[c];
    int32_t leaf = s->leaves[c];
    const sp_schema_node *nd = &s->nodes[leaf];
    const char *chain[SP_SCHEMA_DEPTH + 1];
    size_t lens[SP_SCHEMA_DEPTH + 1];
    int k = 0;
    for (int32_t n = leaf; n > 0 && k < SP_SCHEMA_DEPTH; n = s->nodes[n].parent) {
        chain[k] = s->nodes[n].name;
        lens[k++] = s->nodes[n].name_len;
        if (s->nodes[s->nodes[n].parent].type == SP_SCH_LIST) {
            chain[k] = "list";
            lens[k++] = 4;
        }
    }
    int ptype = physical(nd->type);
    sp_thrift_begin(t, 0);
    sp_thrift_i64(t, 2, ch->dict_off >= 0 ? ch->dict_off : ch->data_off);
    sp_thrift_begin(t, 3);
    sp_thrift_i32(t, 1, ptype);
    sp_thrift_list(t, 2, SP_TT_I32, 2);
    sp_thrift_elem_i32(t, ENC_RLE);
    sp_thrift_elem_i32(t, ch->dict_off >= 0 ? ENC_PLAIN_DICTIONARY : ENC_PLAIN);
    sp_thrift_list(t, 3, SP_TT_BINARY, k);
    while (k-- > 0) sp_thrift_elem_binary(t, chain[k], lens[k]);
    sp_thrift_i32(t, 4, w->o.codec);
    sp_thrift_i64(t, 5, ch->levels);
    sp_thrift_i64(t, 6, ch->uncomp);
    sp_thrift_i64(t, 7, ch->comp);
    sp_thrift_i64(t, 9, ch->data_off);
    if (ch->dict_off >= 0) sp_thrift_i64(t, 11, ch->dict_off);
    sp_thrift_begin(t, 12); /* Statistics */
    sp_thrift_i64(t, 3, ch->nulls);
    if (ch->max) sp_thrift_binary(t, 5, ch->max, ch->max_len);
    if (ch->min) sp_thrift_binary(t, 6, ch->min, ch->min_len);
    sp_thrift_end(t);
    sp_thrift_end(t);
    sp_thrift_end(t);
}

int sp_pq_finish(sp_pq_writer *w, const char **err) {
    const sp_schema *s = w->s;
    sp_thrift t;
    uint8_t len[4];
    if (w->failed || write_row_group(w) != 0) goto fail;
    sp_buf_reset(&w->hdr);
    sp_thrift_init(&t, &w->hdr);
    int32_t nelems = 0, ncols = 0;
    schema_elements(NULL, w, 0, &nelems);
    for (int32_t c = 0; c < s->ncolumns; c++) ncols += column_on(w, c);
    sp_thrift_i32(&t, 1, 1);
    sp_thrift_list(&t, 2, SP_TT_STRUCT, nelems);
    nelems = 0;
    schema_elements(&t, w, 0, &nelems);
    sp_thrift_i64(&t, 3, w->total_rows);
    sp_thrift_list(&t, 4, SP_TT_STRUCT, w->nrgs);
    for (int32_t i = 0; i < w->nrgs; i++) {
        const pq_rg *rg = &w->rgs[i];
        sp_thrift_begin(&t, 0);
        sp_thrift_list(&t, 1, SP_TT_STRUCT, ncols);
        for (int32_t c = 0; c < s->ncolumns; c++)
            if (column_on(w, c)) column_chunk(&t, w, c, rg);
        sp_thrift_i64(&t, 2, rg->uncomp);
        sp_thrift_i64(&t, 3, rg->rows);
        sp_thrift_i64(&t, 5, rg->offset);
        sp_thrift_i64(&t, 6, rg->comp);
        sp_thrift_end(&t);
    }
    static const char created_by[] = "sproc version " SPROC_VERSION;
    sp_thrift_binary(&t, 6, created_by, sizeof created_by - 1);
    /* every column's min and max follow its type's order (signed
     * numbers, strings as unsigned bytes): readers then trust them */
    sp_thrift_list(&t, 7, SP_TT_STRUCT, ncols);
    for (int32_t c = 0; c < ncols; c++) {
        sp_thrift_begin(&t, 0);
        sp_thrift_begin(&t, 1); /* TypeDefinedOrder */
        sp_thrift_end(&t);
        sp_thrift_end(&t);
    }
    sp_thrift_end(&t);
    le32(len, (uint32_t)w->hdr.len);
    if (t.failed || emit(w, w->hdr.data, w->hdr.len) != 0 ||
        emit(w, len, 4) != 0 || emit(w, "PAR1", 4) != 0)
        goto fail;
    return 0;
fail:
    w->failed = 1;
    *err = "cannot write the Parquet file";
    return -1;
}
