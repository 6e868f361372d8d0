/* Windowed aggregation in the core: tumbling, hopping and session windows
 * over event time, with grace, emitting a window's result when it closes
 * (final) or on every change (update). Accumulators live in a window store
 * (changelogged like any store), keyed by the grouping key and the window
 * start; a heap per partition orders open windows by the stream time at
 * which they close. Results wait in a list until the batch's records are
 * done, then join the batch as records of the operator's result topic, so
 * Lua runs the operators after the aggregation in the same protected call.
 * Hopping windows with final results and built-in aggregates keep panes
 * instead (sp_winop.panes): a record updates the one pane of `advance` ms
 * it falls in rather than every window it belongs to (12 of them for 1 h
 * by 5 min), and a closing window merges its size / advance panes.
 * Semantics follow design.md (Kafka Streams' rules). */
#include "sp_window_int.h"

sp_windows *sp_windows_of(sp_ctx *ctx) {
    if (!ctx->windows) {
        ctx->windows = calloc(1, sizeof *ctx->windows);
        if (ctx->windows) {
            sp_buf_init(&ctx->windows->json);
            sp_buf_init(&ctx->windows->kbuf);
            sp_buf_init(&ctx->windows->abuf);
            sp_buf_init(&ctx->windows->cbuf);
            sp_buf_init(&ctx->windows->rkey);
        }
    }
    return ctx->windows;
}

static void free_op(sp_winop *op) {
    if (!op) return;
    for (int32_t j = 0; j < op->nidx; j++) sp_window_free_idx(&op->idx[j]);
    free(op->idx);
    sp_kv_destroy(&op->changed);
    sp_kv_destroy(&op->cursors);
    for (int32_t j = 0; j < op->nagg; j++) free(op->names[j]);
    free(op->name);
    free(op);
}

void sp_ctx_destroy_windows(sp_ctx *ctx) {
    sp_windows *w = ctx->windows;
    if (!w) return;
    for (int32_t i = 0; i < w->nops; i++) free_op(w->ops[i]);
    free(w->ops);
    for (size_t i = 0; i < w->npend; i++) {
        free(w->pend[i].key);
        free(w->pend[i].val);
    }
    free(w->pend);
    sp_buf_destroy(&w->json);
    sp_buf_destroy(&w->kbuf);
    sp_buf_destroy(&w->abuf);
    sp_buf_destroy(&w->cbuf);
    sp_buf_destroy(&w->rkey);
    free(w->joined);
    free(w);
    ctx->windows = NULL;
}

static int check_window(int type, int64_t size, int64_t advance, int64_t grace,
                        int32_t nagg, const int32_t *kinds, const char **err) {
    if (type != SP_WIN_TUMBLING && type != SP_WIN_HOPPING && type != SP_WIN_SESSION &&
        type != SP_WIN_SLIDING) {
        *err = "unknown window type";
        return SP_EINVAL;
    }
    if (size <= 0 || grace < 0 || nagg < 0 || nagg > MAX_AGGS ||
        (type == SP_WIN_HOPPING && (advance <= 0 || advance > size))) {
        *err = "bad window sizes (size > 0, 0 < advance <= size, grace >= 0) or too "
               "many aggregates";
        return SP_EINVAL;
    }
    for (int32_t i = 0; type == SP_WIN_SLIDING && i < nagg; i++) {
        if (kinds[i] == SP_AGG_DISTINCT || kinds[i] == SP_AGG_APPROX_DISTINCT) {
            *err = "sliding windows take count, sum, min, max, avg, first, last and "
                   "aggregates written in Lua";
            return SP_EINVAL;
        }
    }
    return SP_OK;
}

static sp_winop *new_op(const char *name, int type, int64_t size, int64_t advance,
                        int64_t grace, int emit_update, int32_t nagg, const int32_t *kinds,
                        const char *const *names) {
    sp_winop *op = calloc(1, sizeof *op);
    if (!op) return NULL;
    if (sp_kv_init(&op->changed, "changed", 0, NULL, 0) != 0) {
        free(op);
        return NULL;
    }
    if (sp_kv_init(&op->cursors, "cursors", 0, NULL, 0) != 0) {
        sp_kv_destroy(&op->changed);
        free(op);
        return NULL;
    }
    int ok = (op->name = strdup(name)) != NULL;
    op->type = type;
    op->size = size;
    op->advance = type == SP_WIN_HOPPING ? advance : size;
    op->grace = grace;
    op->update = emit_update != 0;
    op->interval = emit_update > 1 ? emit_update : 0;
    op->last_emit = -1;
    op->distinct = -1;
    for (int32_t i = 0; i < nagg; i++, op->nagg++) {
        op->kinds[i] = kinds[i];
        ok = (op->names[i] = strdup(names[i])) != NULL && ok;
        if (kinds[i] == SP_AGG_CUSTOM) op->custom = 1;
    }
    if (!ok) {
        free_op(op);
        return NULL;
    }
    return op;
}

