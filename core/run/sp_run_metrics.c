/* Observability: the Prometheus text of /metrics, readiness, the progress line on a terminal. */
#include "sp_run.h"

#include <dirent.h>
#include <sys/resource.h>

int sp_run_metric(sp_buf *b, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    return sp_buf_append(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* Lag of an assigned partition: its end as last fetched, minus what was
 * processed (or, before that, committed). */
int64_t sp_run_lag_of(runner *r, sp_tp *tp) {
    int64_t lo, hi;
    if (!r->cons || rd_kafka_get_watermark_offsets(r->cons, tp->topic, tp->partition, &lo, &hi) ||
        hi < 0)
        return -1;
    int64_t at = tp->position >= 0 ? tp->position : tp->committed >= 0 ? tp->committed : lo;
    return hi > at ? hi - at : 0;
}

/* The pipeline's counters. */
static int render_totals(runner *r, sp_buf *b) {
    int rc = 0;

    sp_stats *st = sp_ctx_stats(r->ctx);
    static const struct { const char *name, *help; size_t off; } totals[] = {
        {"records_in", "records read", offsetof(sp_stats, records_in)},
        {"records_out", "records written to sinks", offsetof(sp_stats, records_out)},
        {"filtered", "records dropped by filters (and null keys before aggregations)",
         offsetof(sp_stats, filtered)},
        {"skipped", "records skipped by the error policy", offsetof(sp_stats, skipped)},
        {"dead_lettered", "records sent to the dead-letter topic", offsetof(sp_stats, dead_lettered)},
        {"errors", "records that failed", offsetof(sp_stats, errors)},
        {"late", "(record, window) pairs dropped as late", offsetof(sp_stats, late)},
        {"batches", "batches run", offsetof(sp_stats, batches)},
    };
    for (size_t i = 0; i < sizeof totals / sizeof *totals; i++) {
        int64_t v = *(int64_t *)((char *)st + totals[i].off);
        rc |= sp_run_metric(b, "# HELP sproc_%s_total %s\n# TYPE sproc_%s_total counter\nsproc_%s_total %lld\n",
                     totals[i].name, totals[i].help, totals[i].name, totals[i].name, (long long)v);
    }
    return rc;
}

/* Records into and out of each operator (what leaves one is what enters those after it; a sink's out is what it wrote). */
static int render_operators(runner *r, sp_buf *b) {
    int rc = 0;
    sp_opstats *o = r->ctx->ops;
    if (o) {
        rc |= sp_run_metric(b, "# HELP sproc_operator_records_total records into and out of each operator\n"
                        "# TYPE sproc_operator_records_total counter\n");
        for (int32_t i = 0; i < o->n; i++) {
            int64_t out = 0;
            int kids = 0;
            for (int32_t j = 0; j < o->n; j++)
                if (o->parent[j] == i) {
                    out += o->in[j];
                    kids = 1;
                }
            if (!kids) out = o->in[i]; /* a sink: what it wrote */
            rc |= sp_run_metric(b, "sproc_operator_records_total{operator=\"%s\",direction=\"in\"} %lld\n"
                            "sproc_operator_records_total{operator=\"%s\",direction=\"out\"} %lld\n",
                         o->name[i], (long long)o->in[i], o->name[i], (long long)out);
        }
    }
    return rc;
}

/* Late records per aggregation, and each assigned partition's lag. */
static int render_windows_and_lag(runner *r, sp_buf *b) {
    int rc = 0;
    rc |= sp_windows_render(r->ctx, b);
    rc |= sp_run_metric(b, "# HELP sproc_consumer_lag records between what was processed and the "
                    "partition's end\n# TYPE sproc_consumer_lag gauge\n");
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next) {
        if (!tp->assigned) continue;
        int64_t lag = sp_run_lag_of(r, tp);
        if (lag >= 0)
            rc |= sp_run_metric(b, "sproc_consumer_lag{topic=\"%s\",partition=\"%d\"} %lld\n", tp->topic,
                         (int)tp->partition, (long long)lag);
    }
    return rc;
}

/* End-to-end latency and time in Lua per batch. */
static int render_histograms(runner *r, sp_buf *b) {
    int rc = 0;
    static const double lat_bounds[] = SP_LATENCY_BOUNDS;
    int64_t cum = 0;
    /* kept in milliseconds, shown in Prometheus' base unit */
    rc |= sp_run_metric(b, "# HELP sproc_latency_seconds record timestamp to output acknowledged\n"
                    "# TYPE sproc_latency_seconds histogram\n");
    for (int i = 0; i < SP_LATENCY_NBOUNDS; i++) {
        cum += r->ko.lat_buckets[i];
        rc |= sp_run_metric(b, "sproc_latency_seconds_bucket{le=\"%g\"} %lld\n", lat_bounds[i] / 1000,
                            (long long)cum);
    }
    rc |= sp_run_metric(b, "sproc_latency_seconds_bucket{le=\"+Inf\"} %lld\n"
                    "sproc_latency_seconds_sum %.6f\nsproc_latency_seconds_count %lld\n",
                 (long long)r->ko.lat_count, r->ko.lat_sum_ms / 1000, (long long)r->ko.lat_count);
    static const double lua_bounds[] = LUA_BOUNDS;
    cum = 0;
    rc |= sp_run_metric(b, "# HELP sproc_lua_batch_seconds time in Lua per batch\n"
                    "# TYPE sproc_lua_batch_seconds histogram\n");
    for (int i = 0; i < 7; i++) {
        cum += r->lua_buckets[i];
        rc |= sp_run_metric(b, "sproc_lua_batch_seconds_bucket{le=\"%g\"} %lld\n", lua_bounds[i], (long long)cum);
    }
    rc |= sp_run_metric(b, "sproc_lua_batch_seconds_bucket{le=\"+Inf\"} %lld\nsproc_lua_batch_seconds_sum %.6f\n"
                    "sproc_lua_batch_seconds_count %lld\n",
                 (long long)r->lua_batches, r->lua_seconds, (long long)r->lua_batches);
    return rc;
}

/* State stores, restores, rebalances, reloads, the prefetch and the producer queue. */
static int render_state(runner *r, sp_buf *b) {
    int rc = 0;
    rc |= sp_run_metric(b, "# HELP sproc_store_bytes memory of in-memory stores\n# TYPE sproc_store_bytes gauge\n");
    for (int32_t i = 0; i < r->ctx->nstores; i++)
        rc |= sp_run_metric(b, "sproc_store_bytes{store=\"%s\"} %lld\n", r->ctx->stores[i]->name,
                     (long long)sp_store_bytes(r->ctx, i));
    rc |= sp_run_metric(b, "# HELP sproc_store_keys keys in each store\n# TYPE sproc_store_keys gauge\n");
    for (int32_t i = 0; i < r->ctx->nstores; i++)
        rc |= sp_run_metric(b, "sproc_store_keys{store=\"%s\"} %lld\n", r->ctx->stores[i]->name,
                     (long long)sp_store_size(r->ctx, i, -1));
    rc |= sp_run_metric(b, "# HELP sproc_state_budget_bytes memory budget of in-memory stores\n"
                    "# TYPE sproc_state_budget_bytes gauge\nsproc_state_budget_bytes %lld\n",
                 (long long)r->ctx->store_budget);
    rc |= sp_run_metric(b, "# HELP sproc_restoring_partitions partitions whose state is being restored\n"
                    "# TYPE sproc_restoring_partitions gauge\nsproc_restoring_partitions %d\n",
                 r->rs ? sp_restore_pending(r->rs) : 0);
    rc |= sp_run_metric(b, "# HELP sproc_rebalances_total partitions assigned, revoked and lost, "
                    "by rebalance\n# TYPE sproc_rebalances_total counter\n"
                    "sproc_rebalances_total{kind=\"assigned\"} %lld\n"
                    "sproc_rebalances_total{kind=\"revoked\"} %lld\n"
                    "sproc_rebalances_total{kind=\"lost\"} %lld\n",
                 (long long)r->rebalances[0], (long long)r->rebalances[1], (long long)r->rebalances[2]);
    rc |= sp_run_metric(b, "# HELP sproc_reloads_total new versions of the script that took over\n"
                    "# TYPE sproc_reloads_total counter\nsproc_reloads_total %lld\n"
                    "# HELP sproc_reload_failures_total new versions refused\n"
                    "# TYPE sproc_reload_failures_total counter\nsproc_reload_failures_total %lld\n",
                 (long long)r->reloads, (long long)r->reload_failures);
    rc |= sp_run_metric(b, "# HELP sproc_script_interrupts_total records the watchdog interrupted "
                    "(sproc.script.timeout.ms)\n# TYPE sproc_script_interrupts_total counter\n"
                    "sproc_script_interrupts_total %lld\n",
                 (long long)(sp_lua_interrupts(r->lua) + r->interrupts_before));
    rc |= sp_run_metric(b, "# HELP sproc_prefetch_wakeups_total times a full prefetch was woken "
                    "when half of it was processed\n# TYPE sproc_prefetch_wakeups_total counter\n"
                    "sproc_prefetch_wakeups_total %lld\n",
                 (long long)sp_prefetch_kicks(r->pf));
    rc |= sp_run_metric(b, "# HELP sproc_producer_queue_messages outputs waiting for Kafka\n"
                    "# TYPE sproc_producer_queue_messages gauge\nsproc_producer_queue_messages %d\n",
                 r->prod ? rd_kafka_outq_len(r->prod) : 0);
    return rc;
}

/* sproc's version, and the standard process metrics of Prometheus'
 * client libraries (from /proc). */
static int render_process(runner *r, sp_buf *b) {
    int rc = sp_run_metric(b, "# HELP sproc_build_info sproc's version\n"
                           "# TYPE sproc_build_info gauge\nsproc_build_info{version=\"%s\"} 1\n",
                           sp_version());
    long page = sysconf(_SC_PAGESIZE), ticks = sysconf(_SC_CLK_TCK);
    unsigned long long vsize = 0, rss = 0, ut = 0, st = 0;
    FILE *f = fopen("/proc/self/stat", "r");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        /* the fields after the command name, which may hold spaces */
        const char *p = strrchr(buf, ')');
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d "
                        "%*d %*d %*d %*u %llu %llu", &ut, &st, &vsize, &rss) != 4)
            vsize = rss = ut = st = 0;
    }
    int fds = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; d && (e = readdir(d));) fds += e->d_name[0] != '.';
    if (d) closedir(d);
    struct rlimit lim = {0, 0};
    getrlimit(RLIMIT_NOFILE, &lim);
    rc |= sp_run_metric(b, "# HELP process_cpu_seconds_total user and system CPU time\n"
                        "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n"
                        "# HELP process_resident_memory_bytes resident memory\n"
                        "# TYPE process_resident_memory_bytes gauge\n"
                        "process_resident_memory_bytes %llu\n"
                        "# HELP process_virtual_memory_bytes virtual memory\n"
                        "# TYPE process_virtual_memory_bytes gauge\n"
                        "process_virtual_memory_bytes %llu\n",
                        (double)(ut + st) / (double)(ticks > 0 ? ticks : 100),
                        rss * (unsigned long long)(page > 0 ? page : 4096), vsize);
    rc |= sp_run_metric(b, "# HELP process_open_fds open file descriptors\n"
                        "# TYPE process_open_fds gauge\nprocess_open_fds %d\n"
                        "# HELP process_max_fds the limit of open file descriptors\n"
                        "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n"
                        "# HELP process_start_time_seconds start time, seconds since the epoch\n"
                        "# TYPE process_start_time_seconds gauge\n"
                        "process_start_time_seconds %.3f\n",
                        fds - 1 /* the directory's own */, (unsigned long long)lim.rlim_cur,
                        (double)r->started_ms / 1000);
    return rc;
}

