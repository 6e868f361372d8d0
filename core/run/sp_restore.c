#include "sp_restore.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sp_checkpoint.h"
#include "sp_clock.h"
#include "sp_lmdb.h"
#include "sp_log.h"
#include "sp_store.h"
#include "sp_topics.h"

/* An info line about a store's partition: JSON logs carry both as fields. */
static void __attribute__((format(printf, 3, 4)))
store_info(const char *store, int32_t partition, const char *fmt, ...) {
    char msg[1024], part[16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(part, sizeof part, "%" PRId32, partition);
    const char *kv[] = {"store", store, "partition", part, NULL};
    sp_log_kv(SP_LOG_INFO, kv, "%s", msg);
}

/* One store partition being read back. */
typedef struct job {
    int32_t partition;
    int32_t store;
    int64_t target;  /* the changelog's end when the restore began */
    int64_t applied;
    double t0;
    int64_t ckpt_keys; /* loaded from a local checkpoint; -1 none */
    int waiting;       /* said that it waits for an open transaction */
    int64_t skipped;   /* records of input past the committed offsets */
} job;

struct sp_restore {
    sp_ctx *ctx;
    char *dir; /* local checkpoints; NULL none */
    rd_kafka_t *rk;
    /* Ends of the changelogs are asked of a read_uncommitted client: for a
     * read_committed one Kafka answers the last stable offset, which an
     * abandoned transaction (a killed process's, until the broker aborts
     * it, up to transaction.timeout.ms plus its cleanup interval later)
     * holds back while transactions after it commit: a restore to there
     * would miss committed state. */
    rd_kafka_conf_t *ends_conf;
    rd_kafka_t *ends_rk;
    rd_kafka_queue_t *q;
    char **topics; /* per store */
    int32_t ntopics;
    job *jobs;
    int njobs, cap;
    /* partitions whose state is here or on its way: an input partition
     * of another topic with the same number must not start over */
    int32_t *present;
    int npresent, present_cap;
    /* partitions whose restore could not start (a changelog's end
     * unreadable: its leader away); they wait, paused, and are tried
     * again every second until SP_RESTORE_START_TIMEOUT_S */
    struct deferred {
        int32_t partition;
        double since, next;
    } *deferred;
    int ndeferred, deferred_cap;
    sp_restore_committed_fn committed;
    sp_restore_positions_fn positions;
    void *committed_opaque;
    int exactly_once;
    sp_buf ckpt_pos; /* a checkpoint's positions */
    int32_t stale[64]; /* sp_restore_take_stale's partitions */
    int nstale;
    sp_buf tagged; /* a table record's value as its store keeps it */
    /* the highest changelog end this process saw per store partition
     * (its restores, its own acknowledged writes): a log's end never goes
     * back, so an end read below it comes from a broker not caught up */
    struct seen {
        int32_t store, partition;
        int64_t end;
    } *seen;
    int nseen, seen_cap;
    rd_kafka_message_t *msgs[2048];
};

static struct seen *seen_of(sp_restore *rs, int32_t store, int32_t partition, int add) {
    for (int i = 0; i < rs->nseen; i++)
        if (rs->seen[i].store == store && rs->seen[i].partition == partition) return &rs->seen[i];
    if (!add) return NULL;
    if (rs->nseen == rs->seen_cap) {
        int cap = rs->seen_cap ? rs->seen_cap * 2 : 32;
        struct seen *t = realloc(rs->seen, (size_t)cap * sizeof *t);
        if (!t) return NULL;
        rs->seen = t;
        rs->seen_cap = cap;
    }
    rs->seen[rs->nseen] = (struct seen){store, partition, -1};
    return &rs->seen[rs->nseen++];
}

/* Notes the changelog end a store partition's state reached. */
static void saw_end(sp_restore *rs, int32_t store, int32_t partition) {
    sp_kv_part *p = sp_kv_part_of(rs->ctx->stores[store], partition, 0);
    struct seen *e = p && p->changelog_end >= 0 ? seen_of(rs, store, partition, 1) : NULL;
    if (e && p->changelog_end > e->end) e->end = p->changelog_end;
}

/* Store i's changelog: <app>-<store>-changelog, or a table's topic. */
static char *changelog_of(sp_ctx *ctx, const char *app_id, int32_t i) {
    sp_store *s = ctx->stores[i];
    if (s->source) return strdup(s->source);
    size_t n = strlen(app_id) + strlen(s->name) + 16;
    char *t = malloc(n);
    if (t) snprintf(t, n, "%s-%s-changelog", app_id, s->name);
    return t;
}

void sp_restore_set_committed(sp_restore *rs, sp_restore_committed_fn fn,
                              sp_restore_positions_fn positions, void *opaque, int exactly_once) {
    rs->committed = fn;
    rs->positions = positions;
    rs->committed_opaque = opaque;
    rs->exactly_once = exactly_once;
}

/* Notes a partition whose committed offsets read stale (once). */
static void mark_stale(sp_restore *rs, int32_t partition) {
    for (int i = 0; i < rs->nstale; i++)
        if (rs->stale[i] == partition) return;
    if (rs->nstale < (int)(sizeof rs->stale / sizeof *rs->stale)) rs->stale[rs->nstale++] = partition;
}

int32_t sp_restore_take_stale(sp_restore *rs) {
    return rs->nstale > 0 ? rs->stale[--rs->nstale] : -1;
}

int sp_restore_is_stale(const sp_restore *rs, int32_t partition) {
    for (int i = 0; i < rs->nstale; i++)
        if (rs->stale[i] == partition) return 1;
    return 0;
}

sp_restore *sp_restore_create(sp_ctx *ctx, const char *app_id,
                              const char *state_dir, rd_kafka_conf_t *conf,
                              char *errbuf, size_t errsize) {
    sp_restore *rs = calloc(1, sizeof *rs);
    if (!rs) {
        snprintf(errbuf, errsize, "out of memory");
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rs->ctx = ctx;
    rs->ends_conf = rd_kafka_conf_dup(conf);
    if (rd_kafka_conf_set(rs->ends_conf, "isolation.level", "read_uncommitted", errbuf,
                          errsize)) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    if (state_dir && !(rs->dir = strdup(state_dir))) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    /* assign() only: no group membership and no commits (librdkafka wants
     * a group id for incremental assignment all the same); the changelog
     * is read as far as its transactions committed */
    char group[512];
    snprintf(group, sizeof group, "%s-restore", app_id);
    if (rd_kafka_conf_set(conf, "group.id", group, errbuf, errsize) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errbuf, errsize) ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", errbuf, errsize) ||
        rd_kafka_conf_set(conf, "isolation.level", "read_committed", errbuf, errsize) ||
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errbuf, errsize) ||
        /* as for the main consumer: librdkafka 2.0 backs off fetching for
         * a second whenever its queue passes queued.min.messages */
        rd_kafka_conf_set(conf, "queued.min.messages", "1000000", errbuf, errsize) ||
        rd_kafka_conf_set(conf, "queued.max.messages.kbytes", "65536", errbuf, errsize)) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    rs->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errsize);
    if (!rs->rk) goto fail;
    rd_kafka_poll_set_consumer(rs->rk);
    rs->q = rd_kafka_queue_get_consumer(rs->rk);
    rs->ntopics = ctx->nstores;
    rs->topics = calloc((size_t)ctx->nstores + 1, sizeof *rs->topics);
    if (!rs->topics) goto fail;
    for (int32_t i = 0; i < ctx->nstores; i++)
        if (!(rs->topics[i] = changelog_of(ctx, app_id, i))) goto fail;
    sp_buf_init(&rs->tagged);
    sp_buf_init(&rs->ckpt_pos);
    return rs;