/* the values seen (exact) or the HyperLogLog registers, per window, next to
 * the accumulators; sliding windows keep their records there */
static int open_companion(sp_ctx *ctx, sp_winop *op, const char **err) {
    int needed = op->custom || op->type == SP_WIN_SLIDING;
    for (int32_t i = 0; i < op->nagg; i++)
        needed |= op->kinds[i] == SP_AGG_DISTINCT || op->kinds[i] == SP_AGG_APPROX_DISTINCT;
    if (!needed) return SP_OK;
    char dname[512];
    snprintf(dname, sizeof dname, "%s.distinct", op->name);
    op->distinct = sp_store_open(ctx, dname, SP_STORE_KV, err);
    if (op->distinct < 0) return op->distinct;
    return sp_store_set_ttl(ctx, op->distinct, COMPANION_TTL(op->size, op->grace), err);
}

int sp_window_create(sp_ctx *ctx, const char *name, int type, int64_t size,
                     int64_t advance, int64_t grace, int emit_update,
                     int32_t nagg, const int32_t *kinds,
                     const char *const *names, int32_t *topic, const char **err) {
    sp_windows *w = sp_windows_of(ctx);
    sp_winop *op = NULL;
    int rc = check_window(type, size, advance, grace, nagg, kinds, err);
    if (rc != SP_OK) goto fail;
    rc = SP_ENOMEM;
    *err = "out of memory";
    if (!w || !(op = new_op(name, type, size, advance, grace, emit_update, nagg, kinds, names)))
        goto fail;
    sp_winop **ops = realloc(w->ops, (size_t)(w->nops + 1) * sizeof *ops);
    if (!ops) goto fail;
    w->ops = ops;
    /* the accumulators: a window store of the operator's name; a window
     * leaves it when it closes (no retention: the store's clock is the
     * partition's, which may run ahead of a repartitioned input) */
    if ((rc = op->store = sp_store_open(ctx, name, SP_STORE_WINDOW, err)) < 0) goto fail;
    if ((rc = open_companion(ctx, op, err)) != SP_OK) goto fail;
    /* sliding windows compute results from their records, when needed */
    op->deferred = op->update && (op->interval > 0 || op->custom || type == SP_WIN_SLIDING);
    op->panes = type == SP_WIN_HOPPING && !op->update && op->distinct < 0 &&
                op->advance < size && size % op->advance == 0;
    op->tag = op->panes ? 'p' : 'w';
    char src[512];
    snprintf(src, sizeof src, "[window %s]", name);
    if ((rc = op->topic = sp_ctx_add_source(ctx, 4, src, err)) < 0) goto fail;
    *topic = op->topic;
    w->ops[w->nops] = op;
    return w->nops++;
fail:
    free_op(op);
    return rc;
}

int32_t sp_window_joined(sp_ctx *ctx, int64_t *starts, int64_t *ends, int32_t *made,
                         int32_t max) {
    sp_windows *w = ctx->windows;
    int32_t n = 0;
    for (; w && n < w->njoined && n < max; n++) {
        starts[n] = w->joined[n].start;
        ends[n] = w->joined[n].end;
        made[n] = w->joined[n].made;
    }
    return w ? w->njoined : 0;
}

/* Notes a window the record joined (or made, for a sliding window it is
 * not in), for the Lua aggregates. */
int sp_window_note_joined(sp_windows *w, int64_t start, int64_t end, int made) {
    if (w->njoined == w->joined_cap) {
        int32_t cap = w->joined_cap ? w->joined_cap * 2 : 16;
        struct joined *j = realloc(w->joined, (size_t)cap * sizeof *j);
        if (!j) return SP_ENOMEM;
        w->joined = j;
        w->joined_cap = cap;
    }
    w->joined[w->njoined++] = (struct joined){start, end, made};
    return SP_OK;
}

int32_t sp_window_merged(sp_ctx *ctx, int64_t *starts, int32_t max) {
    sp_windows *w = ctx->windows;
    int32_t n = 0;
    for (; w && n < w->nmerged && n < max; n++) starts[n] = w->merged[n];
    return n;
}

int32_t sp_window_companion(sp_ctx *ctx, int op) {
    sp_windows *w = ctx->windows;
    return w && op >= 0 && op < w->nops ? w->ops[op]->distinct : -1;
}

