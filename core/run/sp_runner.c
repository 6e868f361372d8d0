/* The pipeline runner. One thread: libev waits on the consumer queue's
 * io-event fd, each wakeup drains a bounded batch into the context and
 * calls Lua once, and the producer's delivery reports, commits and file
 * rolls are served between batches. */
#include "sp_runner.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <ev.h>
#include <fcntl.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sp_clock.h"
#include "sp_ctx.h"
#include "sp_engine.h"
#include "sp_store.h"
#include "sp_log.h"
#include "sp_lua.h"
#include "sp_offsets.h"
#include "sp_prefetch.h"
#include "sp_restore.h"
#include "sp_metrics.h"
#include "sp_kafka_out.h"
#include "sp_topics.h"
#include "sp_window.h"

typedef struct file_src {
    FILE *f;
    int32_t topic;
    int64_t line;
} file_src;

typedef struct runner {
    const sp_opts *o;
    sp_ctx *ctx;
    sp_lua *lua;
    sp_kafka_out ko;
    sp_offsets offs;

    rd_kafka_t *prod, *cons, *mock_rk;
    rd_kafka_t *refetch; /* reads an input again for a dead letter; lazily */
    rd_kafka_mock_cluster_t *mock;
    rd_kafka_queue_t *cq, *pq;
    sp_prefetch *pf;
    char *brokers;
    char errstr[512];

    struct ev_loop *loop;
    ev_io cons_w, prod_w;
    ev_idle more_w;
    ev_timer commit_w, tick_w;
    ev_signal int_w, term_w;
    int cons_fd[2], prod_fd[2];

    rd_kafka_message_t **msgs;
    int max_batch;
    int64_t commit_interval_ms;
    int32_t dev_partitions;
    int64_t start_ms; /* --start as a time, or -1 */

    file_src *files;
    int nfiles, files_open;

    /* rd_kafka_topic_t pointer -> topic id, for the batch builder */
    const void **rkt_keys;
    int32_t *rkt_ids;
    int nrkt;

    sp_restore *rs;        /* stores: restore from changelogs; NULL none */
    ev_timer restore_w;
    int32_t src_partitions; /* most partitions of a source topic */

    int eos;        /* exactly-once: transactions */
    int in_txn;     /* a transaction is open */
    int64_t txns;   /* transactions committed */

    /* hot reload */
    ev_timer watch_w;
    char **wfiles;        /* the script and its modules */
    struct stat *wstats;  /* as last seen */
    int nwfiles;
    ev_timer reload_w;
    ev_signal hup_w;
    sp_lua *prev;       /* the version before, for a rollback under --watch */
    int version;
    const char *def_id;

    /* observability */
    sp_metrics *metrics;
    int64_t rebalances[3]; /* assigned, revoked, lost */
    int64_t reloads, reload_failures;
    int64_t lua_batches;
    double lua_seconds;
    int64_t lua_buckets[8]; /* Lua time per batch, by LUA_BOUNDS */
    int64_t last_in;        /* records in at the last progress line */
    int progress;           /* a progress line on the terminal */

    int windows_closed; /* a bounded run closed every window */
    int sealed;         /* a bounded run: repartition topics' ends are set */
    int stopping;   /* no more consuming */
    int exit_code;
    int assigned_once;
} runner;

static volatile sig_atomic_t got_signal;

/* --- configuration ------------------------------------------------------- */

static int conf_set(runner *r, rd_kafka_conf_t *conf, const char *k,
                    const char *v) {
    if (rd_kafka_conf_set(conf, k, v, r->errstr, sizeof r->errstr) !=
        RD_KAFKA_CONF_OK) {
        sp_error("setting %s=%s: %s", k, v, r->errstr);
        return -1;
    }
    return 0;
}

/* Settings of one client only; prefixes end with '.'. */
static const char *const producer_only[] = {
    "acks", "request.required.acks", "linger.ms", "queue.buffering.max.ms",
    "compression.", "enable.idempotence", "message.timeout.ms",
    "delivery.timeout.ms", "batch.", "queue.buffering.", "partitioner",
    "message.send.max.retries", "retries", "retry.backoff.ms",
    "transactional.id", "transaction.timeout.ms", "sticky.partitioning.", NULL};
static const char *const consumer_only[] = {
    "session.timeout.ms", "group.", "max.poll.interval.ms",
    "heartbeat.interval.ms", "isolation.level", "fetch.", "auto.",
    "partition.assignment.strategy", "enable.partition.eof",
    "max.partition.fetch.bytes", "queued.", "check.crcs", NULL};

static int one_of(const char *k, const char *const *list) {
    for (; *list; list++) {
        size_t n = strlen(*list);
        if ((*list)[n - 1] == '.' ? strncmp(k, *list, n) == 0 : strcmp(k, *list) == 0)
            return 1;
    }
    return 0;
}

/* Applies --set pairs: "sproc." keys are ours, "consumer." and "producer."
 * prefixes target one client, anything else goes to both. is_consumer 2:
 * the restore consumer, which takes only what both clients take (it joins
 * no group, so group and session settings are not its own). */
static int apply_sets(runner *r, rd_kafka_conf_t *conf, int is_consumer) {
    for (int i = 0; i < r->o->nsets; i++) {
        char kv[1024];
        snprintf(kv, sizeof kv, "%s", r->o->sets[i]);
        char *eq = strchr(kv, '=');
        if (!eq) continue; /* checked by the CLI */
        *eq = '\0';
        const char *k = kv, *v = eq + 1;
        if (strncmp(k, "sproc.", 6) == 0) continue;
        if (is_consumer == 2 && (strncmp(k, "consumer.", 9) == 0 ||
                                 strncmp(k, "producer.", 9) == 0 ||
                                 one_of(k, consumer_only) || one_of(k, producer_only)))
            continue;
        if (strncmp(k, "consumer.", 9) == 0) {
            if (!is_consumer) continue;
            k += 9;
        } else if (strncmp(k, "producer.", 9) == 0) {
            if (is_consumer) continue;
            k += 9;
        } else if (is_consumer ? one_of(k, producer_only)
                               : one_of(k, consumer_only)) {
            continue; /* the other client's setting: not worth a warning */
        }
        if (conf_set(r, conf, k, v) != 0) return -1;
    }
    return 0;
}

static const char *sproc_setting(const sp_opts *o, const char *key) {
    size_t n = strlen(key);
    const char *v = NULL;
    for (int i = 0; i < o->nsets; i++)
        if (strncmp(o->sets[i], key, n) == 0 && o->sets[i][n] == '=')
            v = o->sets[i] + n + 1;
    return v;
}

static int64_t setting_int(const sp_opts *o, const char *key, int64_t def) {
    const char *v = sproc_setting(o, key);
    return v ? strtoll(v, NULL, 10) : def;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf) {
    (void)rk;
    int l = level <= 3 ? SP_LOG_ERROR
                       : level <= 4 ? SP_LOG_WARN
                                    : level <= 6 ? SP_LOG_INFO : SP_LOG_DEBUG;
    /* librdkafka's notices are chatty at info, and a broker that refuses
     * connections is reported once by "waiting for Kafka" or error_cb:
     * keep both for debug */
    if (l == SP_LOG_INFO || strcmp(fac, "FAIL") == 0) l = SP_LOG_DEBUG;
    sp_log(l, "kafka %s: %s", fac, buf);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason,
                     void *opaque) {
    (void)rk;
    (void)opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
        err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__RESOLVE)
        sp_debug("kafka: %s", reason);
    else
        sp_warn("kafka: %s", reason);
}

/* --- reading an input again --------------------------------------------- */

/* An input whose output Kafka refused goes to the dead-letter topic as it
 * came: it is read again from its topic (its offset is not committed, so
 * it is there), with a client of its own made on the first such failure. */
static rd_kafka_message_t *refetch(void *opaque, const char *topic, int32_t partition,
                                   int64_t offset) {
    runner *r = opaque;
    if (!r->refetch) {
        /* assign() only: librdkafka wants a group id all the same */
        char group[512];
        snprintf(group, sizeof group, "%s-refetch", sp_lua_app_id(r->lua));
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        if (conf_set(r, conf, "bootstrap.servers", r->brokers) ||
            conf_set(r, conf, "group.id", group) ||
            conf_set(r, conf, "enable.auto.commit", "false") ||
            conf_set(r, conf, "enable.partition.eof", "true") || apply_sets(r, conf, 2)) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
        rd_kafka_conf_set_log_cb(conf, log_cb);
        r->refetch = rd_kafka_new(RD_KAFKA_CONSUMER, conf, r->errstr, sizeof r->errstr);
        if (!r->refetch) {
            sp_warn("cannot read the input of a dead letter again: %s", r->errstr);
            return NULL;
        }
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    rd_kafka_message_t *got = NULL;
    if (rd_kafka_assign(r->refetch, l) == 0) {
        double until = sp_clock_s() + 10;
        while (!got && sp_clock_s() < until) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(r->refetch, 200);
            if (!m) continue;
            if (!m->err && m->offset == offset && m->partition == partition &&
                strcmp(rd_kafka_topic_name(m->rkt), topic) == 0) {
                got = m;
            } else {
                int past = m->offset >= offset || m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
                rd_kafka_message_destroy(m);
                if (past) break;
            }
        }
        rd_kafka_assign(r->refetch, NULL);
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (!got) sp_warn("could not read %s [%d] offset %lld again for its dead letter: it goes "
                      "with its coordinates only", topic, (int)partition, (long long)offset);
    return got;
}

/* --- the dev cluster ----------------------------------------------------- */

static void dev_topic(void *opaque, const char *topic) {
    runner *r = opaque;
    if (r->mock)
        rd_kafka_mock_topic_create(r->mock, topic, r->dev_partitions, 1);
}

static int start_dev_cluster(runner *r) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, log_cb);
    r->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, r->errstr,
                              sizeof r->errstr);
    if (!r->mock_rk) {
        sp_error("cannot start the embedded dev cluster: %s", r->errstr);
        return -1;
    }
    r->mock = rd_kafka_mock_cluster_new(r->mock_rk, 1);
    if (!r->mock) {
        sp_error("cannot start the embedded dev cluster");
        return -1;
    }
    r->brokers = strdup(rd_kafka_mock_cluster_bootstraps(r->mock));
    fprintf(stderr,
            "sproc: no --brokers or SPROC_BROKERS given: running on an embedded "
            "in-process dev cluster at %s\n"
            "sproc: (a development aid: it keeps ~5 MiB per partition and loses "
            "everything on exit)\n",
            r->brokers);
    return 0;
}

