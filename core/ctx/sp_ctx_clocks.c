/* Time in the core: stream time per task (the highest record time seen),
 * the wall clock (real in the executable, virtual in the test driver),
 * user timers on either, and the expiry of store entries past their TTL.
 * Timers fire between batches: a due timer appends one record per
 * partition to the batch, and Lua runs them through the timer's
 * operators in the same protected call as the input records.
 *
 * A task is Kafka Streams' unit of stream time: the partitions with one
 * number of the topics one source declaration reads (or of a repartition
 * topic). A store's TTL runs on the stream time of the tasks whose
 * records wrote it (two sources sharing a store are one sub-topology, as
 * in Kafka Streams); stream timers on a partition's latest stream time
 * over its tasks. */
#include <stdlib.h>
#include <string.h>

#include "sp_ctx.h"

#define MAX_TIMERS 16

/* A partition this process works on: wall timers fire for each, stream
 * timers on its latest stream time. */
typedef struct sp_ptime {
    int32_t partition;
    int64_t stream_ms;        /* the latest of its tasks'; -1: no record yet */
    int64_t next[MAX_TIMERS]; /* stream timers: next firing; -1 unset */
} sp_ptime;

/* Stream time of one task on one partition. */
typedef struct sp_tclock {
    int32_t task, partition;
    int64_t stream_ms;  /* -1: no record yet */
    int64_t last_wall;  /* wall clock at the last record; -1 none */
    int64_t last_event; /* stream time then */
} sp_tclock;

typedef struct sp_timer {
    int32_t topic;
    int wall;
    int64_t every;
    int64_t next_wall; /* -1 unset */
} sp_timer;

void sp_ctx_reset_timers(sp_ctx *ctx) {
    /* a new script's timers start over; stream times stay */
    ctx->ntimers = 0;
    ctx->stream_timers = 0;
    for (int32_t k = 0; k < ctx->nptimes; k++)
        for (int i = 0; i < MAX_TIMERS; i++) ctx->ptimes[k].next[i] = -1;
}

void sp_ctx_destroy_timers(sp_ctx *ctx) {
    free(ctx->ptimes);
    free(ctx->timers);
    free(ctx->clocks);
    ctx->ptimes = NULL;
    ctx->timers = NULL;
    ctx->clocks = NULL;
    ctx->nptimes = ctx->ntimers = ctx->nclocks = 0;
}

static sp_ptime *ptime(sp_ctx *ctx, int32_t partition, int create) {
    for (int32_t i = 0; i < ctx->nptimes; i++)
        if (ctx->ptimes[i].partition == partition) return &ctx->ptimes[i];
    if (!create) return NULL;
    sp_ptime *t = realloc(ctx->ptimes, (size_t)(ctx->nptimes + 1) * sizeof *t);
    if (!t) return NULL;
    ctx->ptimes = t;
    /* kept sorted by partition, so timers fire in a fixed order */
    int32_t at = 0;
    while (at < ctx->nptimes && t[at].partition < partition) at++;
    memmove(&t[at + 1], &t[at], (size_t)(ctx->nptimes - at) * sizeof *t);
    ctx->nptimes++;
    sp_ptime *p = &t[at];
    p->partition = partition;
    p->stream_ms = -1;
    for (int i = 0; i < MAX_TIMERS; i++) p->next[i] = -1;
    return p;
}

static sp_tclock *tclock(sp_ctx *ctx, int32_t task, int32_t partition, int create) {
    for (int32_t i = 0; i < ctx->nclocks; i++)
        if (ctx->clocks[i].task == task && ctx->clocks[i].partition == partition)
            return &ctx->clocks[i];
    if (!create || !ptime(ctx, partition, 1)) return NULL;
    sp_tclock *c = realloc(ctx->clocks, (size_t)(ctx->nclocks + 1) * sizeof *c);
    if (!c) return NULL;
    ctx->clocks = c;
    c[ctx->nclocks] = (sp_tclock){task, partition, -1, -1, -1};
    return &c[ctx->nclocks++];
}

/* Moves a task's stream time on, and its partition's with it. */
static void advance(sp_ctx *ctx, sp_tclock *c, int64_t ms) {
    if (ms <= c->stream_ms) return;
    c->stream_ms = ms;
    sp_ptime *p = ptime(ctx, c->partition, 1);
    if (p && ms > p->stream_ms) p->stream_ms = ms;
}

