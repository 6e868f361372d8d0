/* Results: a window's JSON, queued until the batch's records are done; updates at once or per interval; windows closed as stream time passes them. */
#include "sp_window_int.h"

int sp_window_json_result(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key, size_t klen,
                       sp_buf *b, const acc_hdr *h, double (*s)[2]) {
    int rc = 0;
    sp_buf_reset(b);
    rc |= sp_buf_append(b, "{\"window_start\":", 16);
    rc |= sp_json_write_int(b, h->start);
    rc |= sp_buf_append(b, ",\"window_end\":", 14);
    rc |= sp_json_write_int(b, h->end);
    for (int32_t i = 0; i < op->nagg; i++) {
        rc |= sp_buf_putc(b, ',');
        rc |= sp_json_write_string(b, op->names[i], strlen(op->names[i]));
        rc |= sp_buf_putc(b, ':');
        double v = s[i][0];
        switch (op->kinds[i]) {
        case SP_AGG_COUNT: case SP_AGG_DISTINCT: case SP_AGG_APPROX_DISTINCT:
            rc |= sp_json_write_int(b, (int64_t)v);
            continue;
        case SP_AGG_CUSTOM: {
            /* the Lua aggregate's accumulator, as the store keeps a table
             * (JSON after its tag); its result function runs in Lua */
            const char *cv;
            size_t cl;
            sp_buf *kb = &ctx->windows->cbuf;
            double d;
            if (sp_window_dkey(kb, key, klen, h->start, 0x40 | i, NULL, 0) != 0 ||
                sp_store_get(ctx, op->distinct, part, kb->data, kb->len, &cv, &cl) != 1 || cl < 1)
                rc |= sp_buf_append(b, "null", 4);
            else if (cv[0] == SP_VAL_JSON)
                rc |= sp_buf_append(b, cv + 1, cl - 1);
            else if (cv[0] == SP_VAL_NUMBER && cl == 1 + sizeof d && (memcpy(&d, cv + 1, sizeof d), 1))
                rc |= isfinite(d) ? sp_json_write_number(b, d) : sp_buf_append(b, "null", 4);
            else if (cv[0] == SP_VAL_STRING)
                rc |= sp_json_write_string(b, cv + 1, cl - 1);
            else if (cv[0] == SP_VAL_TRUE || cv[0] == SP_VAL_FALSE)
                rc |= cv[0] == SP_VAL_TRUE ? sp_buf_append(b, "true", 4) : sp_buf_append(b, "false", 5);
            else
                rc |= sp_buf_append(b, "null", 4);
            continue;
        }
        case SP_AGG_AVG: v = s[i][1] > 0 ? s[i][0] / s[i][1] : NAN; break;
        case SP_AGG_FIRST: case SP_AGG_LAST: if (isinf(s[i][1])) v = NAN; break;
        case SP_AGG_MIN: case SP_AGG_MAX: if (isinf(v)) v = NAN; break;
        }
        rc |= isnan(v) ? sp_buf_append(b, "null", 4) : sp_json_write_number(b, v);
    }
    rc |= sp_buf_putc(b, '}');
    return rc ? SP_ENOMEM : SP_OK;
}

int sp_window_queue_result(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key,
                        size_t klen, const acc_hdr *h, double (*s)[2], int tombstone) {
    sp_windows *w = ctx->windows;
    if (w->npend == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        pending *p = realloc(w->pend, cap * sizeof *p);
        if (!p) return SP_ENOMEM;
        w->pend = p;
        w->cap = cap;
    }
    pending *p = &w->pend[w->npend];
    memset(p, 0, sizeof *p);
    if (!tombstone && sp_window_json_result(ctx, op, part, key, klen, &w->json, h, s) != SP_OK)
        return SP_ENOMEM;
    p->key = malloc(klen ? klen : 1);
    p->val = tombstone ? NULL : malloc(w->json.len);
    if (!p->key || (!tombstone && !p->val)) {
        free(p->key);
        free(p->val);
        return SP_ENOMEM;
    }
    memcpy(p->key, key, klen);
    p->klen = klen;
    if (!tombstone) {
        memcpy(p->val, w->json.data, w->json.len);
        p->vlen = w->json.len;
    }
    p->ts = h->max_ts;
    p->start = h->start;
    p->end = h->end;
    p->partition = part;
    p->topic = op->topic;
    p->tombstone = tombstone;
    /* a result belongs to the input segments of its partition in this
     * batch, like the store's changelog writes */
    sp_store *st = ctx->stores[op->store];
    sp_kv_part *kp = sp_kv_part_of(st, part, 0);
    p->seg = kp && kp->nsegs ? kp->segs[0] : NULL;
    w->npend++;
    return SP_OK;
}

/* Update results: at once, or with an interval only the window's latest
 * state when the interval has passed (bursts compact into one). */