/* --- clients ------------------------------------------------------------- */

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque);
static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque);

/* Exactly-once: one transactional producer per process. A static member
 * (group.instance.id) keeps its transactional id across restarts, so a
 * restart fences its predecessor and aborts what it left open at once;
 * otherwise the id is new per run and an abandoned transaction ends when
 * transaction.timeout.ms (10 s unless set) runs out. Zombies are fenced by
 * the group generation that goes with the offsets (KIP-447). */
static int make_transactional(runner *r, rd_kafka_conf_t *conf) {
    char id[512];
    const char *inst = NULL;
    for (int i = 0; i < r->o->nsets; i++) {
        const char *kv = r->o->sets[i];
        if (strncmp(kv, "group.instance.id=", 18) == 0) inst = kv + 18;
        if (strncmp(kv, "consumer.group.instance.id=", 27) == 0) inst = kv + 27;
    }
    if (inst) {
        snprintf(id, sizeof id, "%s-%s", sp_lua_app_id(r->lua), inst);
    } else {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        snprintf(id, sizeof id, "%s-%d-%lx", sp_lua_app_id(r->lua), (int)getpid(),
                 (unsigned long)(t.tv_nsec ^ t.tv_sec));
    }
    return conf_set(r, conf, "transactional.id", id) ||
           conf_set(r, conf, "transaction.timeout.ms", "10000");
}

static int make_producer(runner *r) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf_set(r, conf, "bootstrap.servers", r->brokers) ||
        /* the partition a Java producer picks for the same key */
        conf_set(r, conf, "partitioner", "murmur2_random") ||
        conf_set(r, conf, "enable.idempotence", "true") ||
        conf_set(r, conf, "linger.ms", "5") ||
        /* outputs waiting for Kafka: at most 20,000 (about 15 ms at full
         * speed; 10,000 already slowed it down) */
        conf_set(r, conf, "queue.buffering.max.messages", "20000") ||
        (r->eos && make_transactional(r, conf)) ||
        apply_sets(r, conf, 0)) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_dr_msg_cb(conf, sp_kafka_out_delivered);
    rd_kafka_conf_set_opaque(conf, &r->ko);
    r->prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, r->errstr, sizeof r->errstr);
    if (!r->prod) {
        sp_error("cannot create the producer: %s", r->errstr);
        return -1;
    }
    r->ko.producer = r->prod;
    return 0;
}

static int make_consumer(runner *r) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *reset = r->o->start && strcmp(r->o->start, "latest") == 0
                            ? "latest"
                            : "earliest";
    if (conf_set(r, conf, "bootstrap.servers", r->brokers) ||
        conf_set(r, conf, "group.id", sp_lua_app_id(r->lua)) ||
        conf_set(r, conf, "enable.auto.commit", "false") ||
        conf_set(r, conf, "enable.auto.offset.store", "false") ||
        conf_set(r, conf, "auto.offset.reset", reset) ||
        conf_set(r, conf, "partition.assignment.strategy", "cooperative-sticky") ||
        conf_set(r, conf, "isolation.level", "read_committed") ||
        conf_set(r, conf, "enable.partition.eof", r->o->until_end ? "true" : "false") ||
        /* A small prefetch: sp_prefetch wakes the fetcher when half of it
         * is processed, so it never runs dry, and records are processed
         * while still in the cache. Measured at 1.4M records/s: 10,000
         * records and 2 MB (RSS 25 MB) as fast as 1M and 32 MB (RSS 180
         * MB), with 128 KB fetched per partition at a time. */
        conf_set(r, conf, "queued.min.messages", "10000") ||
        conf_set(r, conf, "queued.max.messages.kbytes", "2048") ||
        conf_set(r, conf, "max.partition.fetch.bytes", "131072") ||
        apply_sets(r, conf, 1)) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
    rd_kafka_conf_set_opaque(conf, r);
    r->cons = rd_kafka_new(RD_KAFKA_CONSUMER, conf, r->errstr, sizeof r->errstr);
    if (!r->cons) {
        sp_error("cannot create the consumer: %s", r->errstr);
        return -1;
    }
    rd_kafka_poll_set_consumer(r->cons);
    return 0;
}

/* The prefetch bound is the consumer's, as librdkafka reads it. */
static sp_prefetch *make_prefetch(runner *r) {
    const rd_kafka_conf_t *conf = rd_kafka_conf(r->cons);
    char msgs[32] = "0", kb[32] = "0";
    size_t n = sizeof msgs;
    rd_kafka_conf_get(conf, "queued.min.messages", msgs, &n);
    n = sizeof kb;
    rd_kafka_conf_get(conf, "queued.max.messages.kbytes", kb, &n);
    sp_prefetch *pf = sp_prefetch_create(r->cons, r->cq, strtoll(msgs, NULL, 10),
                                         strtoll(kb, NULL, 10) * 1024);
    if (!pf) sp_error("out of memory");
    return pf;
}

/* --- commits ------------------------------------------------------------- */

static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque) {
    (void)rk;
    (void)opaque;
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        sp_warn("offset commit failed: %s (%d partitions); it is retried "
                "with the next commit",
                rd_kafka_err2str(err), offsets ? offsets->cnt : 0);
}

static void fatal(runner *r, const char *msg);

/* The stores' changes since the last flush to their changelogs: before
 * offsets are committed (the writes hold their inputs' offsets back until
 * Kafka has them). Not after a failure: the failed batch's changes must
 * not reach the changelog, and the offsets since the last flush stay
 * uncommitted, so a restart replays their records onto the state the
 * changelog has. */
static int flush_state(runner *r) {
    const char *err;
    if (r->exit_code) return -1;
    if (sp_store_flush_changelogs(r->ctx, &err) == SP_OK) return 0;
    char buf[512];
    snprintf(buf, sizeof buf, "writing the state stores' changelogs: %s", err);
    fatal(r, buf);
    return -1;
}

/* Exactly-once: the open transaction takes the positions of the processed
 * records and commits with the outputs and changelog writes in it. Any
 * failure is fatal: the state in memory may hold aborted changes, and a
 * restart restores it from the committed changelog. */
