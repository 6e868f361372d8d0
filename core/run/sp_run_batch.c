/* Batches: records from the consumer or from files into the context, one call into Lua, then their segments released; the loop's callbacks. */
#include "sp_run.h"

/* --- batches ------------------------------------------------------------- */

int32_t sp_run_topic_id_of(runner *r, const rd_kafka_topic_t *rkt) {
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

/* Runs the context's batch through Lua; then flushes stdout and due files
 * and releases the batch's hold on its segments. */
int64_t sp_run_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}


/* Under --watch, a new version that raised an error on a record gives way
 * to the one before, which processes that record and the rest of the
 * batch. Returns what the batch gave then (sp_lua_run_batch; *msg set on
 * a failure). */
int sp_run_rollback(runner *r, const char **msg) {
    int32_t from = r->ctx->batch.cur;
    sp_error("version %d of %s raised an error on a record; version %d takes over from "
             "that record:\n%s", r->version, r->o->script, r->version - 1, *msg);
    sp_ctx_reset_topology(r->ctx);
    *msg = "no version to roll back to";
    if (!r->prev || sp_lua_compile(r->prev, r->o->app, r->def_id, 0, msg) != 0)
        return SP_LUA_FAILED;
    r->interrupts_before += sp_lua_interrupts(r->lua);
    sp_lua_destroy(r->lua);
    r->lua = r->prev;
    r->prev = NULL;
    r->version--;
    char v[16];
    snprintf(v, sizeof v, "%d", r->version);
    sp_log_set_field("script_version", v);
    return sp_lua_run_batch_from(r->lua, from, msg);
}

/* timers: also run with no records, for wall-clock timers that are due */
void sp_run_run_batch_timed(runner *r, sp_seg **segs, int nsegs, int timers) {
    const char *msg = NULL;
    int run = r->ctx->batch.n > 0 || timers;
    sp_ctx_set_wall_clock(r->ctx, sp_run_now_ms());
    if (run && sp_run_begin_txn(r) != 0) return;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = run ? sp_lua_run_batch(r->lua, &msg) : SP_OK;
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
    while (rc == SP_LUA_ROLLBACK) rc = sp_run_rollback(r, &msg);
    int failed = rc != SP_OK;
    /* in-memory stores' changes go to their changelogs when offsets are
     * committed (flush_state), so that a key changed many times between
     * two commits is written once; disk stores' after every batch */
    if (!failed && sp_store_flush_disk_changelogs(r->ctx, &msg) != SP_OK) failed = 1;
    const char *err;
    if (sp_ctx_flush_sinks(r->ctx, 0, &err) != SP_OK && !failed) {
        failed = 1;
        msg = err;
    }
    /* After a failure the batch's segments stay held: no offset of it or
     * after it is committed, and a restart reads the batch again. */
    if (!failed)
        for (int i = 0; i < nsegs; i++) sp_seg_unref(segs[i]);
    /* a record that stopped the pipeline: JSON logs name it in fields */
    if (failed && rc != SP_OK && r->exit_code == 0) {
        sp_log_record(r->ctx, SP_LOG_ERROR, r->ctx->batch.cur, msg ? msg : "pipeline failed");
        r->exit_code = 1;
    }
    if (failed) sp_run_fatal(r, msg ? msg : "pipeline failed");
    if (r->ko.fatal) sp_run_fatal(r, r->ko.fatal);
}

void sp_run_run_batch(runner *r, sp_seg **segs, int nsegs) {
    sp_run_run_batch_timed(r, segs, nsegs, 0);
}

/* A consumer event that is not a record: a partition's end (bounded
 * runs), a source topic gone or forbidden (fatal), anything else logged. */
static void consumer_event(runner *r, const rd_kafka_message_t *m) {
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        sp_tp *tp = sp_offsets_tp(&r->offs, rd_kafka_topic_name(m->rkt), m->partition);
        if (tp) sp_run_sync_at_end(r, tp);
        if (tp && m->offset > tp->eof_offset) tp->eof_offset = m->offset;
        if (tp && tp->end_offset >= 0 && m->offset >= tp->end_offset) sp_run_mark_done(r, tp);
    } else if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
               m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
        char buf[512];
        snprintf(buf, sizeof buf, "source topic %s: %s", m->rkt ? rd_kafka_topic_name(m->rkt) : "?",
                 rd_kafka_message_errstr(m));
        sp_run_fatal(r, buf);
    } else {
        sp_warn("consumer: %s", rd_kafka_message_errstr(m));
    }
}

/* The batch being built from consumed records: their partitions'
 * segments, and the partition of the last record (a batch comes in runs
 * of one partition: looked up once a run). */
