/* Commits: offsets after their effects are safe, or Kafka transactions under exactly-once; the changelogs go first. */
#include "sp_run.h"

/* --- commits ------------------------------------------------------------- */

void sp_run_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque) {
    (void)rk;
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        sp_warn("offset commit failed: %s (%d partitions); it is retried "
                "with the next commit",
                rd_kafka_err2str(err), offsets ? offsets->cnt : 0);
    else if (!err)
        sp_run_purge_confirmed(opaque, offsets);
}

/* The stores' changes since the last flush to their changelogs: before
 * offsets are committed (the writes hold their inputs' offsets back until
 * Kafka has them). Not after a failure: the failed batch's changes must
 * not reach the changelog, and the offsets since the last flush stay
 * uncommitted, so a restart replays their records onto the state the
 * changelog has. */
int sp_run_flush_state(runner *r) {
    const char *err = "out of memory";
    if (r->exit_code) return -1;
    if (sp_store_flush_changelogs(r->ctx, &err) == SP_OK &&
        (r->eos || sp_offsets_mark_flush(&r->offs) == 0))
        return 0;
    char buf[512];
    snprintf(buf, sizeof buf, "writing the state stores' changelogs: %s", err);
    sp_run_fatal(r, buf);
    return -1;
}

/* SP_CHANGELOG_POSITIONS' text for partition into out (reset first):
 * "<position> <topic>\n" for each of its inputs (assigned ones only, or
 * those just revoked too); -1 when out of memory. */
static int positions_text(runner *r, int32_t partition, int assigned_only, sp_buf *out) {
    char num[32];
    sp_buf_reset(out);
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next) {
        if ((assigned_only && !tp->assigned) || tp->partition != partition || tp->position < 0)
            continue;
        int n = snprintf(num, sizeof num, "%" PRId64 " ", tp->position);
        if (sp_buf_append(out, num, (size_t)n) != 0 ||
            sp_buf_append(out, tp->topic, strlen(tp->topic)) != 0 || sp_buf_putc(out, '\n') != 0)
            return -1;
    }
    return 0;
}

rd_kafka_headers_t *sp_run_changelog_headers(void *opaque, int32_t partition) {
    runner *r = opaque;
    /* too many topics for the header (4 KiB): none, and the restore keeps
     * the record (at-least-once as before) */
    if (positions_text(r, partition, 1, &r->positions) != 0 || r->positions.len == 0 ||
        r->positions.len >= 4096)
        return NULL;
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, SP_CHANGELOG_POSITIONS, -1, r->positions.data,
                        (ssize_t)r->positions.len);
    return h;
}

/* The stream time that goes with a partition's committed offset (read
 * back by sp_run_resume_times). */
static void add_time(runner *r, rd_kafka_topic_partition_t *elem) {
    int64_t ms = sp_ctx_topic_time(r->ctx, sp_topic_id(r->ctx, elem->topic), elem->partition);
    char buf[48];
    int n = snprintf(buf, sizeof buf, SP_RUN_TIME_TAG "%" PRId64, ms);
    if (ms < 0 || !(elem->metadata = malloc((size_t)n))) return;
    memcpy(elem->metadata, buf, (size_t)n);
    elem->metadata_size = (size_t)n;
}

void sp_run_resume_times(runner *r, const rd_kafka_topic_partition_list_t *c) {
    size_t tl = strlen(SP_RUN_TIME_TAG);
    for (int i = 0; i < c->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &c->elems[i];
        sp_tp *tp = sp_offsets_tp(&r->offs, e->topic, e->partition);
        char buf[48];
        if (tp) tp->group_offset = e->err || e->offset < 0 ? -1 : e->offset;
        if (!tp || e->err || !e->metadata || e->metadata_size <= tl ||
            e->metadata_size >= sizeof buf || memcmp(e->metadata, SP_RUN_TIME_TAG, tl) != 0)
            continue;
        memcpy(buf, e->metadata, e->metadata_size);
        buf[e->metadata_size] = '\0';
        tp->resume_ms = strtoll(buf + tl, NULL, 10);
    }
}

int64_t sp_run_group_offset(void *opaque, const char *topic, int32_t partition) {
    runner *r = opaque;
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next)
        if (tp->assigned && tp->partition == partition && strcmp(tp->topic, topic) == 0)
            return tp->group_offset;
    return -2;
}

void sp_run_positions(void *opaque, int32_t partition, sp_buf *out) {
    /* the inputs just revoked too: a checkpoint is written as they go */
    positions_text(opaque, partition, 0, out);
}