static void commit_txn(runner *r) {
    if (!r->in_txn || r->exit_code) return;
    if (flush_state(r) != 0) return;
    rd_kafka_error_t *e = NULL;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next)
        if (tp->assigned && tp->position > tp->committed)
            rd_kafka_topic_partition_list_add(l, tp->topic, tp->partition)->offset =
                tp->position;
    if (l->cnt > 0) {
        rd_kafka_consumer_group_metadata_t *md =
            rd_kafka_consumer_group_metadata(r->cons);
        e = rd_kafka_send_offsets_to_transaction(r->prod, l, md, 30000);
        rd_kafka_consumer_group_metadata_destroy(md);
    }
    if (!e) e = rd_kafka_commit_transaction(r->prod, 60000);
    if (e) {
        char buf[512];
        snprintf(buf, sizeof buf, "transaction failed: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        fatal(r, buf);
    } else {
        r->in_txn = 0;
        r->txns++;
        for (int i = 0; i < l->cnt; i++) {
            sp_tp *tp = sp_offsets_tp(&r->offs, l->elems[i].topic, l->elems[i].partition);
            if (tp) tp->committed = l->elems[i].offset;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static int begin_txn(runner *r) {
    if (!r->eos || r->in_txn) return 0;
    rd_kafka_error_t *e = rd_kafka_begin_transaction(r->prod);
    if (e) {
        char buf[512];
        snprintf(buf, sizeof buf, "cannot begin a transaction: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        fatal(r, buf);
        return -1;
    }
    r->in_txn = 1;
    return 0;
}

/* Commits what is safe. only: commit only these partitions (NULL all). */
static void commit(runner *r, int sync,
                   const rd_kafka_topic_partition_list_t *only) {
    if (!r->cons) return;
    if (r->eos) {
        /* a transaction covers every partition: commit it all */
        commit_txn(r);
        return;
    }
    flush_state(r);
    sp_kafka_out_poll(&r->ko, 0);
    if (sp_offsets_advance(&r->offs) == 0) return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next) {
        if (tp->committable <= tp->committed || !tp->assigned) continue;
        if (only && !rd_kafka_topic_partition_list_find(only, tp->topic,
                                                          tp->partition))
            continue;
        rd_kafka_topic_partition_list_add(l, tp->topic, tp->partition)->offset =
            tp->committable;
    }
    if (l->cnt > 0) {
        rd_kafka_resp_err_t e = rd_kafka_commit(r->cons, l, !sync);
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET) {
            sp_warn("offset commit failed: %s", rd_kafka_err2str(e));
        } else {
            for (int i = 0; i < l->cnt; i++) {
                sp_tp *tp = sp_offsets_tp(&r->offs, l->elems[i].topic,
                                          l->elems[i].partition);
                if (tp) tp->committed = l->elems[i].offset;
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Makes every effect so far safe: files published, outputs acknowledged.
 * Returns 0 when everything was acknowledged in time. */
static int make_safe(runner *r, int timeout_ms) {
    const char *err;
    if (!r->eos) flush_state(r);
    if (sp_ctx_flush_sinks(r->ctx, 1, &err) != SP_OK)
        sp_error("flushing outputs: %s", err);
    rd_kafka_resp_err_t e = rd_kafka_flush(r->prod, timeout_ms);
    if (e) {
        sp_warn("%d outputs not acknowledged after %d ms: their inputs are "
                "not committed and will be read again",
                rd_kafka_outq_len(r->prod), timeout_ms);
        return -1;
    }
    return 0;
}

/* --- bounded runs -------------------------------------------------------- */

static void check_finished(runner *r);

static void mark_done(runner *r, sp_tp *tp) {
    if (tp->done) return;
    tp->done = 1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, tp->topic, tp->partition);
    rd_kafka_pause_partitions(r->cons, l);
    rd_kafka_topic_partition_list_destroy(l);
    sp_debug("reached the end of %s [%" PRId32 "] at offset %" PRId64,
             tp->topic, tp->partition, tp->end_offset);
}

static int has_internal(runner *r) {
    for (int32_t i = 0; i < r->ctx->nsources; i++)
        if (r->ctx->sources[i].internal) return 1;
    return 0;
}

/* A client that sees every record written (read_uncommitted): Kafka's
 * end offsets for a read_committed one stop at the last stable offset,
 * before any transaction whose commit markers are not written yet, and
 * the markers are written after the commit returns. */
static rd_kafka_t *uncommitted_client(runner *r) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf_set(r, conf, "bootstrap.servers", r->brokers) ||
        conf_set(r, conf, "isolation.level", "read_uncommitted") ||
        apply_sets(r, conf, 2)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, r->errstr, sizeof r->errstr);
    if (!rk) sp_error("cannot create a client: %s", r->errstr);
    return rk;
}

/* Once the input of a bounded run is read, everything written to the
 * repartition topics is made readable and their ends become the end
 * offsets to read to. Returns 1 when nothing is left there. */
static int seal_internal(runner *r) {
    int left = 0;
    r->sealed = 1;
    /* under exactly-once what went to the repartition topics is in the
     * open transaction, readable (read_committed) once it commits */
    if (r->eos) commit_txn(r);
    rd_kafka_flush(r->prod, 60000);
    rd_kafka_t *rk = uncommitted_client(r);
    if (!rk) {
        fatal(r, "bounded run: cannot read the ends of the repartition topics");
        return 0;
    }
    for (int32_t i = 0; i < r->ctx->nsources; i++) {
        sp_source *s = &r->ctx->sources[i];
        if (!s->internal) continue;
        for (int32_t p = 0; p < r->src_partitions; p++) {
            int64_t lo, hi;
            rd_kafka_resp_err_t e = sp_topics_watermarks(rk, s->name, p, &lo, &hi);
            if (e) {
                char buf[512];
                snprintf(buf, sizeof buf, "bounded run: cannot read the end of %s [%d]: %s",
                         s->name, (int)p, rd_kafka_err2str(e));
                fatal(r, buf);
                break;
            }
            sp_tp *tp = sp_offsets_tp(&r->offs, s->name, p);
            if (!tp) continue;
            tp->end_offset = hi;
            if (hi <= lo || (tp->position >= 0 && tp->position >= hi)) {
                tp->done = 1;
            } else {
                tp->done = 0;
                left = 1;
            }
        }
        sp_debug("bounded run: draining %s", s->name);
    }
    rd_kafka_destroy(rk);
    return !left;
}

/* A bounded run is over when every source partition reached the end
 * offset it had at start and every file source is read. */
static int all_done(runner *r) {
    if (r->files_open > 0) return 0;
    if (!r->cons) return 1;
    if (!r->assigned_once) return 0;
    /* a bounded run ends with its state restored (and checkpointed) */
    if (r->rs && sp_restore_pending(r->rs)) return 0;
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next)
        if (tp->end_offset >= 0 && !tp->done) return 0;
    /* the input is read: now drain what went through repartition topics */
    if (!r->sealed && has_internal(r)) return seal_internal(r);
    return 1;
}

static void run_batch_timed(runner *r, sp_seg **segs, int nsegs, int timers);

static void check_finished(runner *r) {
    if (r->o->until_end && !r->stopping && all_done(r)) {
        /* the end of bounded input: stream time goes to infinity, every
         * open window closes and its result goes out before the exit */
        if (sp_ctx_has_windows(r->ctx) && !r->windows_closed) {
            r->windows_closed = 1;
            sp_ctx_close_all_windows(r->ctx);
            sp_batch_reset(r->ctx);
            run_batch_timed(r, NULL, 0, 1);
            sp_batch_reset(r->ctx);
            sp_info("bounded run: every window closed");
        }
        sp_info("bounded run: every source is read to its end");
        r->stopping = 1;
        ev_break(r->loop, EVBREAK_ALL);
    }
}

/* --- state restore ------------------------------------------------------ */

static int partition_assigned(runner *r, int32_t partition) {
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next)
        if (tp->assigned && tp->partition == partition) return 1;
    return 0;
}

/* Resumes the input partitions numbered partition once their state is
 * back (those a bounded run finished stay paused). */
static void resume_restored(runner *r, int32_t partition) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next)
        if (tp->assigned && tp->partition == partition && !tp->done)
            rd_kafka_topic_partition_list_add(l, tp->topic, tp->partition);
    if (l->cnt > 0) rd_kafka_resume_partitions(r->cons, l);
    rd_kafka_topic_partition_list_destroy(l);
}

static void on_restore(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)revents;
    runner *r = w->data;
    int32_t done[2048];
    const char *err;
    /* a slice of restore work per tick, so that the partitions that are
     * here keep being processed meanwhile */
    for (int round = 0; round < 32 && sp_restore_pending(r->rs); round++) {
        int n = sp_restore_poll(r->rs, done, 2048, &err);
        if (n < 0) {
            char buf[512];
            snprintf(buf, sizeof buf, "restoring state: %s", err);
            fatal(r, buf);
            return;
        }
        for (int i = 0; i < n; i++) {
            sp_ctx_partition_add(r->ctx, done[i]);
            resume_restored(r, done[i]);
        }
    }
    if (!sp_restore_pending(r->rs)) {
        ev_timer_stop(loop, w);
        check_finished(r);
    }
}

/* Newly assigned partitions whose state is in a changelog wait, paused,
 * until it is restored; the others go on meanwhile. */
static void restore_assigned(runner *r, rd_kafka_topic_partition_list_t *parts) {
    rd_kafka_topic_partition_list_t *wait = rd_kafka_topic_partition_list_new(4);
    for (int i = 0; i < parts->cnt; i++) {
        int rc = sp_restore_start(r->rs, parts->elems[i].partition);
        if (rc < 0) {
            fatal(r, "cannot restore the state of an assigned partition");
            break;
        }
        if (rc == 1)
            rd_kafka_topic_partition_list_add(wait, parts->elems[i].topic,
                                              parts->elems[i].partition);
    }
    if (wait->cnt > 0) {
        rd_kafka_pause_partitions(r->cons, wait);
        if (!ev_is_active(&r->restore_w)) ev_timer_start(r->loop, &r->restore_w);
    }
    rd_kafka_topic_partition_list_destroy(wait);
}

static int mkdir_p(char *path) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        int rc = mkdir(path, 0755);
        *p = '/';
        if (rc != 0 && errno != EEXIST) return -1;
    }
    return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* Where local checkpoints go: sproc.state.dir, by default
 * ~/.cache/sproc/state/<app>; an empty setting turns them off. */
static char *state_dir(runner *r, const char *app) {
    const char *set = sproc_setting(r->o, "sproc.state.dir");
    char buf[4096];
    if (set && !*set) return NULL;
    /* the embedded dev cluster forgets every changelog on exit: a
     * checkpoint left by an earlier run would always be ahead of it */
    if (!set && r->mock) return NULL;
    if (set) {
        snprintf(buf, sizeof buf, "%s", set);
    } else {
        const char *home = getenv("HOME");
        const char *cache = getenv("XDG_CACHE_HOME");
        if (cache && *cache)
            snprintf(buf, sizeof buf, "%s/sproc/state/%s", cache, app);
        else if (home && *home)
            snprintf(buf, sizeof buf, "%s/.cache/sproc/state/%s", home, app);
        else
            snprintf(buf, sizeof buf, "/tmp/sproc-state-%d/%s", (int)getuid(), app);
    }
    if (mkdir_p(buf) != 0) {
        sp_warn("cannot create the state directory %s (%s): no local checkpoints",
                buf, strerror(errno));
        return NULL;
    }
    return strdup(buf);
}

/* Stores, when the script has any: the memory budget, changelog topics,
 * and the restore consumer. */
static int setup_state(runner *r) {
    const char *err, *app = sp_lua_app_id(r->lua);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf_set(r, conf, "bootstrap.servers", r->brokers) || apply_sets(r, conf, 2)) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    char *dir = state_dir(r, app);
    if (dir) sp_store_set_dir(r->ctx, dir);
    r->rs = sp_restore_create(r->ctx, app, dir, conf, r->errstr, sizeof r->errstr);
    free(dir);
    if (!r->rs) {
        sp_error("cannot create the restore consumer: %s", r->errstr);
        return -1;
    }
    /* the dev cluster makes topics as sinks open them */
    if (!r->mock && sp_restore_ensure_topics(r->rs, r->src_partitions) != 0) return -1;
    if (sp_ctx_open_changelogs(r->ctx, app, &err) != SP_OK) {
        sp_error("changelogs: %s", err);
        return -1;
    }
    ev_timer_init(&r->restore_w, on_restore, 0.0, 0.005);
    r->restore_w.data = r;
    return 0;
}

