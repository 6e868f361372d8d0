/* Interactive queries of an aggregation's store: its open windows as the
 * results they would give now. A window closes (and leaves the store) when
 * stream time passes it, so what a query sees is what is still open. */
#include "sp_window_int.h"

static sp_winop *op_of_store(sp_ctx *ctx, int32_t store) {
    sp_windows *w = ctx->windows;
    for (int32_t i = 0; w && i < w->nops; i++)
        if (w->ops[i]->store == store) return w->ops[i];
    return NULL;
}

int sp_window_is_store(sp_ctx *ctx, int32_t store) { return op_of_store(ctx, store) != NULL; }

typedef struct pane {
    int64_t start;
    acc_hdr h;
    double s[MAX_AGGS][2];
} pane;

typedef struct query {
    sp_ctx *ctx;
    sp_winop *op;
    int32_t part;
    int64_t from, to;
    sp_window_query_fn fn;
    void *arg;
    sp_buf json;
    pane *panes; /* a pane layout's current key's */
    size_t npanes, cap;
    sp_buf pkey; /* that key */
} query;

static int give(query *q, const char *key, size_t klen, acc_hdr *h, double (*s)[2], int *stop) {
    if (h->start < q->from || h->start > q->to) return SP_OK;
    int rc = sp_window_json_result(q->ctx, q->op, q->part, key, klen, &q->json, h, s);
    if (rc == SP_OK && q->fn(q->arg, key, klen, q->json.data, q->json.len)) *stop = 1;
    return rc;
}

/* Hopping windows kept as panes: each window from the key's cursor on
 * that holds a pane is the merge of its panes. */
static int give_panes(query *q, int *stop) {
    if (q->npanes == 0) return SP_OK;
    sp_winop *op = q->op;
    const char *key = q->pkey.data;
    size_t klen = q->pkey.len;
    int64_t *cur = sp_window_cursor_of(op, q->part, key, klen);
    int64_t first = q->panes[0].start - op->size + op->advance;
    if (first < 0) first = 0;
    if (cur && *cur > first) first = *cur;
    int64_t last = q->panes[q->npanes - 1].start;
    int rc = SP_OK;
    for (int64_t s0 = first; rc == SP_OK && !*stop && s0 <= last; s0 += op->advance) {
        acc_hdr h;
        double s[MAX_AGGS][2];
        sp_window_acc_init(op, &h, s, s0, s0 + op->size);
        int any = 0;
        for (size_t i = 0; i < q->npanes; i++)
            if (q->panes[i].start >= s0 && q->panes[i].start < s0 + op->size) {
                sp_window_acc_merge(op, &h, s, &q->panes[i].h, q->panes[i].s);
                any = 1;
            }
        h.start = s0;
        h.end = s0 + op->size;
        if (any) rc = give(q, key, klen, &h, s, stop);
    }
    q->npanes = 0;
    return rc;
}

static int add_pane(query *q, const char *key, size_t klen, int64_t start, const acc_hdr *h,
                    double (*s)[2], int *stop) {
    if (q->npanes > 0 && (q->pkey.len != klen || memcmp(q->pkey.data, key, klen) != 0)) {
        int rc = give_panes(q, stop);
        if (rc != SP_OK || *stop) return rc;
    }
    if (q->npanes == 0) {
        sp_buf_reset(&q->pkey);
        if (sp_buf_append(&q->pkey, key, klen)) return SP_ENOMEM;
    }
    if (q->npanes == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        pane *p = realloc(q->panes, cap * sizeof *p);
        if (!p) return SP_ENOMEM;
        q->panes = p;
        q->cap = cap;
    }
    pane *p = &q->panes[q->npanes++];
    p->start = start;
    p->h = *h;
    memcpy(p->s, s, 16 * (size_t)q->op->nagg);
    return SP_OK;
}

int sp_window_query(sp_ctx *ctx, int32_t store, int32_t partition, const char *key,
                    size_t klen, int64_t from, int64_t to, sp_window_query_fn fn, void *arg) {
    sp_winop *op = op_of_store(ctx, store);
    if (!op) return SP_EINVAL;
    query q = {ctx, op, partition, from, to, fn, arg, {0}, NULL, 0, 0, {0}};
    sp_buf_init(&q.json);
    sp_buf_init(&q.pkey);
    sp_buf seek;
    sp_buf_init(&seek);
    int rc = key && sp_window_wkey(&seek, key, klen, 0) ? SP_ENOMEM : SP_OK;
    int strict = 0, stop = 0;
    const char *k, *v;
    size_t kl, vl;
    while (rc == SP_OK && !stop &&
           sp_store_next(ctx, store, partition, seek.len ? seek.data : NULL, seek.len, strict,
                         &k, &kl, &v, &vl) == 1) {
        sp_buf_reset(&seek);
        if (sp_buf_append(&seek, k, kl)) {
            rc = SP_ENOMEM;
            break;
        }
        strict = 1;
        size_t ul = kl >= 10 ? (size_t)(((unsigned char)k[0] << 8) | (unsigned char)k[1]) : 0;
        if (kl < 10 || ul + 10 != kl) continue; /* not a window (saved stream time) */
        const char *uk = seek.data + 2;
        if (key && (ul != klen || memcmp(uk, key, klen) != 0)) break; /* past the key */
        acc_hdr h;
        double s[MAX_AGGS][2];
        if (!sp_window_acc_read(op, v, vl, &h, s)) continue;
        int64_t start = sp_window_get_be64(seek.data + kl - 8);
        if (op->panes) {
            rc = add_pane(&q, uk, ul, start, &h, s, &stop);
            continue;
        }
        if (op->type == SP_WIN_SLIDING) rc = sp_window_slide_compute(ctx, op, partition, uk, ul, &h, s);
        if (rc == SP_OK) rc = give(&q, uk, ul, &h, s, &stop);
    }
    if (rc == SP_OK && !stop) rc = give_panes(&q, &stop);
    free(q.panes);
    sp_buf_destroy(&q.json);
    sp_buf_destroy(&q.pkey);
    sp_buf_destroy(&seek);
    return rc;
}
