/* sp_ctx internals: what the FFI functions of sp_ffi.h work on, and the
 * seams (sink operations, the Kafka backend) that the executable fills in
 * with a real producer while tests keep everything in memory. */
#ifndef SP_CTX_H
#define SP_CTX_H

#include <librdkafka/rdkafka.h>
#include <regex.h>
#include <stdio.h>

#include "sp_buf.h"
#include "sp_ffi.h"
#include "sp_json.h"
#include "sp_offsets.h"

/* The stores (state/sp_kv.h) and the windows (window/) are the layers
 * above: the context only holds them. */
typedef struct sp_store sp_store;

/* Tasks are bits of a mask (sp_store.tasks); the last bit pattern means
 * "not worked out yet" in caches. */
#define SP_MAX_TASKS 63
#define SP_TASKS_UNKNOWN UINT64_MAX

/* An output on its way to a sink. hdrs, when set, is handed over. */
typedef struct sp_msg {
    const char *key;
    const char *val;
    size_t key_len;
    size_t val_len;
    int64_t ts;
    rd_kafka_headers_t *hdrs;
    sp_seg *seg; /* the input segment the output belongs to, or NULL */
    int32_t partition; /* -1: the partitioner's choice */
    const sp_rec *in;  /* the input record it comes from (offset >= 0), or
                        * NULL: file sinks with a checkpoint track it */
} sp_msg;

/* The producer opaque of an output: its input's slot, or its segment's. */
#define SP_MSG_SLOT(m) \
    ((m)->in && (m)->in->slot ? (sp_slot *)(m)->in->slot : (m)->seg ? &(m)->seg->self : NULL)

typedef struct sp_sink sp_sink;
typedef struct sp_sink_ops {
    const char *kind;
    int (*write)(sp_sink *s, sp_msg *m, const char **err);
    /* force: make everything written so far safe (publish files, flush
     * buffers); otherwise only what is due (files past their roll time). */
    int (*flush)(sp_sink *s, int force, const char **err);
    void (*destroy)(sp_sink *s);
    /* Partitions were assigned (NULL: nothing to do): a file sink with a
     * checkpoint reads what other processes published. */
    void (*assigned)(sp_sink *s);
} sp_sink_ops;

struct sp_sink {
    const sp_sink_ops *ops;
    sp_ctx *ctx;
    char *name; /* topic, directory or "stdout" */
    void *impl;
    void *tag;  /* a changelog's sp_store, for its acknowledgements */
    int internal; /* a topic of sproc's own (repartition): not an output */
};

/* Where Kafka sinks write. The default keeps outputs in memory; the
 * executable plugs in its producer. */
typedef struct sp_kafka_backend {
    void *opaque;
    /* Makes a Kafka sink for topic (fills s->ops and s->impl). */
    int (*open)(void *opaque, sp_sink *s, const char **err);
} sp_kafka_backend;

/* Where Avro schemas come from and go (a Schema Registry): the executable
 * plugs in its client; without one (the test driver) schemas are added
 * by hand and sinks' schemas get ids of the context's own. */
typedef struct sp_registry_backend {
    void *opaque;
    /* The schema (Avro's JSON) of id into out: 0, or -1 and why. */
    int (*fetch)(void *opaque, int32_t id, sp_buf *out, char *err, size_t errsize);
    /* Registers schema under subject (or finds it there): 0 and its id,
     * or -1 and why (the registry's message for an incompatible one). */
    int (*register_schema)(void *opaque, const char *subject, const char *schema, size_t len,
                           int32_t *id, char *err, size_t errsize);
} sp_registry_backend;

typedef struct sp_source {
    int kind; /* 0 kafka topic, 1 kafka pattern, 2 file, 3 timer, 4 window
               * results */
    char *name;
    int32_t topic; /* topic id records carry */
    int32_t task;  /* whose stream time its records move (sp_ctx_task) */
    int internal;  /* a topic of sproc's own (repartition) */
    int global;    /* a global table's: every partition, outside the group */
    regex_t re;    /* patterns, compiled on first use */
    int re_ok;     /* 0 not compiled, 1 compiled, -1 invalid */
} sp_source;

/* Storage of records pushed by the test driver or read from files. */
typedef struct sp_owned {
    struct sp_owned *next;
    rd_kafka_headers_t *hdrs;
    /* key and value bytes follow */
} sp_owned;