/* --- rebalances ---------------------------------------------------------- */

static void on_assign(runner *r, rd_kafka_topic_partition_list_t *parts) {
    /* Where to start where the group has no offset yet: --start time. */
    if (r->start_ms >= 0 || r->o->until_end) {
        rd_kafka_topic_partition_list_t *c =
            rd_kafka_topic_partition_list_copy(parts);
        if (rd_kafka_committed(r->cons, c, 10000) == 0) {
            rd_kafka_topic_partition_list_t *times =
                rd_kafka_topic_partition_list_new(c->cnt);
            for (int i = 0; i < c->cnt; i++) {
                sp_tp *tp = sp_offsets_tp(&r->offs, c->elems[i].topic,
                                          c->elems[i].partition);
                int64_t at = c->elems[i].offset;
                if (at >= 0 && tp && tp->end_offset >= 0 && at >= tp->end_offset)
                    mark_done(r, tp);
                if (at < 0 && r->start_ms >= 0)
                    rd_kafka_topic_partition_list_add(times, c->elems[i].topic,
                                                      c->elems[i].partition)
                        ->offset = r->start_ms;
            }
            if (times->cnt > 0 &&
                rd_kafka_offsets_for_times(r->cons, times, 10000) == 0) {
                for (int i = 0; i < times->cnt; i++) {
                    rd_kafka_topic_partition_t *p =
                        rd_kafka_topic_partition_list_find(
                            parts, times->elems[i].topic,
                            times->elems[i].partition);
                    /* -1: no record at or after the time: start at the end */
                    if (p)
                        p->offset = times->elems[i].offset >= 0
                                        ? times->elems[i].offset
                                        : RD_KAFKA_OFFSET_END;
                }
            }
            rd_kafka_topic_partition_list_destroy(times);
        }
        rd_kafka_topic_partition_list_destroy(c);
    }
    for (int i = 0; i < parts->cnt; i++) {
        sp_tp *tp = sp_offsets_tp(&r->offs, parts->elems[i].topic,
                                  parts->elems[i].partition);
        if (!tp) continue;
        tp->assigned = 1;
        /* with a fresh assignment the committed offset is the broker's */
        tp->committed = -1;
        tp->committable = -1;
        tp->position = -1;
    }
    rd_kafka_error_t *e = rd_kafka_incremental_assign(r->cons, parts);
    sp_prefetch_assign(r->pf, parts);
    if (e) {
        sp_error("assign failed: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    /* Paused partitions stay paused across assignment: re-pause. */
    for (int i = 0; i < parts->cnt; i++) {
        sp_tp *tp = sp_offsets_tp(&r->offs, parts->elems[i].topic,
                                  parts->elems[i].partition);
        if (tp && tp->done) {
            tp->done = 0;
            mark_done(r, tp);
        }
    }
    r->rebalances[0]++;
    sp_ctx_sinks_assigned(r->ctx);
    if (r->rs) restore_assigned(r, parts);
    /* wall-clock timers fire for a partition once its state is here */
    for (int i = 0; i < parts->cnt; i++)
        if (!r->rs || !sp_restore_is_restoring(r->rs, parts->elems[i].partition))
            sp_ctx_partition_add(r->ctx, parts->elems[i].partition);
    r->assigned_once = 1;
    sp_info("assigned %d partitions", parts->cnt);
    check_finished(r);
}

static void on_revoke(runner *r, rd_kafka_topic_partition_list_t *parts,
                      int lost) {
    /* Hand the partitions over with every effect safe and committed, so
     * the next owner starts right after what we did. */
    int safe = 0;
    r->rebalances[lost ? 2 : 1]++;
    if (!lost) {
        safe = make_safe(r, 30000) == 0;
        commit(r, 1, parts);
    } else if (r->eos && r->in_txn) {
        /* the group moved on without us: the open transaction cannot
         * commit, and the state in memory holds its changes */
        fatal(r, "partitions lost with a transaction open; restart to restore "
                 "the committed state");
    }
    for (int i = 0; i < parts->cnt; i++) {
        sp_tp *tp = sp_offsets_tp(&r->offs, parts->elems[i].topic,
                                  parts->elems[i].partition);
        if (tp) tp->assigned = 0;
    }
    rd_kafka_error_t *e = rd_kafka_incremental_unassign(r->cons, parts);
    sp_prefetch_revoke(r->pf, parts);
    if (e) {
        sp_error("unassign failed: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    /* the state of a partition goes with it: the next owner restores it */
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        if (partition_assigned(r, p)) continue;
        sp_ctx_partition_remove(r->ctx, p);
        if (!r->rs) continue;
        /* a clean hand-over leaves a checkpoint, so that this machine
         * restores only the changelog's tail when the partition returns */
        if (safe && !r->exit_code) sp_restore_checkpoint(r->rs, p);
        sp_restore_drop(r->rs, p);
    }
    sp_info("%s %d partitions", lost ? "lost" : "revoked", parts->cnt);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    runner *r = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        on_assign(r, parts);
    else
        on_revoke(r, parts, rd_kafka_assignment_lost(rk));
}

/* --- batches ------------------------------------------------------------- */

static int32_t topic_id_of(runner *r, const rd_kafka_topic_t *rkt) {
    for (int i = 0; i < r->nrkt; i++)
        if (r->rkt_keys[i] == rkt) return r->rkt_ids[i];
    const void **k = realloc(r->rkt_keys, (r->nrkt + 1) * sizeof *k);
    if (k) r->rkt_keys = k;
    int32_t *v = realloc(r->rkt_ids, (r->nrkt + 1) * sizeof *v);
    if (v) r->rkt_ids = v;
    int32_t id = sp_topic_id(r->ctx, rd_kafka_topic_name(rkt));
    if (k && v) {
        k[r->nrkt] = rkt;
        v[r->nrkt] = id;
        r->nrkt++;
    }
    return id;
}

static void fatal(runner *r, const char *msg) {
    if (r->exit_code == 0) {
        sp_error("%s", msg);
        r->exit_code = 1;
    }
    r->stopping = 1;
    ev_break(r->loop, EVBREAK_ALL);
}

/* Runs the context's batch through Lua; then flushes stdout and due files
 * and releases the batch's hold on its segments. */
static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

#define LUA_BOUNDS {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1}

/* Under --watch, a new version that raised an error on a record gives way
 * to the one before, which processes that record and the rest of the
 * batch. Returns whether the batch still failed (*msg then set). */
static int rollback(runner *r, char **msg) {
    int32_t from = r->ctx->batch.cur;
    sp_error("version %d of %s raised an error on a record; version %d takes over from "
             "that record:\n%s", r->version, r->o->script, r->version - 1, *msg + 9);
    free(*msg);
    *msg = NULL;
    sp_ctx_reset_topology(r->ctx);
    if (!r->prev || sp_lua_compile(r->prev, r->o->app, r->def_id, 0, msg) != 0) {
        if (!*msg) *msg = strdup("no version to roll back to");
        return 1;
    }
    sp_lua_destroy(r->lua);
    r->lua = r->prev;
    r->prev = NULL;
    r->version--;
    return sp_lua_run_batch_from(r->lua, from, msg) != 0;
}

/* timers: also run with no records, for wall-clock timers that are due */
static void run_batch_timed(runner *r, sp_seg **segs, int nsegs, int timers) {
    char *msg = NULL;
    int run = r->ctx->batch.n > 0 || timers;
    sp_ctx_set_wall_clock(r->ctx, now_ms());
    if (run && begin_txn(r) != 0) return;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int failed = run && sp_lua_run_batch(r->lua, &msg) != 0;
    if (run) {
        static const double bounds[] = LUA_BOUNDS;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        int b = 0;
        while (b < 7 && dt > bounds[b]) b++;
        r->lua_buckets[b]++;
        r->lua_batches++;
        r->lua_seconds += dt;
    }
    while (failed && msg && strncmp(msg, "rollback:", 9) == 0) {
        failed = rollback(r, &msg);
    }
    const char *err;
    /* in-memory stores' changes go to their changelogs when offsets are
     * committed (flush_state), so that a key changed many times between
     * two commits is written once; disk stores' after every batch */
    if (!failed && sp_store_flush_disk_changelogs(r->ctx, &err) != SP_OK) {
        failed = 1;
        msg = strdup(err);
    }
    if (sp_ctx_flush_sinks(r->ctx, 0, &err) != SP_OK && !failed) {
        failed = 1;
        msg = strdup(err);
    }
    /* After a failure the batch's segments stay held: no offset of it or
     * after it is committed, and a restart reads the batch again. */
    if (!failed)
        for (int i = 0; i < nsegs; i++) sp_seg_unref(segs[i]);
    if (failed) {
        fatal(r, msg ? msg : "pipeline failed");
        free(msg);
    }
    if (r->ko.fatal) fatal(r, r->ko.fatal);
}

static void run_batch(runner *r, sp_seg **segs, int nsegs) {
    run_batch_timed(r, segs, nsegs, 0);
}

static void consume_some(runner *r) {
    if (r->stopping) return;
    int n = (int)rd_kafka_consume_batch_queue(r->cq, 0, r->msgs, r->max_batch);
    if (n < 0) {
        sp_error("consume failed: %s", rd_kafka_err2str(rd_kafka_last_error()));
        return;
    }
    sp_batch_reset(r->ctx);
    sp_seg *segs[256];
    int nsegs = 0;
    size_t bytes = 0;
    const rd_kafka_topic_t *last_rkt = NULL;
    int32_t last_part = -1, last_tid = -1;
    sp_tp *last_tp = NULL;
    for (int i = 0; i < n; i++) {
        rd_kafka_message_t *m = r->msgs[i];
        bytes += m->len;
        if (m->err) {
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                sp_tp *tp = sp_offsets_tp(&r->offs, rd_kafka_topic_name(m->rkt),
                                          m->partition);
                if (tp && tp->end_offset >= 0 && m->offset >= tp->end_offset)
                    mark_done(r, tp);
            } else if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                       m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
                char buf[512];
                snprintf(buf, sizeof buf, "source topic %s: %s",
                         m->rkt ? rd_kafka_topic_name(m->rkt) : "?",
                         rd_kafka_message_errstr(m));
                fatal(r, buf);
            } else {
                sp_warn("consumer: %s", rd_kafka_message_errstr(m));
            }
            continue;
        }
        /* a batch comes in runs of one partition: look it up once a run */
        if (m->rkt != last_rkt || m->partition != last_part) {
            last_tp = sp_offsets_tp(&r->offs, rd_kafka_topic_name(m->rkt), m->partition);
            last_tid = topic_id_of(r, m->rkt);
            last_rkt = m->rkt;
            last_part = m->partition;
        }
        sp_tp *tp = last_tp;
        if (!tp) continue;
        if (tp->end_offset >= 0 && m->offset >= tp->end_offset) {
            /* past the end seen at start: a bounded run ignores it */
            mark_done(r, tp);
            continue;
        }
        if (!tp->batch_seg) {
            if (nsegs == (int)(sizeof segs / sizeof *segs)) {
                /* rare: more partitions in a batch than slots; hold the
                 * rest back for the next batch */
                rd_kafka_seek(m->rkt, m->partition, m->offset, 0);
                continue;
            }
            tp->batch_seg = sp_offsets_seg_open(&r->offs, tp, r->max_batch);
            if (!tp->batch_seg) {
                fatal(r, "out of memory");
                break;
            }
            segs[nsegs++] = tp->batch_seg;
        }
        sp_rec *rec = sp_ctx_batch_add(r->ctx);
        if (!rec) {
            fatal(r, "out of memory");
            break;
        }
        rec->key = m->key;
        rec->key_len = m->key_len;
        rec->val = m->payload;
        rec->val_len = m->len;
        rec->ts = rd_kafka_message_timestamp(m, NULL);
        rec->offset = m->offset;
        rec->partition = m->partition;
        rec->topic = last_tid;
        rec->kmsg = m;
        rec->seg = tp->batch_seg;
        rec->slot = sp_seg_slot(tp->batch_seg, m->offset);
        rec->owner = m;
        tp->batch_seg->end = m->offset + 1;
        tp->position = m->offset + 1;
        if (tp->end_offset >= 0 && m->offset + 1 >= tp->end_offset)
            mark_done(r, tp);
    }
    for (int i = 0; i < nsegs; i++) segs[i]->tp->batch_seg = NULL;
    run_batch(r, segs, nsegs);
    sp_batch_reset(r->ctx);
    for (int i = 0; i < n; i++) rd_kafka_message_destroy(r->msgs[i]);
    sp_prefetch_consumed(r->pf, n, bytes);
    sp_kafka_out_poll(&r->ko, 0);
    /* The io event fires only when the queue goes from empty to non-empty,
     * and a batch can end early on a non-message event (a commit result,
     * an EOF) with messages still queued: whenever anything is left, come
     * back after the loop has served timers and signals. */
    if (!r->stopping && (n == r->max_batch || rd_kafka_queue_length(r->cq) > 0))
        ev_idle_start(r->loop, &r->more_w);
    check_finished(r);
}

/* File sources: a batch of lines per loop iteration. */
static void read_files(runner *r) {
    const char *err;
    char *line = NULL;
    size_t cap = 0;
    for (int f = 0; f < r->nfiles && !r->stopping; f++) {
        file_src *fs = &r->files[f];
        if (!fs->f) continue;
        sp_batch_reset(r->ctx);
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t ts = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
        ssize_t len;
        while (r->ctx->batch.n < r->max_batch &&
               (len = getline(&line, &cap, fs->f)) >= 0) {
            if (len > 0 && line[len - 1] == '\n') len--;
            if (len > 0 && line[len - 1] == '\r') len--;
            fs->line++;
            if (len == 0) continue;
            if (sp_batch_push(r->ctx, fs->topic, 0, fs->line - 1, NULL, 0, line,
                              (size_t)len, ts, &err) != SP_OK) {
                fatal(r, err);
                break;
            }
        }
        if (r->ctx->batch.n < r->max_batch) {
            fclose(fs->f);
            fs->f = NULL;
            r->files_open--;
            sp_info("read file %s (%" PRId64 " lines)",
                    sp_topic_name(r->ctx, fs->topic), fs->line);
        }
        run_batch(r, NULL, 0);
        sp_batch_reset(r->ctx);
    }
    free(line);
    sp_kafka_out_poll(&r->ko, 0);
    check_finished(r);
}

/* --- libev callbacks ----------------------------------------------------- */

static void drain_fd(int fd) {
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0) {
    }
}

