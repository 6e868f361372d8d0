/* Tumbling and hopping windows: a record in every window [s, s + size) that holds it; hopping windows with final results keep panes of advance ms instead. */
#include "sp_window_int.h"

int sp_window_add_to(sp_ctx *ctx, sp_winop *op, int32_t part, widx *x, const char *key,
                  size_t klen, int64_t start, int64_t end, int64_t ts, const double *vals,
                  const char *const *sv, const size_t *sl, int *made, const char **err) {
    sp_windows *w = ctx->windows;
    acc_hdr h;
    double s[MAX_AGGS][2];
    const char *v;
    size_t vl;
    sp_window_wkey_start(&w->rkey, start);
    /* in memory: the accumulator changes in place, one lookup */
    int created, found, rc;
    char *acc = sp_store_upsert(ctx, op->store, part, w->rkey.data, w->rkey.len,
                                    sp_window_acc_size(op), end, &created, err);
    if (acc) {
        found = !created && sp_window_acc_read(op, acc, sp_window_acc_size(op), &h, s);
        if (!found) sp_window_acc_init(op, &h, s, start, end);
        sp_window_acc_add(op, &h, s, ts, vals);
        rc = op->distinct >= 0 ? sp_window_distinct_add(ctx, op, part, key, klen, &h, s, sv, sl, err)
                               : SP_OK;
        if (rc != SP_OK) return rc;
        acc[0] = op->tag;
        memcpy(acc + 1, &h, sizeof h);
        memcpy(acc + 1 + sizeof h, s, 16 * (size_t)op->nagg);
    } else if (created < 0) {
        return SP_ENOMEM;
    } else {
        found = sp_store_get(ctx, op->store, part, w->rkey.data, w->rkey.len, &v, &vl) == 1 &&
                sp_window_acc_read(op, v, vl, &h, s);
        if (!found) sp_window_acc_init(op, &h, s, start, end);
        sp_window_acc_add(op, &h, s, ts, vals);
        rc = sp_window_distinct_add(ctx, op, part, key, klen, &h, s, sv, sl, err);
        if (rc != SP_OK) return rc;
        rc = sp_window_acc_write(ctx, op, part, key, klen, &h, s, err);
        if (rc != SP_OK) return rc;
    }
    if (made) *made = !found;
    if (op->custom && sp_window_note_joined(w, start, end, !found) != SP_OK) return SP_ENOMEM;
    /* a window closes from the heap; panes through their key's cursor */
    if (!found && !op->panes && sp_window_heap_push(x, sp_window_close_at(op, &h), start, key, klen) != 0)
        return SP_ENOMEM;
    if (op->update && sp_window_updated(ctx, op, part, key, klen, &h, s) != SP_OK) return SP_ENOMEM;
    return SP_OK;
}

/* --- panes ---------------------------------------------------------------- */

/* The earliest window that holds pane p and is still open at stream time
 * stream: its start is a multiple of advance, at least 0, above
 * stream - size - grace (a window closes when stream time reaches its end
 * plus grace). Above p when every window of the pane has closed. */
int64_t sp_window_first_window(const sp_winop *op, int64_t p, int64_t stream) {
    int64_t s = p - op->size + op->advance;
    if (s < 0) s = 0;
    if (stream >= 0) {
        int64_t lim = stream - op->size - op->grace, q = lim / op->advance;
        if (lim % op->advance != 0 && lim < 0) q--;
        int64_t open = (q + 1) * op->advance; /* the smallest multiple above lim */
        if (open > s) s = open;
    }
    return s;
}

/* A key's cursor (NULL: it has no panes), and its setting. */
int64_t *sp_window_cursor_of(sp_winop *op, int32_t part, const char *key, size_t klen) {
    sp_kv_part *p = sp_kv_part_of(&op->cursors, part, 0);
    sp_kv_node *n = p ? sp_kv_get(p, key, klen) : NULL;
    return n ? (int64_t *)(void *)n->val : NULL;
}

