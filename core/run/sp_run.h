/* sp_run: runs a pipeline against Kafka: the libev loop, the consumer and
 * producer, rebalances, commits, bounded runs and shutdown. sp_run
 * (sp_run.c) is the entry; the runner's parts (run/sp_run_*.c) share the
 * rest of this header: the runner's state and the functions one part
 * calls in another. */
#ifndef SP_RUN_H
#define SP_RUN_H

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <ev.h>
#include <fcntl.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sp_clock.h"
#include "sp_ctx.h"
#include "sp_engine.h"
#include "sp_store.h"
#include "sp_log.h"
#include "sp_lua.h"
#include "sp_offsets.h"
#include "sp_prefetch.h"
#include "sp_registry.h"
#include "sp_restore.h"
#include "sp_members.h"
#include "sp_metrics.h"
#include "sp_kafka_out.h"
#include "sp_topics.h"
#include "sp_window.h"

typedef struct sp_opts {
    const char *script;
    const char *brokers;   /* NULL: the embedded dev cluster */
    const char *app;       /* NULL: the script's, else its file name */
    const char *start;     /* earliest, latest or an ISO-8601 time */
    int until_end;
    int create_topics;      /* missing output topics are created */
    int watch;
    const char *metrics;    /* HOST:PORT of the metrics endpoint, or NULL */
    int quiet;              /* no progress line */
    double connect_timeout; /* seconds; <= 0 waits forever */
    const char **sets;      /* key=value */
    int nsets;
} sp_opts;

/* Returns the process exit code: 0, 1 (runtime failure) or 2 (script). */
int sp_run(const sp_opts *o);
/* sproc reset: the application's group offsets on its source topics set
 * to to (earliest, latest or an ISO-8601 time), its internal topics and
 * local state deleted, refused while the group has active members;
 * dry_run prints the plan only. Returns the exit code. */
int sp_reset(const sp_opts *o, const char *to, int dry_run);
/* sproc capture TOPIC ...: argv[0] is "capture"; the exit code. */
int sp_capture(int argc, char **argv);
/* sproc query SCRIPT|--app ID STORE [KEY] ...: argv[0] is "query". */
int sp_query(int argc, char **argv);
/* sproc tap SCRIPT|--app ID [OPERATOR] ...: argv[0] is "tap". */
int sp_tap(int argc, char **argv);

typedef struct file_src {
    FILE *f;
    int32_t topic;
    int64_t line;
} file_src;