static void on_consumer(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    runner *r = w->data;
    drain_fd(r->cons_fd[0]);
    consume_some(r);
}

static void on_producer(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    runner *r = w->data;
    drain_fd(r->prod_fd[0]);
    sp_kafka_out_poll(&r->ko, 0);
    if (r->ko.fatal) fatal(r, r->ko.fatal);
}

static void on_more(struct ev_loop *loop, ev_idle *w, int revents) {
    (void)revents;
    runner *r = w->data;
    ev_idle_stop(loop, w);
    if (r->files_open > 0) read_files(r);
    if (r->cons) consume_some(r);
    if (r->files_open > 0 && !r->stopping) ev_idle_start(loop, w);
}

static void on_commit(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    commit(w->data, 0, NULL);
}

static void show_progress(runner *r);

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    runner *r = w->data;
    const char *err;
    if (!r->stopping && sp_ctx_wall_timer_min(r->ctx) > 0) {
        sp_batch_reset(r->ctx);
        run_batch_timed(r, NULL, 0, 1);
        sp_batch_reset(r->ctx);
    }
    if (sp_ctx_flush_sinks(r->ctx, 0, &err) != SP_OK) fatal(r, err);
    sp_kafka_out_poll(&r->ko, 0);
    if (r->ko.fatal) fatal(r, r->ko.fatal);
    if (r->progress) show_progress(r);
    check_finished(r);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)revents;
    runner *r = w->data;
    got_signal = w->signum;
    sp_info("%s: finishing the batch, flushing outputs and committing",
            w->signum == SIGINT ? "interrupted" : "terminated");
    r->stopping = 1;
    ev_break(loop, EVBREAK_ALL);
}

/* --- hot reload ---------------------------------------------------------- */

/* Prints what a reload changed: operators and stores, from the two
 * versions' descriptions. */
static void log_changes(const char *before, const char *after) {
    if (!before || !after) return;
    for (int pass = 0; pass < 2; pass++) {
        const char *a = pass ? before : after, *b = pass ? after : before;
        for (const char *line = a; *line;) {
            const char *end = strchr(line, '\n');
            size_t n = end ? (size_t)(end - line) : strlen(line);
            const char *t = line;
            while (t < line + n && *t == ' ') t++;
            size_t tn = n - (size_t)(t - line);
            int found = 0;
            for (const char *o = b; *o && !found;) {
                const char *oe = strchr(o, '\n');
                size_t on = oe ? (size_t)(oe - o) : strlen(o);
                const char *ot = o;
                while (ot < o + on && *ot == ' ') ot++;
                size_t otn = on - (size_t)(ot - o);
                found = otn == tn && memcmp(ot, t, tn) == 0;
                o = oe ? oe + 1 : o + on;
            }
            if (!found && tn > 0 && strncmp(t, "application ", 12) != 0)
                sp_info("  %s %.*s", pass ? "removed:" : "added:  ", (int)tn, t);
            line = end ? end + 1 : line + n;
        }
    }
}

static void watch_files(runner *r);

/* Builds the new version in a fresh Lua state and checks it; at this batch
 * boundary swaps it in. A version that does not load or fit leaves the
 * running one as it is. */