int sp_window_set_cursor(sp_winop *op, int32_t part, const char *key, size_t klen, int64_t c,
                      widx *x) {
    const char *err;
    sp_kv_part *p = sp_kv_part_of(&op->cursors, part, 1);
    if (!p || sp_kv_put(&op->cursors, p, key, klen, (const char *)&c, sizeof c, 0, &err) != 0)
        return SP_ENOMEM;
    return sp_window_heap_push(x, c + op->size + op->grace, c, key, klen) == 0 ? SP_OK : SP_ENOMEM;
}

/* A record goes to its pane if any window it belongs to is still open;
 * *late counts those that are not. */
int sp_window_add_pane(sp_ctx *ctx, sp_winop *op, int32_t part, widx *x, const char *key,
                    size_t klen, int64_t ts, int64_t stream, const double *vals, int *late,
                    const char **err) {
    int64_t p = ts - ts % op->advance;
    int64_t lo = p - op->size + op->advance;
    if (lo < 0) lo = 0;
    int64_t s = sp_window_first_window(op, p, stream);
    if (s > p) {
        *late = (int)((p - lo) / op->advance + 1);
        return SP_OK;
    }
    *late = (int)((s - lo) / op->advance);
    int made = 0;
    int rc = sp_window_add_to(ctx, op, part, x, key, klen, p, p + op->advance, ts, vals, NULL, NULL,
                    &made, err);
    /* a new pane may hold the key's earliest open window (a record out of
     * order): the cursor moves back to it */
    if (rc == SP_OK && made) {
        int64_t *cur = sp_window_cursor_of(op, part, key, klen);
        if (!cur || s < *cur) rc = sp_window_set_cursor(op, part, key, klen, s, x);
    }
    return rc;
}

/* The key's window at cursor e closes: its panes merge into the result
 * (when it has any: a window without records has none), those no later
 * window holds leave, and the cursor moves to the next window with a
 * pane. */
int sp_window_close_panes(sp_ctx *ctx, sp_winop *op, widx *x, const hent *e) {
    sp_windows *w = ctx->windows;
    int64_t *cur = sp_window_cursor_of(op, x->partition, e->key, e->klen);
    if (!cur || *cur != e->start) return SP_OK; /* a cursor moved since */
    int64_t c = e->start, end = c + op->size, next = -1;
    acc_hdr h, ph;
    double s[MAX_AGGS][2], ps[MAX_AGGS][2];
    sp_window_acc_init(op, &h, s, c, end);
    int any = 0, strict = 0, rc = SP_OK;
    const char *k, *v, *err;
    size_t kl, vl;
    sp_buf *from = &w->cbuf;
    if (sp_window_wkey(from, e->key, e->klen, 0) != 0) return SP_ENOMEM;
    while (rc == SP_OK && sp_store_next(ctx, op->store, x->partition, from->data, from->len,
                                        strict, &k, &kl, &v, &vl) == 1) {
        if (kl != from->len || memcmp(k, from->data, kl - 8) != 0) break; /* another key */
        int64_t pane = sp_window_get_be64(k + kl - 8);
        if (pane >= end) {
            if (next < 0) next = pane;
            break;
        }
        if (pane >= c && sp_window_acc_read(op, v, vl, &ph, ps)) {
            sp_window_acc_merge(op, &h, s, &ph, ps);
            any = 1;
        }
        if (pane >= c + op->advance && next < 0) next = pane;
        memcpy(from->data, k, kl);
        strict = 1;
        if (pane < c + op->advance)
            rc = sp_store_delete(ctx, op->store, x->partition, from->data, from->len, &err);
    }
    h.start = c;
    h.end = end;
    if (rc == SP_OK && any) rc = sp_window_queue_result(ctx, op, x->partition, e->key, e->klen, &h, s, 0);
    if (rc == SP_OK && next >= 0) {
        int64_t ns = next - op->size + op->advance;
        if (ns < c + op->advance) ns = c + op->advance;
        rc = sp_window_set_cursor(op, x->partition, e->key, e->klen, ns, x);
    } else if (rc == SP_OK) {
        sp_kv_part *p = sp_kv_part_of(&op->cursors, x->partition, 0);
        if (p) sp_kv_delete(&op->cursors, p, e->key, e->klen, &err);
    }
    return rc;
}
