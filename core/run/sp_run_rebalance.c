/* Rebalances: partitions assigned (their state restored from changelogs while the others go on) and revoked (effects made safe and committed first). */
#include "sp_run.h"

/* --- state restore ------------------------------------------------------ */

int sp_run_partition_assigned(runner *r, int32_t partition) {
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next)
        if (tp->assigned && tp->partition == partition) return 1;
    return 0;
}

/* Resumes the input partitions numbered partition once their state is
 * back (those a bounded run finished stay paused). */
void sp_run_resume_restored(runner *r, int32_t partition) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next)
        if (tp->assigned && tp->partition == partition && !tp->done)
            rd_kafka_topic_partition_list_add(l, tp->topic, tp->partition);
    if (l->cnt > 0) rd_kafka_resume_partitions(r->cons, l);
    rd_kafka_topic_partition_list_destroy(l);
}

/* How long committed offsets may read older than the committed changelog
 * before they are taken as a rewind (a coordinator catches up within
 * seconds of a failover). */
#define SP_RUN_STALE_OFFSETS_S 15.0

/* Exactly-once: the committed offsets read for partition's inputs are
 * older than its committed changelog (sp_restore_set_committed). Going on
 * would process committed input again: the partition is dropped and
 * assigned again, which reads the offsets again, at most once a second.
 * Offsets that stay older are someone's rewind (an offset reset): the
 * changelog's later records are then left out, as at-least-once does, so
 * that the state is what those offsets had. */
static void reread_stale(runner *r, int32_t partition) {
    double now = sp_clock_s();
    if (r->stale_since == 0) r->stale_since = now;
    if (now - r->stale_since > SP_RUN_STALE_OFFSETS_S && !r->stale_accepted) {
        sp_warn("partition %" PRId32 ": the committed offsets stayed older than the committed "
                "changelog for %.0f s: taken as a rewind (an offset reset); the state is "
                "restored to them and the input after them processed again",
                partition, SP_RUN_STALE_OFFSETS_S);
        r->stale_accepted = 1;
        sp_restore_set_committed(r->rs, sp_run_group_offset, sp_run_positions, r, 0);
        r->stale_last = 0;
    }
    if (now - r->stale_last < 1 && (r->stale_partition < 0 || r->stale_partition == partition)) {
        r->stale_partition = partition; /* the restore timer comes back */
        return;
    }
    if (r->stale_partition >= 0 && r->stale_partition != partition) {
        int32_t other = r->stale_partition;
        r->stale_last = 0;
        r->stale_partition = -1;
        reread_stale(r, other);
    }
    r->stale_last = now;
    r->stale_partition = -1;
    sp_warn("partition %" PRId32 ": the committed offsets read at assignment are older than "
            "its committed changelog (a group coordinator not caught up after a failover); "
            "reading them again", partition);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next)
        if (tp->assigned && tp->partition == partition)
            rd_kafka_topic_partition_list_add(l, tp->topic, tp->partition);
    if (l->cnt > 0) {
        r->rewinding = 1;
        sp_run_on_revoke(r, l, SP_RUN_REWIND);
        sp_run_on_assign(r, l);
        r->rewinding = 0;
        r->rebalances[0]--; /* not a rebalance */
    }
    rd_kafka_topic_partition_list_destroy(l);
}

void sp_run_on_restore(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)revents;
    runner *r = w->data;
    int32_t done[2048];
    const char *err;
    if (r->stale_partition >= 0) reread_stale(r, r->stale_partition);
    /* a slice of restore work per tick, so that the partitions that are
     * here keep being processed meanwhile */
    for (int round = 0; round < 32 && sp_restore_pending(r->rs) && !r->exit_code; round++) {
        int n = sp_restore_poll(r->rs, done, 2048, &err);
        if (n < 0) {
            char buf[512];
            snprintf(buf, sizeof buf, "restoring state: %s", err);
            sp_run_fatal(r, buf);
            return;
        }
        for (int i = 0; i < n; i++) {
            /* a partition whose offsets read stale starts over */
            if (sp_restore_is_stale(r->rs, done[i]) || done[i] == r->stale_partition) continue;
            sp_run_partition_ready(r, done[i]);
            sp_run_resume_restored(r, done[i]);
        }
        for (int32_t stale; (stale = sp_restore_take_stale(r->rs)) >= 0 && !r->exit_code;)
            reread_stale(r, stale);
    }
    if (r->exit_code) return;
    if (!sp_restore_pending(r->rs) && r->stale_partition < 0) {
        r->stale_since = 0;
        if (r->stale_accepted)
            sp_restore_set_committed(r->rs, sp_run_group_offset, sp_run_positions, r, r->eos);
        r->stale_accepted = 0;
        ev_timer_stop(loop, w);
        sp_run_check_finished(r);
    }
}