static void do_reload(runner *r) {
    char *msg = NULL, *before = NULL, *after = NULL;
    struct stat st;
    int64_t saved = stat(r->o->script, &st) == 0
                        ? (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000
                        : -1;
    /* What is read now is what the watcher compares with from here on: a
     * save seen half done (truncated, then written) would otherwise be
     * seen changing again and the same text reloaded a second time. */
    for (int i = 0; i < r->nwfiles; i++) {
        struct stat now;
        if (stat(r->wfiles[i], &now) == 0) r->wstats[i] = now;
    }
    sp_lua *nl = sp_lua_create(r->ctx);
    if (!nl) {
        sp_error("reload: out of memory");
        return;
    }
    if (sp_lua_prepare(nl, r->o->script, &msg) != 0) {
        sp_error("reload of %s failed; version %d keeps running:\n%s", r->o->script,
                 r->version, msg);
        r->reload_failures++;
        goto done;
    }
    before = sp_lua_describe_text(r->lua);
    sp_ctx_reset_topology(r->ctx);
    if (sp_lua_compile(nl, r->o->app, r->def_id, r->o->watch, &msg) != 0) {
        char *m2 = NULL;
        sp_error("reload of %s failed; version %d keeps running:\n%s", r->o->script,
                 r->version, msg);
        r->reload_failures++;
        sp_ctx_reset_topology(r->ctx);
        if (sp_lua_compile(r->lua, r->o->app, r->def_id, 0, &m2) != 0) {
            fatal(r, m2 ? m2 : "reload: the running version could not be restored");
        }
        free(m2);
        goto done;
    }
    sp_lua_destroy(r->prev);
    r->prev = r->lua;
    r->lua = nl;
    nl = NULL;
    r->version++;
    r->reloads++;
    /* stores the new version added get their changelogs */
    if (r->cons && r->ctx->nstores > 0) {
        const char *err;
        if (!r->rs) {
            if (setup_state(r) != 0) fatal(r, "reload: cannot set up the state stores");
        } else if (sp_restore_refresh(r->rs, sp_lua_app_id(r->lua)) != 0 ||
                   (!r->mock && sp_restore_ensure_topics(r->rs, r->src_partitions) != 0) ||
                   sp_ctx_open_changelogs(r->ctx, sp_lua_app_id(r->lua), &err) != SP_OK) {
            fatal(r, "reload: cannot open the new stores' changelogs");
        }
    }
    {
        int32_t parts[1024];
        int n = 0;
        for (int32_t k = 0; k < r->ctx->nptimes && n < 1024; k++)
            parts[n++] = sp_ctx_ptime_partition(r->ctx, k);
        if (sp_lua_on_reload(r->lua, parts, n, &msg) != 0) {
            sp_error("on_reload of version %d failed: %s", r->version, msg);
            free(msg);
            msg = strdup("rollback:on_reload failed");
            r->ctx->batch.cur = 0;
            /* an empty batch: nothing to hand over but the pipeline */
            sp_batch_reset(r->ctx);
            rollback(r, &msg);
            goto done;
        }
    }
    after = sp_lua_describe_text(r->lua);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    sp_info("reloaded %s: version %d runs (%lld ms after the file was saved)%s",
            r->o->script, r->version, saved >= 0 ? (long long)(now_ms - saved) : -1LL,
            before && after && strcmp(before, after) == 0 ? "; operators and stores unchanged"
                                                          : "; changes:");
    log_changes(before, after);
    if (r->o->watch) watch_files(r);
done:
    free(msg);
    free(before);
    free(after);
    sp_lua_destroy(nl);
}

static void on_reload_due(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    runner *r = w->data;
    if (!r->stopping) do_reload(r);
}

static int same_file(const struct stat *a, const struct stat *b) {
    return a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* The script is looked at ten times a second, to the nanosecond of its
 * times (libev's stat watcher compares whole seconds, and two saves within
 * a second can leave the same size). Editors save by writing a temporary
 * file and renaming it: a short wait lets a burst of changes settle into
 * one reload. */
static void on_watch(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)revents;
    runner *r = w->data;
    int changed = 0;
    for (int i = 0; i < r->nwfiles; i++) {
        struct stat st;
        if (stat(r->wfiles[i], &st) != 0) continue; /* gone for a moment: a rename comes */
        if (same_file(&st, &r->wstats[i])) continue;
        r->wstats[i] = st;
        changed = 1;
    }
    if (!changed) return;
    ev_timer_stop(loop, &r->reload_w);
    ev_timer_set(&r->reload_w, 0.05, 0.0);
    ev_timer_start(loop, &r->reload_w);
}

static void free_watched(runner *r) {
    for (int i = 0; i < r->nwfiles; i++) free(r->wfiles[i]);
    free(r->wfiles);
    free(r->wstats);
    r->wfiles = NULL;
    r->wstats = NULL;
    r->nwfiles = 0;
}

/* What the running version loaded is what is watched. */
static void watch_files(runner *r) {
    char **files = NULL;
    int n = sp_lua_watched(r->lua, r->o->script, &files);
    if (n < 0) return;
    struct stat *st = calloc((size_t)n + 1, sizeof *st);
    if (!st) {
        for (int i = 0; i < n; i++) free(files[i]);
        free(files);
        return;
    }
    for (int i = 0; i < n; i++) {
        stat(files[i], &st[i]);
        for (int j = 0; j < r->nwfiles; j++)
            if (strcmp(files[i], r->wfiles[j]) == 0) st[i] = r->wstats[j];
    }
    free_watched(r);
    r->wfiles = files;
    r->wstats = st;
    r->nwfiles = n;
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)revents;
    runner *r = w->data;
    ev_timer_stop(loop, &r->reload_w);
    ev_timer_set(&r->reload_w, 0.0, 0.0);
    ev_timer_start(loop, &r->reload_w);
}

/* --- observability ------------------------------------------------------ */

