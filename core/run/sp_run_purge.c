/* Repartition topics purged: records the group has committed are deleted, as Kafka Streams does. */
#include "sp_run.h"

void sp_run_purge_confirmed(runner *r, const rd_kafka_topic_partition_list_t *committed) {
    for (int i = 0; committed && i < committed->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &committed->elems[i];
        if (e->err || e->offset < 0 || sp_topic_internal(r->ctx, sp_topic_id(r->ctx, e->topic)) != 1)
            continue;
        sp_tp *tp = sp_offsets_tp(&r->offs, e->topic, e->partition);
        if (tp && e->offset > tp->purge_to) tp->purge_to = e->offset;
    }
}

/* Kafka's answers: what was deleted, or why not (a warning; the next
 * purge asks again). */
static void read_answers(runner *r) {
    rd_kafka_event_t *ev;
    while ((ev = rd_kafka_queue_poll(r->purge_q, 0))) {
        const rd_kafka_DeleteRecords_result_t *res = rd_kafka_event_DeleteRecords_result(ev);
        const rd_kafka_topic_partition_list_t *l = res ? rd_kafka_DeleteRecords_result_offsets(res)
                                                      : NULL;
        if (rd_kafka_event_error(ev))
            sp_warn("deleting consumed records of repartition topics: %s",
                    rd_kafka_event_error_string(ev));
        for (int i = 0; l && i < l->cnt; i++) {
            sp_tp *tp = sp_offsets_tp(&r->offs, l->elems[i].topic, l->elems[i].partition);
            if (l->elems[i].err)
                sp_warn("deleting consumed records of %s [%" PRId32 "]: %s", l->elems[i].topic,
                        l->elems[i].partition, rd_kafka_err2str(l->elems[i].err));
            else if (tp && l->elems[i].offset > tp->purged)
                tp->purged = l->elems[i].offset;
        }
        rd_kafka_event_destroy(ev);
    }
}

void sp_run_purge(runner *r) {
    if (!r->prod || r->mock) return;
    if (!r->purge_q) r->purge_q = rd_kafka_queue_new(r->prod);
    read_answers(r);
    double now = sp_clock_s();
    if (now < r->purge_next) return;
    int64_t every = sp_run_setting_int(r->o, "sproc.repartition.purge.interval.ms", 30000);
    r->purge_next = now + (double)every / 1000.0;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next)
        if (tp->assigned && tp->purge_to > tp->purged)
            rd_kafka_topic_partition_list_add(l, tp->topic, tp->partition)->offset = tp->purge_to;
    if (l->cnt > 0) {
        rd_kafka_DeleteRecords_t *del = rd_kafka_DeleteRecords_new(l);
        rd_kafka_DeleteRecords(r->prod, &del, 1, NULL, r->purge_q);
        rd_kafka_DeleteRecords_destroy(del);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

void sp_run_purge_stop(runner *r) {
    if (!r->purge_q) return;
    read_answers(r);
    rd_kafka_queue_destroy(r->purge_q);
    r->purge_q = NULL;
}
