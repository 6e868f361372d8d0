/* The Parquet layout written here: "PAR1", then per row group and column
 * an optional dictionary page and data pages (v1: 4-byte-length-prefixed
 * RLE definition levels, then the values), each after a Thrift page
 * header; then the FileMetaData footer, its length and "PAR1" again.
 * Columns hold no repetition levels: structs nest, nothing repeats. */
#include <snappy-c.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "sp_pq.h"
#include "sp_thrift.h"

enum { PQ_BOOLEAN = 0, PQ_INT64 = 2, PQ_DOUBLE = 5, PQ_BYTE_ARRAY = 6 };
enum { ENC_PLAIN = 0, ENC_PLAIN_DICTIONARY = 2, ENC_RLE = 3 };
enum { PAGE_DATA = 0, PAGE_DICTIONARY = 2 };
enum { CONV_UTF8 = 0, CONV_TIMESTAMP_MILLIS = 9 };

/* Dictionaries stop paying (and readers' memory grows) past this. */
#define DICT_MAX_BYTES (1 << 20)

typedef struct pq_col {
    sp_buf defs;   /* a definition level per row */
    sp_buf vals;   /* non-null values, PLAIN-encoded (booleans a byte each) */
    int64_t nvals;
} pq_col;

typedef struct pq_chunk {
    int64_t dict_off; /* -1: none */
    int64_t data_off;
    int64_t uncomp, comp;
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
    default: return PQ_INT64;
    }
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
            sp_buf_destroy(&w->cols[c].vals);
        }
    free(w->cols);
    for (int32_t i = 0; i < w->nrgs; i++) free(w->rgs[i].cols);
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
        size_t n = ptype == PQ_BYTE_ARRAY ? 4 + rd32(p) : 8;
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

static int write_chunk(sp_pq_writer *w, int32_t c, pq_chunk *ch) {
    const pq_col *col = &w->cols[c];
    const sp_schema_node *nd = &w->s->nodes[w->s->leaves[c]];
    int ptype = physical(nd->type);
    int max_def = nd->max_def;
    int use_dict = 0;
    ch->dict_off = -1;
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
    size_t rows = col->defs.len, row = 0, vpos = 0, vi = 0;
    int dbw = bits((uint32_t)max_def);
    int ibw = bits(w->ndict > 1 ? w->ndict - 1 : 1);
    while (row < rows) {
        size_t end = row, bytes = 0, nv = 0;
        while (end < rows && bytes < (size_t)w->o.page_bytes) {
            if (defs[end] == max_def) {
                bytes += ptype == PQ_BYTE_ARRAY ? 4 + rd32(col->vals.data + vpos + bytes)
                         : ptype == PQ_BOOLEAN  ? 1
                                                : 8;
                nv++;
            }
            end++;
        }
        sp_buf_reset(&w->page);
        if (max_def > 0) {
            if (grow_u32(&w->tmp, &w->tmp_cap, end - row) != 0) return -1;
            for (size_t i = row; i < end; i++) w->tmp[i - row] = defs[i];
            sp_buf_reset(&w->lv);
            uint8_t len[4];
            if (sp_pq_rle(&w->lv, w->tmp, end - row, dbw) != 0) return -1;
            le32(len, (uint32_t)w->lv.len);
            if (sp_buf_append(&w->page, len, 4) != 0 ||
                sp_buf_append(&w->page, w->lv.data, w->lv.len) != 0)
                return -1;
        }
        int rc = 0;
        if (use_dict) {
            rc = sp_buf_putc(&w->page, (char)ibw) ||
                 sp_pq_rle(&w->page, w->idx + vi, nv, ibw);
        } else if (ptype == PQ_BOOLEAN) {
            size_t nb = (nv + 7) / 8, at = w->page.len;
            rc = sp_buf_reserve(&w->page, nb);
            if (rc == 0) {
                memset(w->page.data + at, 0, nb);
                for (size_t i = 0; i < nv; i++)
                    if (col->vals.data[vpos + i])
                        w->page.data[at + i / 8] |= (char)(1 << (i % 8));
                w->page.len += nb;
            }
        } else {
            /* a page of nulls only: no values, and perhaps no buffer */
            rc = bytes ? sp_buf_append(&w->page, col->vals.data + vpos, bytes) : 0;
        }
        if (rc != 0 ||
            write_page(w, PAGE_DATA, (int32_t)(end - row),
                       use_dict ? ENC_PLAIN_DICTIONARY : ENC_PLAIN, ch) != 0)
            return -1;
        row = end;
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
        if (write_chunk(w, c, &rg->cols[c]) != 0) return -1;
        rg->uncomp += rg->cols[c].uncomp;
        rg->comp += rg->cols[c].comp;
        sp_buf_reset(&w->cols[c].defs);
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
    default:
        u = (uint64_t)v->v.i;
    }
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(u >> (8 * i));
    col->vals.len += 8;
    return 0;
}