typedef struct runner {
    const sp_opts *o;
    sp_ctx *ctx;
    sp_lua *lua;
    sp_kafka_out ko;
    sp_offsets offs;

    rd_kafka_t *prod, *cons, *mock_rk;
    rd_kafka_t *refetch; /* reads an input again for a dead letter; lazily */
    rd_kafka_t *gcons;   /* global tables' consumer (sp_run_global.c) */
    int64_t held;        /* records waiting their turn (sp_run_sync.c) */
    int64_t idle_ms;     /* sproc.max.task.idle.ms */
    rd_kafka_queue_t *gq;
    rd_kafka_mock_cluster_t *mock;
    rd_kafka_queue_t *cq, *pq;
    rd_kafka_queue_t *purge_q; /* answers to DeleteRecords (sp_run_purge) */
    double purge_next;         /* monotonic seconds */
    sp_prefetch *pf;
    char *brokers;
    char errstr[512];
    /* While sp_run_wait_for_kafka waits: the first login Kafka refused
     * (SASL) or certificate sproc refused (TLS), which waiting cannot fix. */
    int connecting;
    char refused[512];

    struct ev_loop *loop;
    ev_io cons_w, prod_w;
    ev_idle more_w;
    ev_timer commit_w, tick_w;
    ev_signal int_w, term_w;
    int cons_fd[2], prod_fd[2];

    rd_kafka_message_t **msgs;
    rd_kafka_message_t **released; /* held records in the batch (max_batch) */
    int max_batch;
    int64_t commit_interval_ms;
    int32_t dev_partitions;
    int64_t start_ms; /* --start as a time, or -1 */

    file_src *files;
    int nfiles, files_open;

    /* rd_kafka_topic_t pointer -> topic id, for the batch builder */
    const void **rkt_keys;
    int32_t *rkt_ids;
    int nrkt;

    sp_restore *rs;        /* stores: restore from changelogs; NULL none */
    ev_timer restore_w;
    int32_t src_partitions; /* most partitions of a source topic */

    int eos;        /* exactly-once: transactions */
    int in_txn;     /* a transaction is open */
    int64_t txns;   /* transactions committed */
    int64_t txn_aborts;  /* aborted, the process going on (sp_run_recover_txn) */
    int txn_failures;    /* of those, since the last commit */
    /* exactly-once: a partition whose committed offsets read stale waits
     * to read them again (sp_run_rebalance.c); -1 none */
    int32_t stale_partition;
    sp_buf positions; /* a changelog header's text, made again for each */
    int stale_accepted; /* taken as a rewind: the restore leaves out later records */
    int rewinding;      /* partitions given up and taken again in place (no rebalance) */
    double stale_since, stale_last;
    char txn_id[512];    /* the producer's transactional.id */
    int txn_id_static;   /* made of group.instance.id, not unique to this process */

    /* hot reload */
    ev_timer watch_w;
    int inotify_fd;       /* the watched files' directories; -1 none */
    ev_io inotify_w;
    char **wfiles;        /* the script and its modules */
    struct stat *wstats;  /* as last seen */
    int nwfiles;
    ev_timer reload_w;
    ev_signal hup_w;
    sp_lua *prev;       /* the version before, for a rollback under --watch */
    int version;
    const char *def_id;

    /* observability */
    sp_metrics *metrics;
    /* interactive queries (sp_run_query.c): this process's address, and
     * where the group's other members are */
    char query_self[300];
    sp_members *members;
    ev_io members_w;
    ev_timer members_tick_w;
    int members_fd[2];
    struct sp_run_tapper *taps; /* sproc tap's streams (sp_run_tap.c) */
    sp_registry *registry; /* schema.registry.url's client; NULL none */
    ev_timer tap_w;
    double tap_heartbeat;
    int64_t rebalances[3]; /* assigned, revoked, lost */
    int64_t reloads, reload_failures;
    int64_t interrupts_before; /* by the watchdogs of versions gone */
    int64_t started_ms;        /* wall clock */
    int64_t lua_batches;
    double lua_seconds;
    int64_t lua_buckets[8]; /* Lua time per batch, by LUA_BOUNDS */
    int64_t last_in;        /* records in at the last progress line */
    int progress;           /* a progress line on the terminal */

    int windows_closed; /* a bounded run closed every window */
    int sealed;         /* a bounded run: repartition topics' ends are set */
    int stopping;   /* no more consuming */
    int exit_code;
    int assigned_once;
} runner;

/* The signal that stopped the run (0: none). */
extern volatile sig_atomic_t sp_run_got_signal;

#define LUA_BOUNDS {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1}

int sp_run_conf_set(runner *r, rd_kafka_conf_t *conf, const char *k,
                    const char *v);
int sp_run_one_of(const char *k, const char *const *list);
int sp_run_apply_sets(runner *r, rd_kafka_conf_t *conf, int is_consumer);
const char *sp_run_sproc_setting(const sp_opts *o, const char *key);
int64_t sp_run_setting_int(const sp_opts *o, const char *key, int64_t def);
/* The script's watchdog and heap cap (sproc.script.*) on a new Lua state. */
int sp_run_lua_limits(runner *r, sp_lua *l);
void sp_run_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf);
void sp_run_error_cb(rd_kafka_t *rk, int err, const char *reason,
                     void *opaque);
rd_kafka_message_t *sp_run_refetch(void *opaque, const char *topic, int32_t partition,
                                   int64_t offset);