void sp_ctx_partition_add(sp_ctx *ctx, int32_t partition) { ptime(ctx, partition, 1); }

int32_t sp_ctx_ptime_partition(sp_ctx *ctx, int32_t k) { return ctx->ptimes[k].partition; }

int32_t sp_ctx_task(sp_ctx *ctx, const char *name) {
    for (int32_t i = 0; i < ctx->ntasks; i++)
        if (strcmp(ctx->tasks[i], name) == 0) return i;
    if (ctx->ntasks == SP_MAX_TASKS) return SP_EINVAL;
    if (!(ctx->tasks[ctx->ntasks] = strdup(name))) return SP_ENOMEM;
    return ctx->ntasks++;
}

/* The tasks records of a topic belong to: one per source that reads it
 * (cached per topic id; sources change only between batches). */
static uint64_t topic_tasks(sp_ctx *ctx, int32_t topic) {
    if (topic < 0) return 0;
    if (topic >= ctx->ntopic_tasks) {
        uint64_t *t = realloc(ctx->topic_tasks, (size_t)(topic + 1) * sizeof *t);
        if (!t) return 0;
        for (int32_t i = ctx->ntopic_tasks; i <= topic; i++) t[i] = SP_TASKS_UNKNOWN;
        ctx->topic_tasks = t;
        ctx->ntopic_tasks = topic + 1;
    }
    if (ctx->topic_tasks[topic] == SP_TASKS_UNKNOWN) {
        uint64_t m = 0;
        for (int32_t i = 0; i < ctx->nsources; i++)
            if (ctx->sources[i].task >= 0 && sp_source_matches(ctx, i, topic))
                m |= (uint64_t)1 << ctx->sources[i].task;
        ctx->topic_tasks[topic] = m;
    }
    return ctx->topic_tasks[topic];
}

int64_t sp_ctx_tasks_stream_time(sp_ctx *ctx, uint64_t tasks, int32_t partition) {
    if (!tasks) return sp_ctx_part_stream_time(ctx, partition);
    int64_t t = -1;
    for (int32_t i = 0; i < ctx->nclocks; i++) {
        sp_tclock *c = &ctx->clocks[i];
        if (c->partition == partition && (tasks >> c->task & 1) && c->stream_ms > t)
            t = c->stream_ms;
    }
    return t;
}

int64_t sp_ctx_part_stream_time(sp_ctx *ctx, int32_t partition) {
    sp_ptime *p = ptime(ctx, partition, 0);
    return p ? p->stream_ms : -1;
}

int64_t sp_ctx_stream_time(sp_ctx *ctx, int32_t partition) {
    return sp_ctx_part_stream_time(ctx, partition);
}

/* The driver moves every task of the partition (and, before any record,
 * every task of the topology) as a record with that time would. */
void sp_ctx_set_stream_time(sp_ctx *ctx, int32_t partition, int64_t ms) {
    for (int32_t i = 0; i < ctx->nsources; i++) {
        sp_tclock *c = ctx->sources[i].task >= 0
                           ? tclock(ctx, ctx->sources[i].task, partition, 1)
                           : NULL;
        if (c) advance(ctx, c, ms);
    }
    for (int32_t i = 0; i < ctx->nclocks; i++)
        if (ctx->clocks[i].partition == partition) advance(ctx, &ctx->clocks[i], ms);
    sp_ptime *p = ptime(ctx, partition, 1);
    if (p && ms > p->stream_ms) p->stream_ms = ms;
}

int64_t sp_ctx_topic_time(sp_ctx *ctx, int32_t topic, int32_t partition) {
    uint64_t tasks = topic_tasks(ctx, topic);
    return tasks ? sp_ctx_tasks_stream_time(ctx, tasks, partition) : -1;
}

void sp_ctx_resume_time(sp_ctx *ctx, int32_t topic, int32_t partition, int64_t ms) {
    uint64_t tasks = topic_tasks(ctx, topic);
    for (int32_t t = 0; t < SP_MAX_TASKS && ms >= 0; t++) {
        sp_tclock *c = tasks >> t & 1 ? tclock(ctx, t, partition, 1) : NULL;
        if (c) advance(ctx, c, ms);
    }
}

