/* The open-window index: a heap per partition ordered by when windows close, rebuilt from the window store after a restart, reload or restore (with the aggregation's stream time, kept in the store). */
#include "sp_window_int.h"

/* After a restart or a restore the open windows are in the store only:
 * put them in the heap before the partition's first use. */
/* The aggregation's stream time of a partition is kept in its window
 * store under a key no window has (2 bytes), so that a restart goes on
 * from it, changelogged with the windows. */
static const char STREAM_KEY[2] = {'\xff', '\xff'};

void sp_window_free_idx(widx *x) {
    for (size_t i = 0; i < x->n; i++) free(x->h[i].key);
    free(x->h);
    x->h = NULL;
    x->n = x->cap = 0;
    x->built = 0;
}

/* --- the open-window index ---------------------------------------------- */

widx *sp_window_index_of(sp_winop *op, int32_t part) {
    for (int32_t i = 0; i < op->nidx; i++)
        if (op->idx[i].partition == part) return &op->idx[i];
    widx *x = realloc(op->idx, (size_t)(op->nidx + 1) * sizeof *x);
    if (!x) return NULL;
    op->idx = x;
    x = &op->idx[op->nidx++];
    memset(x, 0, sizeof *x);
    x->partition = part;
    x->stream = x->last_wall = x->last_event = x->saved = -1;
    return x;
}

static void sift_up(hent *h, size_t i) {
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].close_at <= h[i].close_at) break;
        hent t = h[p];
        h[p] = h[i];
        h[i] = t;
        i = p;
    }
}

void sp_window_sift_down(hent *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && h[l].close_at < h[m].close_at) m = l;
        if (r < n && h[r].close_at < h[m].close_at) m = r;
        if (m == i) break;
        hent t = h[m];
        h[m] = h[i];
        h[i] = t;
        i = m;
    }
}

int sp_window_heap_push(widx *x, int64_t close, int64_t start, const char *key, size_t klen) {
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 64;
        hent *h = realloc(x->h, cap * sizeof *h);
        if (!h) return -1;
        x->h = h;
        x->cap = cap;
    }
    hent *e = &x->h[x->n];
    e->key = malloc(klen ? klen : 1);
    if (!e->key) return -1;
    memcpy(e->key, key, klen);
    e->klen = (uint32_t)klen;
    e->close_at = close;
    e->start = start;
    sift_up(x->h, x->n++);
    return 0;
}

int sp_window_save_stream(sp_ctx *ctx, sp_winop *op, widx *x) {
    const char *err;
    if (x->stream == x->saved) return SP_OK;
    int rc = sp_store_put_at(ctx, op->store, x->partition, STREAM_KEY, 2,
                             (const char *)&x->stream, sizeof x->stream, x->stream, &err);
    if (rc == SP_OK) x->saved = x->stream;
    return rc;
}

/* An accumulator of this shape: the aggregation's (its tag, size and, for
 * fixed windows, its length); 0 for one kept under another layout (the
 * aggregation's window sizes, emit mode or aggregates changed but its
 * name did not), -1 for what is not an accumulator. */
int sp_window_fits(const sp_winop *op, const char *v, size_t vl, const acc_hdr *h) {
    if (vl < 1 || (v[0] != 'w' && v[0] != 'p')) return -1;
    if (v[0] != op->tag || vl != sp_window_acc_size(op)) return 0;
    if (op->type == SP_WIN_TUMBLING || op->type == SP_WIN_HOPPING)
        return h->end - h->start == (op->panes ? op->advance : op->size);
    return 1;
}

int sp_window_build_index(sp_ctx *ctx, sp_winop *op, widx *x, const char **err) {
    const char *k, *v;
    size_t kl, vl;
    if (sp_store_get(ctx, op->store, x->partition, STREAM_KEY, 2, &v, &vl) == 1 &&
        vl == sizeof(int64_t)) {
        int64_t t;
        memcpy(&t, v, sizeof t);
        if (t > x->stream) x->stream = t;
        x->saved = t;
    }
    acc_hdr h;
    double s[MAX_AGGS][2];
    const char *from = NULL;
    size_t flen = 0;
    int strict = 0, rc = SP_OK;
    char *last = NULL, *prev = NULL;
    size_t prevlen = 0;
    x->built = 1;
    while (rc == SP_OK && sp_store_next(ctx, op->store, x->partition, from, flen, strict, &k,
                                        &kl, &v, &vl) == 1) {
        char *copy = malloc(kl);
        if (!copy) {
            rc = SP_ENOMEM;
            break;
        }
        memcpy(copy, k, kl);
        from = copy;
        flen = kl;
        strict = 1;
        if (kl < 10) { /* the stream-time entry */
            free(last);
            last = copy;
            continue;
        }
        if (vl >= 1 + sizeof h) memcpy(&h, v + 1, sizeof h);
        int f = vl >= 1 + sizeof h ? sp_window_fits(op, v, vl, &h) : -1;
        if (f == 0) {
            static char msg[512];
            snprintf(msg, sizeof msg,
                     "aggregate(%s): its store holds windows kept another way (the "
                     "window's size, advance, emit mode or aggregates changed under the "
                     "same name): keep them, or give the aggregation a new name",
                     op->name);
            *err = msg;
            rc = SP_EINVAL;
        } else if (f > 0 && sp_window_acc_read(op, v, vl, &h, s)) {
            size_t ulen = ((size_t)(unsigned char)k[0] << 8) | (unsigned char)k[1];
            if (!op->panes) {
                if (sp_window_heap_push(x, sp_window_close_at(op, &h), h.start, copy + 2, ulen) != 0) rc = SP_ENOMEM;
            } else if (!prev || prevlen != kl || memcmp(prev, copy, kl - 8) != 0) {
                /* a key's first pane: its cursor, at the first window
                 * still open */
                rc = sp_window_set_cursor(op, x->partition, copy + 2, ulen,
                                sp_window_first_window(op, h.start, x->stream), x);
                free(prev);
                prev = malloc(kl);
                if (prev) memcpy(prev, copy, kl), prevlen = kl;
            }
        }
        free(last);
        last = copy;
    }
    free(last);
    free(prev);
    return rc;
}