void sp_run_dev_topic(void *opaque, const char *topic);
int sp_run_start_dev_cluster(runner *r);
int sp_run_make_transactional(runner *r, rd_kafka_conf_t *conf);
int sp_run_make_producer(runner *r);
int sp_run_make_consumer(runner *r);
sp_prefetch *sp_run_make_prefetch(runner *r);
void sp_run_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque);
int sp_run_flush_state(runner *r);
void sp_run_commit_txn(runner *r);
int sp_run_begin_txn(runner *r);
void sp_run_commit(runner *r, int sync,
                   const rd_kafka_topic_partition_list_t *only);
int sp_run_make_safe(runner *r, int timeout_ms);
void sp_run_mark_done(runner *r, sp_tp *tp);
int sp_run_has_internal(runner *r);
rd_kafka_t *sp_run_uncommitted_client(runner *r);
int sp_run_seal_internal(runner *r);
int sp_run_all_done(runner *r);
void sp_run_check_finished(runner *r);
int sp_run_partition_assigned(runner *r, int32_t partition);
void sp_run_resume_restored(runner *r, int32_t partition);
void sp_run_on_restore(struct ev_loop *loop, ev_timer *w, int revents);
void sp_run_restore_assigned(runner *r, rd_kafka_topic_partition_list_t *parts);
int sp_run_mkdir_p(char *path);
char *sp_run_state_dir(runner *r, const char *app);
int sp_run_setup_state(runner *r);
void sp_run_on_assign(runner *r, rd_kafka_topic_partition_list_t *parts);
/* lost: 0 revoked, 1 lost, SP_RUN_REWIND dropped to start over from the
 * last committed transaction (no rebalance: sp_run_recover_txn). */
#define SP_RUN_REWIND 2
/* Transactions that fail in a row before sproc stops; how long one
 * transactional call may take. */
/* Repartition topics: the offsets of a commit Kafka confirmed mark what
 * may go; every sproc.repartition.purge.interval.ms (Kafka Streams'
 * repartition.purge.interval.ms, 30 s) their records before those are
 * deleted, so that the topics do not grow for ever. */
void sp_run_purge_confirmed(runner *r, const rd_kafka_topic_partition_list_t *committed);
void sp_run_purge(runner *r);
void sp_run_purge_stop(runner *r);
#define SP_RUN_TXN_FAILURES 5
#define SP_RUN_TXN_CALL_MS 10000
void sp_run_recover_txn(runner *r, const char *why);
/* Exactly-once: a new producer with the same transactional.id in place of
 * one that cannot go on (its transaction is aborted by the new one's
 * initialization, which fences it). 0, or -1 after logging why not. */
int sp_run_replace_producer(runner *r);
void sp_run_on_revoke(runner *r, rd_kafka_topic_partition_list_t *parts,
                      int lost);
void sp_run_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque);
int32_t sp_run_topic_id_of(runner *r, const rd_kafka_topic_t *rkt);
void sp_run_fatal(runner *r, const char *msg);
/* Stops (exit 1) when topics joined by key differ in partitions. */
int sp_run_check_copartitioned(runner *r);
/* Timestamp order across joined partitions (sp_run_sync.c): whether a
 * topic partition's records wait their turn, holding one, the next whose
 * turn it is (NULL: none now; *from its partition) and taking it, the
 * consumer's end of a partition, and dropping what a partition holds
 * (revoked, shutdown). */
int sp_run_sync_wants(runner *r, sp_tp *tp);
int sp_run_sync_hold(runner *r, sp_tp *tp, rd_kafka_message_t *m);
rd_kafka_message_t *sp_run_sync_next(runner *r, sp_tp **from);
void sp_run_sync_pop(runner *r, sp_tp *tp);
void sp_run_sync_at_end(runner *r, sp_tp *tp);
void sp_run_sync_drop(runner *r, sp_tp *tp);
void sp_run_sync_drop_all(runner *r);
/* Global tables (sp_run_global.c): read to their end at start (0, or -1
 * after logging why), followed between batches, closed at the end. */
int sp_run_start_global(runner *r);
void sp_run_poll_global(runner *r);
void sp_run_stop_global(runner *r);
/* Committed offsets carry the partition's stream time as metadata
 * "sproc-t=<ms>"; an assignment reads it (c: the committed offsets), and
 * the clocks go on from it once the partition's state is here
 * (sp_run_partition_ready, which also starts the partition's wall-clock
 * timers). */