static int metric(sp_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int metric(sp_buf *b, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    return sp_buf_append(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* Lag of an assigned partition: its end as last fetched, minus what was
 * processed (or, before that, committed). */
static int64_t lag_of(runner *r, sp_tp *tp) {
    int64_t lo, hi;
    if (!r->cons || rd_kafka_get_watermark_offsets(r->cons, tp->topic, tp->partition, &lo, &hi) ||
        hi < 0)
        return -1;
    int64_t at = tp->position >= 0 ? tp->position : tp->committed >= 0 ? tp->committed : lo;
    return hi > at ? hi - at : 0;
}

static int render_metrics(void *opaque, sp_buf *b) {
    runner *r = opaque;
    sp_stats *st = sp_ctx_stats(r->ctx);
    int rc = 0;
    static const struct { const char *name, *help; size_t off; } totals[] = {
        {"records_in", "records read", offsetof(sp_stats, records_in)},
        {"records_out", "records written to sinks", offsetof(sp_stats, records_out)},
        {"filtered", "records dropped by filters (and null keys before aggregations)",
         offsetof(sp_stats, filtered)},
        {"skipped", "records skipped by the error policy", offsetof(sp_stats, skipped)},
        {"dead_lettered", "records sent to the dead-letter topic", offsetof(sp_stats, dead_lettered)},
        {"errors", "records that failed", offsetof(sp_stats, errors)},
        {"late", "(record, window) pairs dropped as late", offsetof(sp_stats, late)},
        {"batches", "batches run", offsetof(sp_stats, batches)},
    };
    for (size_t i = 0; i < sizeof totals / sizeof *totals; i++) {
        int64_t v = *(int64_t *)((char *)st + totals[i].off);
        rc |= metric(b, "# HELP sproc_%s_total %s\n# TYPE sproc_%s_total counter\nsproc_%s_total %lld\n",
                     totals[i].name, totals[i].help, totals[i].name, totals[i].name, (long long)v);
    }
    sp_opstats *o = r->ctx->ops;
    if (o) {
        rc |= metric(b, "# HELP sproc_operator_records_total records into and out of each operator\n"
                        "# TYPE sproc_operator_records_total counter\n");
        for (int32_t i = 0; i < o->n; i++) {
            int64_t out = 0;
            int kids = 0;
            for (int32_t j = 0; j < o->n; j++)
                if (o->parent[j] == i) {
                    out += o->in[j];
                    kids = 1;
                }
            if (!kids) out = o->in[i]; /* a sink: what it wrote */
            rc |= metric(b, "sproc_operator_records_total{operator=\"%s\",direction=\"in\"} %lld\n"
                            "sproc_operator_records_total{operator=\"%s\",direction=\"out\"} %lld\n",
                         o->name[i], (long long)o->in[i], o->name[i], (long long)out);
        }
    }
    rc |= sp_windows_render(r->ctx, b);
    rc |= metric(b, "# HELP sproc_consumer_lag records between what was processed and the "
                    "partition's end\n# TYPE sproc_consumer_lag gauge\n");
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next) {
        if (!tp->assigned) continue;
        int64_t lag = lag_of(r, tp);
        if (lag >= 0)
            rc |= metric(b, "sproc_consumer_lag{topic=\"%s\",partition=\"%d\"} %lld\n", tp->topic,
                         (int)tp->partition, (long long)lag);
    }
    static const double lat_bounds[] = SP_LATENCY_BOUNDS;
    int64_t cum = 0;
    rc |= metric(b, "# HELP sproc_latency_ms record timestamp to output acknowledged\n"
                    "# TYPE sproc_latency_ms histogram\n");
    for (int i = 0; i < SP_LATENCY_NBOUNDS; i++) {
        cum += r->ko.lat_buckets[i];
        rc |= metric(b, "sproc_latency_ms_bucket{le=\"%g\"} %lld\n", lat_bounds[i], (long long)cum);
    }
    rc |= metric(b, "sproc_latency_ms_bucket{le=\"+Inf\"} %lld\nsproc_latency_ms_sum %.3f\n"
                    "sproc_latency_ms_count %lld\n",
                 (long long)r->ko.lat_count, r->ko.lat_sum_ms, (long long)r->ko.lat_count);
    static const double lua_bounds[] = LUA_BOUNDS;
    cum = 0;
    rc |= metric(b, "# HELP sproc_lua_batch_seconds time in Lua per batch\n"
                    "# TYPE sproc_lua_batch_seconds histogram\n");
    for (int i = 0; i < 7; i++) {
        cum += r->lua_buckets[i];
        rc |= metric(b, "sproc_lua_batch_seconds_bucket{le=\"%g\"} %lld\n", lua_bounds[i], (long long)cum);
    }
    rc |= metric(b, "sproc_lua_batch_seconds_bucket{le=\"+Inf\"} %lld\nsproc_lua_batch_seconds_sum %.6f\n"
                    "sproc_lua_batch_seconds_count %lld\n",
                 (long long)r->lua_batches, r->lua_seconds, (long long)r->lua_batches);
    rc |= metric(b, "# HELP sproc_store_bytes memory of in-memory stores\n# TYPE sproc_store_bytes gauge\n");
    for (int32_t i = 0; i < r->ctx->nstores; i++)
        rc |= metric(b, "sproc_store_bytes{store=\"%s\"} %lld\n", r->ctx->stores[i]->name,
                     (long long)sp_store_bytes(r->ctx, i));
    rc |= metric(b, "# TYPE sproc_store_keys gauge\n");
    for (int32_t i = 0; i < r->ctx->nstores; i++)
        rc |= metric(b, "sproc_store_keys{store=\"%s\"} %lld\n", r->ctx->stores[i]->name,
                     (long long)sp_store_size(r->ctx, i, -1));
    rc |= metric(b, "# HELP sproc_state_budget_bytes memory budget of in-memory stores\n"
                    "# TYPE sproc_state_budget_bytes gauge\nsproc_state_budget_bytes %lld\n",
                 (long long)r->ctx->store_budget);
    rc |= metric(b, "# HELP sproc_restoring_partitions partitions whose state is being restored\n"
                    "# TYPE sproc_restoring_partitions gauge\nsproc_restoring_partitions %d\n",
                 r->rs ? sp_restore_pending(r->rs) : 0);
    rc |= metric(b, "# TYPE sproc_rebalances_total counter\n"
                    "sproc_rebalances_total{kind=\"assigned\"} %lld\n"
                    "sproc_rebalances_total{kind=\"revoked\"} %lld\n"
                    "sproc_rebalances_total{kind=\"lost\"} %lld\n",
                 (long long)r->rebalances[0], (long long)r->rebalances[1], (long long)r->rebalances[2]);
    rc |= metric(b, "# TYPE sproc_reloads_total counter\nsproc_reloads_total %lld\n"
                    "# TYPE sproc_reload_failures_total counter\nsproc_reload_failures_total %lld\n",
                 (long long)r->reloads, (long long)r->reload_failures);
    rc |= metric(b, "# HELP sproc_prefetch_wakeups_total times a full prefetch was woken "
                    "when half of it was processed\n# TYPE sproc_prefetch_wakeups_total counter\n"
                    "sproc_prefetch_wakeups_total %lld\n",
                 (long long)sp_prefetch_kicks(r->pf));
    rc |= metric(b, "# HELP sproc_producer_queue_messages outputs waiting for Kafka\n"
                    "# TYPE sproc_producer_queue_messages gauge\nsproc_producer_queue_messages %d\n",
                 r->prod ? rd_kafka_outq_len(r->prod) : 0);
    return rc ? -1 : 0;
}

/* Ready: partitions assigned and their state restored. */
static int is_ready(void *opaque) {
    runner *r = opaque;
    if (r->cons && !r->assigned_once) return 0;
    return !(r->rs && sp_restore_pending(r->rs));
}

/* The one-line progress display on a terminal. */
static void show_progress(runner *r) {
    sp_stats *st = sp_ctx_stats(r->ctx);
    int64_t lag = 0;
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next)
        if (tp->assigned) {
            int64_t l = lag_of(r, tp);
            if (l > 0) lag += l;
        }
    char line[256];
    snprintf(line, sizeof line, "sproc: %lld rec/s, %lld in, lag %lld, late %lld, errors %lld",
             (long long)(st->records_in - r->last_in), (long long)st->records_in, (long long)lag,
             (long long)st->late, (long long)st->errors);
    r->last_in = st->records_in;
    sp_log_progress(line);
}

/* --- start-up checks ----------------------------------------------------- */

/* Waits until a broker answers, then checks the source topics and, for a
 * bounded run, notes where each partition ends now. */
static int wait_for_kafka(runner *r) {
    const rd_kafka_metadata_t *md = NULL;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_metadata(r->prod, 1, NULL, &md, 3000);
        if (!e) break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        double waited = (double)(now.tv_sec - t0.tv_sec);
        if (r->o->connect_timeout > 0 && waited >= r->o->connect_timeout) {
            sp_error("no Kafka broker answered at %s within %.0f s (%s)",
                     r->brokers, r->o->connect_timeout, rd_kafka_err2str(e));
            return -1;
        }
        if (got_signal) return -1;
        sp_warn("waiting for Kafka at %s: no broker answers yet (%.0f s; %s)",
                r->brokers, waited + 3, rd_kafka_err2str(e));
    }
    int rc = 0;
    for (int32_t i = 0; i < r->ctx->nsources && rc == 0; i++) {
        sp_source *s = &r->ctx->sources[i];
        if (s->kind >= 2 || s->internal) continue; /* files, timers, our own */
        int found = 0;
        for (int t = 0; t < md->topic_cnt; t++) {
            const rd_kafka_metadata_topic_t *mt = &md->topics[t];
            int match = s->kind == 0
                            ? strcmp(mt->topic, s->name) == 0
                            : sp_source_matches(r->ctx, i, sp_topic_id(r->ctx, mt->topic));
            if (!match || mt->err) continue;
            found = 1;
            if (mt->partition_cnt > r->src_partitions)
                r->src_partitions = mt->partition_cnt;
            if (!r->o->until_end) continue;
            for (int p = 0; p < mt->partition_cnt; p++) {
                int64_t lo, hi;
                if (sp_topics_watermarks(r->prod, mt->topic, mt->partitions[p].id, &lo,
                                         &hi) != 0) {
                    sp_error("cannot read the end offset of %s [%d]", mt->topic,
                             mt->partitions[p].id);
                    rc = -1;
                    break;
                }
                sp_tp *tp = sp_offsets_tp(&r->offs, mt->topic, mt->partitions[p].id);
                if (!tp) continue;
                tp->end_offset = hi;
                if (hi <= lo) tp->done = 1; /* empty: nothing to read */
            }
        }
        if (!found && s->kind == 0 && !s->internal) {
            sp_error("source topic %s does not exist (and sproc does not create "
                     "source topics)%s", s->name,
                     r->mock ? "; the embedded dev cluster starts empty and has the topics "
                               "the script writes to: feed it from the script (a file "
                               "source, then to{}), or give --brokers"
                             : "");
            rc = -1;
        }
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

/* Repartition topics: created where missing, with one partition per
 * input partition (the dev cluster makes them as their sinks open). */
static int ensure_internal(runner *r) {
    if (r->mock || !has_internal(r)) return 0;
    char **names = calloc((size_t)r->ctx->nsources, sizeof *names);
    int n = 0;
    if (!names) return -1;
    for (int32_t i = 0; i < r->ctx->nsources; i++)
        if (r->ctx->sources[i].internal) names[n++] = r->ctx->sources[i].name;
    int rc = sp_topics_ensure(r->prod, names, n, r->src_partitions > 0 ? r->src_partitions : 1,
                              0, 0, "repartition");
    free(names);
    return rc;
}

/* --- set-up and shutdown ------------------------------------------------- */

static int open_io_event(runner *r, rd_kafka_queue_t *q, int fds[2]) {
    if (pipe(fds) != 0) return -1;
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    (void)r;
    rd_kafka_queue_io_event_enable(q, fds[1], "1", 1);
    return 0;
}

static int open_files(runner *r) {
    for (int32_t i = 0; i < r->ctx->nsources; i++) {
        sp_source *s = &r->ctx->sources[i];
        if (s->kind != 2) continue;
        /* several sources of one file: read once, each runs every line */
        int seen = 0;
        for (int j = 0; j < r->nfiles; j++) seen |= r->files[j].topic == s->topic;
        if (seen) continue;
        file_src *f = realloc(r->files, (r->nfiles + 1) * sizeof *f);
        if (!f) return -1;
        r->files = f;
        f[r->nfiles].f = fopen(s->name, "r");
        f[r->nfiles].topic = s->topic;
        f[r->nfiles].line = 0;
        if (!f[r->nfiles].f) {
            sp_error("cannot open source file %s: %s", s->name, strerror(errno));
            return -1;
        }
        r->nfiles++;
        r->files_open++;
    }
    return 0;
}

static int has_kafka_sources(runner *r) {
    for (int32_t i = 0; i < r->ctx->nsources; i++)
        if (r->ctx->sources[i].kind <= 1) return 1;
    return 0;
}

static char *default_app_id(const char *script) {
    const char *base = strrchr(script, '/');
    base = base ? base + 1 : script;
    char *id = strdup(base);
    if (!id) return NULL;
    size_t n = strlen(id);
    if (n > 4 && strcmp(id + n - 4, ".lua") == 0) id[n - 4] = '\0';
    return id;
}

static void shutdown_clients(runner *r) {
    /* queues are references into their clients: release them first */
    sp_prefetch_destroy(r->pf);
    r->pf = NULL;
    if (r->cq) rd_kafka_queue_destroy(r->cq);
    if (r->pq) rd_kafka_queue_destroy(r->pq);
    r->cq = r->pq = NULL;
    if (r->cons) {
        /* closing revokes the assignment, which makes effects safe and
         * commits through on_revoke */
        rd_kafka_consumer_close(r->cons);
        rd_kafka_destroy(r->cons);
        r->cons = NULL;
    }
    sp_restore_destroy(r->rs);
    r->rs = NULL;
    if (r->refetch) {
        rd_kafka_destroy(r->refetch);
        r->refetch = NULL;
    }
    if (r->prod) {
        rd_kafka_flush(r->prod, 10000);
        sp_ctx_destroy(r->ctx); /* sinks hold topic handles of the producer */
        r->ctx = NULL;
        rd_kafka_destroy(r->prod);
        r->prod = NULL;
    }
    if (r->mock) rd_kafka_mock_cluster_destroy(r->mock);
    if (r->mock_rk) rd_kafka_destroy(r->mock_rk);
}

int sp_run(const sp_opts *o) {
    runner R;
    runner *r = &R;
    memset(r, 0, sizeof *r);
    r->o = o;
    r->cons_fd[0] = r->cons_fd[1] = r->prod_fd[0] = r->prod_fd[1] = -1;
    r->max_batch = (int)setting_int(o, "sproc.batch.size", 1000);
    r->commit_interval_ms = setting_int(o, "sproc.commit.interval.ms", 1000);
    r->dev_partitions = (int32_t)setting_int(o, "sproc.dev.partitions", 4);
    r->start_ms = -1;
    sp_offsets_init(&r->offs);
    int rc = 1;
    char *msg = NULL;
    char *def_id = default_app_id(o->script);

    if (o->start && strcmp(o->start, "earliest") != 0 &&
        strcmp(o->start, "latest") != 0) {
        long long ms;
        if (sp_time_parse_ll(o->start, &ms) != 0) {
            fprintf(stderr, "sproc: --start takes earliest, latest or an "
                            "ISO-8601 time, not '%s'\n", o->start);
            rc = 2;
            goto done;
        }
        r->start_ms = ms;
    }
    r->msgs = calloc((size_t)r->max_batch, sizeof *r->msgs);
    r->ctx = sp_ctx_create();
    r->lua = r->ctx ? sp_lua_create(r->ctx) : NULL;
    if (!r->msgs || !r->lua) {
        sp_error("out of memory");
        goto done;
    }
    if (o->brokers) {
        r->brokers = strdup(o->brokers);
    } else if (start_dev_cluster(r) != 0) {
        goto done;
    }
    sp_kafka_out_init(&r->ko, r->ctx, NULL);
    r->ko.on_topic = dev_topic;
    r->ko.fetch = refetch;
    r->ko.opaque = r;
    if (sp_lua_load(r->lua, o->script, o->app, def_id, &msg) != 0) {
        fprintf(stderr, "sproc: cannot load %s:\n%s\n", o->script, msg);
        rc = 2;
        goto done;
    }
    {
        const char *g = sproc_setting(o, "sproc.processing.guarantee");
        r->eos = g ? strcmp(g, "exactly_once") == 0 : sp_lua_exactly_once(r->lua);
        /* transactions stay short, as in Kafka Streams under exactly-once:
         * downstream read_committed consumers see outputs when they commit */
        if (r->eos) r->commit_interval_ms = setting_int(o, "sproc.commit.interval.ms", 100);
        if (sproc_setting(o, "sproc.idle.timeout.ms"))
            sp_ctx_set_idle_timeout(r->ctx, setting_int(o, "sproc.idle.timeout.ms", 0));
    }
    /* the dev cluster made the topics the script writes as their sinks
     * opened; a source topic it does not write is missing there as it
     * would be on a real broker */
    if (make_producer(r) != 0) goto done;
    if (open_files(r) != 0) goto done;
    sp_store_set_budget(r->ctx, setting_int(o, "sproc.state.max.bytes",
                                                (int64_t)1 << 30));

    r->loop = ev_default_loop(EVFLAG_AUTO);
    if (has_kafka_sources(r)) {
        if (wait_for_kafka(r) != 0) goto done;
        if (ensure_internal(r) != 0) goto done;
        if (r->eos) {
            rd_kafka_error_t *e = rd_kafka_init_transactions(r->prod, 60000);
            if (e) {
                sp_error("exactly-once: cannot initialize transactions: %s",
                         rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
                goto done;
            }
            sp_info("exactly-once: outputs, changelogs and offsets commit in "
                    "transactions");
        }
        if (r->ctx->nstores > 0 && setup_state(r) != 0) goto done;
        if (make_consumer(r) != 0) goto done;
        rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(4);
        for (int32_t i = 0; i < r->ctx->nsources; i++) {
            sp_source *s = &r->ctx->sources[i];
            int dup = 0;
            for (int32_t j = 0; j < i; j++)
                dup |= r->ctx->sources[j].kind == s->kind && strcmp(r->ctx->sources[j].name, s->name) == 0;
            if (s->kind >= 2 || dup) continue;
            if (s->kind == 1) {
                char pat[1024];
                snprintf(pat, sizeof pat, "^(%s)$", s->name);
                rd_kafka_topic_partition_list_add(subs, pat, RD_KAFKA_PARTITION_UA);
            } else {
                rd_kafka_topic_partition_list_add(subs, s->name, RD_KAFKA_PARTITION_UA);
            }
        }
        rd_kafka_resp_err_t e = rd_kafka_subscribe(r->cons, subs);
        rd_kafka_topic_partition_list_destroy(subs);
        if (e) {
            sp_error("subscribe failed: %s", rd_kafka_err2str(e));
            goto done;
        }
        r->cq = rd_kafka_queue_get_consumer(r->cons);
        r->pf = make_prefetch(r);
        if (!r->pf) goto done;
        if (open_io_event(r, r->cq, r->cons_fd) != 0) goto done;
        ev_io_init(&r->cons_w, on_consumer, r->cons_fd[0], EV_READ);
        r->cons_w.data = r;
        ev_io_start(r->loop, &r->cons_w);
    }
    r->pq = rd_kafka_queue_get_main(r->prod);
    if (open_io_event(r, r->pq, r->prod_fd) != 0) goto done;
    ev_io_init(&r->prod_w, on_producer, r->prod_fd[0], EV_READ);
    r->prod_w.data = r;
    ev_io_start(r->loop, &r->prod_w);
    ev_idle_init(&r->more_w, on_more);
    r->more_w.data = r;
    /* a first pass: file sources, and anything already queued */
    ev_idle_start(r->loop, &r->more_w);
    ev_timer_init(&r->commit_w, on_commit, r->commit_interval_ms / 1000.0,
                  r->commit_interval_ms / 1000.0);
    r->commit_w.data = r;
    ev_timer_start(r->loop, &r->commit_w);
    {
        /* wall-clock timers fire from the tick: tick at least as often */
        double tick = 1.0;
        int64_t wall = sp_ctx_wall_timer_min(r->ctx);
        if (wall > 0 && wall < 1000) tick = (double)wall / 1000.0;
        ev_timer_init(&r->tick_w, on_tick, tick, tick);
    }
    r->tick_w.data = r;
    ev_timer_start(r->loop, &r->tick_w);
    ev_signal_init(&r->int_w, on_signal, SIGINT);
    r->int_w.data = r;
    ev_signal_start(r->loop, &r->int_w);
    ev_signal_init(&r->term_w, on_signal, SIGTERM);
    r->term_w.data = r;
    ev_signal_start(r->loop, &r->term_w);
    if (o->metrics) {
        sp_metrics_source src = {r, render_metrics, is_ready};
        r->metrics = sp_metrics_create(r->loop, o->metrics, &src, r->errstr, sizeof r->errstr);
        if (!r->metrics) {
            sp_error("%s", r->errstr);
            rc = 2;
            goto done;
        }
        sp_info("metrics on port %d: /metrics, /health/live, /health/ready (--metrics %s)",
                sp_metrics_port(r->metrics), o->metrics);
    }
    /* a live line on a terminal, every second of the tick */
    r->progress = !o->quiet && isatty(2);
    /* hot reload: SIGHUP always, the script's file under --watch */
    r->def_id = def_id;
    r->version = 1;
    ev_timer_init(&r->reload_w, on_reload_due, 0.1, 0.0);
    r->reload_w.data = r;
    ev_signal_init(&r->hup_w, on_hup, SIGHUP);
    r->hup_w.data = r;
    ev_signal_start(r->loop, &r->hup_w);
    if (o->watch) {
        watch_files(r);
        ev_timer_init(&r->watch_w, on_watch, 0.1, 0.1);
        r->watch_w.data = r;
        ev_timer_start(r->loop, &r->watch_w);
        sp_info("watching %s: saving it reloads the pipeline", o->script);
    }

    if (!(o->until_end && all_done(r))) ev_run(r->loop, 0);

    /* Stop: the batch is finished; make outputs safe and commit. After a
     * failure, what is safe is still committed, never the failed batch. */
    if (make_safe(r, r->exit_code ? 5000 : 60000) != 0 && r->exit_code == 0 &&
        o->until_end)
        r->exit_code = 1;
    /* the last acknowledgements may carry a failure for good */
    if (r->ko.fatal && r->exit_code == 0) {
        sp_error("%s", r->ko.fatal);
        r->exit_code = 1;
    }
    commit(r, 1, NULL);
    rc = r->exit_code;
    {
        sp_stats *st = sp_ctx_stats(r->ctx);
        sp_info("done: %" PRId64 " records in, %" PRId64 " out, %" PRId64
                " filtered, %" PRId64 " skipped, %" PRId64 " dead-lettered%s",
                st->records_in, st->records_out, st->filtered, st->skipped,
                st->dead_lettered, r->eos ? " (exactly-once)" : "");
        if (r->eos) sp_info("%" PRId64 " transactions committed", r->txns);
        if (r->pf) sp_info("prefetch woken %" PRId64 " times", sp_prefetch_kicks(r->pf));
        sp_windows_log(r->ctx);
    }

done:
    if (r->progress) sp_log_progress("");
    sp_metrics_destroy(r->metrics);
    r->metrics = NULL;
    shutdown_clients(r);
    if (r->ctx) sp_ctx_destroy(r->ctx);
    sp_lua_destroy(r->lua);
    sp_lua_destroy(r->prev);
    free_watched(r);
    sp_kafka_out_destroy(&r->ko);
    sp_offsets_destroy(&r->offs);
    for (int i = 0; i < 2; i++) {
        if (r->cons_fd[i] >= 0) close(r->cons_fd[i]);
        if (r->prod_fd[i] >= 0) close(r->prod_fd[i]);
    }
    for (int i = 0; i < r->nfiles; i++)
        if (r->files[i].f) fclose(r->files[i].f);
    free(r->files);
    free(r->rkt_keys);
    free(r->rkt_ids);
    free(r->msgs);
    free(r->brokers);
    free(msg);
    free(def_id);
    return rc;
}