fail:
    if (!errbuf[0]) snprintf(errbuf, errsize, "out of memory");
    sp_restore_destroy(rs);
    return NULL;
}

void sp_restore_destroy(sp_restore *rs) {
    if (!rs) return;
    if (rs->q) rd_kafka_queue_destroy(rs->q);
    if (rs->rk) {
        rd_kafka_consumer_close(rs->rk);
        rd_kafka_destroy(rs->rk);
    }
    if (rs->ends_rk) rd_kafka_destroy(rs->ends_rk);
    if (rs->ends_conf) rd_kafka_conf_destroy(rs->ends_conf);
    for (int32_t i = 0; i < rs->ntopics; i++) free(rs->topics[i]);
    free(rs->topics);
    free(rs->jobs);
    free(rs->present);
    free(rs->deferred);
    free(rs->seen);
    free(rs->dir);
    sp_buf_destroy(&rs->tagged);
    sp_buf_destroy(&rs->ckpt_pos);
    free(rs);
}

int sp_restore_refresh(sp_restore *rs, const char *app_id) {
    if (rs->ntopics >= rs->ctx->nstores) return 0;
    char **t = realloc(rs->topics, ((size_t)rs->ctx->nstores + 1) * sizeof *t);
    if (!t) return -1;
    rs->topics = t;
    for (int32_t i = rs->ntopics; i < rs->ctx->nstores; i++) {
        if (!(t[i] = changelog_of(rs->ctx, app_id, i))) return -1;
        rs->ntopics = i + 1;
    }
    return 0;
}