#define SP_RUN_TIME_TAG "sproc-t="
void sp_run_resume_times(runner *r, const rd_kafka_topic_partition_list_t *c);
/* The group's committed offset of a topic partition when it was assigned
 * (-1: none; -2: not assigned here): where a table's state is restored to
 * and which changelog records a restore keeps (sp_restore). */
int64_t sp_run_group_offset(void *opaque, const char *topic, int32_t partition);
/* sp_restore_positions_fn: where partition's inputs are now. */
void sp_run_positions(void *opaque, int32_t partition, sp_buf *out);
/* A store partition's changelog records' header: the positions of the
 * inputs of that partition number (SP_CHANGELOG_POSITIONS). */
rd_kafka_headers_t *sp_run_changelog_headers(void *opaque, int32_t partition);
void sp_run_partition_ready(runner *r, int32_t partition);
int64_t sp_run_now_ms(void);
int sp_run_rollback(runner *r, const char **msg);
void sp_run_run_batch_timed(runner *r, sp_seg **segs, int nsegs, int timers);
void sp_run_run_batch(runner *r, sp_seg **segs, int nsegs);
void sp_run_consume_some(runner *r);
void sp_run_read_files(runner *r);
void sp_run_drain_fd(int fd);
void sp_run_on_consumer(struct ev_loop *loop, ev_io *w, int revents);
void sp_run_on_producer(struct ev_loop *loop, ev_io *w, int revents);
void sp_run_on_more(struct ev_loop *loop, ev_idle *w, int revents);
void sp_run_on_commit(struct ev_loop *loop, ev_timer *w, int revents);
void sp_run_on_tick(struct ev_loop *loop, ev_timer *w, int revents);
void sp_run_on_signal(struct ev_loop *loop, ev_signal *w, int revents);
void sp_run_log_changes(const char *before, const char *after);
void sp_run_do_reload(runner *r);
void sp_run_on_reload_due(struct ev_loop *loop, ev_timer *w, int revents);
int sp_run_same_file(const struct stat *a, const struct stat *b);
void sp_run_on_watch(struct ev_loop *loop, ev_timer *w, int revents);
void sp_run_free_watched(runner *r);
void sp_run_watch_files(runner *r);
void sp_run_on_hup(struct ev_loop *loop, ev_signal *w, int revents);
int sp_run_metric(sp_buf *b, const char *fmt, ...);
int64_t sp_run_lag_of(runner *r, sp_tp *tp);
int sp_run_render_metrics(void *opaque, sp_buf *b);
/* Interactive queries: sp_metrics_source.query, and following the group's
 * members (once the consumer is made; stopped before it closes). */
void sp_run_query(void *opaque, const char *path, const sp_metrics_args *args,
                  unsigned *status, sp_buf *body, sp_buf *location);
int sp_run_start_members(runner *r);
/* sproc tap: sp_metrics_source.stream and .stream_closed. */
int sp_run_tap_open(void *opaque, const char *path, const sp_metrics_args *args,
                    sp_metrics_stream *s, unsigned *status, sp_buf *body);
void sp_run_tap_closed(void *opaque, sp_metrics_stream *s);
void sp_run_stop_members(runner *r);
int sp_run_is_ready(void *opaque);
void sp_run_show_progress(runner *r);
int sp_run_wait_for_kafka(runner *r);
/* A consumed message as the batch's next record (its topic id given);
 * NULL when out of memory. */
sp_rec *sp_run_add_message(runner *r, rd_kafka_message_t *m, int32_t topic);
int sp_run_ensure_internal(runner *r);
int sp_run_open_io_event(runner *r, rd_kafka_queue_t *q, int fds[2]);
int sp_run_open_files(runner *r);
int sp_run_has_kafka_sources(runner *r);
char *sp_run_default_app_id(const char *script);
/* The partitions of a topic in the metadata (-1: not there, or with an
 * error). */
int sp_run_partitions_of(const rd_kafka_metadata_t *md, const char *name);
void sp_run_shutdown_clients(runner *r);

#endif