int sp_run_render_metrics(void *opaque, sp_buf *b) {
    runner *r = opaque;
    int rc = render_totals(r, b) | render_operators(r, b) | render_windows_and_lag(r, b) |
             render_histograms(r, b) | render_state(r, b) | render_process(r, b);
    return rc ? -1 : 0;
}

/* Ready: partitions assigned and their state restored. */
int sp_run_is_ready(void *opaque) {
    runner *r = opaque;
    if (r->cons && !r->assigned_once) return 0;
    return !(r->rs && sp_restore_pending(r->rs));
}

/* The one-line progress display on a terminal. */
void sp_run_show_progress(runner *r) {
    sp_stats *st = sp_ctx_stats(r->ctx);
    int64_t lag = 0;
    for (sp_tp *tp = r->offs.tps; tp; tp = tp->next)
        if (tp->assigned) {
            int64_t l = sp_run_lag_of(r, tp);
            if (l > 0) lag += l;
        }
    char line[256];
    snprintf(line, sizeof line, "sproc: %lld rec/s, %lld in, lag %lld, late %lld, errors %lld",
             (long long)(st->records_in - r->last_in), (long long)st->records_in, (long long)lag,
             (long long)st->late, (long long)st->errors);
    r->last_in = st->records_in;
    sp_log_progress(line);
}