const char *sp_restore_topic(sp_restore *rs, int32_t store) {
    return store >= 0 && store < rs->ntopics ? rs->topics[store] : NULL;
}

static void assign_one(sp_restore *rs, int32_t store, int32_t partition,
                       int64_t offset, int add) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, rs->topics[store], partition)->offset = offset;
    rd_kafka_error_t *e = add ? rd_kafka_incremental_assign(rs->rk, l)
                              : rd_kafka_incremental_unassign(rs->rk, l);
    if (e) {
        sp_warn("restore consumer: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static int deferred_index(const sp_restore *rs, int32_t partition) {
    for (int i = 0; i < rs->ndeferred; i++)
        if (rs->deferred[i].partition == partition) return i;
    return -1;
}

int sp_restore_is_restoring(const sp_restore *rs, int32_t partition) {
    for (int i = 0; i < rs->njobs; i++)
        if (rs->jobs[i].partition == partition) return 1;
    return deferred_index(rs, partition) >= 0;
}

int sp_restore_pending(const sp_restore *rs) { return rs->njobs + rs->ndeferred; }

/* Loads the local checkpoint of store i's partition, if any: returns the
 * changelog offset to go on from (-1: none), -2 when it does not fit. */
static int64_t load_checkpoint(sp_restore *rs, int32_t i, int32_t partition,
                               int64_t *keys) {
    sp_store *s = rs->ctx->stores[i];
    sp_kv_part *p = sp_kv_part_of(s, partition, 1);
    int64_t at = -1;
    *keys = -1;
    if (!rs->dir || !p || p->count > 0 || s->disk || s->source) return -1;
    int rc = sp_checkpoint_load(rs->dir, s, p, &at, keys, &rs->ckpt_pos);
    if (rc < 0) return -2;
    return rc == 1 ? at : -1;
}

static int add_job(sp_restore *rs, int32_t partition, int32_t store, int64_t hi,
                   int64_t keys) {
    if (rs->njobs == rs->cap) {
        int cap = rs->cap ? rs->cap * 2 : 16;
        job *j = realloc(rs->jobs, (size_t)cap * sizeof *j);
        if (!j) return -1;
        rs->jobs = j;
        rs->cap = cap;
    }
    rs->jobs[rs->njobs++] = (job){partition, store, hi, 0, sp_clock_s(), keys, 0, 0};
    return 0;
}

static int is_present(const sp_restore *rs, int32_t partition) {
    for (int i = 0; i < rs->npresent; i++)
        if (rs->present[i] == partition) return 1;
    return 0;
}

/* The client that reads the changelogs' ends, made on first use. */
static rd_kafka_t *ends_client(sp_restore *rs) {
    char errstr[256];
    if (rs->ends_rk) return rs->ends_rk;
    rd_kafka_conf_t *conf = rd_kafka_conf_dup(rs->ends_conf);
    rs->ends_rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rs->ends_rk) {
        rd_kafka_conf_destroy(conf);
        sp_error("cannot create the client that reads the changelogs' ends: %s", errstr);
    }
    return rs->ends_rk;
}

/* Whether positions (SP_CHANGELOG_POSITIONS' text) name input of
 * partition past the group's committed offsets (sp_restore.h). */
static int positions_beyond(sp_restore *rs, const char *p, size_t size, int32_t partition) {
    const char *end = p + size;
    char topic[512];
    if (!rs->committed) return 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        char *sp;
        long long at = strtoll(p, &sp, 10);
        size_t tl = (size_t)(nl - sp - 1);
        if (sp >= nl || *sp != ' ' || tl == 0 || tl >= sizeof topic) break;
        memcpy(topic, sp + 1, tl);
        topic[tl] = '\0';
        int64_t c = rs->committed(rs->committed_opaque, topic, partition);
        /* -2: an input not assigned here, whose offset is not known */
        if (c != -2 && at > c) return 1;
        p = nl + 1;
    }
    return 0;
}