int sp_window_updated(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key, size_t klen,
                   const acc_hdr *h, double (*s)[2]) {
    if (!op->deferred) return sp_window_queue_result(ctx, op, part, key, klen, h, s, 0);
    sp_windows *w = ctx->windows;
    const char *err;
    sp_kv_part *p = sp_kv_part_of(&op->changed, part, 1);
    if (!p || sp_window_wkey(&w->kbuf, key, klen, h->start) ||
        sp_kv_put(&op->changed, p, w->kbuf.data, w->kbuf.len, "", 0, 0, &err) != 0)
        return SP_ENOMEM;
    return SP_OK;
}

/* Emits the changed windows' current results (all of them, or one
 * partition's one window when it closes: wk non-NULL). */
int sp_window_emit_changed(sp_ctx *ctx, sp_winop *op, int32_t part, const char *wk, size_t wklen) {
    acc_hdr h;
    double s[MAX_AGGS][2];
    const char *v;
    size_t vl;
    for (int32_t i = 0; i < op->changed.nparts; i++) {
        sp_kv_part *p = &op->changed.parts[i];
        if (wk && p->partition != part) continue;
        for (sp_kv_node *n = wk ? sp_kv_get(p, wk, wklen) : sp_kv_seek(p, NULL, 0, 0); n;
             n = wk ? NULL : sp_kv_seek(p, n->key, n->klen, 1)) {
            size_t ulen = ((size_t)(unsigned char)n->key[0] << 8) | (unsigned char)n->key[1];
            if (sp_store_get(ctx, op->store, p->partition, n->key, n->klen, &v, &vl) == 1 &&
                sp_window_acc_read(op, v, vl, &h, s) &&
                ((op->type == SP_WIN_SLIDING &&
                  sp_window_slide_compute(ctx, op, p->partition, n->key + 2, ulen, &h, s) != SP_OK) ||
                 sp_window_queue_result(ctx, op, p->partition, n->key + 2, ulen, &h, s, 0) != SP_OK))
                return SP_ENOMEM;
        }
        if (wk) {
            const char *err;
            sp_kv_delete(&op->changed, p, wk, wklen, &err);
        } else {
            sp_kv_clear(&op->changed, p);
        }
    }
    return SP_OK;
}

/* --- closing ------------------------------------------------------------ */

static int close_due(sp_ctx *ctx, sp_winop *op, widx *x, int64_t stream);

/* Also when a record's time closes windows before it is added (sliding
 * windows, panes): what those windows kept must still be visible, however
 * far the record moved stream time (sp_ctx.ttl_hold). */
int sp_window_close_due(sp_ctx *ctx, sp_winop *op, widx *x, int64_t stream) {
    int held = ctx->ttl_hold;
    ctx->ttl_hold = 1;
    int rc = close_due(ctx, op, x, stream);
    ctx->ttl_hold = held;
    return rc;
}

static int close_due(sp_ctx *ctx, sp_winop *op, widx *x, int64_t stream) {
    sp_windows *w = ctx->windows;
    acc_hdr h;
    double s[MAX_AGGS][2];
    const char *v, *err;
    size_t vl;
    while (x->n > 0 && (w->close_all || x->h[0].close_at <= stream)) {
        hent e = x->h[0];
        x->h[0] = x->h[--x->n];
        sp_window_sift_down(x->h, x->n, 0);
        int rc = SP_OK;
        if (op->panes) {
            rc = sp_window_close_panes(ctx, op, x, &e);
        } else if (sp_window_wkey(&w->kbuf, e.key, e.klen, e.start) == 0 &&
            sp_store_get(ctx, op->store, x->partition, w->kbuf.data, w->kbuf.len, &v, &vl) == 1 &&
            sp_window_acc_read(op, v, vl, &h, s) && (w->close_all || sp_window_close_at(op, &h) <= stream) &&
            sp_window_close_at(op, &h) == e.close_at) {
            if (op->type == SP_WIN_SLIDING)
                rc = sp_window_slide_compute(ctx, op, x->partition, e.key, e.klen, &h, s);
            if (rc != SP_OK) {
            } else if (!op->update)
                rc = sp_window_queue_result(ctx, op, x->partition, e.key, e.klen, &h, s, 0);
            else if (op->deferred && sp_window_wkey(&w->kbuf, e.key, e.klen, e.start) == 0) {
                /* its last change must not wait for an interval that
                 * would find it gone */
                char *k = malloc(w->kbuf.len);
                if (!k) return SP_ENOMEM;
                memcpy(k, w->kbuf.data, w->kbuf.len);
                rc = sp_window_emit_changed(ctx, op, x->partition, k, w->kbuf.len);
                free(k);
            }
            if (rc == SP_OK && sp_window_wkey(&w->kbuf, e.key, e.klen, e.start) == 0)
                rc = sp_store_delete(ctx, op->store, x->partition, w->kbuf.data, w->kbuf.len,
                                     &err);
            if (rc == SP_OK)
                rc = sp_window_each_distinct(ctx, op, x->partition, e.key, e.klen, e.start, sp_window_drop_one, NULL);
        }
        free(e.key);
        if (rc != SP_OK) return rc;
    }
    return SP_OK;
}