/* A captured output: its bytes are in the context's out_mem (offsets, as
 * the buffer moves when it grows); pointers and partition are filled in
 * when it is read. */
typedef struct sp_captured {
    sp_out out;
    rd_kafka_headers_t *hdrs;
    size_t key_off, val_off;
} sp_captured;

/* A topic the script declares (sproc.app{ topics = ... }): created at
 * start when missing. replication -1: the cluster's default; config:
 * "key=value" lines. */
typedef struct sp_topic_spec {
    char *name;
    int32_t partitions, replication;
    char *config;
} sp_topic_spec;

struct sp_ctx {
    sp_batch batch;
    sp_topic_spec *topic_specs;
    int32_t ntopic_specs;
    int32_t cap;
    sp_owned *owned;
    sp_stats stats;

    char **topics;
    int32_t ntopics;

    sp_source *sources;
    int32_t nsources;
    char **copart;   /* topics joined by key, comma-separated, per group */
    int32_t ncopart;

    sp_sink **sinks;
    int32_t nsinks;

    int policy;
    int dlq_sink; /* -1 none */
    int32_t out_rec; /* the batch record last counted as out; -1 none */

    rd_kafka_headers_t *pending_hdrs; /* for the next sp_emit */

    sp_json_index json[3]; /* key, value, a value a join read from a store */
    int32_t json_rec[3];   /* record each slot was parsed for, -1 none (the
                            * joined slot: 0 once parsed) */
    sp_buf joined;         /* the joined slot's text, which it points into */
    sp_buf scratch;
    sp_buf project;
    sp_buf jout[2];        /* a key's and a value's JSON (sp_jout.c) */

    sp_kafka_backend kafka;
    int32_t mem_partitions;
    int capture_stdout;
    sp_captured *outs;
    int32_t nouts, outs_cap;
    sp_buf out_mem;

    sp_store **stores;
    int32_t nstores;
    /* the headers a store partition's changelog records carry (the
     * executable's: its inputs' positions); NULL none */
    rd_kafka_headers_t *(*changelog_headers)(void *opaque, int32_t partition);
    void *changelog_headers_opaque;

    /* time: stream time per task and partition, the partitions worked on,
     * timers, the wall clock */
    struct sp_ptime *ptimes;
    int32_t nptimes;
    struct sp_tclock *clocks;
    int32_t nclocks;
    char *tasks[SP_MAX_TASKS];
    int32_t ntasks;
    uint64_t *topic_tasks; /* per topic id: its records' tasks (a mask) */
    int32_t ntopic_tasks;
    struct sp_timer *timers;
    int32_t ntimers;
    int32_t stream_timers; /* how many of them follow stream time */
    int64_t wall_ms;
    int64_t idle_ms; /* idle partitions' stream time follows the wall clock */
    int32_t scanned; /* batch records already counted in stream time */
    struct sp_windows *windows; /* windowed aggregations; NULL none */
    struct sp_opstats *ops;     /* per-operator counters; NULL until used */
    int ttl_hold; /* entries past their TTL stay visible until swept: windows
                   * closing read what their companion stores kept for them,
                   * however far stream time jumped in one batch */
    int64_t store_bytes;  /* all in-memory stores together */
    int64_t store_budget; /* 0: no limit */
    char *state_dir;      /* disk stores (and checkpoints); NULL: a
                           * temporary one made on first use */
    int state_dir_temp;
    sp_registry_backend registry;
    struct sp_avro_cache *avro; /* Avro schemas by id (sp_ctx_avro.c); NULL none */
    struct sp_schema **schemas; /* declared by sources (sp_schema_define) */
    int32_t nschemas;
    sp_buf canon; /* the current record's value as its schema converted it */

    /* Set by the executable: called for a produce that failed for good. */
    void (*on_delivery_error)(sp_ctx *ctx, sp_sink *s, sp_msg *m,
                              const char *why);
};

/* The context's own fields, made and freed (sp_ctx_create and
 * sp_ctx_destroy in sp_ctx_engine.c add the subsystems'). */
void sp_ctx_init(sp_ctx *ctx);
void sp_ctx_fini(sp_ctx *ctx);
/* Forgets the sources (a reload declares its own). */
void sp_ctx_clear_sources(sp_ctx *ctx);

