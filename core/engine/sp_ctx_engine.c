/* The engine: the one place that composes the core's subsystems (the
 * context, stores, sinks, windows): a context's making and unmaking, a
 * reload's reset, the tick between batches (stream time, windows, TTLs,
 * timers), a partition's coming and going, and what ties stores to
 * sinks (changelogs) or the policy to a sink (dead letters). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_ctx.h"
#include "sp_store.h"
#include "sp_engine.h"
#include "sp_window.h"

sp_ctx *sp_ctx_create(void) {
    sp_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx) sp_ctx_init(ctx);
    return ctx;
}

void sp_ctx_destroy(sp_ctx *ctx) {
    if (!ctx) return;
    /* the stores, the windows' operators, then the context's own (its
     * sinks, sources and clocks) */
    sp_store_destroy_all(ctx);
    sp_ctx_destroy_windows(ctx);
    sp_ctx_fini(ctx);
    free(ctx);
}

void sp_ctx_reset_topology(sp_ctx *ctx) {
    sp_ctx_clear_sources(ctx);
    sp_ctx_reset_timers(ctx);
    sp_ctx_destroy_windows(ctx);
}

int sp_ctx_set_policy(sp_ctx *ctx, int policy, const char *dlq_topic,
                      const char **err) {
    if (policy < SP_POLICY_FAIL || policy > SP_POLICY_DLQ) {
        *err = "unknown error policy";
        return SP_EINVAL;
    }
    ctx->policy = policy;
    if (policy == SP_POLICY_DLQ) {
        if (!dlq_topic || !*dlq_topic) {
            *err = "the dlq policy needs a dead-letter topic";
            return SP_EINVAL;
        }
        int id = sp_sink_kafka(ctx, dlq_topic, err);
        if (id < 0) return id;
        ctx->dlq_sink = id;
    }
    return SP_OK;
}

/* Expires a store's entries on a partition once its stream time moved on
 * by a quarter of its TTL (at least 100 ms) since the last sweep: a full
 * scan, so it is spread out rather than run per record. Entries past
 * their TTL are invisible before that already. */
static void sweep(sp_ctx *ctx, int32_t partition) {
    for (int32_t i = 0; i < ctx->nstores; i++) {
        sp_store *s = ctx->stores[i];
        if (s->ttl <= 0) continue;
        int64_t now = sp_ctx_tasks_stream_time(ctx, s->tasks, partition);
        int64_t step = s->ttl / 4 > 100 ? s->ttl / 4 : 100;
        sp_kv_part *p = now >= 0 ? sp_kv_part_of(s, partition, 0) : NULL;
        if (!p || (p->swept_ms >= 0 && now - p->swept_ms < step)) continue;
        sp_store_expire(ctx, s, partition, now - s->ttl);
        p->swept_ms = now;
    }
}


/* Between batches: stream time from the batch's records, idle tasks,
 * windows that close, store entries that expire, then timers that are
 * due (their records appended to the batch; returns how many). */
int32_t sp_ctx_fire_timers(sp_ctx *ctx) {
    int32_t before = ctx->batch.n;
    if (sp_ctx_count_records(ctx, ctx->batch.n) != 0) return -1;
    sp_ctx_clocks_tick(ctx);
    /* windows close before the sweep could expire their accumulators */
    if (sp_windows_fire(ctx) < 0) return -1;
    for (int32_t k = 0; k < ctx->nptimes; k++)
        sweep(ctx, sp_ctx_ptime_partition(ctx, k));
    if (sp_ctx_fire_due(ctx) < 0) return -1;
    ctx->scanned = ctx->batch.n;
    return ctx->batch.n - before;
}

int64_t sp_ctx_wall_timer_min(sp_ctx *ctx) {
    /* idle partitions are noticed on the wall clock too */
    int64_t m = ctx->idle_ms > 0 && ctx->windows ? (ctx->idle_ms / 4 > 0 ? ctx->idle_ms / 4 : 1) : 0;
    int64_t iv = sp_windows_interval_min(ctx);
    if (iv > 0 && (m == 0 || iv < m)) m = iv;
    int64_t t = sp_ctx_timer_min(ctx);
    if (t > 0 && (m == 0 || t < m)) m = t;
    return m;
}

void sp_ctx_partition_remove(sp_ctx *ctx, int32_t partition) {
    sp_windows_drop_partition(ctx, partition);
    sp_ctx_partition_forget(ctx, partition);
}

void sp_ctx_drop_partition(sp_ctx *ctx, int32_t partition) {
    sp_store_drop_partition(ctx, partition);
    sp_ctx_partition_remove(ctx, partition);
}

int sp_ctx_enable_changelogs(sp_ctx *ctx, const char *app_id, const char **err) {
    return sp_ctx_open_changelogs(ctx, app_id, err);
}

int sp_ctx_open_changelogs(sp_ctx *ctx, const char *app_id, const char **err) {
    for (int32_t i = 0; i < ctx->nstores; i++) {
        sp_store *s = ctx->stores[i];
        /* a table's topic is its changelog */
        if (s->sink >= 0 || s->source) continue;
        char topic[512];
        snprintf(topic, sizeof topic, "%s-%s-changelog", app_id, s->name);
        int rc = sp_sink_kafka(ctx, topic, err);
        if (rc < 0) return rc;
        s->sink = rc;
        s->track = 1;
        sp_ctx_sink(ctx, rc)->tag = s;
    }
    return SP_OK;
}

