/* Session windows, by Kafka Streams' rules. */
#include "sp_window_int.h"

/* Sessions of key that the record at ts touches (at most the gap away)
 * merge with it into one (Kafka Streams' findSessions). A session that
 * stream time closed is not among them, whether or not the batch's end
 * removed it yet, so that results do not depend on batching. A record
 * whose merged session would end before stream time - gap - grace is
 * late, and changes nothing. */
int sp_window_add_session(sp_ctx *ctx, sp_winop *op, int32_t part, widx *x, const char *key,
                       size_t klen, int64_t ts, int64_t stream, const double *vals,
                       const char *const *sv, const size_t *sl, const char **err) {
    sp_windows *w = ctx->windows;
    acc_hdr h, oh;
    double s[MAX_AGGS][2], o[MAX_AGGS][2];
    /* as Kafka Streams: a fresh accumulator, the sessions merged into it
     * in time order, then the record (so that last() of equal times is
     * the record's, first() the earlier one's) */
    sp_window_acc_init(op, &h, s, ts, ts);
    /* a key's sessions are adjacent in the store, in start order */
    int64_t merged[64];
    int nmerged = 0;
    if (sp_window_wkey(&w->kbuf, key, klen, 0)) return SP_ENOMEM;
    char *from = malloc(w->kbuf.len);
    if (!from) return SP_ENOMEM;
    memcpy(from, w->kbuf.data, w->kbuf.len);
    size_t flen = w->kbuf.len;
    int strict = 0, rc = SP_OK;
    const char *k, *v;
    size_t kl, vl;
    while (nmerged < 64 && sp_store_next(ctx, op->store, part, from, flen, strict, &k, &kl, &v,
                                         &vl) == 1) {
        if (kl != klen + 10 || memcmp(k + 2, key, klen) != 0 ||
            (size_t)(((unsigned char)k[0] << 8) | (unsigned char)k[1]) != klen)
            break;
        memcpy(from, k, kl); /* same length as the probe */
        strict = 1;
        if (!sp_window_acc_read(op, v, vl, &oh, o)) continue;
        if (oh.start > ts + op->size) break; /* later sessions are further away */
        if (oh.end < ts - op->size || sp_window_close_at(op, &oh) <= stream) continue;
        sp_window_acc_merge(op, &h, s, &oh, o);
        merged[nmerged++] = oh.start;
    }
    sp_window_acc_add(op, &h, s, ts, vals);
    /* late: the merged session closed already */
    if (h.end < stream - op->grace - op->size) {
        free(from);
        return 1;
    }
    /* update: each merged session's result is withdrawn (a tombstone),
     * as Kafka Streams removes and forwards it */
    for (int i = 0; i < nmerged && op->update && rc == SP_OK; i++) {
        if (sp_window_wkey(&w->kbuf, key, klen, merged[i]) ||
            sp_store_get(ctx, op->store, part, w->kbuf.data, w->kbuf.len, &v, &vl) != 1 ||
            !sp_window_acc_read(op, v, vl, &oh, o))
            rc = SP_ENOMEM;
        else
            rc = sp_window_queue_result(ctx, op, part, key, klen, &oh, o, 1);
    }
    free(from);
    if (rc != SP_OK) return rc;
    move_arg m = {key, klen, &h};
    w->njoined = 0;
    if (op->custom && sp_window_note_joined(w, h.start, h.end, 1) != SP_OK) return SP_ENOMEM;
    for (int i = 0; i < nmerged && w->nmerged < 64; i++) w->merged[w->nmerged++] = merged[i];
    for (int i = 0; i < nmerged; i++) {
        if (sp_window_wkey(&w->kbuf, key, klen, merged[i])) return SP_ENOMEM;
        rc = sp_store_delete(ctx, op->store, part, w->kbuf.data, w->kbuf.len, err);
        if (rc == SP_OK && merged[i] != h.start)
            rc = sp_window_each_distinct(ctx, op, part, key, klen, merged[i], sp_window_move_one, &m);
        if (rc != SP_OK) return rc;
    }
    rc = sp_window_distinct_add(ctx, op, part, key, klen, &h, s, sv, sl, err);
    if (rc == SP_OK && nmerged > 0 && op->distinct >= 0)
        rc = sp_window_distinct_recount(ctx, op, part, key, klen, &h, s);
    if (rc != SP_OK) return rc;
    rc = sp_window_acc_write(ctx, op, part, key, klen, &h, s, err);
    if (rc != SP_OK) return rc;
    /* the heap keeps stale entries of merged sessions: closing skips them */
    if (sp_window_heap_push(x, sp_window_close_at(op, &h), h.start, key, klen) != 0) return SP_ENOMEM;
    if (op->update && sp_window_updated(ctx, op, part, key, klen, &h, s) != SP_OK) return SP_ENOMEM;
    return 0;
}