sp_sink *sp_ctx_sink(sp_ctx *ctx, int id);
/* The sink of that kind and name, or -1. */
int sp_sink_find(sp_ctx *ctx, const char *kind, const char *name);
/* Tells the sinks that partitions were assigned. */
void sp_ctx_sinks_assigned(sp_ctx *ctx);
void sp_ctx_destroy_schemas(sp_ctx *ctx);
void sp_ctx_destroy_avro(sp_ctx *ctx);
/* A zeroed record at the end of the batch, or NULL when out of memory. */
sp_rec *sp_batch_add(sp_ctx *ctx);
/* A record's headers, parsed when first needed (NULL: none). */
rd_kafka_headers_t *sp_batch_headers(sp_rec *r);
void sp_batch_free_owned(sp_ctx *ctx);
/* Registers a sink made by a backend; returns its id or a negative code. */
int sp_ctx_add_sink(sp_ctx *ctx, sp_sink *s, const char **err);
/* Writes an output to sink id, taking care of segment references. */
int sp_emit_write(sp_ctx *ctx, int sink, sp_msg *m, const char **err);
/* Flushes every sink (see sp_sink_ops.flush). */
int sp_ctx_flush_sinks(sp_ctx *ctx, int force, const char **err);
/* Headers for a dead letter: the input's, plus the error and its origin. */
rd_kafka_headers_t *sp_emit_dead_letter_headers(sp_ctx *ctx,
                                              const rd_kafka_headers_t *in,
                                              const char *why, size_t why_len,
                                              const char *topic,
                                              int32_t partition,
                                              int64_t offset, int64_t ts);

void sp_ctx_destroy_timers(sp_ctx *ctx);
void sp_ctx_reset_timers(sp_ctx *ctx);

/* Per-operator counters (the metrics endpoint reads them). */
#define SP_MAX_OPERATORS 1024
typedef struct sp_opstats {
    int64_t in[SP_MAX_OPERATORS];
    char *name[SP_MAX_OPERATORS];
    int32_t parent[SP_MAX_OPERATORS]; /* -1: a source */
    int32_t taps[SP_MAX_OPERATORS];   /* samples allowed now (sp_ffi.h) */
    int32_t n;
    /* where sampled records go: a JSON line each (the executable's taps) */
    void (*on_tap)(void *opaque, int32_t op, const char *line, size_t len);
    void *tap_opaque;
    sp_buf line;
} sp_opstats;
int sp_ctx_timer_add(sp_ctx *ctx, int32_t topic, int64_t every, int wall,
                     const char **err);
/* Registers a source (kind of sp_source) named name; returns its topic id. */
int sp_ctx_add_source(sp_ctx *ctx, int kind, const char *name, const char **err);
/* The partition of the k-th entry of the context's partition table. */
int32_t sp_ctx_ptime_partition(sp_ctx *ctx, int32_t k);
/* Partitions this process works on (wall-clock timers fire for each). */
void sp_ctx_partition_add(sp_ctx *ctx, int32_t partition);
/* Stream time of a partition (the latest of its tasks'), and of the tasks
 * of a mask on it (0: of the partition): -1 when unknown. */
int64_t sp_ctx_part_stream_time(sp_ctx *ctx, int32_t partition);
int64_t sp_ctx_tasks_stream_time(sp_ctx *ctx, uint64_t tasks, int32_t partition);
/* Moves stream time over the batch's records up to the current one, or
 * up to record end (excluded); 0, or -1 when out of memory. */
void sp_ctx_count_to_current(sp_ctx *ctx);
int sp_ctx_count_records(sp_ctx *ctx, int32_t end);
/* Between batches: a timer-only script's partition 0, idle tasks' stream
 * time moved on with the wall clock. */
void sp_ctx_clocks_tick(sp_ctx *ctx);
/* Appends the records of the timers that are due; how many, or -1. */
int32_t sp_ctx_fire_due(sp_ctx *ctx);
/* The shortest period of the wall-clock timers (0: none). */
int64_t sp_ctx_timer_min(sp_ctx *ctx);
/* A partition's clocks go (sp_ctx_partition_remove also drops its
 * windows). */
void sp_ctx_partition_forget(sp_ctx *ctx, int32_t partition);
/* Sources changed: the cache of each topic's tasks is out of date. */
void sp_ctx_forget_topic_tasks(sp_ctx *ctx);


#endif
