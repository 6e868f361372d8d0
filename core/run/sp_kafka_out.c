#include "sp_kafka_out.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sp_clock.h"
#include "sp_log.h"
#include "sp_store.h"

typedef struct ksink {
    sp_kafka_out *ko;
    rd_kafka_topic_t *rkt;
} ksink;

static int produce(sp_kafka_out *ko, rd_kafka_topic_t *rkt, sp_msg *m) {
    rd_kafka_resp_err_t e;
    int warned = 0;
    double since = 0; /* when the wait for room began; 0: none */
    for (;;) {
        if (m->hdrs)
            e = rd_kafka_producev(
                ko->producer, RD_KAFKA_V_RKT(rkt),
                RD_KAFKA_V_PARTITION(m->partition >= 0 ? m->partition
                                                       : RD_KAFKA_PARTITION_UA),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY((void *)m->key, m->key ? m->key_len : 0),
                RD_KAFKA_V_VALUE((void *)m->val, m->val ? m->val_len : 0),
                RD_KAFKA_V_TIMESTAMP(m->ts > 0 ? m->ts : 0),
                RD_KAFKA_V_HEADERS(m->hdrs), RD_KAFKA_V_OPAQUE(SP_MSG_SLOT(m)),
                RD_KAFKA_V_END);
        else
            e = rd_kafka_producev(
                ko->producer, RD_KAFKA_V_RKT(rkt),
                RD_KAFKA_V_PARTITION(m->partition >= 0 ? m->partition
                                                       : RD_KAFKA_PARTITION_UA),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY((void *)m->key, m->key ? m->key_len : 0),
                RD_KAFKA_V_VALUE((void *)m->val, m->val ? m->val_len : 0),
                RD_KAFKA_V_TIMESTAMP(m->ts > 0 ? m->ts : 0),
                RD_KAFKA_V_OPAQUE(SP_MSG_SLOT(m)), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
        /* Backpressure: wait for acknowledgements to make room (for as
         * long as a broker takes to fail over) */
        if (since == 0) {
            if (ko->waiting) ko->waiting(ko->opaque, 1);
            since = sp_clock_s();
        } else if (!warned && sp_clock_s() - since > 10) {
            /* once per wait: a log that says why nothing moves */
            sp_warn("outputs wait for Kafka: the producer's queue has been full for 10 s "
                    "(%d outputs queued)", rd_kafka_outq_len(ko->producer));
            warned = 1;
        }
        rd_kafka_poll(ko->producer, 1);
    }
    if (since != 0 && ko->waiting) ko->waiting(ko->opaque, 0);
    return e;
}

/* A changelog's topic handle carries its store, so that acknowledgements
 * tell the store how far the changelog holds its state. */
static rd_kafka_topic_t *new_topic(rd_kafka_t *producer, sp_sink *s) {
    rd_kafka_topic_conf_t *tc = NULL;
    if (s->tag) {
        tc = rd_kafka_topic_conf_new();
        rd_kafka_topic_conf_set_opaque(tc, s->tag);
    }
    return rd_kafka_topic_new(producer, s->name, tc);
}

static int ksink_write(sp_sink *s, sp_msg *m, const char **err) {
    ksink *k = s->impl;
    /* the producer is made after the script is loaded (its settings
     * depend on the script), so topic handles come with the first write */
    if (!k->rkt && !(k->rkt = new_topic(k->ko->producer, s))) {
        if (m->hdrs) rd_kafka_headers_destroy(m->hdrs);
        *err = rd_kafka_err2str(rd_kafka_last_error());
        return SP_EINVAL;
    }
    if (m->seg) sp_seg_ref(m->seg);
    rd_kafka_resp_err_t e = produce(k->ko, k->rkt, m);
    if (e) {
        if (m->seg) sp_seg_unref(m->seg);
        if (m->hdrs) rd_kafka_headers_destroy(m->hdrs);
        if (k->ko->txn && e == RD_KAFKA_RESP_ERR__STATE) {
            /* the transaction failed (Kafka made it abortable) and takes
             * no more outputs: not this record's fault, nor fatal; the
             * transaction is aborted before anything commits and the
             * record is processed again (sp_run_recover_txn) */
            if (!k->ko->txn_failed[0])
                snprintf(k->ko->txn_failed, sizeof k->ko->txn_failed,
                         "output to topic %s refused: the transaction failed", s->name);
            return SP_OK;
        }
        *err = rd_kafka_err2str(e);
        return SP_EIO;
    }
    return SP_OK;
}

static void ksink_destroy(sp_sink *s) {
    ksink *k = s->impl;
    if (!k) return;
    if (k->rkt) rd_kafka_topic_destroy(k->rkt);
    free(k);
}

static const sp_sink_ops kafka_ops = {"kafka", ksink_write, NULL,
                                      ksink_destroy, NULL};

static int ksink_open(void *opaque, sp_sink *s, const char **err) {
    sp_kafka_out *ko = opaque;
    ksink *k = calloc(1, sizeof *k);
    if (!k) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    k->ko = ko;
    s->ops = &kafka_ops;
    s->impl = k;
    if (ko->on_topic) ko->on_topic(ko->opaque, s->name);
    return SP_OK;
}

void sp_kafka_out_init(sp_kafka_out *ko, sp_ctx *ctx, rd_kafka_t *producer) {
    memset(ko, 0, sizeof *ko);
    ko->ctx = ctx;
    ko->producer = producer;
    ctx->kafka.opaque = ko;
    ctx->kafka.open = ksink_open;
}

void sp_kafka_out_set_producer(sp_kafka_out *ko, rd_kafka_t *producer) {
    /* topic handles belong to a producer: the next write makes new ones */
    for (int32_t i = 0; i < ko->ctx->nsinks; i++) {
        sp_sink *s = ko->ctx->sinks[i];
        ksink *k = s->ops == &kafka_ops ? s->impl : NULL;
        if (k && k->rkt) rd_kafka_topic_destroy(k->rkt);
        if (k) k->rkt = NULL;
    }
    ko->producer = producer;
}

void sp_kafka_out_destroy(sp_kafka_out *ko) {
    free(ko->fatal);
    ko->fatal = NULL;
}

int sp_kafka_out_poll(sp_kafka_out *ko, int timeout_ms) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    /* a blocking poll may serve acknowledgements long after this */
    ko->now_ms = timeout_ms == 0 ? (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 : 0;
    int n = rd_kafka_poll(ko->producer, timeout_ms);
    ko->now_ms = 0;
    return n;
}

/* An output Kafka has: its latency, and how far its changelog holds a
 * store partition's state. */
static void acknowledged(sp_kafka_out *ko, const rd_kafka_message_t *m, sp_store *changelog) {
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    /* the output's own timestamp (the record's): a topic that keeps
     * the broker's append time instead (and the dev cluster, which
     * says 1234) tells nothing about the record */
    if (!changelog && ts > 0 && tt == RD_KAFKA_TIMESTAMP_CREATE_TIME) {
        int64_t now_ms = ko->now_ms;
        if (!now_ms) { /* inside a flush, which may wait long */
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
        }
        double ms = (double)(now_ms - ts);
        static const double bounds[] = SP_LATENCY_BOUNDS;
        int b = 0;
        while (b < SP_LATENCY_NBOUNDS && ms > bounds[b]) b++;
        ko->lat_buckets[b]++;
        ko->lat_count++;
        ko->lat_sum_ms += ms;
    }
    if (changelog) {
        sp_kv_part *p = sp_kv_part_of(changelog, m->partition, 0);
        if (p && m->offset + 1 > p->changelog_end) p->changelog_end = m->offset + 1;
    }
}

/* A dead letter for an output that failed for good: the input record it
 * came from as it came (read again from its topic, where it still is: its
 * offset is not committed), with the error and its coordinates in the
 * headers; the output itself when it came from no one record (a window's
 * result). Returns 0, or -1 after setting ko->fatal. */
static int dead_letter(sp_kafka_out *ko, const rd_kafka_message_t *m, const sp_slot *sl,
                       const char *msg) {
    sp_ctx *ctx = ko->ctx;
    sp_seg *seg = sl ? sl->seg : NULL;
    const char *src_topic = seg ? seg->tp->topic : NULL;
    int32_t src_part = seg ? seg->tp->partition : -1;
    int64_t offset = sl ? sl->offset : -1;
    rd_kafka_message_t *input = NULL;
    if (offset >= 0 && ko->fetch) input = ko->fetch(ko->opaque, src_topic, src_part, offset);
    const rd_kafka_message_t *src = input ? input : m;
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_message_headers(src, &hdrs);
    sp_msg dl = {src->key, src->payload, src->key_len, src->len,
                 input ? rd_kafka_message_timestamp(input, NULL) : 0, NULL, seg, -1, NULL};
    if (offset >= 0 && !input) dl.key = dl.val = NULL, dl.key_len = dl.val_len = 0;
    dl.hdrs = sp_emit_dead_letter_headers(ctx, hdrs, msg, strlen(msg), src_topic, src_part,
                                         offset, dl.ts);
    const char *err;
    sp_sink *dlq = sp_ctx_sink(ctx, ctx->dlq_sink);
    int rc = dlq->ops->write(dlq, &dl, &err);
    if (rc != SP_OK && dl.val_len) {
        /* too large for the dead-letter topic as well: keep the error and
         * the coordinates, the input is still in its topic */
        dl.val = NULL;
        dl.val_len = 0;
        dl.hdrs = sp_emit_dead_letter_headers(ctx, hdrs, msg, strlen(msg), src_topic, src_part,
                                             offset, dl.ts);
        rc = dlq->ops->write(dlq, &dl, &err);
    }
    if (input) rd_kafka_message_destroy(input);
    if (rc != SP_OK) {
        if (!ko->fatal) {
            char buf[1024];
            snprintf(buf, sizeof buf, "%s; and the dead-letter topic failed: %s", msg, err);
            ko->fatal = strdup(buf);
        }
        return -1;
    }
    return 0;
}

/* A produce that failed for good (the producer retried what can be
 * retried): the record goes to the error policy instead of blocking the
 * others, once however many of its outputs failed, and counts as skipped
 * or dead-lettered instead of out. Its segment stays held under "fail",
 * so its offset is never committed. */
void sp_kafka_out_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m,
                            void *opaque) {
    (void)rk;
    sp_kafka_out *ko = opaque;
    sp_slot *sl = m->_private;
    sp_seg *seg = sl ? sl->seg : NULL;
    sp_ctx *ctx = ko->ctx;
    sp_store *changelog = rd_kafka_topic_opaque(m->rkt);
    if (!m->err) {
        acknowledged(ko, m, changelog);
        if (seg) sp_seg_unref(seg);
        return;
    }
    /* an aborted transaction's outputs: they are made again */
    if (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
        if (seg) sp_seg_unref(seg);
        return;
    }
    const char *topic = rd_kafka_topic_name(m->rkt);
    const char *why = rd_kafka_err2str(m->err);
    ko->delivery_errors++;
    if (ko->txn) {
        if (!ko->txn_failed[0])
            snprintf(ko->txn_failed, sizeof ko->txn_failed, "output to topic %s failed: %s",
                     topic, why);
        if (seg) sp_seg_unref(seg);
        return;
    }
    int to_dlq = ctx->dlq_sink >= 0 && strcmp(topic, sp_ctx_sink(ctx, ctx->dlq_sink)->name) == 0;
    if (to_dlq && m->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && m->len > 0) {
        /* a dead letter too large for its topic: again without the value
         * (the headers say where the record is) */
        rd_kafka_headers_t *h = NULL;
        rd_kafka_message_headers(m, &h);
        /* a failed message has lost its timestamp: the header has it */
        const void *tv;
        size_t tl;
        char num[32] = "0";
        if (h && rd_kafka_header_get_last(h, "sproc.source.timestamp", &tv, &tl) == 0 &&
            tl < sizeof num)
            memcpy(num, tv, tl), num[tl] = '\0';
        sp_msg dl = {m->key, NULL, m->key_len, 0, strtoll(num, NULL, 10),
                     h ? rd_kafka_headers_copy(h) : NULL, seg, -1, NULL};
        const char *err;
        sp_sink *dlq = sp_ctx_sink(ctx, ctx->dlq_sink);
        if (dlq->ops->write(dlq, &dl, &err) == SP_OK) {
            if (seg) sp_seg_unref(seg);
            return;
        }
    }
    /* a lost changelog write would lose state: never skipped */
    if (ctx->policy == SP_POLICY_FAIL || (ctx->policy == SP_POLICY_DLQ && ctx->dlq_sink < 0) ||
        changelog || to_dlq) {
        ctx->stats.errors++;
        if (!ko->fatal) {
            char buf[1024];
            snprintf(buf, sizeof buf,
                     "output to topic %s failed: %s\n  record from: topic %s, "
                     "partition %" PRId32 ", offset %lld",
                     topic, why, seg ? seg->tp->topic : "?", seg ? seg->tp->partition : -1,
                     sl ? (long long)sl->offset : -1LL);
            ko->fatal = strdup(buf);
        }
        return;
    }
    if (sl && sl->failed) {
        /* another output of the same record failed: it is dealt with */
        sp_seg_unref(seg);
        return;
    }
    ctx->stats.errors++;
    if (sl) sl->failed = 1;
    /* the record counts as skipped or dead-lettered, not as out */
    if (sl && sl->counted) {
        sl->counted = 0;
        ctx->stats.records_out--;
    }
    char msg[512];
    snprintf(msg, sizeof msg, "output to topic %s failed: %s", topic, why);
    if (ctx->policy == SP_POLICY_SKIP) {
        ctx->stats.skipped++;
        sp_warn("skipped a record: %s", msg);
    } else if (dead_letter(ko, m, sl, msg) == 0) {
        ctx->stats.dead_lettered++;
        sp_warn("dead-lettered a record: %s", msg);
    } else {
        return;
    }
    if (seg) sp_seg_unref(seg);
}