/* A disk store's partition: its LMDB is its own checkpoint when a clean
 * hand-over recorded its offset (the changelog's tail is read after it);
 * otherwise (a crash) it starts over. 1 when restoring started, 0 when
 * nothing is to read, -1 on error. */
static int start_disk(sp_restore *rs, int32_t i, int32_t partition, int64_t lo, int64_t hi) {
    sp_store *s = rs->ctx->stores[i];
    int64_t keys;
    const char *err;
    sp_lmdb *l = sp_store_disk(rs->ctx, s, &err);
    if (!l) {
        sp_error("store %s: %s", s->name, err);
        return -1;
    }
    /* a table's LMDB holds no offset of its own: it starts over */
    int64_t off = s->source ? -1 : sp_lmdb_offset(l, partition, &rs->ckpt_pos);
    keys = -1;
    int64_t from = -1;
    if (off >= 0 && positions_beyond(rs, rs->ckpt_pos.data, rs->ckpt_pos.len, partition)) {
        /* kept state ahead of the committed offsets: as a checkpoint's */
        store_info(s->name, partition,
                   "store %s partition %" PRId32 ": its kept state is ahead of the group's "
                   "committed offsets; restoring from the changelog", s->name, partition);
        if (rs->exactly_once) mark_stale(rs, partition);
        off = -1;
    }
    if (off >= 0 && off <= hi) {
        from = off;
        keys = sp_lmdb_count(l, partition);
    } else if (sp_lmdb_drop(l, partition, &err) != 0) {
        sp_error("store %s: %s", s->name, err);
        return -1;
    }
    if (sp_lmdb_set_offset(l, partition, -1, NULL, 0, &err) != 0 ||
        sp_lmdb_commit(l, &err) != 0) {
        sp_error("store %s: %s", s->name, err);
        return -1;
    }
    sp_kv_part *p = sp_kv_part_of(s, partition, 1);
    if (!p) return -1;
    if (from >= 0) p->changelog_end = from;
    if (from < lo) from = lo;
    if (hi <= from) return 0;
    if (add_job(rs, partition, i, hi, keys) != 0) return -1;
    assign_one(rs, i, partition, from, 1);
    store_info(s->name, partition,
               "restoring store %s partition %" PRId32 " (on disk%s) from %s offset %" PRId64
               " (%" PRId64 " records at most)",
               s->name, partition, keys >= 0 ? ", kept" : "", rs->topics[i], from, hi - from);
    return 1;
}

/* An in-memory store's partition: from its local checkpoint when there is
 * one, then the changelog. 1 when restoring started, 0 when nothing is to
 * read, -1 on error. */
static int start_memory(sp_restore *rs, int32_t i, int32_t partition, int64_t lo, int64_t hi) {
    sp_store *s = rs->ctx->stores[i];
    int64_t keys;
    if (rs->dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.%" PRId32 ".ckpt", rs->dir, s->name, partition);
        if (access(path, R_OK) == 0)
            store_info(s->name, partition, "restoring store %s partition %" PRId32
                       ": loading its checkpoint", s->name, partition);
    }
    int64_t from = load_checkpoint(rs, i, partition, &keys);
    if (from == -2) {
        sp_error("store %s partition %" PRId32 ": its checkpoint does not fit "
                 "the memory budget", s->name, partition);
        return -1;
    }
    if (from >= 0 && positions_beyond(rs, rs->ckpt_pos.data, rs->ckpt_pos.len, partition)) {
        /* the state is ahead of the committed offsets: a stale read
         * (exactly-once reads them again) or a rewind, whose state the
         * changelog gives (its later records left out) */
        store_info(s->name, partition,
                   "store %s partition %" PRId32 ": its checkpoint is ahead of the group's "
                   "committed offsets; restoring from the changelog", s->name, partition);
        if (rs->exactly_once) mark_stale(rs, partition);
        else sp_checkpoint_remove(rs->dir, s, partition);
        sp_kv_drop_part(s, partition);
        from = -1;
        keys = -1;
    } else if (from > hi) {
        /* the changelog is not the one the checkpoint was made from
         * (the topic was recreated): start over from the changelog */
        sp_warn("store %s partition %" PRId32 ": checkpoint at offset %" PRId64
                " is past the changelog's end %" PRId64 "; restoring from "
                "the changelog alone", s->name, partition, from, hi);
        sp_kv_drop_part(s, partition);
        sp_checkpoint_remove(rs->dir, s, partition);
        from = -1;
        keys = -1;
    }
    sp_kv_part *p = sp_kv_part_of(s, partition, 1);
    if (!p) return -1;
    if (from >= 0) p->changelog_end = from;
    if (from < lo) from = lo;
    if (hi <= from) {
        if (keys >= 0)
            store_info(s->name, partition,
                       "restored store %s partition %" PRId32 " from its checkpoint: %" PRId64
                       " keys, nothing in the changelog after",
                       s->name, partition, keys);
        return 0;
    }
    if (add_job(rs, partition, i, hi, keys) != 0) return -1;
    assign_one(rs, i, partition, from, 1);
    if (keys >= 0)
        store_info(s->name, partition,
                   "restoring store %s partition %" PRId32 " from its checkpoint (%" PRId64
                   " keys) and %s from offset %" PRId64 " (%" PRId64 " records at most)",
                   s->name, partition, keys, rs->topics[i], from, hi - from);
    else
        store_info(s->name, partition,
                   "restoring store %s partition %" PRId32 " from %s (%" PRId64
                   " records at most)",
                   s->name, partition, rs->topics[i], hi - from);
    return 1;
}