/* Newly assigned partitions whose state is in a changelog wait, paused,
 * until it is restored; the others go on meanwhile. */
void sp_run_restore_assigned(runner *r, rd_kafka_topic_partition_list_t *parts) {
    rd_kafka_topic_partition_list_t *wait = rd_kafka_topic_partition_list_new(4);
    for (int i = 0; i < parts->cnt; i++) {
        int rc = sp_restore_start(r->rs, parts->elems[i].partition);
        if (rc < 0) {
            sp_run_fatal(r, "cannot restore the state of an assigned partition");
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

int sp_run_mkdir_p(char *path) {
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
char *sp_run_state_dir(runner *r, const char *app) {
    const char *set = sp_run_sproc_setting(r->o, "sproc.state.dir");
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
    if (sp_run_mkdir_p(buf) != 0) {
        sp_warn("cannot create the state directory %s (%s): no local checkpoints",
                buf, strerror(errno));
        return NULL;
    }
    return strdup(buf);
}

/* Stores, when the script has any: the memory budget, changelog topics,
 * and the restore consumer. */
int sp_run_setup_state(runner *r) {
    const char *err, *app = sp_lua_app_id(r->lua);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (sp_run_conf_set(r, conf, "bootstrap.servers", r->brokers) || sp_run_apply_sets(r, conf, 2)) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_conf_set_log_cb(conf, sp_run_log_cb);
    rd_kafka_conf_set_error_cb(conf, sp_run_error_cb);
    char *dir = sp_run_state_dir(r, app);
    if (dir) sp_store_set_dir(r->ctx, dir);
    r->rs = sp_restore_create(r->ctx, app, dir, conf, r->errstr, sizeof r->errstr);
    free(dir);
    if (!r->rs) {
        sp_error("cannot create the restore consumer: %s", r->errstr);
        return -1;
    }
    sp_restore_set_committed(r->rs, sp_run_group_offset, sp_run_positions, r, r->eos);
    r->ctx->changelog_headers = sp_run_changelog_headers;
    r->ctx->changelog_headers_opaque = r;
    /* the dev cluster makes topics as sinks open them */
    if (!r->mock && sp_restore_ensure_topics(r->rs, r->src_partitions) != 0) return -1;
    if (sp_ctx_open_changelogs(r->ctx, app, &err) != SP_OK) {
        sp_error("changelogs: %s", err);
        return -1;
    }
    ev_timer_init(&r->restore_w, sp_run_on_restore, 0.0, 0.005);
    r->restore_w.data = r;
    return 0;
}

/* --- rebalances ---------------------------------------------------------- */

/* Where to start where the group has no offset yet (c: the committed
 * offsets): at the --start time; and which partitions a bounded run has
 * done already. */
static void start_positions(runner *r, rd_kafka_topic_partition_list_t *parts,
                            const rd_kafka_topic_partition_list_t *c) {
    rd_kafka_topic_partition_list_t *times = rd_kafka_topic_partition_list_new(c->cnt);
    for (int i = 0; i < c->cnt; i++) {
        sp_tp *tp = sp_offsets_tp(&r->offs, c->elems[i].topic, c->elems[i].partition);
        int64_t at = c->elems[i].offset;
        if (at >= 0 && tp && tp->end_offset >= 0 && at >= tp->end_offset) sp_run_mark_done(r, tp);
        if (at < 0 && r->start_ms >= 0)
            rd_kafka_topic_partition_list_add(times, c->elems[i].topic, c->elems[i].partition)
                ->offset = r->start_ms;
    }
    if (times->cnt > 0 && rd_kafka_offsets_for_times(r->cons, times, 10000) == 0) {
        for (int i = 0; i < times->cnt; i++) {
            rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_find(
                parts, times->elems[i].topic, times->elems[i].partition);
            /* -1: no record at or after the time: start at the end */
            if (p)
                p->offset = times->elems[i].offset >= 0 ? times->elems[i].offset
                                                        : RD_KAFKA_OFFSET_END;
        }
    }
    rd_kafka_topic_partition_list_destroy(times);
}

/* A table's topic: read whole, from its start, wherever --start says
 * streams start. */
static int is_table_topic(runner *r, const char *topic) {
    for (int32_t i = 0; i < r->ctx->nstores; i++)
        if (r->ctx->stores[i]->source && strcmp(r->ctx->stores[i]->source, topic) == 0) return 1;
    return 0;
}

/* The group's committed offsets of the assigned partitions. The state is
 * restored to them (a changelog record of later input is left out) and
 * a table's topic starts over without one: going on without them would
 * restore wrong state, so a failure is retried for a minute (a
 * coordinator that went away is replaced within seconds) and then ends
 * the process. */
static int read_committed(runner *r, rd_kafka_topic_partition_list_t *c) {
    double until = sp_clock_s() + 60;
    for (int tries = 1;; tries++) {
        rd_kafka_resp_err_t e = rd_kafka_committed(r->cons, c, 10000);
        for (int i = 0; !e && i < c->cnt; i++) e = c->elems[i].err;
        if (!e) return 0;
        if (sp_clock_s() > until || sp_run_got_signal) {
            char msg[256];
            snprintf(msg, sizeof msg, "cannot read the committed offsets of the assigned "
                     "partitions after %d tries: %s", tries, rd_kafka_err2str(e));
            sp_run_fatal(r, msg);
            return -1;
        }
        sp_warn("cannot read the committed offsets of the assigned partitions (%s); trying "
                "again", rd_kafka_err2str(e));
    }
}

/* How the assignment changes: by the partitions given (cooperative), or
 * whole (eager, the range assignor's protocol: a revoke takes every
 * partition, an assignment gives them all). */
static rd_kafka_error_t *change_assignment(runner *r, rd_kafka_topic_partition_list_t *parts,
                                           int add) {
    if (strcmp(rd_kafka_rebalance_protocol(r->cons), "COOPERATIVE") == 0)
        return add ? rd_kafka_incremental_assign(r->cons, parts)
                   : rd_kafka_incremental_unassign(r->cons, parts);
    if (r->rewinding) {
        /* not a rebalance (sp_run_recover_txn, offsets read stale): eager
         * assignment changes only whole, so the partitions stay assigned;
         * given up, they are paused, and taken again, they go back to the
         * offsets just read */
        if (!add) {
            rd_kafka_pause_partitions(r->cons, parts);
            return NULL;
        }
        for (int i = 0; i < parts->cnt; i++)
            if (parts->elems[i].offset == RD_KAFKA_OFFSET_INVALID)
                parts->elems[i].offset = r->o->start && strcmp(r->o->start, "latest") == 0
                                             ? RD_KAFKA_OFFSET_END
                                             : RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_error_t *e = rd_kafka_seek_partitions(r->cons, parts, 10000);
        const char *why = e ? rd_kafka_error_string(e) : NULL;
        for (int i = 0; !why && i < parts->cnt; i++)
            if (parts->elems[i].err) why = rd_kafka_err2str(parts->elems[i].err);
        if (why) {
            /* going on would process from where the partition was, past
             * what the restored state holds */
            char msg[512];
            snprintf(msg, sizeof msg, "cannot go back to the committed offsets: %s", why);
            sp_run_fatal(r, msg);
            if (e) rd_kafka_error_destroy(e);
            return NULL;
        }
        rd_kafka_resume_partitions(r->cons, parts);
        return NULL;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(r->cons, add ? parts : NULL);
    return e ? rd_kafka_error_new(e, "%s", rd_kafka_err2str(e)) : NULL;
}

void sp_run_on_assign(runner *r, rd_kafka_topic_partition_list_t *parts) {
    rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_copy(parts);
    if (read_committed(r, c) != 0) {
        rd_kafka_topic_partition_list_destroy(c);
        return;
    }
    sp_run_resume_times(r, c);
    /* consuming starts where the state is restored to: at the offsets
     * just read, not at those of a second read librdkafka would make
     * (after a coordinator failover two reads may disagree), nor at an
     * offset parts carries (a list from rd_kafka_assignment holds those
     * the partitions were assigned with, long ago) */
    for (int i = 0; i < c->cnt; i++) {
        rd_kafka_topic_partition_t *p =
            rd_kafka_topic_partition_list_find(parts, c->elems[i].topic, c->elems[i].partition);
        if (p) p->offset = c->elems[i].offset >= 0 ? c->elems[i].offset : RD_KAFKA_OFFSET_INVALID;
    }
    if (r->start_ms >= 0 || r->o->until_end) start_positions(r, parts, c);
    for (int i = 0; i < c->cnt; i++)
        if (c->elems[i].offset < 0 && is_table_topic(r, c->elems[i].topic))
            rd_kafka_topic_partition_list_find(parts, c->elems[i].topic, c->elems[i].partition)
                ->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_topic_partition_list_destroy(c);
    for (int i = 0; i < parts->cnt; i++) {
        sp_tp *tp = sp_offsets_tp(&r->offs, parts->elems[i].topic,
                                  parts->elems[i].partition);
        if (!tp) continue;
        tp->assigned = 1;
        tp->at_end = 0;
        tp->eof_offset = -1;
        /* with a fresh assignment the committed offset is the broker's */
        tp->committed = -1;
        sp_offsets_forget_flushes(tp, 1);
        tp->committable = -1;
        tp->position = -1;
    }
    rd_kafka_error_t *e = change_assignment(r, parts, 1);
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
            sp_run_mark_done(r, tp);
        }
    }
    r->rebalances[0]++;
    sp_ctx_sinks_assigned(r->ctx);
    if (r->rs) sp_run_restore_assigned(r, parts);
    /* wall-clock timers fire for a partition once its state is here */
    for (int i = 0; i < parts->cnt; i++)
        if (!r->rs || !sp_restore_is_restoring(r->rs, parts->elems[i].partition))
            sp_run_partition_ready(r, parts->elems[i].partition);
    r->assigned_once = 1;
    sp_info("assigned %d partitions", parts->cnt);
    sp_run_check_finished(r);
}

void sp_run_on_revoke(runner *r, rd_kafka_topic_partition_list_t *parts,
                      int lost) {
    /* Hand the partitions over with every effect safe and committed, so
     * the next owner starts right after what we did. */
    int safe = 0;
    /* the group moved on without us: the open transaction cannot commit,
     * and the state in memory holds its changes: abort it and start the
     * other partitions over from the committed one too */
    int rewind = lost == 1 && r->eos && r->in_txn;
    if (lost != SP_RUN_REWIND) r->rebalances[lost ? 2 : 1]++;
    if (!lost) {
        safe = sp_run_make_safe(r, 30000) == 0;
        sp_run_commit(r, 1, parts);
    }
    for (int i = 0; i < parts->cnt; i++) {
        sp_tp *tp = sp_offsets_tp(&r->offs, parts->elems[i].topic,
                                  parts->elems[i].partition);
        if (tp) tp->assigned = 0;
        if (tp) sp_run_sync_drop(r, tp); /* read again by the next owner */
        if (tp) tp->at_end = 0;
    }
    rd_kafka_error_t *e = change_assignment(r, parts, 0);
    sp_prefetch_revoke(r->pf, parts);
    if (e) {
        sp_error("unassign failed: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    /* the state of a partition goes with it: the next owner restores it */
    for (int i = 0; i < parts->cnt; i++) {
        int32_t p = parts->elems[i].partition;
        if (sp_run_partition_assigned(r, p)) continue;
        sp_ctx_partition_remove(r->ctx, p);
        if (!r->rs) continue;
        /* a clean hand-over leaves a checkpoint, so that this machine
         * restores only the changelog's tail when the partition returns */
        if (safe && !r->exit_code) sp_restore_checkpoint(r->rs, p);
        sp_restore_drop(r->rs, p);
    }
    if (lost != SP_RUN_REWIND) sp_info("%s %d partitions", lost ? "lost" : "revoked", parts->cnt);
    if (rewind) sp_run_recover_txn(r, "partitions lost with a transaction open");
}

void sp_run_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    runner *r = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        sp_run_on_assign(r, parts);
    else
        sp_run_on_revoke(r, parts, rd_kafka_assignment_lost(rk));
    /* where queries for the partitions that moved go now */
    if (r->members) sp_members_refresh(r->members);
}