void sp_ctx_set_wall_clock(sp_ctx *ctx, int64_t ms) { ctx->wall_ms = ms; }
void sp_ctx_set_idle_timeout(sp_ctx *ctx, int64_t ms) { ctx->idle_ms = ms > 0 ? ms : 0; }
int64_t sp_ctx_wall_clock(sp_ctx *ctx) { return ctx->wall_ms; }

int sp_ctx_timer_add(sp_ctx *ctx, int32_t topic, int64_t every, int wall,
                     const char **err) {
    if (ctx->ntimers == MAX_TIMERS) {
        *err = "too many timers (16 at most)";
        return SP_EINVAL;
    }
    sp_timer *t = realloc(ctx->timers, (size_t)(ctx->ntimers + 1) * sizeof *t);
    if (!t) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    ctx->timers = t;
    /* a wall timer counts from when it is declared */
    t[ctx->ntimers++] = (sp_timer){topic, wall, every, wall ? ctx->wall_ms + every : -1};
    ctx->stream_timers += !wall;
    return SP_OK;
}

static int append(sp_ctx *ctx, const sp_timer *t, int32_t partition, int64_t ts) {
    sp_rec *r = sp_batch_add(ctx);
    if (!r) return -1;
    r->topic = t->topic;
    r->partition = partition;
    r->ts = ts;
    r->offset = -1;
    return 0;
}

/* Stream time from the batch's input records not counted yet, up to
 * record end (excluded). */
int sp_ctx_count_records(sp_ctx *ctx, int32_t end) {
    int32_t last_topic = -1, last_part = -1;
    uint64_t tasks = 0;
    for (int32_t i = ctx->scanned; i < end; i++) {
        sp_rec *r = &ctx->batch.recs[i];
        /* the core's own records (timers, window results) have no offset */
        if (r->offset < 0) continue;
        if (r->topic != last_topic || r->partition != last_part) {
            tasks = topic_tasks(ctx, r->topic);
            last_topic = r->topic;
            last_part = r->partition;
            sp_ptime *pt = ptime(ctx, r->partition, 1);
            if (!pt) return -1;
            /* a stream timer not started on the partition (its first
             * record, or a script reloaded, or a partition assigned with
             * its committed stream time) starts from the stream time before
             * this record, so that this record's crossing fires */
            int64_t base = pt->stream_ms >= 0 ? pt->stream_ms : r->ts;
            for (int32_t t = 0; t < ctx->ntimers; t++)
                if (!ctx->timers[t].wall && pt->next[t] < 0)
                    pt->next[t] = base - base % ctx->timers[t].every + ctx->timers[t].every;
        }
        for (uint64_t m = tasks; m; m &= m - 1) {
            sp_tclock *c = tclock(ctx, __builtin_ctzll(m), r->partition, 1);
            if (!c) return -1;
            advance(ctx, c, r->ts);
            c->last_wall = ctx->wall_ms;
            c->last_event = c->stream_ms;
        }
    }
    ctx->scanned = end;
    return 0;
}

/* Inserts a stream timer's record for partition at ts after record at. */
static int insert_after(sp_ctx *ctx, int32_t at, const sp_timer *t, int32_t partition,
                        int64_t ts) {
    if (!sp_batch_add(ctx)) return -1;
    sp_rec *recs = ctx->batch.recs;
    memmove(&recs[at + 2], &recs[at + 1], (size_t)(ctx->batch.n - at - 2) * sizeof *recs);
    memset(&recs[at + 1], 0, sizeof *recs);
    recs[at + 1].topic = t->topic;
    recs[at + 1].partition = partition;
    recs[at + 1].ts = ts;
    recs[at + 1].offset = -1;
    return 0;
}

/* Stream timers fire where Kafka Streams punctuates: right after the
 * record whose time (its source's time function has run) makes its
 * partition's stream time cross the timer's next multiple, with that
 * stream time, so how often they fire does not depend on where batches
 * begin. Their records go into the batch after record rec; returns how
 * many, or -1. */
