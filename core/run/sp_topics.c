#include "sp_topics.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sp_clock.h"
#include "sp_log.h"

/* Asks a broker for this one topic's metadata, which replaces what
 * librdkafka's cache holds for it (a stale "unknown topic" included).
 * Returns 1 when the topic is there with a leader for every partition. */
static int refresh(rd_kafka_t *rk, const char *name) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, name, NULL);
    const rd_kafka_metadata_t *md = NULL;
    int ready = 0;
    if (rkt && !rd_kafka_metadata(rk, 0, rkt, &md, 5000) && md->topic_cnt == 1 &&
        !md->topics[0].err && md->topics[0].partition_cnt > 0) {
        ready = 1;
        for (int p = 0; p < md->topics[0].partition_cnt; p++)
            if (md->topics[0].partitions[p].leader < 0 || md->topics[0].partitions[p].err)
                ready = 0;
    }
    if (md) rd_kafka_metadata_destroy(md);
    if (rkt) rd_kafka_topic_destroy(rkt);
    return ready;
}

int32_t sp_topics_partitions(rd_kafka_t *rk, const char *topic) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const rd_kafka_metadata_t *md = NULL;
    int32_t n = -1;
    if (rkt && !rd_kafka_metadata(rk, 0, rkt, &md, 10000) && md->topic_cnt == 1 &&
        !md->topics[0].err)
        n = md->topics[0].partition_cnt;
    if (md) rd_kafka_metadata_destroy(md);
    if (rkt) rd_kafka_topic_destroy(rkt);
    return n;
}

static void pause_ms(long ms) {
    struct timespec d = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&d, NULL);
}

/* A partition's earliest (at -2) or latest (at -1) offset: ListOffsets
 * by time, whose special times these are. Not
 * rd_kafka_query_watermark_offsets: before librdkafka 2.3 it waits past
 * its timeout, for ever, on a leader that is down (librdkafka #2588),
 * where this looks the current leader up. */
static rd_kafka_resp_err_t list_offset(rd_kafka_t *rk, const char *topic, int32_t partition,
                                       int64_t at, int64_t *out, int timeout_ms) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = at;
    rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rk, l, timeout_ms);
    if (!e) e = l->elems[0].err;
    if (!e) *out = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    return e;
}

rd_kafka_resp_err_t sp_topics_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition,
                                         int64_t *lo, int64_t *hi, double within_s) {
    double until = sp_clock_s() + within_s;
    int each_ms = within_s < 1 ? 1000 : within_s > 10 ? 10000 : (int)(within_s * 1000);
    for (;;) {
        rd_kafka_resp_err_t e = list_offset(rk, topic, partition, -2, lo, each_ms);
        if (!e) e = list_offset(rk, topic, partition, -1, hi, each_ms);
        int retry = e == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
                    e == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
                    e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                    e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
                    e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                    e == RD_KAFKA_RESP_ERR__TIMED_OUT ||
                    e == RD_KAFKA_RESP_ERR__TRANSPORT;
        if (!retry || sp_clock_s() > until) return e;
        if (!refresh(rk, topic)) pause_ms(100);
    }
}

/* Kafka answers CreateTopics before every broker's metadata lists the new
 * topic: waits for it, so the first reader does not cache it as unknown. */
static void await_created(rd_kafka_t *rk, const char *name) {
    double until = sp_clock_s() + 30;
    while (!refresh(rk, name)) {
        if (sp_clock_s() > until) {
            sp_warn("topic %s is not in Kafka's metadata 30 s after it was created", name);
            return;
        }
        pause_ms(50);
    }
}

/* Sets config, "key=value" lines (NULL: none), on a new topic; -1 when
 * a setting is refused. */
static int set_config(rd_kafka_NewTopic_t *nt, const char *config) {
    int rc = 0;
    for (const char *line = config; rc == 0 && line && *line;) {
        const char *end = strchr(line, '\n'), *eq = strchr(line, '=');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        if (eq && eq < line + n) {
            char *k = strndup(line, (size_t)(eq - line));
            char *v = strndup(eq + 1, n - (size_t)(eq - line) - 1);
            if (!k || !v || rd_kafka_NewTopic_set_config(nt, k, v) != RD_KAFKA_RESP_ERR_NO_ERROR)
                rc = -1;
            free(k);
            free(v);
        }
        line += n + (end != NULL);
    }
    return rc;
}

/* Creates the nnew topics of nt and waits until they are in the metadata;
 * a topic a peer made first counts as made. detail: logged with each
 * ("6 partitions, compacted"). 0, or -1 after an error message. */
