/* Timestamp order across joined partitions (Kafka Streams' timestamp
 * synchronization): records of topics joined by key are held per
 * partition as they are consumed, and go into a batch as the earliest
 * (by Kafka timestamp) of their partition number across the joined
 * topics. While one of those partitions has nothing held, the others
 * wait as sproc.max.task.idle.ms says: -1 never; 0 (the default, Kafka
 * Streams' too) only while the empty one has records not fetched yet
 * (the consumer has not said it reached the end since its last record);
 * more: also that long after it reached its end, for records still to
 * be written. At equal timestamps a table's record goes first. */
#include "sp_run.h"

/* A partition holding this many records is paused until half of them
 * went out: the consumer would otherwise fetch a whole backlog of one
 * side while the other is behind (RSS grew by 400 MB in a benchmark of
 * 2M records, and malloc slowed down with it). Pausing drops what
 * librdkafka fetched ahead for the partition; resumed, it fetches on
 * after the last record it handed over, so nothing is lost. */
#define SP_RUN_HOLD_MAX 5000

static void pause_one(runner *r, sp_tp *tp, int pause) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, tp->topic, tp->partition);
    if (pause)
        rd_kafka_pause_partitions(r->cons, l);
    else
        rd_kafka_resume_partitions(r->cons, l);
    rd_kafka_topic_partition_list_destroy(l);
    tp->held_paused = pause;
    sp_debug("%s %s [%" PRId32 "] holding %" PRId32 " records", pause ? "paused" : "resumed",
             tp->topic, tp->partition, tp->nheld);
}

/* Ends a pause of pause_one's (a finished bounded partition stays
 * paused: sp_run_mark_done paused it). */
static void unpause(runner *r, sp_tp *tp) {
    if (!tp->held_paused) return;
    if (tp->done)
        tp->held_paused = 0;
    else
        pause_one(r, tp, 0);
}

/* The group of joined topics a topic partition is in (-1: none). */
static int32_t group_of(runner *r, sp_tp *tp) {
    if (tp->sync_group != -2) return tp->sync_group;
    tp->sync_group = -1;
    size_t n = strlen(tp->topic);
    for (int32_t g = 0; g < r->ctx->ncopart; g++) {
        const char *s = r->ctx->copart[g];
        while (s && *s) {
            const char *e = strchr(s, ',');
            size_t len = e ? (size_t)(e - s) : strlen(s);
            if (len == n && strncmp(s, tp->topic, n) == 0) tp->sync_group = g;
            s = e ? e + 1 : NULL;
        }
    }
    return tp->sync_group;
}

int sp_run_sync_wants(runner *r, sp_tp *tp) { return group_of(r, tp) >= 0; }

int sp_run_sync_hold(runner *r, sp_tp *tp, rd_kafka_message_t *m) {
    (void)r;
    if (tp->nheld == tp->held_cap) {
        int32_t cap = tp->held_cap ? tp->held_cap * 2 : 256;
        void **h = malloc((size_t)cap * sizeof *h);
        if (!h) return -1;
        for (int32_t i = 0; i < tp->nheld; i++)
            h[i] = tp->held[(tp->held_head + i) % tp->held_cap];
        free(tp->held);
        tp->held = h;
        tp->held_head = 0;
        tp->held_cap = cap;
    }
    tp->held[(tp->held_head + tp->nheld) % tp->held_cap] = m;
    tp->nheld++;
    tp->at_end = 0;
    r->held++;
    if (tp->nheld >= SP_RUN_HOLD_MAX && !tp->held_paused && !tp->done) pause_one(r, tp, 1);
    return 0;
}

static rd_kafka_message_t *head(const sp_tp *tp) {
    return tp->nheld ? tp->held[tp->held_head] : NULL;
}

static int is_table(runner *r, const char *topic) {
    for (int32_t i = 0; i < r->ctx->nstores; i++)
        if (r->ctx->stores[i]->source && strcmp(r->ctx->stores[i]->source, topic) == 0) return 1;
    return 0;
}

/* Whether a comes before b (both heads of their partitions). */
static int earlier(runner *r, const sp_tp *a, const sp_tp *b) {
    int64_t ta = rd_kafka_message_timestamp(head(a), NULL);
    int64_t tb = rd_kafka_message_timestamp(head(b), NULL);
    if (ta != tb) return ta < tb;
    int ka = is_table(r, a->topic), kb = is_table(r, b->topic);
    if (ka != kb) return ka;
    return strcmp(a->topic, b->topic) < 0;
}

/* The partition of (group g, number p) whose head goes next, or NULL when
 * they must wait. */
static sp_tp *next_of(runner *r, int32_t g, int32_t p, int64_t *now) {
    sp_tp *best = NULL;
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next) {
        if (tp->partition != p || !tp->assigned || group_of(r, tp) != g) continue;
        if (tp->nheld) {
            if (!best || earlier(r, tp, best)) best = tp;
            continue;
        }
        if (tp->done || r->idle_ms < 0) continue;
        if (!tp->at_end) return NULL;
        /* the clock is read only for this (not once per record) */
        if (r->idle_ms > 0 && *now < 0) *now = sp_run_now_ms();
        if (r->idle_ms > 0 && *now - tp->at_end_ms < r->idle_ms) return NULL;
    }
    return best;
}

rd_kafka_message_t *sp_run_sync_next(runner *r, sp_tp **from) {
    if (!r->held) return NULL;
    int64_t now = -1;
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next) {
        if (!tp->nheld || !tp->assigned) continue;
        sp_tp *best = next_of(r, tp->sync_group, tp->partition, &now);
        if (!best) continue;
        *from = best;
        return head(best);
    }
    return NULL;
}

void sp_run_sync_pop(runner *r, sp_tp *tp) {
    tp->held_head = (tp->held_head + 1) % tp->held_cap;
    tp->nheld--;
    r->held--;
    if (tp->nheld <= SP_RUN_HOLD_MAX / 2) unpause(r, tp);
}

void sp_run_sync_at_end(runner *r, sp_tp *tp) {
    tp->at_end = 1;
    tp->at_end_ms = sp_run_now_ms();
    (void)r;
}

void sp_run_sync_drop(runner *r, sp_tp *tp) {
    while (tp->nheld) {
        rd_kafka_message_destroy(head(tp));
        tp->held_head = (tp->held_head + 1) % tp->held_cap;
        tp->nheld--;
        r->held--;
    }
    /* revoked or read again from elsewhere: librdkafka keeps an
     * application's pause across assignments */
    unpause(r, tp);
}

void sp_run_sync_drop_all(runner *r) {
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next) sp_run_sync_drop(r, tp);
}