void sp_run_partition_ready(runner *r, int32_t partition) {
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next) {
        if (tp->partition != partition || tp->resume_ms < 0) continue;
        sp_ctx_resume_time(r->ctx, sp_topic_id(r->ctx, tp->topic), partition, tp->resume_ms);
        tp->resume_ms = -1;
    }
    sp_ctx_partition_add(r->ctx, partition);
}

/* Whether a transactional error means another process took over. With
 * a transactional.id of this process alone, "fenced" only says that the
 * coordinator ended a transaction that outlived transaction.timeout.ms
 * (while a broker was away): a new producer with the id goes on. */
static int fenced(const runner *r, rd_kafka_resp_err_t code) {
    return r->txn_id_static &&
           (code == RD_KAFKA_RESP_ERR__FENCED || code == RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
}

/* Exactly-once, after a transaction that cannot commit (Kafka made it
 * abortable: a coordinator or a partition leader moved, the group's
 * generation changed): it is aborted and the process goes on from the
 * last committed transaction, as Kafka Streams does. Every assigned
 * partition is dropped as if lost (the state in memory holds aborted
 * changes; held and prefetched records go) and assigned to this process
 * again: consuming resumes at the committed offsets once the state is
 * restored from the committed changelogs. A run of failures with no
 * commit between stops sproc. */
void sp_run_recover_txn(runner *r, const char *why) {
    char buf[768];
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (r->exit_code) return;
    if (++r->txn_failures > SP_RUN_TXN_FAILURES) {
        snprintf(buf, sizeof buf, "transaction failed %d times in a row, the last time: %s",
                 r->txn_failures, why);
        sp_run_fatal(r, buf);
        return;
    }
    sp_warn("transaction aborted: %s; going on from the last committed transaction "
            "(offsets rewound, state restored)", why);
    rd_kafka_error_t *e = NULL;
    /* a coordinator on its way elsewhere answers again within seconds */
    for (int attempt = 1; attempt <= 6; attempt++) {
        e = rd_kafka_abort_transaction(r->prod, SP_RUN_TXN_CALL_MS);
        if (!e || !rd_kafka_error_is_retriable(e)) break;
        sp_warn("aborting the transaction: %s; trying again", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        e = NULL;
    }
    if (e) {
        /* a producer that cannot abort (librdkafka gives up on one whose
         * coordinator moved mid-abort) is replaced: the new one, with the
         * same transactional.id, aborts the transaction as it starts */
        sp_warn("cannot abort the transaction: %s; starting a new producer",
                rd_kafka_error_string(e));
        int zombie = fenced(r, rd_kafka_error_code(e));
        rd_kafka_error_destroy(e);
        if (zombie || sp_run_replace_producer(r) != 0) {
            sp_run_fatal(r, zombie ? "fenced by a newer instance of this application (the same "
                                     "group.instance.id)"
                                   : "cannot go on without a producer");
            return;
        }
    }
    r->in_txn = 0;
    r->txn_aborts++;
    r->ko.txn_failed[0] = '\0';
    if (rd_kafka_assignment(r->cons, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || !parts) {
        sp_run_fatal(r, "cannot read the assignment to start over from the committed transaction");
        return;
    }
    if (parts->cnt > 0) {
        r->rewinding = 1;
        sp_run_on_revoke(r, parts, SP_RUN_REWIND);
        sp_run_on_assign(r, parts);
        r->rewinding = 0;
        r->rebalances[0]--; /* not a rebalance */
    }
    rd_kafka_topic_partition_list_destroy(parts);
}

/* One transactional call's outcome: 0 done, 1 retry it, -1 the
 * transaction was aborted (or sproc stops). A commit that failed in a way
 * that may be retried is retried (it may have reached the coordinator);
 * anything else that is not fatal aborts the transaction and goes on from
 * the last committed one. */
static int txn_outcome(runner *r, rd_kafka_error_t *e, const char *what, int retries) {
    char buf[640];
    if (!e) return 0;
    snprintf(buf, sizeof buf, "%s: %s", what, rd_kafka_error_string(e));
    int retry = retries > 0 && rd_kafka_error_is_retriable(e);
    rd_kafka_resp_err_t code = rd_kafka_error_code(e);
    /* what another producer would meet as well */
    int fatal = rd_kafka_error_is_fatal(e) &&
                (fenced(r, code) || code == RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED ||
                 code == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED ||
                 code == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
                 code == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    rd_kafka_error_destroy(e);
    if (retry) {
        sp_warn("%s; trying again", buf);
        return 1;
    }
    if (fatal)
        sp_run_fatal(r, buf);
    else
        sp_run_recover_txn(r, buf);
    return -1;
}

/* Exactly-once: the open transaction takes the positions of the processed
 * records and commits with the outputs and changelog writes in it. A
 * transaction Kafka made abortable is aborted and the process goes on
 * from the last committed one (sp_run_recover_txn); other failures are
 * fatal (fenced by a newer instance, not authorized): the state in memory
 * may hold aborted changes, and a restart restores it from the committed
 * changelogs. */
void sp_run_commit_txn(runner *r) {
    if (r->exit_code || (!r->in_txn && !r->ko.txn_failed[0])) return;
    if (sp_run_flush_state(r) != 0) return;
    sp_kafka_out_poll(&r->ko, 0);
    if (r->ko.txn_failed[0]) {
        char why[512];
        snprintf(why, sizeof why, "%s", r->ko.txn_failed);
        r->ko.txn_failed[0] = '\0';
        sp_run_recover_txn(r, why);
        return;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next)
        if (tp->assigned && tp->position > tp->committed) {
            rd_kafka_topic_partition_t *e = rd_kafka_topic_partition_list_add(l, tp->topic, tp->partition);
            e->offset = tp->position;
            add_time(r, e);
        }
    int rc = 0;
    if (l->cnt > 0) {
        rd_kafka_consumer_group_metadata_t *md = rd_kafka_consumer_group_metadata(r->cons);
        rd_kafka_error_t *e = rd_kafka_send_offsets_to_transaction(r->prod, l, md,
                                                                    SP_RUN_TXN_CALL_MS);
        rd_kafka_consumer_group_metadata_destroy(md);
        rc = txn_outcome(r, e, "transaction failed: offsets", 0);
    }
    for (int retries = 5; rc == 0 || rc == 1; retries--) {
        rd_kafka_error_t *e = rd_kafka_commit_transaction(r->prod, SP_RUN_TXN_CALL_MS);
        if ((rc = txn_outcome(r, e, "transaction failed", retries)) != 1) break;
    }
    if (rc == 0) {
        r->in_txn = 0;
        r->txns++;
        r->txn_failures = 0;
        for (int i = 0; i < l->cnt; i++) {
            sp_tp *tp = sp_offsets_tp(&r->offs, l->elems[i].topic, l->elems[i].partition);
            if (tp) tp->committed = l->elems[i].offset;
        }
        sp_run_purge_confirmed(r, l);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

int sp_run_begin_txn(runner *r) {
    if (!r->eos || r->in_txn) return 0;
    rd_kafka_error_t *e = rd_kafka_begin_transaction(r->prod);
    if (e) {
        char buf[512];
        snprintf(buf, sizeof buf, "cannot begin a transaction: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        sp_run_fatal(r, buf);
        return -1;
    }
    r->in_txn = 1;
    return 0;
}

/* Whether a store's changes go to a changelog (then offsets are
 * committed where the changelogs were flushed: sp_offsets.h). */
static int has_changelogs(const runner *r) {
    for (int32_t i = 0; i < r->ctx->nstores; i++)
        if (r->ctx->stores[i]->sink >= 0) return 1;
    return 0;
}

/* Commits what is safe. only: commit only these partitions (NULL all). */
void sp_run_commit(runner *r, int sync,
                   const rd_kafka_topic_partition_list_t *only) {
    if (!r->cons) return;
    if (r->eos) {
        /* a transaction covers every partition: commit it all */
        sp_run_commit_txn(r);
        return;
    }
    sp_run_flush_state(r);
    sp_kafka_out_poll(&r->ko, 0);
    if (sp_offsets_advance(&r->offs) == 0) return;
    int flushed = has_changelogs(r);
    if (flushed) sp_offsets_settle_flushes(&r->offs);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next) {
        int64_t at = flushed ? tp->flushed : tp->committable;
        if (at <= tp->committed || !tp->assigned) continue;
        if (only && !rd_kafka_topic_partition_list_find(only, tp->topic,
                                                          tp->partition))
            continue;
        rd_kafka_topic_partition_t *e = rd_kafka_topic_partition_list_add(l, tp->topic, tp->partition);
        e->offset = at;
        add_time(r, e);
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
                if (tp) sp_offsets_forget_flushes(tp, 0);
            }
            if (sync) sp_run_purge_confirmed(r, l);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Makes every effect so far safe: files published, outputs acknowledged.
 * Returns 0 when everything was acknowledged in time. */
int sp_run_make_safe(runner *r, int timeout_ms) {
    const char *err;
    if (!r->eos) sp_run_flush_state(r);
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

void sp_run_fatal(runner *r, const char *msg) {
    if (r->exit_code == 0) {
        sp_error("%s", msg);
        r->exit_code = 1;
    }
    r->stopping = 1;
    ev_break(r->loop, EVBREAK_ALL);
}
