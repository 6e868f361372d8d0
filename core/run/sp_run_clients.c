/* Kafka clients: settings, the dev cluster, the producer and consumer, and the side clients (ends read read_uncommitted, inputs read again for dead letters). */
#include "sp_run.h"
#include "sp_settings.h"

/* --- configuration ------------------------------------------------------- */

int sp_run_conf_set(runner *r, rd_kafka_conf_t *conf, const char *k,
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

int sp_run_one_of(const char *k, const char *const *list) {
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
int sp_run_apply_sets(runner *r, rd_kafka_conf_t *conf, int is_consumer) {
    for (int i = 0; i < r->o->nsets; i++) {
        char kv[1024];
        snprintf(kv, sizeof kv, "%s", r->o->sets[i]);
        char *eq = strchr(kv, '=');
        if (!eq) continue; /* checked by the CLI */
        *eq = '\0';
        const char *k = kv, *v = eq + 1;
        if (strncmp(k, "sproc.", 6) == 0 || sp_settings_registry(k)) continue;
        if (is_consumer == 2 && (strncmp(k, "consumer.", 9) == 0 ||
                                 strncmp(k, "producer.", 9) == 0 ||
                                 sp_run_one_of(k, consumer_only) || sp_run_one_of(k, producer_only)))
            continue;
        if (strncmp(k, "consumer.", 9) == 0) {
            if (!is_consumer) continue;
            k += 9;
        } else if (strncmp(k, "producer.", 9) == 0) {
            if (is_consumer) continue;
            k += 9;
        } else if (is_consumer ? sp_run_one_of(k, producer_only)
                               : sp_run_one_of(k, consumer_only)) {
            continue; /* the other client's setting: not worth a warning */
        }
        if (sp_run_conf_set(r, conf, k, v) != 0) return -1;
    }
    return 0;
}

const char *sp_run_sproc_setting(const sp_opts *o, const char *key) {
    size_t n = strlen(key);
    const char *v = NULL;
    for (int i = 0; i < o->nsets; i++)
        if (strncmp(o->sets[i], key, n) == 0 && o->sets[i][n] == '=')
            v = o->sets[i] + n + 1;
    return v;
}

int64_t sp_run_setting_int(const sp_opts *o, const char *key, int64_t def) {
    const char *v = sp_run_sproc_setting(o, key);
    return v ? strtoll(v, NULL, 10) : def;
}

void sp_run_log_cb(const rd_kafka_t *rk, int level, const char *fac,
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

void sp_run_error_cb(rd_kafka_t *rk, int err, const char *reason,
                     void *opaque) {
    (void)rk;
    (void)opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
        err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__RESOLVE)
        sp_debug("kafka: %s", reason);
    else
        sp_warn("kafka: %s", reason);
}

/* The producer is the client that first reaches Kafka. librdkafka retries
 * a refused login or certificate for ever as it would a broker that is
 * down; while sproc starts, such a refusal is kept for
 * sp_run_wait_for_kafka, which stops with it. */
static void producer_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    runner *r = ((sp_kafka_out *)opaque)->opaque;
    if (r->connecting && (err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
                          err == RD_KAFKA_RESP_ERR__SSL)) {
        if (!r->refused[0]) snprintf(r->refused, sizeof r->refused, "%s", reason);
        return;
    }
    sp_run_error_cb(rk, err, reason, opaque);
}

/* --- reading an input again --------------------------------------------- */

/* An input whose output Kafka refused goes to the dead-letter topic as it
 * came: it is read again from its topic (its offset is not committed, so
 * it is there), with a client of its own made on the first such failure. */
rd_kafka_message_t *sp_run_refetch(void *opaque, const char *topic, int32_t partition,
                                   int64_t offset) {
    runner *r = opaque;
    if (!r->refetch) {
        /* assign() only: librdkafka wants a group id all the same */
        char group[512];
        snprintf(group, sizeof group, "%s-refetch", sp_lua_app_id(r->lua));
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        if (sp_run_conf_set(r, conf, "bootstrap.servers", r->brokers) ||
            sp_run_conf_set(r, conf, "group.id", group) ||
            sp_run_conf_set(r, conf, "enable.auto.commit", "false") ||
            sp_run_conf_set(r, conf, "enable.partition.eof", "true") || sp_run_apply_sets(r, conf, 2)) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
        rd_kafka_conf_set_log_cb(conf, sp_run_log_cb);
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

void sp_run_dev_topic(void *opaque, const char *topic) {
    runner *r = opaque;
    if (r->mock)
        rd_kafka_mock_topic_create(r->mock, topic, r->dev_partitions, 1);
}

int sp_run_start_dev_cluster(runner *r) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, sp_run_log_cb);
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
    sp_info("no --brokers or SPROC_BROKERS given: running on an embedded in-process dev "
            "cluster at %s (a development aid: it keeps ~5 MiB per partition and loses "
            "everything on exit)", r->brokers);
    return 0;
}

/* Exactly-once: one transactional producer per process. A static member
 * (group.instance.id) keeps its transactional id across restarts, so a
 * restart fences its predecessor and aborts what it left open at once;
 * otherwise the id is new per run and an abandoned transaction ends when
 * transaction.timeout.ms (10 s unless set) runs out. Zombies are fenced by
 * the group generation that goes with the offsets (KIP-447). */
int sp_run_make_transactional(runner *r, rd_kafka_conf_t *conf) {
    char id[512];
    const char *inst = NULL;
    for (int i = 0; i < r->o->nsets; i++) {
        const char *kv = r->o->sets[i];
        if (strncmp(kv, "group.instance.id=", 18) == 0) inst = kv + 18;
        if (strncmp(kv, "consumer.group.instance.id=", 27) == 0) inst = kv + 27;
    }
    /* a static member's id outlives the process: a restarted one fences
     * this one for real */
    r->txn_id_static = inst != NULL;
    if (inst) {
        snprintf(id, sizeof id, "%s-%s", sp_lua_app_id(r->lua), inst);
    } else {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        snprintf(id, sizeof id, "%s-%d-%lx", sp_lua_app_id(r->lua), (int)getpid(),
                 (unsigned long)(t.tv_nsec ^ t.tv_sec));
    }
    /* a producer made again (sp_run_replace_producer) keeps the id: it
     * fences the one before and ends its transaction at once */
    if (r->txn_id[0]) snprintf(id, sizeof id, "%s", r->txn_id);
    snprintf(r->txn_id, sizeof r->txn_id, "%s", id);
    return sp_run_conf_set(r, conf, "transactional.id", id) ||
           sp_run_conf_set(r, conf, "transaction.timeout.ms", "10000");
}

int sp_run_make_producer(runner *r) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (sp_run_conf_set(r, conf, "bootstrap.servers", r->brokers) ||
        /* the partition a Java producer picks for the same key */
        sp_run_conf_set(r, conf, "partitioner", "murmur2_random") ||
        sp_run_conf_set(r, conf, "enable.idempotence", "true") ||
        sp_run_conf_set(r, conf, "linger.ms", "5") ||
        /* outputs waiting for Kafka: at most 20,000 (about 15 ms at full
         * speed; 10,000 already slowed it down) */
        sp_run_conf_set(r, conf, "queue.buffering.max.messages", "20000") ||
        (r->eos && sp_run_make_transactional(r, conf)) ||
        sp_run_apply_sets(r, conf, 0)) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_conf_set_log_cb(conf, sp_run_log_cb);
    rd_kafka_conf_set_error_cb(conf, producer_error_cb);
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

int sp_run_replace_producer(runner *r) {
    rd_kafka_t *old = r->prod;
    ev_io_stop(r->loop, &r->prod_w);
    rd_kafka_queue_destroy(r->pq);
    r->pq = NULL;
    sp_run_purge_stop(r); /* its queue is the old producer's */
    r->prod = NULL;
    if (sp_run_make_producer(r) != 0) return -1;
    /* the old one's outputs go unsent (their delivery reports say purged,
     * which sp_kafka_out_delivered passes over) */
    sp_kafka_out_set_producer(&r->ko, r->prod);
    rd_kafka_purge(old, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(old, 0);
    rd_kafka_destroy(old);
    rd_kafka_error_t *e = rd_kafka_init_transactions(r->prod, 60000);
    if (e) {
        sp_error("exactly-once: cannot initialize transactions: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
    }
    r->pq = rd_kafka_queue_get_main(r->prod);
    rd_kafka_queue_io_event_enable(r->pq, r->prod_fd[1], "1", 1);
    ev_io_start(r->loop, &r->prod_w);
    return 0;
}

static int set_client_id(runner *r, rd_kafka_conf_t *conf) {
    char id[sizeof r->query_self + 16];
    snprintf(id, sizeof id, SP_MEMBERS_CLIENT_PREFIX "%s", r->query_self);
    return sp_run_conf_set(r, conf, "client.id", id);
}

int sp_run_make_consumer(runner *r) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *reset = r->o->start && strcmp(r->o->start, "latest") == 0
                            ? "latest"
                            : "earliest";
    if (sp_run_conf_set(r, conf, "bootstrap.servers", r->brokers) ||
        sp_run_conf_set(r, conf, "group.id", sp_lua_app_id(r->lua)) ||
        sp_run_conf_set(r, conf, "enable.auto.commit", "false") ||
        sp_run_conf_set(r, conf, "enable.auto.offset.store", "false") ||
        sp_run_conf_set(r, conf, "auto.offset.reset", reset) ||
        /* range: partition p of every topic (of one partition count) goes
         * to one process, where the state of partition p is kept. A
         * table's partition p is where the stream's partition p is
         * joined with it, and a store's changelog partition p is kept up
         * to date only where its input's partition p is processed
         * (Kafka Streams' assignor makes them one task). cooperative-sticky
         * balances topic partitions one by one: it gave one process every
         * partition of a stream and the other every partition of the
         * table it joins, and all of the joins read rows never updated */
        sp_run_conf_set(r, conf, "partition.assignment.strategy", "range") ||
        sp_run_conf_set(r, conf, "isolation.level", "read_committed") ||
        /* the ends of partitions: for a bounded run, and for joined
         * partitions, which wait for each other while one has records
         * not fetched yet (sp_run_sync.c) */
        sp_run_conf_set(r, conf, "enable.partition.eof",
                        r->o->until_end || r->ctx->ncopart > 0 ? "true" : "false") ||
        /* A small prefetch: sp_prefetch wakes the fetcher when half of it
         * is processed, so it never runs dry, and records are processed
         * while still in the cache. Measured at 1.4M records/s: 10,000
         * records and 2 MB (RSS 25 MB) as fast as 1M and 32 MB (RSS 180
         * MB), with 128 KB fetched per partition at a time. */
        sp_run_conf_set(r, conf, "queued.min.messages", "10000") ||
        sp_run_conf_set(r, conf, "queued.max.messages.kbytes", "2048") ||
        sp_run_conf_set(r, conf, "max.partition.fetch.bytes", "131072") ||
        /* the group's description tells the other processes where this
         * one answers queries (sp_members.h); a client.id of the user's
         * wins, and then queries are not forwarded to this process */
        (r->metrics && set_client_id(r, conf)) ||
        sp_run_apply_sets(r, conf, 1)) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_conf_set_log_cb(conf, sp_run_log_cb);
    rd_kafka_conf_set_error_cb(conf, sp_run_error_cb);
    rd_kafka_conf_set_rebalance_cb(conf, sp_run_rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, sp_run_commit_cb);
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
sp_prefetch *sp_run_make_prefetch(runner *r) {
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

/* A client that sees every record written (read_uncommitted): Kafka's
 * end offsets for a read_committed one stop at the last stable offset,
 * before any transaction whose commit markers are not written yet, and
 * the markers are written after the commit returns. */
rd_kafka_t *sp_run_uncommitted_client(runner *r) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (sp_run_conf_set(r, conf, "bootstrap.servers", r->brokers) ||
        sp_run_conf_set(r, conf, "isolation.level", "read_uncommitted") ||
        sp_run_apply_sets(r, conf, 2)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, sp_run_log_cb);
    rd_kafka_conf_set_error_cb(conf, sp_run_error_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, r->errstr, sizeof r->errstr);
    if (!rk) sp_error("cannot create a client: %s", r->errstr);
    return rk;
}

/* --- set-up and shutdown ------------------------------------------------- */

int sp_run_open_io_event(runner *r, rd_kafka_queue_t *q, int fds[2]) {
    if (pipe(fds) != 0) return -1;
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    (void)r;
    rd_kafka_queue_io_event_enable(q, fds[1], "1", 1);
    return 0;
}
