/* sp_run: starts everything a script needs, runs the loop, and stops cleanly. */
#include "sp_run.h"

volatile sig_atomic_t sp_run_got_signal;

/* --- start-up checks ----------------------------------------------------- */

int sp_run_partitions_of(const rd_kafka_metadata_t *md, const char *name) {
    for (int i = 0; i < md->topic_cnt; i++)
        if (strcmp(md->topics[i].topic, name) == 0 && !md->topics[i].err)
            return md->topics[i].partition_cnt;
    return -1;
}

/* Whether topic is in group (comma-separated names). */
static int in_group(const char *group, const char *topic) {
    size_t n = strlen(topic);
    for (const char *s = group; s && *s;) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == n && strncmp(s, topic, n) == 0) return 1;
        s = e ? e + 1 : NULL;
    }
    return 0;
}

/* Topics joined by key must have as many partitions as each other: a
 * key's records are then in partitions of one number. */
int sp_run_check_copartitioned(runner *r) {
    const rd_kafka_metadata_t *md = NULL;
    if (r->mock || r->ctx->ncopart == 0) return 0;
    if (rd_kafka_metadata(r->prod, 1, NULL, &md, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        sp_error("cannot read Kafka's topics to check the joined ones");
        return -1;
    }
    int rc = 0;
    for (int32_t g = 0; g < r->ctx->ncopart && rc == 0; g++) {
        char list[2048] = "", *save = NULL;
        char *names = strdup(r->ctx->copart[g]);
        int first = -1, differ = 0;
        for (char *t = names ? strtok_r(names, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save)) {
            for (int i = 0; i < md->topic_cnt; i++) {
                if (strcmp(md->topics[i].topic, t) != 0 || md->topics[i].err) continue;
                int n = md->topics[i].partition_cnt;
                if (first < 0) first = n;
                differ |= n != first;
                size_t at = strlen(list);
                snprintf(list + at, sizeof list - at, "%s%s (%d partitions)", at ? ", " : "", t, n);
            }
        }
        free(names);
        if (differ) {
            sp_error("topics joined by key must have the same number of partitions "
                     "(co-partitioned): %s", list);
            rc = -1;
        }
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

static int topic_exists(const rd_kafka_metadata_t *md, const char *name) {
    return sp_run_partitions_of(md, name) >= 0;
}

/* Whether sink i is the first of the script's sinks to its topic. */
static int first_to_its_topic(const runner *r, int32_t i) {
    for (int32_t j = 0; j < i; j++)
        if (strcmp(r->ctx->sinks[j]->name, r->ctx->sinks[i]->name) == 0) return 0;
    return 1;
}

/* Every topic the script writes (outputs and the dead-letter topic; not
 * the changelogs and repartition topics sproc makes) must exist before
 * anything is read: otherwise each output would wait for the topic and
 * then fail record by record. */
static int is_output_topic(const sp_sink *s) {
    return strcmp(s->ops->kind, "kafka") == 0 && !s->internal && !s->tag;
}

static int check_sinks(runner *r, const rd_kafka_metadata_t *md) {
    int missing = 0;
    for (int32_t i = 0; r->mock == NULL && i < r->ctx->nsinks; i++) {
        sp_sink *s = r->ctx->sinks[i];
        /* several sinks of one topic: named once */
        if (!is_output_topic(s) || topic_exists(md, s->name) || !first_to_its_topic(r, i))
            continue;
        sp_error("output topic %s does not exist: create it first, e.g. kafka-topics.sh "
                 "--bootstrap-server %s --create --topic %s --partitions %d; or run with "
                 "--create-topics, or declare it in sproc.app{ topics = ... }",
                 s->name, r->brokers, s->name, r->src_partitions > 0 ? r->src_partitions : 1);
        missing++;
    }
    return missing ? -1 : 0;
}

/* Whether the script writes Kafka topics of its own (a broker is then
 * needed before anything runs). */
static int writes_topics(runner *r) {
    for (int32_t i = 0; r->mock == NULL && i < r->ctx->nsinks; i++)
        if (is_output_topic(r->ctx->sinks[i])) return 1;
    return 0;
}

/* Kafka's metadata once a broker answers; NULL after the connect
 * timeout, a signal, or a refused login or certificate (waiting cannot
 * fix those: the producer's error callback keeps them while connecting). */
static const rd_kafka_metadata_t *first_metadata(runner *r) {
    const rd_kafka_metadata_t *md = NULL;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_metadata(r->prod, 1, NULL, &md, 3000);
        if (!e) return md;
        rd_kafka_poll(r->prod, 0); /* serves the error callback */
        if (r->refused[0]) {
            sp_error("cannot connect to Kafka at %s: %s (see the security.protocol, "
                     "sasl.* and ssl.* settings)", r->brokers, r->refused);
            return NULL;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        double waited = (double)(now.tv_sec - t0.tv_sec);
        if (r->o->connect_timeout > 0 && waited >= r->o->connect_timeout) {
            sp_error("no Kafka broker answered at %s within %.0f s (%s)",
                     r->brokers, r->o->connect_timeout, rd_kafka_err2str(e));
            return NULL;
        }
        if (sp_run_got_signal) return NULL;
        sp_warn("waiting for Kafka at %s: no broker answers yet (%.0f s; %s)",
                r->brokers, waited + 3, rd_kafka_err2str(e));
    }
}

/* The topic a script declares (sproc.app{ topics }) by that name. */
static const sp_topic_spec *declared(runner *r, const char *name) {
    for (int32_t i = 0; i < r->ctx->ntopic_specs; i++)
        if (strcmp(r->ctx->topic_specs[i].name, name) == 0) return &r->ctx->topic_specs[i];
    return NULL;
}

/* Named source topics and output topics the metadata lacks (and sproc
 * would not create). */
static int count_missing(runner *r, const rd_kafka_metadata_t *md) {
    int n = 0;
    for (int32_t i = 0; i < r->ctx->nsources; i++) {
        const sp_source *s = &r->ctx->sources[i];
        n += s->kind == 0 && !s->internal && !topic_exists(md, s->name) && !declared(r, s->name);
    }
    for (int32_t i = 0; !r->o->create_topics && i < r->ctx->nsinks; i++) {
        const char *name = r->ctx->sinks[i]->name;
        n += is_output_topic(r->ctx->sinks[i]) && !topic_exists(md, name) && !declared(r, name);
    }
    return n;
}

/* A topic created a moment ago is in some brokers' metadata before
 * others' (seen on a 3-broker cluster, where a script started right
 * after its topics were made was told one was missing): a topic counts
 * as missing only when looks over some 5 s all miss it. */
static const rd_kafka_metadata_t *settled_metadata(runner *r, const rd_kafka_metadata_t *md) {
    for (int tries = 0; tries < 10 && !r->mock && !sp_run_got_signal && count_missing(r, md) > 0;
         tries++) {
        nanosleep(&(struct timespec){0, 500 * 1000 * 1000}, NULL);
        const rd_kafka_metadata_t *again = NULL;
        if (rd_kafka_metadata(r->prod, 1, NULL, &again, 3000) != RD_KAFKA_RESP_ERR_NO_ERROR)
            continue;
        rd_kafka_metadata_destroy(md);
        md = again;
    }
    return md;
}

/* Creates the missing topics the script declares, and under
 * --create-topics its missing output and dead-letter topics (as many
 * partitions as the source, the cluster's default replication). Returns
 * how many it made, or -1. */
static int create_missing(runner *r, const rd_kafka_metadata_t *md) {
    int made = 0;
    int32_t dflt = 1; /* the most partitions of a named source topic */
    for (int32_t i = 0; i < r->ctx->nsources; i++) {
        int n = r->ctx->sources[i].kind == 0 ? sp_run_partitions_of(md, r->ctx->sources[i].name) : -1;
        if (n > dflt) dflt = n;
    }
    for (int32_t i = 0; !r->mock && i < r->ctx->ntopic_specs; i++) {
        const sp_topic_spec *t = &r->ctx->topic_specs[i];
        if (topic_exists(md, t->name)) continue;
        int32_t parts = t->partitions > 0 ? t->partitions : dflt;
        if (sp_topics_create(r->prod, t->name, parts, t->replication, t->config, "declared") != 0)
            return -1;
        made++;
    }
    for (int32_t i = 0; !r->mock && r->o->create_topics && i < r->ctx->nsinks; i++) {
        sp_sink *s = r->ctx->sinks[i];
        if (!is_output_topic(s) || topic_exists(md, s->name) || declared(r, s->name) ||
            !first_to_its_topic(r, i))
            continue;
        if (sp_topics_create(r->prod, s->name, dflt, -1, NULL, "output") != 0)
            return -1;
        made++;
    }
    return made;
}

/* Waits until a broker answers, then checks the source topics (and, for a
 * bounded run, notes where each partition ends now) and the topics the
 * script writes. */
int sp_run_wait_for_kafka(runner *r) {
    r->connecting = 1;
    const rd_kafka_metadata_t *md = first_metadata(r);
    r->connecting = 0;
    if (!md) return -1;
    md = settled_metadata(r, md);
    int made = create_missing(r, md);
    if (made > 0) {
        const rd_kafka_metadata_t *again = NULL;
        if (rd_kafka_metadata(r->prod, 1, NULL, &again, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_metadata_destroy(md);
            md = again;
        }
    }
    int rc = made < 0 ? -1 : 0;
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
            if (s->global) continue; /* read whole, outside the group */
            if (mt->partition_cnt > r->src_partitions)
                r->src_partitions = mt->partition_cnt;
            if (!r->o->until_end) continue;
            for (int p = 0; p < mt->partition_cnt; p++) {
                int64_t lo, hi;
                if (sp_topics_watermarks(r->prod, mt->topic, mt->partitions[p].id, &lo,
                                         &hi, 30) != 0) {
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
    if (rc == 0) rc = check_sinks(r, md);
    rd_kafka_metadata_destroy(md);
    return rc;
}

/* Repartition topics: created where missing, with one partition per
 * input partition (the dev cluster makes them as their sinks open). */
int sp_run_ensure_internal(runner *r) {
    if (r->mock || !sp_run_has_internal(r)) return 0;
    const rd_kafka_metadata_t *md = NULL;
    if (rd_kafka_metadata(r->prod, 1, NULL, &md, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        sp_error("cannot read Kafka's topics");
        return -1;
    }
    int rc = 0;
    for (int32_t i = 0; i < r->ctx->nsources && rc == 0; i++) {
        if (!r->ctx->sources[i].internal) continue;
        char *name = r->ctx->sources[i].name;
        /* one that is joined by key: as many as the topics it joins */
        int32_t parts = r->src_partitions > 0 ? r->src_partitions : 1;
        for (int32_t g = 0; g < r->ctx->ncopart; g++) {
            if (!in_group(r->ctx->copart[g], name)) continue;
            for (int32_t j = 0; j < r->ctx->nsources; j++) {
                int n = r->ctx->sources[j].internal || !in_group(r->ctx->copart[g], r->ctx->sources[j].name)
                            ? -1 : sp_run_partitions_of(md, r->ctx->sources[j].name);
                if (n > 0) parts = n;
            }
        }
        /* Kafka Streams' repartition topics: kept until sproc deletes what
         * the group committed (sp_run_purge), in segments it can drop */
        rc = sp_topics_ensure(r->prod, &name, 1, parts,
                              "cleanup.policy=delete\nretention.ms=-1\nsegment.bytes=52428800", 0,
                              "repartition");
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

int sp_run_open_files(runner *r) {
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

int sp_run_has_kafka_sources(runner *r) {
    for (int32_t i = 0; i < r->ctx->nsources; i++)
        if (r->ctx->sources[i].kind <= 1) return 1;
    return 0;
}

char *sp_run_default_app_id(const char *script) {
    const char *base = strrchr(script, '/');
    base = base ? base + 1 : script;
    char *id = strdup(base);
    if (!id) return NULL;
    size_t n = strlen(id);
    if (n > 4 && strcmp(id + n - 4, ".lua") == 0) id[n - 4] = '\0';
    return id;
}

/* The watchdogs' threads read the context's batch: they stop before the
 * context goes. */
static void stop_watchdogs(runner *r) {
    if (r->lua) sp_lua_set_limits(r->lua, 0, 0);
    if (r->prev) sp_lua_set_limits(r->prev, 0, 0);
}

void sp_run_shutdown_clients(runner *r) {
    sp_run_stop_global(r);
    sp_run_sync_drop_all(r);
    /* queues are references into their clients: release them first */
    sp_prefetch_destroy(r->pf);
    r->pf = NULL;
    if (r->cq) rd_kafka_queue_destroy(r->cq);
    if (r->pq) rd_kafka_queue_destroy(r->pq);
    r->cq = r->pq = NULL;
    sp_run_stop_members(r);
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
        sp_run_purge_stop(r);
        rd_kafka_flush(r->prod, 10000);
        stop_watchdogs(r);
        sp_ctx_destroy(r->ctx); /* sinks hold topic handles of the producer */
        r->ctx = NULL;
        rd_kafka_destroy(r->prod);
        r->prod = NULL;
    }
    if (r->mock) rd_kafka_mock_cluster_destroy(r->mock);
    if (r->mock_rk) rd_kafka_destroy(r->mock_rk);
}

/* Options and the script: the context, the Lua state, the dev cluster when
 * no broker is given, the script loaded. 0, 1 or 2 (the exit code). */
/* schema.registry.url: a registry that must answer at start (exit 1
 * naming its URL), as Kafka's clients' serializers need it. */
static int start_registry(runner *r) {
    const char *url = sp_run_sproc_setting(r->o, "schema.registry.url");
    if (!url) return 0;
    r->registry = sp_registry_create(url, sp_run_sproc_setting(r->o, "basic.auth.user.info"),
                                     sp_run_sproc_setting(r->o, "schema.registry.ssl.ca.location"));
    char err[512];
    if (!r->registry) {
        sp_error("out of memory");
        return -1;
    }
    if (sp_registry_check(r->registry, err, sizeof err) != 0) {
        sp_error("%s", err);
        return -1;
    }
    r->ctx->registry.opaque = r->registry;
    r->ctx->registry.fetch = sp_registry_fetch;
    r->ctx->registry.register_schema = sp_registry_register;
    sp_info("schema registry at %s", sp_registry_url(r->registry));
    return 0;
}

/* The state that runs now (a reload replaces it). */
static void lua_waiting(void *opaque, int on) {
    runner *r = opaque;
    sp_lua_waiting(r->lua, on);
}

static int start_script(runner *r, char *def_id) {
    const sp_opts *o = r->o;
    const char *msg = NULL;
    if (o->start && strcmp(o->start, "earliest") != 0 && strcmp(o->start, "latest") != 0) {
        int64_t ms;
        if (sp_time_parse(o->start, &ms) != 0) {
            fprintf(stderr, "sproc: --start takes earliest, latest or an "
                            "ISO-8601 time, not '%s'\n", o->start);
            return 2;
        }
        r->start_ms = ms;
    }
    r->msgs = calloc((size_t)r->max_batch, sizeof *r->msgs);
    r->released = calloc((size_t)r->max_batch, sizeof *r->released);
    r->started_ms = sp_run_now_ms();
    r->ctx = sp_ctx_create();
    r->lua = r->ctx ? sp_lua_create(r->ctx) : NULL;
    if (!r->msgs || !r->released || !r->lua || sp_run_lua_limits(r, r->lua) != 0) {
        sp_error("out of memory");
        return 1;
    }
    if (o->brokers)
        r->brokers = strdup(o->brokers);
    else if (sp_run_start_dev_cluster(r) != 0)
        return 1;
    sp_kafka_out_init(&r->ko, r->ctx, NULL);
    r->ko.on_topic = sp_run_dev_topic;
    r->ko.fetch = sp_run_refetch;
    r->ko.waiting = lua_waiting;
    r->ko.opaque = r;
    /* before the script: its Avro sinks register their schemas as it loads */
    if (start_registry(r) != 0) return 1;
    if (sp_lua_load(r->lua, o->script, o->app, def_id, &msg) != 0) {
        fprintf(stderr, "sproc: cannot load %s:\n%s\n", o->script, msg);
        return 2;
    }
    sp_log_set_field("app", sp_lua_app_id(r->lua));
    sp_log_set_field("script_version", "1");
    const char *g = sp_run_sproc_setting(o, "sproc.processing.guarantee");
    r->eos = g ? strcmp(g, "exactly_once") == 0 : sp_lua_exactly_once(r->lua);
    /* transactions stay short, as in Kafka Streams under exactly-once:
     * downstream read_committed consumers see outputs when they commit */
    if (r->eos) r->commit_interval_ms = sp_run_setting_int(o, "sproc.commit.interval.ms", 100);
    r->ko.txn = r->eos;
    if (sp_run_sproc_setting(o, "sproc.idle.timeout.ms"))
        sp_ctx_set_idle_timeout(r->ctx, sp_run_setting_int(o, "sproc.idle.timeout.ms", 0));
    return 0;
}

int sp_run_lua_limits(runner *r, sp_lua *l) {
    return sp_lua_set_limits(l, sp_run_setting_int(r->o, "sproc.script.timeout.ms", 10000),
                             sp_run_setting_int(r->o, "sproc.script.heap.max.bytes", 0));
}

/* The topics and patterns of the script's sources, each once. */
static rd_kafka_topic_partition_list_t *subscriptions(runner *r) {
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(4);
    for (int32_t i = 0; i < r->ctx->nsources; i++) {
        sp_source *s = &r->ctx->sources[i];
        int dup = 0;
        for (int32_t j = 0; j < i; j++)
            dup |= r->ctx->sources[j].kind == s->kind && strcmp(r->ctx->sources[j].name, s->name) == 0;
        if (s->kind >= 2 || s->global || dup) continue;
        if (s->kind == 1) {
            char pat[1024];
            snprintf(pat, sizeof pat, "^(%s)$", s->name);
            rd_kafka_topic_partition_list_add(subs, pat, RD_KAFKA_PARTITION_UA);
        } else {
            rd_kafka_topic_partition_list_add(subs, s->name, RD_KAFKA_PARTITION_UA);
        }
    }
    return subs;
}

/* A script with Kafka sources: the broker, internal topics, transactions,
 * state, and the consumer subscribed and plugged into the loop. */
static int start_consuming(runner *r) {
    if (sp_run_wait_for_kafka(r) != 0 || sp_run_ensure_internal(r) != 0 ||
        sp_run_check_copartitioned(r) != 0)
        return -1;
    if (r->eos) {
        rd_kafka_error_t *e = rd_kafka_init_transactions(r->prod, 60000);
        if (e) {
            sp_error("exactly-once: cannot initialize transactions: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            return -1;
        }
        sp_info("exactly-once: outputs, changelogs and offsets commit in transactions");
    }
    if (r->ctx->nstores > 0 && sp_run_setup_state(r) != 0) return -1;
    if (sp_run_start_global(r) != 0) return -1;
    if (sp_run_make_consumer(r) != 0 || sp_run_start_members(r) != 0) return -1;
    rd_kafka_topic_partition_list_t *subs = subscriptions(r);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(r->cons, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (e) {
        sp_error("subscribe failed: %s", rd_kafka_err2str(e));
        return -1;
    }
    r->cq = rd_kafka_queue_get_consumer(r->cons);
    r->pf = sp_run_make_prefetch(r);
    if (!r->pf || sp_run_open_io_event(r, r->cq, r->cons_fd) != 0) return -1;
    ev_io_init(&r->cons_w, sp_run_on_consumer, r->cons_fd[0], EV_READ);
    r->cons_w.data = r;
    ev_io_start(r->loop, &r->cons_w);
    return 0;
}

/* The loop's watchers: the producer's queue, a first pass, commits, the
 * tick, signals, hot reload. */
static int start_loop(runner *r) {
    r->pq = rd_kafka_queue_get_main(r->prod);
    if (sp_run_open_io_event(r, r->pq, r->prod_fd) != 0) return -1;
    ev_io_init(&r->prod_w, sp_run_on_producer, r->prod_fd[0], EV_READ);
    r->prod_w.data = r;
    ev_io_start(r->loop, &r->prod_w);
    ev_idle_init(&r->more_w, sp_run_on_more);
    r->more_w.data = r;
    /* a first pass: file sources, and anything already queued */
    ev_idle_start(r->loop, &r->more_w);
    double every = r->commit_interval_ms / 1000.0;
    ev_timer_init(&r->commit_w, sp_run_on_commit, every, every);
    r->commit_w.data = r;
    ev_timer_start(r->loop, &r->commit_w);
    /* wall-clock timers fire from the tick: tick at least as often */
    double tick = 1.0;
    int64_t wall = sp_ctx_wall_timer_min(r->ctx);
    if (wall > 0 && wall < 1000) tick = (double)wall / 1000.0;
    ev_timer_init(&r->tick_w, sp_run_on_tick, tick, tick);
    r->tick_w.data = r;
    ev_timer_start(r->loop, &r->tick_w);
    ev_signal_init(&r->int_w, sp_run_on_signal, SIGINT);
    r->int_w.data = r;
    ev_signal_start(r->loop, &r->int_w);
    ev_signal_init(&r->term_w, sp_run_on_signal, SIGTERM);
    r->term_w.data = r;
    ev_signal_start(r->loop, &r->term_w);
    /* a live line on a terminal, every second of the tick */
    r->progress = !r->o->quiet && isatty(2);
    /* hot reload: SIGHUP always, the script's file under --watch */
    r->version = 1;
    ev_timer_init(&r->reload_w, sp_run_on_reload_due, 0.1, 0.0);
    r->reload_w.data = r;
    ev_signal_init(&r->hup_w, sp_run_on_hup, SIGHUP);
    r->hup_w.data = r;
    ev_signal_start(r->loop, &r->hup_w);
    if (r->o->watch) {
        sp_run_watch_files(r);
        /* with inotify, looking at the files is the fallback (file systems
         * that do not tell, such as NFS) */
        double every = r->inotify_fd >= 0 ? 1.0 : 0.1;
        ev_timer_init(&r->watch_w, sp_run_on_watch, every, every);
        r->watch_w.data = r;
        ev_timer_start(r->loop, &r->watch_w);
        sp_info("watching %s: saving it reloads the pipeline", r->o->script);
    }
    return 0;
}

static int start_metrics(runner *r) {
    if (!r->o->metrics) return 0;
    sp_metrics_source src = {r, sp_run_render_metrics, sp_run_is_ready, sp_run_query,
                             sp_run_tap_open, sp_run_tap_closed};
    r->metrics = sp_metrics_create(r->loop, r->o->metrics, &src, r->errstr, sizeof r->errstr);
    if (!r->metrics) {
        sp_error("%s", r->errstr);
        return -1;
    }
    const char *self = sp_run_sproc_setting(r->o, "sproc.query.address");
    snprintf(r->query_self, sizeof r->query_self, "%s", self ? self : sp_metrics_address(r->metrics));
    sp_info("metrics on port %d: /metrics, /health/live, /health/ready, /state (--metrics %s)",
            sp_metrics_port(r->metrics), r->o->metrics);
    return 0;
}

/* Stop: the batch is finished; make outputs safe and commit. After a
 * failure, what is safe is still committed, never the failed batch. */
static int stop(runner *r) {
    if (sp_run_make_safe(r, r->exit_code ? 5000 : 60000) != 0 && r->exit_code == 0 &&
        r->o->until_end)
        r->exit_code = 1;
    /* the last acknowledgements may carry a failure for good */
    if (r->ko.fatal && r->exit_code == 0) {
        sp_error("%s", r->ko.fatal);
        r->exit_code = 1;
    }
    sp_run_commit(r, 1, NULL);
    sp_stats *st = sp_ctx_stats(r->ctx);
    sp_info("done: %" PRId64 " records in, %" PRId64 " out, %" PRId64 " filtered, %" PRId64
            " skipped, %" PRId64 " dead-lettered%s",
            st->records_in, st->records_out, st->filtered, st->skipped, st->dead_lettered,
            r->eos ? " (exactly-once)" : "");
    if (r->eos)
        sp_info("%" PRId64 " transactions committed, %" PRId64 " aborted and started over",
                r->txns, r->txn_aborts);
    if (r->pf) sp_info("prefetch woken %" PRId64 " times", sp_prefetch_kicks(r->pf));
    sp_windows_log(r->ctx);
    return r->exit_code;
}

static void free_runner(runner *r) {
    if (r->progress) sp_log_progress("");
    sp_metrics_destroy(r->metrics);
    r->metrics = NULL;
    sp_run_shutdown_clients(r);
    stop_watchdogs(r);
    if (r->ctx) sp_ctx_destroy(r->ctx);
    sp_lua_destroy(r->lua);
    sp_lua_destroy(r->prev);
    sp_run_free_watched(r);
    sp_kafka_out_destroy(&r->ko);
    sp_offsets_destroy(&r->offs);
    sp_buf_destroy(&r->positions);
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
    free(r->released);
    free(r->brokers);
    sp_registry_destroy(r->registry);
}

int sp_run(const sp_opts *o) {
    runner R;
    runner *r = &R;
    memset(r, 0, sizeof *r);
    r->stale_partition = -1;
    r->inotify_fd = -1;
    r->o = o;
    r->cons_fd[0] = r->cons_fd[1] = r->prod_fd[0] = r->prod_fd[1] = -1;
    r->members_fd[0] = r->members_fd[1] = -1;
    r->max_batch = (int)sp_run_setting_int(o, "sproc.batch.size", 1000);
    r->commit_interval_ms = sp_run_setting_int(o, "sproc.commit.interval.ms", 1000);
    r->idle_ms = sp_run_setting_int(o, "sproc.max.task.idle.ms", 0);
    r->dev_partitions = (int32_t)sp_run_setting_int(o, "sproc.dev.partitions", 4);
    r->start_ms = -1;
    sp_offsets_init(&r->offs);
    char *def_id = sp_run_default_app_id(o->script);
    r->def_id = def_id;
    int rc = start_script(r, def_id);
    /* the dev cluster made the topics the script writes as their sinks
     * opened; a source topic it does not write is missing there as it
     * would be on a real broker */
    if (rc == 0 && (sp_run_make_producer(r) != 0 || sp_run_open_files(r) != 0)) rc = 1;
    if (rc == 0) {
        sp_store_set_budget(r->ctx, sp_run_setting_int(o, "sproc.state.max.bytes", (int64_t)1 << 30));
        r->loop = ev_default_loop(EVFLAG_AUTO);
        /* before the consumer: its client.id carries the address */
        if (start_metrics(r) != 0) rc = 2;
    }
    if (rc == 0) {
        if (sp_run_has_kafka_sources(r) ? start_consuming(r) != 0
                                         : writes_topics(r) && sp_run_wait_for_kafka(r) != 0)
            rc = 1;
    }
    if (rc == 0 && start_loop(r) != 0) rc = 1;
    if (rc == 0) {
        if (!(o->until_end && sp_run_all_done(r))) ev_run(r->loop, 0);
        rc = stop(r);
    }
    free_runner(r);
    free(def_id);
    return rc;
}
