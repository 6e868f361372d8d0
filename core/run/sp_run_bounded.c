/* Bounded runs (--until-end): each source read to its end at start, repartition topics drained, every window closed. */
#include "sp_run.h"

void sp_run_mark_done(runner *r, sp_tp *tp) {
    if (tp->done) return;
    tp->done = 1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, tp->topic, tp->partition);
    rd_kafka_pause_partitions(r->cons, l);
    rd_kafka_topic_partition_list_destroy(l);
    sp_debug("reached the end of %s [%" PRId32 "] at offset %" PRId64,
             tp->topic, tp->partition, tp->end_offset);
}

int sp_run_has_internal(runner *r) {
    for (int32_t i = 0; i < r->ctx->nsources; i++)
        if (r->ctx->sources[i].internal) return 1;
    return 0;
}

/* Once the input of a bounded run is read, everything written to the
 * repartition topics is made readable and their ends become the end
 * offsets to read to. Returns 1 when nothing is left there. */
int sp_run_seal_internal(runner *r) {
    int left = 0;
    r->sealed = 1;
    /* under exactly-once what went to the repartition topics is in the
     * open transaction, readable (read_committed) once it commits */
    if (r->eos) sp_run_commit_txn(r);
    rd_kafka_flush(r->prod, 60000);
    rd_kafka_t *rk = sp_run_uncommitted_client(r);
    if (!rk) {
        sp_run_fatal(r, "bounded run: cannot read the ends of the repartition topics");
        return 0;
    }
    for (int32_t i = 0; i < r->ctx->nsources; i++) {
        sp_source *s = &r->ctx->sources[i];
        if (!s->internal) continue;
        /* one made with a joined table's partitions may have fewer */
        int32_t n = sp_topics_partitions(rk, s->name);
        for (int32_t p = 0; p < (n > 0 ? n : r->src_partitions); p++) {
            int64_t lo, hi;
            rd_kafka_resp_err_t e = sp_topics_watermarks(rk, s->name, p, &lo, &hi, 30);
            if (e) {
                char buf[512];
                snprintf(buf, sizeof buf, "bounded run: cannot read the end of %s [%d]: %s",
                         s->name, (int)p, rd_kafka_err2str(e));
                sp_run_fatal(r, buf);
                break;
            }
            sp_tp *tp = sp_offsets_tp(&r->offs, s->name, p);
            if (!tp) continue;
            tp->end_offset = hi;
            /* under exactly-once the end is the last commit's marker, which
             * the consumer passes without a record: only its end event
             * (perhaps seen before this) says it got there */
            if (hi <= lo || (tp->position >= 0 && tp->position >= hi) || tp->eof_offset >= hi) {
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
int sp_run_all_done(runner *r) {
    if (r->files_open > 0) return 0;
    if (!r->cons) return 1;
    if (!r->assigned_once) return 0;
    /* a bounded run ends with its state restored (and checkpointed) */
    if (r->rs && sp_restore_pending(r->rs)) return 0;
    if (r->held) return 0; /* joined records still waiting their turn */
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next)
        if (tp->end_offset >= 0 && !tp->done) return 0;
    /* the input is read: now drain what went through repartition topics */
    if (!r->sealed && sp_run_has_internal(r)) return sp_run_seal_internal(r);
    return 1;
}

void sp_run_check_finished(runner *r) {
    if (r->o->until_end && !r->stopping && sp_run_all_done(r)) {
        /* the end of bounded input: stream time goes to infinity, every
         * open window closes and its result goes out before the exit */
        if (sp_ctx_has_windows(r->ctx) && !r->windows_closed) {
            r->windows_closed = 1;
            sp_ctx_close_all_windows(r->ctx);
            sp_batch_reset(r->ctx);
            sp_run_run_batch_timed(r, NULL, 0, 1);
            sp_batch_reset(r->ctx);
            sp_info("bounded run: every window closed");
        }
        sp_info("bounded run: every source is read to its end");
        r->stopping = 1;
        ev_break(r->loop, EVBREAK_ALL);
    }
}