int sp_window_add(sp_ctx *ctx, int opi, const char *key, size_t klen, int64_t ts,
                  const double *vals, const char *const *sv, const size_t *sl,
                  const char **err) {
    sp_windows *w = ctx->windows;
    if (!w || opi < 0 || opi >= w->nops || !key) {
        *err = key ? "no such window operator" : "a window needs a key";
        return SP_EINVAL;
    }
    if (ctx->batch.cur < 0 || ctx->batch.cur >= ctx->batch.n) {
        *err = "no record is being processed";
        return SP_ESTATE;
    }
    if (klen > 65535) {
        *err = "a grouping key is at most 65535 bytes";
        return SP_EINVAL;
    }
    if (ts < 0) {
        *err = "a windowed record needs a time >= 0";
        return SP_EINVAL;
    }
    sp_winop *op = w->ops[opi];
    int32_t part = ctx->batch.recs[ctx->batch.cur].partition;
    w->njoined = w->nmerged = 0;
    widx *x = sp_window_index_of(op, part);
    if (!x) return SP_ENOMEM;
    /* the store's windows (after a restart, reload or restore) are indexed
     * at the stream time they were kept at: a pane's cursor is the first
     * window open then, and this record's time must not pass them by */
    if (!x->built && sp_window_build_index(ctx, op, x, err) != SP_OK) return SP_EINVAL;
    /* stream time moves before the lateness check */
    if (ts > x->stream) x->stream = ts;
    x->last_wall = ctx->wall_ms;
    x->last_event = x->stream;
    int64_t stream = x->stream;
    int late = 0, rc = SP_OK;
    if (op->type == SP_WIN_SLIDING) {
        /* a sliding window's result is computed from its records when it
         * closes: the windows this record's time closed close before it
         * is kept, so that it is not among their records whatever the
         * batch */
        rc = sp_window_close_due(ctx, op, x, stream);
        if (rc != SP_OK) return rc;
    }
    if (op->type == SP_WIN_SESSION || op->type == SP_WIN_SLIDING) {
        rc = op->type == SP_WIN_SESSION
                 ? sp_window_add_session(ctx, op, part, x, key, klen, ts, stream, vals, sv, sl, err)
                 : sp_window_add_sliding(ctx, op, part, x, key, klen, ts, stream, vals, err);
        late = rc == 1;
        rc = rc == 1 ? SP_OK : rc;
    } else if (op->panes) {
        /* windows the record is late for close before it joins a pane they
         * share with windows it is not late for */
        rc = sp_window_close_due(ctx, op, x, stream);
        if (rc == SP_OK && sp_window_wkey(&w->rkey, key, klen, 0)) return SP_ENOMEM;
        if (rc == SP_OK) rc = sp_window_add_pane(ctx, op, part, x, key, klen, ts, stream, vals, &late, err);
    } else {
        /* every window [s, s + size) with s <= ts < s + size, s a multiple
         * of advance (Kafka Streams' windowsFor) */
        if (sp_window_wkey(&w->rkey, key, klen, 0)) return SP_ENOMEM;
        int64_t first = ts - ts % op->advance;
        for (int64_t s = first; s >= 0 && s > ts - op->size && rc == SP_OK; s -= op->advance) {
            int64_t e = s + op->size;
            if (e <= stream - op->grace) {
                late++;
                continue;
            }
            rc = sp_window_add_to(ctx, op, part, x, key, klen, s, e, ts, vals, sv, sl, NULL, err);
        }
    }
    if (rc != SP_OK) return rc;
    op->late += late;
    ctx->stats.late += late;
    return late;
}

void sp_ctx_close_all_windows(sp_ctx *ctx) {
    sp_windows *w = sp_windows_of(ctx);
    if (w) w->close_all = 1;
}

int sp_ctx_has_windows(sp_ctx *ctx) { return ctx->windows && ctx->windows->nops > 0; }

int sp_windows_render(sp_ctx *ctx, sp_buf *b) {
    int rc = 0;
    char line[640];
    if (!ctx->windows || ctx->windows->nops == 0) return 0;
    static const char head[] = "# HELP sproc_window_late_total records too late for their window, "
                               "per aggregation\n# TYPE sproc_window_late_total counter\n";
    rc |= sp_buf_append(b, head, sizeof head - 1);
    for (int32_t i = 0; i < ctx->windows->nops; i++) {
        sp_winop *op = ctx->windows->ops[i];
        int n = snprintf(line, sizeof line, "sproc_window_late_total{aggregate=\"%s\"} %lld\n",
                         op->name, (long long)op->late);
        rc |= sp_buf_append(b, line, (size_t)n);
    }
    return rc;
}

