/* Sliding windows (Kafka Streams' SlidingWindows): windows [start, start + size], both ends included, defined by the records; the records are kept and a window's aggregate computed from them when needed. */
#include "sp_window_int.h"

/* --- sliding windows ------------------------------------------------------
 * Kafka Streams' SlidingWindows: windows [start, start + size], both ends
 * included, defined by the records: each record's left window ends at it,
 * and its right window starts 1 ms after it when a record follows within
 * size. The records themselves are kept (companion entries 0x20, by time)
 * and a window's aggregate is computed from them when it is needed; the
 * window store holds a marker per window. */

static uint64_t slide_seq;

typedef struct slide_acc {
    const sp_winop *op;
    acc_hdr *h;
    double (*s)[2];
} slide_acc;

int sp_window_raw_key(sp_buf *b, const char *key, size_t klen, int64_t t, uint64_t seq) {
    unsigned char tail[9];
    tail[0] = 0x20;
    for (int i = 8; i >= 1; i--, seq >>= 8) tail[i] = (unsigned char)(seq & 0xff);
    return sp_window_wkey(b, key, klen, t) || sp_buf_append(b, tail, 9);
}

/* Calls fn(t, vals) for each kept record of key with from <= t <= to. */
int sp_window_each_raw(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key, size_t klen,
                    int64_t from, int64_t to,
                    void (*fn)(void *arg, int64_t t, const double *vals), void *arg) {
    sp_windows *w = ctx->windows;
    if (from < 0) from = 0;
    if (sp_window_wkey(&w->cbuf, key, klen, from)) return SP_ENOMEM;
    size_t plen = 2 + klen;
    char *cur = malloc(w->cbuf.len + 9);
    if (!cur) return SP_ENOMEM;
    memcpy(cur, w->cbuf.data, w->cbuf.len);
    size_t curlen = w->cbuf.len;
    int strict = 0;
    const char *k, *v;
    size_t kl, vl;
    while (sp_store_next(ctx, op->distinct, part, cur, curlen, strict, &k, &kl, &v, &vl) == 1) {
        /* the key's entries are in time order; Lua aggregates keep
         * entries of their own among them (shorter) */
        if (kl < plen + 9 || kl > plen + 17 || memcmp(k, cur, plen) != 0) break;
        int64_t t = sp_window_get_be64(k + plen);
        if (t > to) break;
        memcpy(cur, k, kl);
        curlen = kl;
        strict = 1;
        if (kl != plen + 17 || (unsigned char)k[plen + 8] != 0x20 ||
            vl != 8 * (size_t)op->nagg)
            continue;
        double vals[MAX_AGGS];
        memcpy(vals, v, vl);
        fn(arg, t, vals);
    }
    free(cur);
    return SP_OK;
}

static void slide_add(void *arg, int64_t t, const double *vals) {
    slide_acc *a = arg;
    sp_window_acc_add(a->op, a->h, a->s, t, vals);
}

static void slide_any(void *arg, int64_t t, const double *vals) {
    (void)t, (void)vals;
    *(int *)arg = 1;
}

static void slide_times(void *arg, int64_t t, const double *vals) {
    (void)vals;
    int64_t *a = arg; /* a[0]: count, then times */
    if (a[0] < 255 && (a[0] == 0 || a[a[0]] != t)) a[++a[0]] = t;
}

/* The window's aggregate, from its records. */
int sp_window_slide_compute(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key, size_t klen,
                         acc_hdr *h, double (*s)[2]) {
    int64_t start = h->start, end = h->end;
    sp_window_acc_init(op, h, s, start, end);
    slide_acc a = {op, h, s};
    return sp_window_each_raw(ctx, op, part, key, klen, start, end, slide_add, &a);
}

/* A window marker, made once: 1 when it is new, 0 when it exists or
 * closed already. */
int sp_window_slide_window(sp_ctx *ctx, sp_winop *op, int32_t part, widx *x, const char *key,
                        size_t klen, int64_t start, int64_t stream, const char **err) {
    sp_windows *w = ctx->windows;
    const char *v;
    size_t vl;
    acc_hdr h;
    double s[MAX_AGGS][2];
    int64_t end = start + op->size;
    if (end + 1 + op->grace <= stream) return 0; /* closed already */
    if (sp_window_wkey(&w->kbuf, key, klen, start)) return SP_ENOMEM;
    if (sp_store_get(ctx, op->store, part, w->kbuf.data, w->kbuf.len, &v, &vl) == 1) return 0;
    sp_window_acc_init(op, &h, s, start, end);
    int rc = sp_window_acc_write(ctx, op, part, key, klen, &h, s, err);
    if (rc != SP_OK) return rc;
    if (sp_window_heap_push(x, sp_window_close_at(op, &h), start, key, klen) != 0) return SP_ENOMEM;
    return 1;
}

