/* Outputs: what an operator writes to a sink for the record being
 * processed, with its headers, and the dead letters of records that
 * failed. */
#include "sp_ctx.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "sp_log.h"

/* records_out counts records that gave output, once each however many
 * outputs they gave, so that in = out + filtered + skipped +
 * dead-lettered for records that reach a sink (a window's results are
 * records of their own). */
static void count_out(sp_ctx *ctx, const sp_msg *m) {
    int32_t cur = ctx->batch.cur;
    if (cur >= 0 && cur == ctx->out_rec) return;
    ctx->out_rec = cur;
    ctx->stats.records_out++;
    if (m->in && m->in->slot) ((sp_slot *)m->in->slot)->counted = 1;
}

int sp_emit_write(sp_ctx *ctx, int sink, sp_msg *m, const char **err) {
    sp_sink *s = sp_ctx_sink(ctx, sink);
    if (!s) {
        if (m->hdrs) rd_kafka_headers_destroy(m->hdrs);
        *err = "no such sink";
        return SP_EINVAL;
    }
    int rc = s->ops->write(s, m, err);
    if (rc == SP_OK && !s->internal) count_out(ctx, m);
    return rc;
}

void sp_emit_forget(sp_ctx *ctx, int32_t rec) {
    if (rec < 0 || rec != ctx->out_rec) return;
    ctx->stats.records_out--;
    ctx->out_rec = -1;
    sp_slot *sl = rec < ctx->batch.n ? ctx->batch.recs[rec].slot : NULL;
    if (sl) sl->counted = 0;
}

static sp_rec *current(sp_ctx *ctx) {
    if (ctx->batch.cur < 0 || ctx->batch.cur >= ctx->batch.n) return NULL;
    return &ctx->batch.recs[ctx->batch.cur];
}

int sp_emit_header(sp_ctx *ctx, const char *name, size_t name_len,
                   const char *val, size_t val_len, const char **err) {
    if (!ctx->pending_hdrs && !(ctx->pending_hdrs = rd_kafka_headers_new(4))) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    rd_kafka_header_add(ctx->pending_hdrs, name, (ssize_t)name_len, val,
                        (ssize_t)val_len);
    return SP_OK;
}

int sp_emit(sp_ctx *ctx, int sink, const char *key, size_t key_len,
            const char *val, size_t val_len, int64_t ts, int fwd_headers,
            const char **err) {
    sp_rec *r = current(ctx);
    sp_msg m = {key, val, key_len, val_len, ts, NULL, r ? r->seg : NULL, -1,
                r && r->offset >= 0 ? r : NULL};
    rd_kafka_headers_t *in = r && fwd_headers ? sp_batch_headers(r) : NULL;
    if (fwd_headers && in) {
        m.hdrs = rd_kafka_headers_copy(in);
        if (ctx->pending_hdrs) {
            const char *n;
            const void *v;
            size_t vl;
            for (size_t i = 0;
                 !rd_kafka_header_get_all(ctx->pending_hdrs, i, &n, &v, &vl);
                 i++)
                rd_kafka_header_add(m.hdrs, n, -1, v, (ssize_t)vl);
            rd_kafka_headers_destroy(ctx->pending_hdrs);
        }
    } else {
        m.hdrs = ctx->pending_hdrs;
    }
    ctx->pending_hdrs = NULL;
    return sp_emit_write(ctx, sink, &m, err);
}

int sp_emit_rec(sp_ctx *ctx, int sink, int has_ts, int64_t ts, int fwd_headers,
                const char **err) {
    sp_rec *r = current(ctx);
    if (!r) {
        *err = "no record is being processed";
        return SP_ESTATE;
    }
    return sp_emit(ctx, sink, r->key, r->key_len, r->val, r->val_len,
                   has_ts ? ts : r->ts, fwd_headers, err);
}

rd_kafka_headers_t *sp_emit_dead_letter_headers(sp_ctx *ctx,
                                              const rd_kafka_headers_t *in,
                                              const char *why, size_t why_len,
                                              const char *topic,
                                              int32_t partition,
                                              int64_t offset, int64_t ts) {
    (void)ctx;
    rd_kafka_headers_t *h = in ? rd_kafka_headers_copy(in)
                               : rd_kafka_headers_new(4);
    char num[32];
    if (!h) return NULL;
    rd_kafka_header_add(h, "sproc.error", -1, why, (ssize_t)why_len);
    if (topic) rd_kafka_header_add(h, "sproc.source.topic", -1, topic, -1);
    snprintf(num, sizeof num, "%" PRId32, partition);
    rd_kafka_header_add(h, "sproc.source.partition", -1, num, -1);
    snprintf(num, sizeof num, "%" PRId64, offset);
    rd_kafka_header_add(h, "sproc.source.offset", -1, num, -1);
    /* also the record's own timestamp: a dead letter sent again (too large
     * for its topic) has lost it */
    snprintf(num, sizeof num, "%" PRId64, ts);
    rd_kafka_header_add(h, "sproc.source.timestamp", -1, num, -1);
    return h;
}

int sp_dead_letter(sp_ctx *ctx, int32_t rec, const char *why, size_t why_len,
                   const char **err) {
    if (ctx->dlq_sink < 0) {
        *err = "no dead-letter topic configured";
        return SP_ESTATE;
    }
    if (rec < 0 || rec >= ctx->batch.n) {
        *err = "no such record";
        return SP_EINVAL;
    }
    sp_rec *r = &ctx->batch.recs[rec];
    sp_msg m = {r->key, r->val, r->key_len, r->val_len, r->ts, NULL, r->seg, -1, r};
    sp_sink *dlq = sp_ctx_sink(ctx, ctx->dlq_sink);
    for (int pass = 0; pass < 2; pass++) {
        m.hdrs = sp_emit_dead_letter_headers(ctx, sp_batch_headers(r), why, why_len,
                                            sp_topic_name(ctx, r->topic), r->partition,
                                            r->offset, r->ts);
        /* a dead letter is not an output */
        int rc = dlq->ops->write(dlq, &m, err);
        if (rc == SP_OK) {
            ctx->stats.dead_lettered++;
            return SP_OK;
        }
        /* too large for the dead-letter topic too: the error and the
         * coordinates without the value (it is still in its topic) */
        if (!m.val_len) return rc;
        m.val = NULL;
        m.val_len = 0;
    }
    return SP_EIO;
}