/* Kafka Streams' task.timeout.ms default: how long a partition's restore
 * may fail to start before the process gives up. */
#define SP_RESTORE_START_TIMEOUT_S 300.0

/* Where each store's changelog partition starts and ends (the bounds of
 * what to restore); -1 when one cannot be read now. */
static int changelog_bounds(sp_restore *rs, rd_kafka_t *ends, int32_t partition, int64_t *lo,
                            int64_t *hi, char *why, size_t whysize) {
    for (int32_t i = 0; i < rs->ntopics; i++) {
        sp_store *s = rs->ctx->stores[i];
        lo[i] = hi[i] = -1;
        if (s->global) continue; /* read whole at start-up */
        /* a table's topic may have fewer partitions than a topic read
         * with it (one re-keyed to join it): nothing of it here */
        if (s->source && partition >= sp_topics_partitions(ends, rs->topics[i])) continue;
        /* a retry waits less: the loop goes on meanwhile */
        double within = deferred_index(rs, partition) >= 0 ? 2 : 10;
        rd_kafka_resp_err_t e = sp_topics_watermarks(ends, rs->topics[i], partition, &lo[i],
                                                     &hi[i], within);
        if (e) {
            snprintf(why, whysize, "cannot read the end of changelog %s [%" PRId32 "]: %s",
                     rs->topics[i], partition, rd_kafka_err2str(e));
            return -1;
        }
        const struct seen *was = seen_of(rs, i, partition, 0);
        if (was && hi[i] < was->end) {
            snprintf(why, whysize, "the end of changelog %s [%" PRId32 "] read as %" PRId64
                     ", before the %" PRId64 " this process saw (a broker not caught up)",
                     rs->topics[i], partition, hi[i], was->end);
            return -1;
        }
    }
    return 0;
}

/* Notes that partition's restore waits to start: 1, or -1 when it has
 * waited too long (the message in why). */
static int defer(sp_restore *rs, int32_t partition, const char *why) {
    double now = sp_clock_s();
    int d = deferred_index(rs, partition);
    if (d < 0) {
        if (rs->ndeferred == rs->deferred_cap) {
            int cap = rs->deferred_cap ? rs->deferred_cap * 2 : 8;
            struct deferred *n = realloc(rs->deferred, (size_t)cap * sizeof *n);
            if (!n) return -1;
            rs->deferred = n;
            rs->deferred_cap = cap;
        }
        d = rs->ndeferred++;
        rs->deferred[d].partition = partition;
        rs->deferred[d].since = now;
        sp_warn("%s; partition %" PRId32 " waits and its restore is tried again every second",
                why, partition);
    } else if (now - rs->deferred[d].since > SP_RESTORE_START_TIMEOUT_S) {
        sp_error("%s, for %.0f s", why, now - rs->deferred[d].since);
        return -1;
    }
    rs->deferred[d].next = now + 1;
    return 1;
}

static void undefer(sp_restore *rs, int32_t partition) {
    int d = deferred_index(rs, partition);
    if (d >= 0) rs->deferred[d] = rs->deferred[--rs->ndeferred];
}