/* A record at t (Kafka Streams' KStreamSlidingWindowAggregate): dropped
 * when even [t, t + size] is behind stream time - grace; otherwise kept,
 * in every open window that holds it (its left window [t - size, t] only
 * when that is still open: a record late for it counts as late), with its
 * right window [t + 1, t + 1 + size] made when a record follows within
 * size, and the right windows of the records before it within size. */
int sp_window_add_sliding(sp_ctx *ctx, sp_winop *op, int32_t part, widx *x, const char *key,
                       size_t klen, int64_t t, int64_t stream, const double *vals,
                       const char **err) {
    sp_windows *w = ctx->windows;
    if (t + op->size + op->grace < stream) return 1;
    int late = t + op->grace < stream;
    if (sp_window_raw_key(&w->kbuf, key, klen, t, ++slide_seq + (uint64_t)ctx->wall_ms * 1000000u))
        return SP_ENOMEM;
    int rc = sp_store_put_at(ctx, op->distinct, part, w->kbuf.data, w->kbuf.len,
                             (const char *)vals, 8 * (size_t)op->nagg, t, err);
    if (rc != SP_OK) return rc;
    w->njoined = 0;
    /* the windows that hold it and are new (for the Lua aggregates) */
    int64_t made[257];
    int nmade = 0;
    /* the left window; early records share [0, size] */
    int64_t left = t - op->size < 0 ? 0 : t - op->size;
    rc = sp_window_slide_window(ctx, op, part, x, key, klen, left, stream, err);
    if (rc > 0) made[nmade++] = left;
    /* its right window, when a record follows within size: a window it
     * is not in, new all the same */
    int after = 0, right = 0;
    if (rc >= 0) rc = sp_window_each_raw(ctx, op, part, key, klen, t + 1, t + op->size, slide_any, &after);
    if (rc >= 0 && after) rc = right = sp_window_slide_window(ctx, op, part, x, key, klen, t + 1, stream, err);
    /* the right windows of the records before it within size now hold a
     * record */
    int64_t times[256] = {0};
    if (rc >= 0) rc = sp_window_each_raw(ctx, op, part, key, klen, t - op->size, t - 1, slide_times, times);
    for (int64_t i = 1; rc >= 0 && i <= times[0]; i++) {
        rc = sp_window_slide_window(ctx, op, part, x, key, klen, times[i] + 1, stream, err);
        if (rc > 0) made[nmade++] = times[i] + 1;
    }
    if (rc < 0) return rc;
    /* every open window that holds it changed (and the new right window
     * is news): results in update mode, accumulators of Lua aggregates */
    if (right > 0) {
        acc_hdr h;
        double s[MAX_AGGS][2];
        sp_window_acc_init(op, &h, s, t + 1, t + 1 + op->size);
        if ((op->update && sp_window_updated(ctx, op, part, key, klen, &h, s) != SP_OK) ||
            (op->custom && sp_window_note_joined(w, t + 1, t + 1 + op->size, 1) != SP_OK))
            return SP_ENOMEM;
    }
    if (!op->update && !op->custom) return late;
    const char *k, *v;
    size_t kl, vl;
    if (sp_window_wkey(&w->kbuf, key, klen, left)) return SP_ENOMEM;
    char *cur = malloc(w->kbuf.len);
    if (!cur) return SP_ENOMEM;
    memcpy(cur, w->kbuf.data, w->kbuf.len);
    size_t curlen = w->kbuf.len;
    int strict = 0;
    while (rc >= 0 &&
           sp_store_next(ctx, op->store, part, cur, curlen, strict, &k, &kl, &v, &vl) == 1) {
        acc_hdr h;
        double s[MAX_AGGS][2];
        if (kl != curlen || memcmp(k, cur, 2 + klen) != 0 || !sp_window_acc_read(op, v, vl, &h, s) ||
            h.start > t)
            break;
        memcpy(cur, k, kl);
        strict = 1;
        /* not the windows stream time closed (the batch's end removes them) */
        if (h.end < t || sp_window_close_at(op, &h) <= stream) continue;
        int is_new = 0;
        for (int i = 0; i < nmade; i++) is_new |= made[i] == h.start;
        if ((op->update && sp_window_updated(ctx, op, part, key, klen, &h, s) != SP_OK) ||
            (op->custom && sp_window_note_joined(w, h.start, h.end, is_new) != SP_OK))
            rc = SP_ENOMEM;
    }
    free(cur);
    return rc < 0 ? rc : late;
}