int sp_pq_append(sp_pq_writer *w, const char **err) {
    const sp_schema *s = w->s;
    int64_t added = 0;
    int rc = w->failed;
    for (int32_t c = 0; c < s->ncolumns && rc == 0; c++) {
        const sp_value *v = &s->vals[s->leaves[c]];
        pq_col *col = &w->cols[c];
        size_t before = col->vals.len;
        rc = sp_buf_putc(&col->defs, (char)v->def);
        if (rc == 0 && v->present) {
            rc = put_value(col, &s->nodes[s->leaves[c]], v);
            col->nvals++;
        }
        added += (int64_t)(col->vals.len - before) + 1;
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

static void schema_element(sp_thrift *t, const sp_schema *s, int32_t n) {
    const sp_schema_node *nd = &s->nodes[n];
    sp_thrift_begin(t, 0);
    if (nd->type != SP_SCH_STRUCT) sp_thrift_i32(t, 1, physical(nd->type));
    if (n > 0) sp_thrift_i32(t, 3, nd->nullable ? 1 : 0);
    sp_thrift_binary(t, 4, nd->name, nd->name_len);
    if (nd->type == SP_SCH_STRUCT) sp_thrift_i32(t, 5, nd->nkids);
    if (nd->type == SP_SCH_STRING) {
        sp_thrift_i32(t, 6, CONV_UTF8);
        sp_thrift_begin(t, 10); /* LogicalType.STRING */
        sp_thrift_begin(t, 1);
        sp_thrift_end(t);
        sp_thrift_end(t);
    } else if (nd->type == SP_SCH_TIMESTAMP) {
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
    }
    sp_thrift_end(t);
}

static void column_chunk(sp_thrift *t, const sp_pq_writer *w, int32_t c,
                         const pq_rg *rg) {
    const sp_schema *s = w->s;
    const pq_chunk *ch = &rg->cols[c];
    int32_t leaf = s->leaves[c];
    const sp_schema_node *nd = &s->nodes[leaf];
    int32_t chain[SP_SCHEMA_DEPTH], k = 0;
    for (int32_t n = leaf; n > 0 && k < SP_SCHEMA_DEPTH; n = s->nodes[n].parent)
        chain[k++] = n;
    sp_thrift_begin(t, 0);
    sp_thrift_i64(t, 2, ch->dict_off >= 0 ? ch->dict_off : ch->data_off);
    sp_thrift_begin(t, 3);
    sp_thrift_i32(t, 1, physical(nd->type));
    sp_thrift_list(t, 2, SP_TT_I32, 2);
    sp_thrift_elem_i32(t, ENC_RLE);
    sp_thrift_elem_i32(t, ch->dict_off >= 0 ? ENC_PLAIN_DICTIONARY : ENC_PLAIN);
    sp_thrift_list(t, 3, SP_TT_BINARY, k);
    while (k-- > 0)
        sp_thrift_elem_binary(t, s->nodes[chain[k]].name, s->nodes[chain[k]].name_len);
    sp_thrift_i32(t, 4, w->o.codec);
    sp_thrift_i64(t, 5, rg->rows);
    sp_thrift_i64(t, 6, ch->uncomp);
    sp_thrift_i64(t, 7, ch->comp);
    sp_thrift_i64(t, 9, ch->data_off);
    if (ch->dict_off >= 0) sp_thrift_i64(t, 11, ch->dict_off);
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
    sp_thrift_i32(&t, 1, 1);
    sp_thrift_list(&t, 2, SP_TT_STRUCT, s->nnodes);
    for (int32_t n = 0; n < s->nnodes; n++) schema_element(&t, s, n);
    sp_thrift_i64(&t, 3, w->total_rows);
    sp_thrift_list(&t, 4, SP_TT_STRUCT, w->nrgs);
    for (int32_t i = 0; i < w->nrgs; i++) {
        const pq_rg *rg = &w->rgs[i];
        sp_thrift_begin(&t, 0);
        sp_thrift_list(&t, 1, SP_TT_STRUCT, s->ncolumns);
        for (int32_t c = 0; c < s->ncolumns; c++) column_chunk(&t, w, c, rg);
        sp_thrift_i64(&t, 2, rg->uncomp);
        sp_thrift_i64(&t, 3, rg->rows);
        sp_thrift_i64(&t, 5, rg->offset);
        sp_thrift_i64(&t, 6, rg->comp);
        sp_thrift_end(&t);
    }
    static const char created_by[] = "sproc version " SPROC_VERSION;
    sp_thrift_binary(&t, 6, created_by, sizeof created_by - 1);
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