/* Starts every store's restore of partition: 1 restoring (or waiting to
 * start), 0 nothing to read, -1 on error. */
static int start_now(sp_restore *rs, int32_t partition) {
    rd_kafka_t *ends = ends_client(rs);
    if (!ends) return -1;
    int64_t *lo = calloc((size_t)rs->ntopics + 1, sizeof *lo);
    int64_t *hi = calloc((size_t)rs->ntopics + 1, sizeof *hi);
    char why[512];
    int rc = -1;
    if (!lo || !hi) goto done;
    /* every bound first: a restore starts whole or not at all */
    if (changelog_bounds(rs, ends, partition, lo, hi, why, sizeof why) != 0) {
        rc = defer(rs, partition, why);
        /* the next try with a new client: librdkafka 2.0's went on asking
         * a broker that was killed, for minutes after its partitions had
         * new leaders (seen in test_cluster3) */
        rd_kafka_destroy_flags(rs->ends_rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        rs->ends_rk = NULL;
        goto done;
    }
    undefer(rs, partition);
    if (rs->npresent == rs->present_cap) {
        int cap = rs->present_cap ? rs->present_cap * 2 : 16;
        int32_t *p = realloc(rs->present, (size_t)cap * sizeof *p);
        if (!p) goto done;
        rs->present = p;
        rs->present_cap = cap;
    }
    rs->present[rs->npresent++] = partition;
    rc = 0;
    for (int32_t i = 0; i < rs->ntopics && rc >= 0; i++) {
        sp_store *s = rs->ctx->stores[i];
        if (hi[i] < 0) continue;
        if (s->source) {
            /* a table's topic: what the group processed is its state; the
             * consumer goes on from there */
            int64_t c = rs->committed ? rs->committed(rs->committed_opaque, s->source, partition)
                                      : -1;
            hi[i] = c > hi[i] ? hi[i] : c;
            if (hi[i] < lo[i]) hi[i] = lo[i];
        }
        int st = s->disk ? start_disk(rs, i, partition, lo[i], hi[i])
                         : start_memory(rs, i, partition, lo[i], hi[i]);
        rc = st < 0 ? -1 : rc | st;
    }
done:
    free(lo);
    free(hi);
    return rc;
}

int sp_restore_start(sp_restore *rs, int32_t partition) {
    if (sp_restore_is_restoring(rs, partition)) return 1;
    if (is_present(rs, partition)) return 0;
    return start_now(rs, partition);
}

/* Tries the deferred starts that are due; a partition with nothing to
 * read is done at once. One that fails again ends the round (the others
 * most likely wait for the same broker, and each try holds the loop for
 * up to seconds). Returns how many went to done, or -1. */
static int retry_deferred(sp_restore *rs, int32_t *done, int max) {
    int ndone = 0;
    double now = sp_clock_s();
    for (int i = rs->ndeferred - 1; i >= 0 && ndone < max; i--) {
        if (i >= rs->ndeferred || rs->deferred[i].next > now) continue;
        int32_t partition = rs->deferred[i].partition;
        int rc = start_now(rs, partition);
        if (rc < 0) return -1;
        if (rc == 0) done[ndone++] = partition;
        if (deferred_index(rs, partition) >= 0) {
            for (int j = 0; j < rs->ndeferred; j++)
                if (rs->deferred[j].next < now + 1) rs->deferred[j].next = now + 1;
            break;
        }
    }
    return ndone;
}

int sp_restore_checkpoint(sp_restore *rs, int32_t partition) {
    int rc = 0;
    sp_buf_reset(&rs->ckpt_pos);
    if (rs->positions) rs->positions(rs->committed_opaque, partition, &rs->ckpt_pos);
    for (int32_t i = 0; i < rs->ctx->nstores; i++) {
        sp_store *s = rs->ctx->stores[i];
        sp_kv_part *p = sp_kv_part_of(s, partition, 0);
        const char *err;
        /* only a state the changelog is known to hold up to an offset */
        if (!p || p->changelog_end < 0 || s->source || sp_restore_is_restoring(rs, partition))
            continue;
        if (s->disk) {
            sp_lmdb *l = sp_store_disk(rs->ctx, s, &err);
            if (!l ||
                sp_lmdb_set_offset(l, partition, p->changelog_end, rs->ckpt_pos.data,
                                   rs->ckpt_pos.len, &err) != 0 ||
                sp_lmdb_commit(l, &err) != 0) {
                sp_warn("store %s partition %" PRId32 ": cannot record its offset: %s",
                        s->name, partition, err);
                rc = -1;
            }
            continue;
        }
        if (!rs->dir) continue;
        if (sp_checkpoint_write(rs->dir, s, p, rs->ckpt_pos.data, rs->ckpt_pos.len, &err) != 0) {
            sp_warn("cannot write the checkpoint of store %s partition %" PRId32
                    " in %s: %s", s->name, partition, rs->dir, err);
            rc = -1;
        }
    }
    return rc;
}

/* Whether a changelog record holds the effect of input past the group's
 * committed offsets. */
static int beyond_committed(sp_restore *rs, rd_kafka_message_t *m) {
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t size;
    if (!rs->committed || rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(h, SP_CHANGELOG_POSITIONS, &v, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    return positions_beyond(rs, v, size, m->partition);
}

static int find_job(sp_restore *rs, const char *topic, int32_t partition) {
    for (int i = 0; i < rs->njobs; i++)
        if (rs->jobs[i].partition == partition &&
            strcmp(rs->topics[rs->jobs[i].store], topic) == 0)
            return i;
    return -1;
}

/* Removes job i; returns 1 when its partition has no job left. */
static int finish(sp_restore *rs, int i) {
    job j = rs->jobs[i];
    assign_one(rs, j.store, j.partition, 0, 0);
    saw_end(rs, j.store, j.partition);
    const char *name = rs->ctx->stores[j.store]->name;
    if (j.ckpt_keys >= 0)
        store_info(name, j.partition,
                   "restored store %s partition %" PRId32 ": %" PRId64 " keys from its "
                   "checkpoint and %" PRId64 " changelog records in %.2f s",
                   name, j.partition, j.ckpt_keys, j.applied, sp_clock_s() - j.t0);
    else
        store_info(name, j.partition,
                   "restored store %s partition %" PRId32 ": %" PRId64
                   " changelog records in %.2f s",
                   name, j.partition, j.applied, sp_clock_s() - j.t0);
    if (j.skipped > 0)
        sp_info("store %s partition %" PRId32 ": %" PRId64 " changelog records left out, "
                "changes by input after the committed offsets (it is processed again)",
                rs->ctx->stores[j.store]->name, j.partition, j.skipped);
    rs->jobs[i] = rs->jobs[--rs->njobs];
    return !sp_restore_is_restoring(rs, j.partition);
}

int sp_restore_poll(sp_restore *rs, int32_t *done, int max, const char **err) {
    int ndone = retry_deferred(rs, done, max);
    if (ndone < 0) {
        *err = "a partition's restore could not start (see the error before)";
        return -1;
    }
    if (rs->njobs == 0 || ndone == max) return ndone;
    ssize_t n = rd_kafka_consume_batch_queue(
        rs->q, 0, rs->msgs, sizeof rs->msgs / sizeof *rs->msgs);
    int rc = 0;
    for (ssize_t k = 0; k < n; k++) {
        rd_kafka_message_t *m = rs->msgs[k];
        const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
        int i = find_job(rs, topic, m->partition);
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            sp_warn("restore consumer: %s", rd_kafka_message_errstr(m));
        } else if (i >= 0 && rc == 0) {
            job *j = &rs->jobs[i];
            if (!m->err) {
                sp_store *s = rs->ctx->stores[j->store];
                sp_kv_part *p = sp_kv_part_of(s, j->partition, 1);
                int64_t ts = rd_kafka_message_timestamp(m, NULL);
                const char *val = m->payload;
                size_t vlen = m->len;
                if (s->source && val) {
                    sp_buf_reset(&rs->tagged);
                    char tag = (char)s->source_tag;
                    if (sp_buf_append(&rs->tagged, &tag, 1) != 0 ||
                        sp_buf_append(&rs->tagged, val, vlen) != 0)
                        p = NULL;
                    val = rs->tagged.data;
                    vlen = rs->tagged.len;
                }
                if (s->source && !m->key) {
                    /* a table skips records without a key */
                } else if (p && !s->source && beyond_committed(rs, m)) {
                    if (rs->exactly_once) mark_stale(rs, j->partition);
                    p->changelog_end = m->offset + 1;
                    j->skipped++;
                } else if (!p || sp_store_restore_apply(rs->ctx, s, j->partition, m->key,
                                                        m->key_len, val, vlen, ts, err) != 0) {
                    if (!p) *err = "out of memory";
                    rc = -1;
                } else {
                    p->changelog_end = m->offset + 1;
                }
                j->applied++;
            }
            /* the changelog's end as seen when restoring began; an EOF
             * there or later ends it too (compaction leaves gaps) */
            if (rc == 0 && m->err) {
                sp_kv_part *p = sp_kv_part_of(rs->ctx->stores[j->store], j->partition, 0);
                if (p && m->offset > p->changelog_end) p->changelog_end = m->offset;
            }
            if (rc == 0 && (m->err ? m->offset : m->offset + 1) >= j->target) {
                int32_t part = j->partition;
                if (finish(rs, i) && ndone < max) done[ndone++] = part;
            } else if (rc == 0 && m->err && !j->waiting) {
                /* read_committed stops before a transaction still open */
                j->waiting = 1;
                const char *name = rs->ctx->stores[j->store]->name;
                store_info(name, j->partition,
                           "restoring store %s partition %" PRId32 ": waiting at offset %" PRId64
                           " of %s for an open transaction to end (one a stopped process "
                           "left ends within transaction.timeout.ms)",
                           name, j->partition, m->offset, rs->topics[j->store]);
            }
        }
        rd_kafka_message_destroy(m);
    }
    /* disk stores: what was restored is written */
    if (rc == 0 && n > 0 && sp_store_end_batch(rs->ctx, err) != SP_OK) rc = -1;
    return rc ? rc : ndone;
}

void sp_restore_drop(sp_restore *rs, int32_t partition) {
    undefer(rs, partition);
    for (int i = 0; i < rs->npresent; i++)
        if (rs->present[i] == partition) {
            rs->present[i] = rs->present[--rs->npresent];
            break;
        }
    for (int i = rs->njobs - 1; i >= 0; i--)
        if (rs->jobs[i].partition == partition) {
            assign_one(rs, rs->jobs[i].store, partition, 0, 0);
            rs->jobs[i] = rs->jobs[--rs->njobs];
        }
    for (int32_t i = 0; i < rs->ctx->nstores; i++) {
        if (i < rs->ntopics) saw_end(rs, i, partition);
        sp_kv_drop_part(rs->ctx->stores[i], partition);
    }
}

/* The changelog topics: compacted, one partition per input partition. An
 * at-least-once restore may go back to a key's record before its latest
 * (sp_restore.h): compaction leaves those an hour. A join side's also
 * deletes by time a day after its retention (Kafka Streams'
 * windowstore.changelog.additional.retention.ms): its expired records
 * leave no tombstones. */
int sp_restore_ensure_topics(sp_restore *rs, int32_t partitions) {
    char **own = calloc((size_t)rs->ntopics + 1, sizeof *own);
    int n = 0, rc = 0;
    if (!own) return -1;
    for (int32_t i = 0; i < rs->ntopics && rc == 0; i++) {
        sp_store *s = rs->ctx->stores[i];
        if (s->source) continue;
        if (!s->retention) {
            own[n++] = rs->topics[i];
            continue;
        }
        /* Kafka Streams' windowstore.changelog.additional.retention.ms */
        int64_t keep_ms = s->retention + 86400000;
        char config[160];
        snprintf(config, sizeof config,
                 "cleanup.policy=compact,delete\nmin.compaction.lag.ms=3600000\n"
                 "retention.ms=%" PRId64, keep_ms);
        rc = sp_topics_ensure(rs->rk, &rs->topics[i], 1, partitions, config, 1, "changelog");
        /* one an earlier sproc made is compacted only: with no tombstones
         * for its expired records, nothing would ever empty it */
        char policy[64];
        if (rc == 0 && sp_topics_config(rs->rk, rs->topics[i], "cleanup.policy", policy,
                                        sizeof policy) == 1 && !strstr(policy, "delete"))
            sp_warn("changelog topic %s has cleanup.policy=%s: the join's expired records leave "
                    "it no tombstones, so it keeps them all; set cleanup.policy=compact,delete "
                    "and retention.ms=%" PRId64 " on it", rs->topics[i], policy, keep_ms);
    }
    if (rc == 0 && n)
        rc = sp_topics_ensure(rs->rk, own, n, partitions,
                              "cleanup.policy=compact\nmin.compaction.lag.ms=3600000", 1,
                              "changelog");
    free(own);
    return rc;
}