int32_t sp_ctx_fire_stream_timers_after(sp_ctx *ctx, int32_t rec) {
    if (!ctx->stream_timers || rec < 0 || rec >= ctx->batch.n || ctx->batch.recs[rec].offset < 0)
        return 0;
    if (sp_ctx_count_records(ctx, rec + 1) != 0) return -1;
    int32_t partition = ctx->batch.recs[rec].partition, added = 0;
    sp_ptime *pt = ptime(ctx, partition, 0);
    if (!pt || pt->stream_ms < 0) return 0;
    for (int32_t t = 0; t < ctx->ntimers; t++) {
        const sp_timer *tm = &ctx->timers[t];
        if (tm->wall || pt->next[t] < 0 || pt->stream_ms < pt->next[t]) continue;
        if (insert_after(ctx, rec + added, tm, partition, pt->stream_ms) != 0) return -1;
        pt->next[t] = pt->stream_ms - pt->stream_ms % tm->every + tm->every;
        added++;
    }
    return added;
}

/* Stream time is a record's: a store call counts the records before the
 * current one (and its own), so that what it sees does not depend on
 * where batches begin (Kafka Streams moves stream time per record). */
void sp_ctx_count_to_current(sp_ctx *ctx) {
    int32_t cur = ctx->batch.cur;
    if (cur >= ctx->scanned && cur < ctx->batch.n) sp_ctx_count_records(ctx, cur + 1);
}


/* Whether the topology reads any topic or file: without one, there is no
 * partition to be given, and the process works on partition 0. */
static int reads_input(sp_ctx *ctx) {
    for (int32_t i = 0; i < ctx->nsources; i++)
        if (ctx->sources[i].kind <= 2) return 1;
    return 0;
}

void sp_ctx_clocks_tick(sp_ctx *ctx) {
    if (ctx->nptimes == 0 && ctx->ntimers > 0 && !reads_input(ctx)) ptime(ctx, 0, 1);
    /* An idle task's stream time moves on with the wall clock from its
     * last record's time (not to "now": replayed old data must not close
     * every window at once), so its windows do not wait forever. */
    for (int32_t k = 0; ctx->idle_ms > 0 && k < ctx->nclocks; k++) {
        sp_tclock *c = &ctx->clocks[k];
        int64_t idle = ctx->wall_ms - c->last_wall;
        if (c->last_wall < 0 || idle < ctx->idle_ms) continue;
        advance(ctx, c, c->last_event + idle);
    }
}

void sp_ctx_partition_forget(sp_ctx *ctx, int32_t partition) {
    for (int32_t i = 0; i < ctx->nclocks;)
        if (ctx->clocks[i].partition == partition)
            ctx->clocks[i] = ctx->clocks[--ctx->nclocks];
        else
            i++;
    sp_ptime *p = ptime(ctx, partition, 0);
    if (!p) return;
    int32_t at = (int32_t)(p - ctx->ptimes);
    memmove(p, p + 1, (size_t)(ctx->nptimes - at - 1) * sizeof *p);
    ctx->nptimes--;
}

int64_t sp_ctx_timer_min(sp_ctx *ctx) {
    int64_t m = 0;
    for (int32_t i = 0; i < ctx->ntimers; i++)
        if (ctx->timers[i].wall && (m == 0 || ctx->timers[i].every < m))
            m = ctx->timers[i].every;
    return m;
}

/* Appends the records of the timers that are due; returns how many, or -1. */
int32_t sp_ctx_fire_due(sp_ctx *ctx) {
    int32_t before = ctx->batch.n;
    for (int32_t t = 0; t < ctx->ntimers; t++) {
        sp_timer *tm = &ctx->timers[t];
        if (tm->wall) {
            if (tm->next_wall < 0) tm->next_wall = ctx->wall_ms + tm->every;
            if (ctx->wall_ms < tm->next_wall) continue;
            for (int32_t k = 0; k < ctx->nptimes; k++)
                if (append(ctx, tm, ctx->ptimes[k].partition, ctx->wall_ms) != 0)
                    return -1;
            tm->next_wall = ctx->wall_ms + tm->every;
            continue;
        }
        for (int32_t k = 0; k < ctx->nptimes; k++) {
            sp_ptime *pt = &ctx->ptimes[k];
            if (pt->stream_ms < 0) continue;
            /* boundaries are multiples of every since the epoch, so "every
             * minute" fires as stream time crosses each minute */
            int64_t boundary = pt->stream_ms - pt->stream_ms % tm->every;
            if (pt->next[t] < 0) {
                pt->next[t] = boundary + tm->every;
                continue;
            }
            if (pt->stream_ms < pt->next[t]) continue;
            if (append(ctx, tm, pt->partition, pt->stream_ms) != 0) return -1;
            pt->next[t] = boundary + tm->every;
        }
    }
    return ctx->batch.n - before;
}