void sp_windows_log(sp_ctx *ctx) {
    for (int32_t i = 0; ctx->windows && i < ctx->windows->nops; i++) {
        sp_winop *op = ctx->windows->ops[i];
        sp_info("aggregate %s: %lld late (record, window) pairs dropped", op->name,
                (long long)op->late);
    }
}

int64_t sp_windows_interval_min(sp_ctx *ctx) {
    int64_t m = 0;
    for (int32_t i = 0; ctx->windows && i < ctx->windows->nops; i++) {
        int64_t v = ctx->windows->ops[i]->interval;
        if (v > 0 && (m == 0 || v < m)) m = v;
    }
    return m;
}

void sp_windows_drop_partition(sp_ctx *ctx, int32_t partition) {
    sp_windows *w = ctx->windows;
    if (!w) return;
    for (int32_t i = 0; i < w->nops; i++) {
        sp_winop *op = w->ops[i];
        for (int32_t j = 0; j < op->nidx; j++)
            if (op->idx[j].partition == partition) {
                sp_window_free_idx(&op->idx[j]);
                op->idx[j] = op->idx[--op->nidx];
                break;
            }
        sp_kv_drop_part(&op->cursors, partition);
    }
}

/* Closes what stream time (or the end of a bounded run) closed, then moves
 * the results into the batch; returns how many records were appended. */
static int32_t fire(sp_ctx *ctx);

/* A window closes before the sweep that expires what it holds: a batch
 * that moves stream time past both (a gap in event time longer than the
 * companion stores' TTL) must not find its records or Lua accumulators
 * gone already. */
int32_t sp_windows_fire(sp_ctx *ctx) {
    ctx->ttl_hold = 1;
    int32_t n = fire(ctx);
    ctx->ttl_hold = 0;
    return n;
}

static int32_t fire(sp_ctx *ctx) {
    sp_windows *w = ctx->windows;
    if (!w) return 0;
    for (int32_t i = 0; i < w->nops; i++) {
        sp_winop *op = w->ops[i];
        if (w->close_all) {
            /* every partition the store holds windows of (a partition
             * restored or reloaded and not seen since has no index yet) */
            int32_t parts[1024];
            int32_t np = sp_store_partitions(ctx, op->store, parts, 1024);
            for (int32_t k = 0; k < np && k < 1024; k++) {
                widx *x = sp_window_index_of(op, parts[k]);
                const char *err;
                if (x && !x->built && sp_window_build_index(ctx, op, x, &err) != SP_OK) {
                    sp_error("%s", err);
                    return -1;
                }
            }
        }
        for (int32_t j = 0; j < op->nidx; j++) {
            widx *x = &op->idx[j];
            /* an idle partition's stream time follows the wall clock from
             * its last record's time */
            int64_t idle = ctx->wall_ms - x->last_wall;
            if (ctx->idle_ms > 0 && x->last_wall >= 0 && idle >= ctx->idle_ms &&
                x->last_event + idle > x->stream)
                x->stream = x->last_event + idle;
            if (sp_window_close_due(ctx, op, x, x->stream) != SP_OK || sp_window_save_stream(ctx, op, x) != SP_OK)
                return -1;
        }
        if (op->deferred) {
            if (op->last_emit < 0) op->last_emit = ctx->wall_ms;
            if (ctx->wall_ms - op->last_emit >= op->interval) {
                if (sp_window_emit_changed(ctx, op, 0, NULL, 0) != SP_OK) return -1;
                op->last_emit = ctx->wall_ms;
            }
        }
    }
    int32_t before = ctx->batch.n;
    const char *err;
    for (size_t i = 0; i < w->npend; i++) {
        pending *p = &w->pend[i];
        if (sp_batch_push(ctx, p->topic, p->partition, -1, p->key, p->klen, p->val, p->vlen,
                          p->ts, &err) != SP_OK)
            return -1;
        ctx->batch.recs[ctx->batch.n - 1].seg = p->seg;
        if (p->tombstone) {
            char num[32];
            int n = snprintf(num, sizeof num, "%lld", (long long)p->start);
            sp_batch_push_header(ctx, "sproc.window.start", num, (size_t)n, &err);
            n = snprintf(num, sizeof num, "%lld", (long long)p->end);
            sp_batch_push_header(ctx, "sproc.window.end", num, (size_t)n, &err);
        }
        free(p->key);
        free(p->val);
    }
    w->npend = 0;
    return ctx->batch.n - before;
}
