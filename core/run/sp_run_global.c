/* Global tables: every process reads every partition of their topics with
 * a consumer of its own (no group, no commits), from the start to the end
 * they had when the process started before any other record is processed,
 * then follows them between batches. Their records run through the
 * script like others (the table's entry puts them into its store). */
#include "sp_run.h"

/* Whether a source reads a global table's topic. */
static int any_global(runner *r) {
    for (int32_t i = 0; i < r->ctx->nsources; i++)
        if (r->ctx->sources[i].global) return 1;
    return 0;
}

static rd_kafka_t *make_global_consumer(runner *r) {
    char group[512];
    snprintf(group, sizeof group, "%s-global", sp_lua_app_id(r->lua));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (sp_run_conf_set(r, conf, "bootstrap.servers", r->brokers) ||
        sp_run_conf_set(r, conf, "group.id", group) ||
        sp_run_conf_set(r, conf, "enable.auto.commit", "false") ||
        sp_run_conf_set(r, conf, "enable.partition.eof", "true") ||
        sp_run_conf_set(r, conf, "isolation.level", "read_committed") ||
        sp_run_apply_sets(r, conf, 1)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, sp_run_log_cb);
    rd_kafka_conf_set_error_cb(conf, sp_run_error_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, r->errstr, sizeof r->errstr);
    if (!rk) sp_error("cannot create the global tables' consumer: %s", r->errstr);
    if (rk) rd_kafka_poll_set_consumer(rk);
    return rk;
}

/* The partitions of the global topics and which reached their end. */
typedef struct ends {
    rd_kafka_topic_partition_list_t *parts;
    int ended;
} ends;

/* Every partition of the global topics, from their start (listed in e). */
static int assign_all(runner *r, ends *e) {
    const rd_kafka_metadata_t *md = NULL;
    if (rd_kafka_metadata(r->gcons, 1, NULL, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        sp_error("global tables: cannot read the topics' partitions");
        return -1;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int32_t i = 0; i < r->ctx->nsources; i++) {
        if (!r->ctx->sources[i].global) continue;
        for (int t = 0; t < md->topic_cnt; t++) {
            if (strcmp(md->topics[t].topic, r->ctx->sources[i].name) != 0) continue;
            for (int p = 0; p < md->topics[t].partition_cnt; p++)
                rd_kafka_topic_partition_list_add(l, md->topics[t].topic,
                                                  md->topics[t].partitions[p].id)
                    ->offset = RD_KAFKA_OFFSET_BEGINNING;
        }
    }
    rd_kafka_metadata_destroy(md);
    e->parts = l;
    rd_kafka_resp_err_t err = rd_kafka_assign(r->gcons, l);
    if (err) {
        sp_error("global tables: %s", rd_kafka_err2str(err));
        return -1;
    }
    /* offset marks a partition that reached its end */
    for (int i = 0; i < l->cnt; i++) l->elems[i].offset = 0;
    return 0;
}

/* Runs what the global consumer has (waiting up to timeout_ms for the
 * first), marking in e (if any) the partitions that reached their end. */
static int run_some(runner *r, int timeout_ms, ends *e) {
    rd_kafka_message_t *msgs[1000];
    ssize_t n = rd_kafka_consume_batch_queue(r->gq, timeout_ms, msgs, 1000);
    if (n <= 0) return n < 0 ? -1 : 0;
    sp_batch_reset(r->ctx);
    for (ssize_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = msgs[i];
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_topic_partition_t *p =
                e ? rd_kafka_topic_partition_list_find(e->parts, rd_kafka_topic_name(m->rkt),
                                                       m->partition)
                  : NULL;
            if (p && !p->offset) {
                p->offset = 1;
                e->ended++;
            }
            continue;
        }
        if (m->err) {
            sp_warn("global tables: %s", rd_kafka_message_errstr(m));
            continue;
        }
        if (!sp_run_add_message(r, m, sp_topic_id(r->ctx, rd_kafka_topic_name(m->rkt)))) {
            sp_run_fatal(r, "out of memory");
            break;
        }
    }
    if (r->ctx->batch.n > 0) sp_run_run_batch(r, NULL, 0);
    sp_batch_reset(r->ctx);
    for (ssize_t i = 0; i < n; i++) rd_kafka_message_destroy(msgs[i]);
    return 0;
}

int sp_run_start_global(runner *r) {
    if (!any_global(r)) return 0;
    if (!(r->gcons = make_global_consumer(r))) return -1;
    r->gq = rd_kafka_queue_get_consumer(r->gcons);
    ends e = {NULL, 0};
    int rc = assign_all(r, &e);
    /* each partition's first end: what the topic held at start-up */
    while (rc == 0 && e.ended < e.parts->cnt && !r->exit_code && !sp_run_got_signal)
        rc = run_some(r, 100, &e);
    if (rc == 0 && !r->exit_code)
        sp_info("global tables: read %d partitions to their end", e.parts->cnt);
    if (e.parts) rd_kafka_topic_partition_list_destroy(e.parts);
    return rc == 0 && !r->exit_code ? 0 : -1;
}

void sp_run_poll_global(runner *r) {
    if (r->gq && !r->stopping) run_some(r, 0, NULL);
}

void sp_run_stop_global(runner *r) {
    if (r->gq) rd_kafka_queue_destroy(r->gq);
    r->gq = NULL;
    if (r->gcons) {
        rd_kafka_consumer_close(r->gcons);
        rd_kafka_destroy(r->gcons);
    }
    r->gcons = NULL;
}
