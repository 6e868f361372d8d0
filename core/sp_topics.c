#include "sp_topics.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "sp_log.h"

int sp_topics_ensure(rd_kafka_t *rk, char *const *names, int n, int32_t partitions,
                     int compact, int check_partitions, const char *what) {
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_NewTopic_t **nt = calloc((size_t)n + 1, sizeof *nt);
    int nnew = 0, rc = -1;
    char errstr[256];
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
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
        if (compact) rd_kafka_NewTopic_set_config(nt[nnew], "cleanup.policy", "compact");
        nnew++;
    }
    if (nnew == 0) {
        rc = 0;
        goto done;
    }
    q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, nt, (size_t)nnew, NULL, q);
    ev = rd_kafka_queue_poll(q, 60000);
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
        if (te == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) continue; /* a peer won */
        if (te) {
            sp_error("cannot create %s topic %s: %s", what, rd_kafka_topic_result_name(tr[k]),
                     rd_kafka_topic_result_error_string(tr[k]));
            rc = -1;
        } else {
            sp_info("created %s topic %s (%" PRId32 " partitions%s)", what,
                    rd_kafka_topic_result_name(tr[k]), partitions, compact ? ", compacted" : "");
        }
    }
done:
    if (ev) rd_kafka_event_destroy(ev);
    if (q) rd_kafka_queue_destroy(q);
    for (int k = 0; k < nnew; k++) rd_kafka_NewTopic_destroy(nt[k]);
    free(nt);
    if (md) rd_kafka_metadata_destroy(md);
    return rc;
}