static int create_topics(rd_kafka_t *rk, rd_kafka_NewTopic_t **nt, int nnew, const char *what,
                         const char *detail) {
    int rc = -1;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, nt, (size_t)nnew, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
    if (!res) {
        sp_error("creating %s topics: %s", what,
                 ev ? rd_kafka_event_error_string(ev) : "no answer within 60 s");
        goto done;
    }
    size_t cnt;
    const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
    rc = 0;
    for (size_t k = 0; k < cnt; k++) {
        rd_kafka_resp_err_t te = rd_kafka_topic_result_error(tr[k]);
        const char *name = rd_kafka_topic_result_name(tr[k]);
        /* "already exists": a peer won the race */
        if (te && te != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            sp_error("cannot create %s topic %s: %s", what, name,
                     rd_kafka_topic_result_error_string(tr[k]));
            rc = -1;
            continue;
        }
        if (!te) sp_info("created %s topic %s (%s)", what, name, detail);
        await_created(rk, name);
    }
done:
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    return rc;
}

int sp_topics_config(rd_kafka_t *rk, const char *topic, const char *key, char *out, size_t n) {
    int rc = -1;
    rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DescribeConfigs(rk, &cr, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    const rd_kafka_DescribeConfigs_result_t *res = ev ? rd_kafka_event_DescribeConfigs_result(ev) : NULL;
    size_t nres = 0, nconf = 0;
    const rd_kafka_ConfigResource_t **rs = res ? rd_kafka_DescribeConfigs_result_resources(res, &nres) : NULL;
    if (nres == 1 && !rd_kafka_ConfigResource_error(rs[0])) {
        const rd_kafka_ConfigEntry_t **ce = rd_kafka_ConfigResource_configs(rs[0], &nconf);
        rc = 0;
        for (size_t i = 0; i < nconf && rc == 0; i++)
            if (strcmp(rd_kafka_ConfigEntry_name(ce[i]), key) == 0) {
                const char *v = rd_kafka_ConfigEntry_value(ce[i]);
                snprintf(out, n, "%s", v ? v : "");
                rc = 1;
            }
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_ConfigResource_destroy(cr);
    return rc;
}

int sp_topics_create(rd_kafka_t *rk, const char *name, int32_t partitions, int32_t replication,
                     const char *config, const char *what) {
    char errstr[256], detail[128];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, partitions, replication, errstr,
                                                    sizeof errstr);
    if (!nt) {
        sp_error("%s topic %s: %s", what, name, errstr);
        return -1;
    }
    int rc = set_config(nt, config);
    if (replication < 0)
        snprintf(detail, sizeof detail, "%" PRId32 " partitions, the cluster's default "
                 "replication", partitions);
    else
        snprintf(detail, sizeof detail, "%" PRId32 " partitions, replication %" PRId32,
                 partitions, replication);
    if (rc == 0) rc = create_topics(rk, &nt, 1, what, detail);
    else sp_error("%s topic %s: a config setting was refused", what, name);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

int sp_topics_ensure(rd_kafka_t *rk, char *const *names, int n, int32_t partitions,
                     const char *config, int check_partitions, const char *what) {
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_NewTopic_t **nt = calloc((size_t)n + 1, sizeof *nt);
    int nnew = 0, rc = -1;
    char errstr[256];
    if (!nt) goto done;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, 30000);
    if (e) {
        sp_error("cannot read Kafka's topics: %s", rd_kafka_err2str(e));
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const rd_kafka_metadata_topic_t *t = NULL;
        for (int k = 0; k < md->topic_cnt; k++)
            if (strcmp(md->topics[k].topic, names[i]) == 0 && !md->topics[k].err)
                t = &md->topics[k];
        if (t) {
            if (check_partitions && t->partition_cnt < partitions) {
                sp_error("%s topic %s has %d partitions but the input has %" PRId32
                         ": the state of the others has nowhere to go",
                         what, names[i], t->partition_cnt, partitions);
                goto done;
            }
            continue;
        }
        nt[nnew] = rd_kafka_NewTopic_new(names[i], partitions, -1, errstr, sizeof errstr);
        if (!nt[nnew]) {
            sp_error("%s topic %s: %s", what, names[i], errstr);
            goto done;
        }
        if (set_config(nt[nnew], config) != 0) {
            sp_error("%s topic %s: a config setting was refused", what, names[i]);
            nnew++;
            goto done;
        }
        nnew++;
    }
    if (nnew == 0) {
        rc = 0;
        goto done;
    }
    char detail[64];
    snprintf(detail, sizeof detail, "%" PRId32 " partitions%s", partitions,
             config && strstr(config, "cleanup.policy=compact") ? ", compacted" : "");
    rc = create_topics(rk, nt, nnew, what, detail);
done:
    for (int k = 0; k < nnew; k++) rd_kafka_NewTopic_destroy(nt[k]);
    free(nt);
    if (md) rd_kafka_metadata_destroy(md);
    return rc;
}