typedef struct building {
    sp_seg *segs[256];
    int nsegs;
    const rd_kafka_topic_t *rkt;
    int32_t part, tid;
    sp_tp *tp;
} building;

sp_rec *sp_run_add_message(runner *r, rd_kafka_message_t *m, int32_t topic) {
    sp_rec *rec = sp_batch_add(r->ctx);
    if (!rec) return NULL;
    rec->key = m->key;
    rec->key_len = m->key_len;
    rec->val = m->payload;
    rec->val_len = m->len;
    rec->ts = rd_kafka_message_timestamp(m, NULL);
    rec->offset = m->offset;
    rec->partition = m->partition;
    rec->topic = topic;
    rec->kmsg = m;
    rec->owner = m;
    return rec;
}

/* Adds a consumed record to the context's batch; 0, 1 when it is left
 * for later (or past a bounded run's end), -1 when out of memory. */
static int add_record(runner *r, building *b, rd_kafka_message_t *m) {
    if (m->rkt != b->rkt || m->partition != b->part) {
        b->tp = sp_offsets_tp(&r->offs, rd_kafka_topic_name(m->rkt), m->partition);
        b->tid = sp_run_topic_id_of(r, m->rkt);
        b->rkt = m->rkt;
        b->part = m->partition;
    }
    sp_tp *tp = b->tp;
    if (!tp) return 1;
    if (tp->end_offset >= 0 && m->offset >= tp->end_offset) {
        /* past the end seen at start: a bounded run ignores it */
        sp_run_mark_done(r, tp);
        return 1;
    }
    if (!tp->batch_seg) {
        if (b->nsegs == (int)(sizeof b->segs / sizeof *b->segs)) {
            /* rare: more partitions in a batch than slots; hold the rest
             * back for the next batch */
            rd_kafka_seek(m->rkt, m->partition, m->offset, 0);
            return 1;
        }
        if (!(tp->batch_seg = sp_offsets_seg_open(&r->offs, tp, r->max_batch))) return -1;
        b->segs[b->nsegs++] = tp->batch_seg;
    }
    sp_rec *rec = sp_run_add_message(r, m, b->tid);
    if (!rec) return -1;
    rec->seg = tp->batch_seg;
    rec->slot = sp_seg_slot(tp->batch_seg, m->offset);
    tp->batch_seg->end = m->offset + 1;
    tp->position = m->offset + 1;
    if (tp->end_offset >= 0 && m->offset + 1 >= tp->end_offset) sp_run_mark_done(r, tp);
    return 0;
}

/* A consumed record: into the batch, or held until its turn when its
 * topic is joined by key (sp_run_sync.c; *held then). 0, or -1 when out
 * of memory. */
static int take(runner *r, building *b, rd_kafka_message_t *m, int *held) {
    *held = 0;
    if (r->ctx->ncopart == 0) return add_record(r, b, m) < 0 ? -1 : 0;
    sp_tp *tp = sp_offsets_tp(&r->offs, rd_kafka_topic_name(m->rkt), m->partition);
    if (!tp || !sp_run_sync_wants(r, tp)) return add_record(r, b, m) < 0 ? -1 : 0;
    if (tp->end_offset >= 0 && m->offset >= tp->end_offset) {
        sp_run_mark_done(r, tp); /* past a bounded run's end */
        return 0;
    }
    if (sp_run_sync_hold(r, tp, m) != 0) return -1;
    *held = 1;
    return 0;
}

/* Held records whose turn it is, into the batch while it has room;
 * returns how many (listed in r->released, destroyed after the batch). */
static int release_held(runner *r, building *b) {
    int n = 0;
    sp_tp *tp;
    rd_kafka_message_t *m;
    while (r->ctx->batch.n < r->max_batch && (m = sp_run_sync_next(r, &tp))) {
        /* a new partition in a full batch waits for the next one */
        if (!tp->batch_seg && b->nsegs == (int)(sizeof b->segs / sizeof *b->segs)) break;
        sp_run_sync_pop(r, tp);
        r->released[n++] = m;
        if (add_record(r, b, m) < 0) {
            sp_run_fatal(r, "out of memory");
            break;
        }
    }
    return n;
}

void sp_run_consume_some(runner *r) {
    if (r->stopping) return;
    sp_run_poll_global(r);
    int n = (int)rd_kafka_consume_batch_queue(r->cq, 0, r->msgs, r->max_batch);
    if (n < 0) {
        sp_error("consume failed: %s", rd_kafka_err2str(rd_kafka_last_error()));
        return;
    }
    sp_batch_reset(r->ctx);
    building b = {.nsegs = 0, .rkt = NULL, .part = -1, .tid = -1, .tp = NULL};
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        rd_kafka_message_t *m = r->msgs[i];
        int held = 0;
        bytes += m->len;
        if (m->err) {
            consumer_event(r, m);
        } else if (take(r, &b, m, &held) < 0) {
            sp_run_fatal(r, "out of memory");
            break;
        }
        if (held) r->msgs[i] = NULL;
    }
    int nrel = r->held ? release_held(r, &b) : 0;
    for (int i = 0; i < b.nsegs; i++) b.segs[i]->tp->batch_seg = NULL;
    if (r->ctx->batch.n > 0 || n > 0) sp_run_run_batch(r, b.segs, b.nsegs);
    sp_batch_reset(r->ctx);
    for (int i = 0; i < n; i++)
        if (r->msgs[i]) rd_kafka_message_destroy(r->msgs[i]);
    for (int i = 0; i < nrel; i++) rd_kafka_message_destroy(r->released[i]);
    sp_prefetch_consumed(r->pf, n, bytes);
    sp_kafka_out_poll(&r->ko, 0);
    /* The io event fires only when the queue goes from empty to non-empty,
     * and a batch can end early on a non-message event (a commit result,
     * an EOF) with messages still queued: whenever anything is left, come
     * back after the loop has served timers and signals. So too while
     * joined records were released and more are held (a batch takes at
     * most max_batch of them: the rest must not wait for the next fetch). */
    if (!r->stopping && (n == r->max_batch || rd_kafka_queue_length(r->cq) > 0 ||
                         (nrel > 0 && r->held > 0)))
        ev_idle_start(r->loop, &r->more_w);
    sp_run_check_finished(r);
}

/* File sources: a batch of lines per loop iteration. */
void sp_run_read_files(runner *r) {
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
                sp_run_fatal(r, err);
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
        sp_run_run_batch(r, NULL, 0);
        sp_batch_reset(r->ctx);
    }
    free(line);
    sp_kafka_out_poll(&r->ko, 0);
    sp_run_check_finished(r);
}

/* --- libev callbacks ----------------------------------------------------- */

void sp_run_drain_fd(int fd) {
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0) {
    }
}

void sp_run_on_consumer(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    runner *r = w->data;
    sp_run_drain_fd(r->cons_fd[0]);
    sp_run_consume_some(r);
}

void sp_run_on_producer(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop;
    (void)revents;
    runner *r = w->data;
    sp_run_drain_fd(r->prod_fd[0]);
    sp_kafka_out_poll(&r->ko, 0);
    if (r->ko.fatal) sp_run_fatal(r, r->ko.fatal);
}

void sp_run_on_more(struct ev_loop *loop, ev_idle *w, int revents) {
    (void)revents;
    runner *r = w->data;
    ev_idle_stop(loop, w);
    if (r->files_open > 0) sp_run_read_files(r);
    if (r->cons) sp_run_consume_some(r);
    if (r->files_open > 0 && !r->stopping) ev_idle_start(loop, w);
}

void sp_run_on_commit(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    sp_run_commit(w->data, 0, NULL);
    sp_run_purge(w->data);
}

void sp_run_on_tick(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    runner *r = w->data;
    const char *err;
    sp_run_poll_global(r);
    /* records waiting for an idle partition's time to pass; and, with
     * nothing to read, a poll all the same: librdkafka counts
     * max.poll.interval.ms from the last one, and an idle pipeline left
     * its group every 5 minutes (MAXPOLL) */
    if (r->cons && !r->stopping) sp_run_consume_some(r);
    if (!r->stopping && sp_ctx_wall_timer_min(r->ctx) > 0) {
        sp_batch_reset(r->ctx);
        sp_run_run_batch_timed(r, NULL, 0, 1);
        sp_batch_reset(r->ctx);
    }
    if (sp_ctx_flush_sinks(r->ctx, 0, &err) != SP_OK) sp_run_fatal(r, err);
    sp_kafka_out_poll(&r->ko, 0);
    if (r->ko.fatal) sp_run_fatal(r, r->ko.fatal);
    if (r->progress) sp_run_show_progress(r);
    sp_run_check_finished(r);
}

void sp_run_on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)revents;
    runner *r = w->data;
    sp_run_got_signal = w->signum;
    sp_info("%s: finishing the batch, flushing outputs and committing",
            w->signum == SIGINT ? "interrupted" : "terminated");
    r->stopping = 1;
    ev_break(loop, EVBREAK_ALL);
}
