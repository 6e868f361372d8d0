/* sp_ffi.h: the one contract between the C core and the Lua API.
 *
 * Lua's ffi.cdef reads the text between the SP_FFI_BEGIN and SP_FFI_END
 * markers (sproc/cdef.lua strips preprocessor lines), so nothing here may
 * need the preprocessor, and no Lua file declares C by hand.
 *
 * Call shape (after OpenResty): int sp_x(ctx, in..., out*, const char **err)
 * returning 0 or a non-negative id on success and a negative SP_E* code on
 * failure with *err set to a static or ctx-owned message. */
#ifndef SP_FFI_H
#define SP_FFI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* SP_FFI_BEGIN */

enum {
    SP_OK = 0,
    SP_EINVAL = -1,   /* misuse: bad argument */
    SP_ENOMEM = -2,
    SP_EMALFORMED = -3, /* input that does not parse */
    SP_EIO = -4,      /* file or Kafka I/O failed */
    SP_ESTATE = -5    /* called at the wrong time */
};

/* Serdes of sources and sinks. */
enum { SP_SERDE_BYTES = 0, SP_SERDE_STRING = 1, SP_SERDE_JSON = 2 };

/* Error policies for records that fail. */
enum { SP_POLICY_FAIL = 0, SP_POLICY_SKIP = 1, SP_POLICY_DLQ = 2 };

/* Types of JSON values in the field index (base/sp_json.h). */
enum {
    SP_JSON_MISSING = 0, /* field not present (lookup result only) */
    SP_JSON_NULL = 1,
    SP_JSON_FALSE = 2,
    SP_JSON_TRUE = 3,
    SP_JSON_NUMBER = 4,
    SP_JSON_STRING = 5,
    SP_JSON_OBJECT = 6,
    SP_JSON_ARRAY = 7
};

/* Parquet compression (Parquet's own codec ids). */
enum { SP_CODEC_NONE = 0, SP_CODEC_SNAPPY = 1, SP_CODEC_ZSTD = 6 };

/* A store value's first byte says what follows: a double (8 bytes, host
 * order), a string, JSON text, or nothing (booleans). */
enum { SP_VAL_NUMBER = 'n', SP_VAL_STRING = 's', SP_VAL_JSON = 'j',
       SP_VAL_TRUE = 't', SP_VAL_FALSE = 'f' };

typedef struct sp_ctx sp_ctx;

/* One input record. Views point into memory the core owns until the batch
 * is done: copy (ffi.string) what must outlive the batch. */
typedef struct sp_rec {
    const char *key;  /* NULL: null key */
    const char *val;  /* NULL: null value */
    size_t key_len;
    size_t val_len;
    int64_t ts;       /* milliseconds since the epoch */
    int64_t offset;
    int32_t partition;
    int32_t topic;    /* topic id, see sp_topic_name */
    void *hdrs;       /* rd_kafka_headers_t *, or NULL */
    void *seg;        /* commit tracking of the input offset */
    void *owner;      /* what keeps the bytes alive */
    void *kmsg;       /* a consumed rd_kafka_message_t whose headers are
                       * not read yet (hdrs is set on first use), or NULL */
    void *slot;       /* its place for its outputs' delivery reports
                       * (sp_slot of sp_offsets.h), or NULL */
} sp_rec;

/* The batch Lua processes. cur is the record being processed: Lua sets it
 * so that the core knows which input each output belongs to and which
 * record an error is about. */
typedef struct sp_batch {
    sp_rec *recs;
    int32_t n;
    int32_t cur;
    int32_t task;  /* the task (sp_ctx_task) of the source whose operators
                    * run on cur: stores it writes keep their TTL on its
                    * stream time */
} sp_batch;

/* Counters of the whole pipeline, incremented from Lua and C. */
typedef struct sp_stats {
    int64_t records_in;
    int64_t records_out;
    int64_t filtered;
    int64_t skipped;
    int64_t dead_lettered;
    int64_t errors;
    int64_t batches;
    int64_t late;  /* (record, window) pairs dropped as late */
} sp_stats;

/* A looked-up JSON field. */
typedef struct sp_field {
    const char *p; /* strings: contents between the quotes; others: raw text */
    size_t len;
    int32_t type;  /* SP_JSON_* of sp_json.h: 0 missing, 1 null, 2 false,
                      3 true, 4 number, 5 string, 6 object, 7 array */
    int32_t escaped;
} sp_field;

/* One captured output record (test driver and in-process runs). */
typedef struct sp_out {
    const char *topic;
    const char *key;   /* NULL: null key */
    const char *val;
    size_t key_len;
    size_t val_len;
    int64_t ts;
    int32_t partition; /* partition the Kafka sink would choose */
    int32_t nhdrs;
} sp_out;

const char *sp_version(void);
/* The text of this header libsproc was built from: the Lua modules refuse
 * to run on a library whose contract differs from the one they declare. */
const char *sp_embed_contract(void);

/* Context: the state Lua talks to. A context made by sp_ctx_create keeps
 * Kafka outputs in memory (the test driver and benchmarks read them back);
 * the sproc executable plugs the real producer in. */
sp_ctx *sp_ctx_create(void);
void sp_ctx_destroy(sp_ctx *ctx);
sp_batch *sp_ctx_batch(sp_ctx *ctx);
sp_stats *sp_ctx_stats(sp_ctx *ctx);
int sp_ctx_set_policy(sp_ctx *ctx, int policy, const char *dlq_topic,
                      const char **err);
/* A topic sproc creates at start when it is missing (sproc.app{ topics }):
 * replication -1 for the cluster's default, config "key=value" lines. 0,
 * or -1 when out of memory. */
int sp_ctx_declare_topic(sp_ctx *ctx, const char *name, int32_t partitions,
                         int32_t replication, const char *config);
/* Captures print() output as records of topic "stdout" instead of
 * writing it (the test driver does). */
void sp_ctx_capture_stdout(sp_ctx *ctx, int on);
/* Number of partitions the in-memory Kafka has for new topics (default 1). */
void sp_ctx_set_partitions(sp_ctx *ctx, int32_t n);

/* Topics are interned: records carry the id. */
int32_t sp_topic_id(sp_ctx *ctx, const char *name);
const char *sp_topic_name(sp_ctx *ctx, int32_t id);

/* Sources, declared when the script is compiled. */
int sp_source_kafka(sp_ctx *ctx, const char *topic, int is_pattern,
                    const char **err);
int sp_source_file(sp_ctx *ctx, const char *path, const char **err);

/* Sinks; each returns a sink id. */
int sp_sink_kafka(sp_ctx *ctx, const char *topic, const char **err);
int sp_sink_stdout(sp_ctx *ctx, const char **err);
/* Rolling files in a directory: JSON lines, or Parquet when a schema is
 * given. With a checkpoint directory each published file is listed there
 * with the input offsets it holds, and outputs of records a listed file
 * holds are dropped: exactly-once files across crashes and restarts. */
typedef struct sp_file_opts {
    const char *prefix;
    const char *suffix;
    int64_t roll_bytes;      /* 0: no size limit */
    int64_t roll_ms;         /* 0: no age limit */
    const char *checkpoint;  /* NULL: at-least-once */
    const char *schema;      /* a schema spec: Parquet; NULL: JSON lines */
    int32_t codec;           /* Parquet: SP_CODEC_* */
    int32_t dictionary;      /* Parquet: dictionary-encode where it fits */
    int64_t row_group_bytes; /* Parquet: buffered bytes per row group */
    int64_t row_group_rows;  /* Parquet: rows per row group (0: no limit) */
    const char *partition_by; /* "a,b": top-level schema fields whose values
                                 name Hive-style directories (a=1/b=x/);
                                 NULL: none */
} sp_file_opts;
int sp_sink_files(sp_ctx *ctx, const char *dir, const sp_file_opts *o,
                  const char **err);

/* Output of the current record (batch->cur) to a sink. Headers added with
 * sp_emit_header since the last sp_emit go with it; fwd_headers also
 * copies the input record's headers (Kafka Streams does so by default). */
int sp_emit_header(sp_ctx *ctx, const char *name, size_t name_len,
                   const char *val, size_t val_len, const char **err);
int sp_emit(sp_ctx *ctx, int sink, const char *key, size_t key_len,
            const char *val, size_t val_len, int64_t ts, int fwd_headers,
            const char **err);
/* The current record as it came (key, value, and the timestamp ts, or its
 * own when has_ts is 0) to a sink: pass-through without a string made. */
int sp_emit_rec(sp_ctx *ctx, int sink, int has_ts, int64_t ts, int fwd_headers,
                const char **err);
/* The input record rec, as it came, to the dead-letter topic, with the
 * error in its headers (without its value when it is too large for that
 * topic). */
int sp_dead_letter(sp_ctx *ctx, int32_t rec, const char *why, size_t why_len,
                   const char **err);
/* Record rec failed (skipped or dead-lettered): it does not count as out
 * for the outputs it gave before it failed. */
void sp_emit_forget(sp_ctx *ctx, int32_t rec);
/* 1 when topic id topic is one of sproc's own (a repartition topic): its
 * records are not input (sp_stats.records_in). */
int sp_topic_internal(sp_ctx *ctx, int32_t topic);

/* Headers of input record rec: the i-th (0-based) name and value; returns
 * 0, or 1 past the last one. */
int sp_rec_header(sp_ctx *ctx, int32_t rec, int32_t i, const char **name,
                  const char **val, size_t *val_len);

/* JSON: parse record rec's key (which = 0) or value (which = 1) into the
 * context's index for that slot; then read fields of it by name. */
int sp_rec_json(sp_ctx *ctx, int32_t rec, int32_t which, size_t *err_pos,
                const char **err);
int sp_json_get(sp_ctx *ctx, int32_t which, const char *name,
                size_t name_len, sp_field *out);
/* A JSON object of the named fields of the parsed slot, in the order
 * given, their values copied as they are (null where missing), in a
 * context-owned buffer valid until the next call. */
int sp_json_project(sp_ctx *ctx, int32_t which, const char *const *names,
                    const size_t *name_lens, int32_t n, const char **out,
                    size_t *out_len);
/* The joined slot (which = 2): JSON text a join read from a store (a
 * table's row, the other side's record), copied and parsed; its root type
 * (SP_JSON_*), or < 0 when it is malformed. */
int32_t sp_json_parse_joined(sp_ctx *ctx, const char *p, size_t len);
/* A flat JSON object written field by field into one of two context-owned
 * buffers (slot 0 a key's, 1 a value's): a script's table of names to
 * strings, numbers and booleans encoded without a Lua string made of it.
 * begin, then a call per field (nonzero: the name or string is not valid
 * UTF-8, or out of memory), then end gives the text (NULL out of memory),
 * valid until the slot's next begin. */
void sp_jout_begin(sp_ctx *ctx, int32_t slot);
int sp_jout_string(sp_ctx *ctx, int32_t slot, const char *name, size_t name_len, const char *s,
                   size_t len);
int sp_jout_number(sp_ctx *ctx, int32_t slot, const char *name, size_t name_len, double v);
int sp_jout_bool(sp_ctx *ctx, int32_t slot, const char *name, size_t name_len, int v);
const char *sp_jout_end(sp_ctx *ctx, int32_t slot, size_t *len);
/* Root type of the parsed slot (SP_JSON_*). */
int32_t sp_json_root(sp_ctx *ctx, int32_t which);
/* Unescaped string contents in a context-owned scratch buffer, valid until
 * the next call. */
const char *sp_json_unescaped(sp_ctx *ctx, const char *p, size_t len,
                              size_t *out_len);
double sp_json_to_number(const char *p, size_t len);

/* Schemas (Spark's StructType): spec "name:type,..." with types string,
 * int64, double, boolean, timestamp, struct{...}, '!' after a type for
 * not nullable (sp_schema.h). sp_schema_apply converts the current
 * record's parsed JSON value (sp_rec_json) and makes the converted value
 * the record's: declared fields in order, missing ones null, others
 * dropped, timestamps in epoch ms. A value that does not convert is an
 * SP_EMALFORMED error naming the field. */
int sp_schema_define(sp_ctx *ctx, const char *spec, const char **err);
int sp_schema_apply(sp_ctx *ctx, int schema, const char **err);

/* Avro in the Confluent wire format: a zero byte, the schema's id (4
 * bytes, big-endian), the datum (base/sp_avro.h gives the JSON a datum
 * reads as). Schemas by id come from the registry the executable reaches,
 * or are added (the test driver). sp_rec_avro decodes record rec's key
 * (which = 0) or value (1) into JSON that becomes the record's and parses
 * it into the slot, as sp_rec_json does. sp_avro_register registers a
 * sink's schema under a subject and returns its id (< 0 on error);
 * sp_avro_frame encodes a JSON value under schema id, into a context
 * buffer valid until the next call. */
int sp_avro_add_schema(sp_ctx *ctx, int32_t id, const char *json, size_t len, const char **err);
int sp_rec_avro(sp_ctx *ctx, int32_t rec, int32_t which, size_t *err_pos, const char **err);
int32_t sp_avro_register(sp_ctx *ctx, const char *subject, const char *schema, size_t len,
                         const char **err);
int sp_avro_frame(sp_ctx *ctx, int32_t id, const char *json, size_t len, const char **out,
                  size_t *out_len, const char **err);
/* A sink's fixed schema id: its schema fetched from the registry (or
 * added) now, so that sp_avro_frame can use it; 0, or < 0 and why. */
int sp_avro_use_id(sp_ctx *ctx, int32_t id, const char **err);
/* A framed datum as JSON, in the same buffer as sp_avro_frame's. */
int sp_avro_unframe(sp_ctx *ctx, const char *p, size_t len, const char **out, size_t *out_len,
                    const char **err);

/* The test driver's side: records in, outputs out. */
int sp_batch_reset(sp_ctx *ctx);
int sp_batch_push(sp_ctx *ctx, int32_t topic, int32_t partition,
                  int64_t offset, const char *key, size_t key_len,
                  const char *val, size_t val_len, int64_t ts,
                  const char **err);
int sp_batch_push_header(sp_ctx *ctx, const char *name, const char *val,
                         size_t val_len, const char **err);
int32_t sp_out_count(sp_ctx *ctx);
int sp_out_get(sp_ctx *ctx, int32_t i, sp_out *out);
int sp_out_header(sp_ctx *ctx, int32_t i, int32_t h, const char **name,
                  const char **val, size_t *val_len);
void sp_out_clear(sp_ctx *ctx);
/* Flushes stdout and file sinks (publishes open files). */
int sp_ctx_flush(sp_ctx *ctx, const char **err);

/* A message through sproc's logger (levels of sp_log.h: 0 error .. 3
 * debug). */
void sp_log_line(int level, const char *msg);
/* A line about record rec of the batch: JSON logs carry its topic,
 * partition and offset as fields. */
void sp_log_record(sp_ctx *ctx, int level, int32_t rec, const char *msg);

/* Index of the first source whose topic or pattern matches topic id
 * topic, or -1; sp_source_matches: 1 when source number source reads
 * topic id topic (several sources may read one topic: each gets every
 * record). */
int32_t sp_source_for(sp_ctx *ctx, int32_t topic);
int sp_source_matches(sp_ctx *ctx, int32_t source, int32_t topic);

/* Java-compatible murmur2 partition of a key (what Kafka's default
 * partitioner picks for a non-null key). */
int32_t sp_partition_for(const char *key, size_t len, int32_t partitions);

/* State stores: named by the user, split by input partition. A window
 * store is a key-value store whose keys are the user's key (2-byte
 * length first) and the window's start (8 bytes big-endian), so a key's
 * windows are adjacent and in time order. A store
 * call's partition -1 means the partition of the record being processed
 * (batch->cur); the test driver names partitions to inspect and seed.
 * Values are bytes the Lua API tags with their type; sp_store_incr keeps
 * numbers as the tag 'n' and a native double. */
enum { SP_STORE_KV = 0, SP_STORE_WINDOW = 1 };
/* Returns the store id; the same name gives the same store (and state). */
int sp_store_open(sp_ctx *ctx, const char *name, int kind, const char **err);
int32_t sp_store_find(sp_ctx *ctx, const char *name);
int sp_store_kind(sp_ctx *ctx, int store);
/* 1 and the value (valid until the next change), or 0 when missing. */
/* sp_store_get, with the entry's time (a table's: its record's). */
int sp_store_get_ts(sp_ctx *ctx, int store, int32_t partition, const char *key,
                    size_t klen, const char **val, size_t *vlen, int64_t *ts);
/* Makes store a table's: the latest value per key of topic, stored with
 * the SP_VAL_* tag in front of the record's value. The topic is its
 * changelog (no changelog topic of its own): a partition's state is read
 * back from the topic up to the group's committed offset. global: every
 * partition of the topic lives in the store's partition 0 on every
 * process, read from the start when the process starts. */
int sp_store_set_source(sp_ctx *ctx, int store, const char *topic, int tag, int global,
                        const char **err);
int sp_store_get(sp_ctx *ctx, int store, int32_t partition, const char *key,
                 size_t klen, const char **val, size_t *vlen);
int sp_store_put(sp_ctx *ctx, int store, int32_t partition, const char *key,
                 size_t klen, const char *val, size_t vlen, const char **err);
int sp_store_delete(sp_ctx *ctx, int store, int32_t partition,
                    const char *key, size_t klen, const char **err);
int sp_store_incr(sp_ctx *ctx, int store, int32_t partition, const char *key,
                  size_t klen, double by, double *out, const char **err);
/* The same with the entry's time given (a window store gives the window's
 * start, so that retention drops whole windows). */
int sp_store_put_at(sp_ctx *ctx, int store, int32_t partition, const char *key,
                    size_t klen, const char *val, size_t vlen, int64_t ts,
                    const char **err);
int sp_store_incr_at(sp_ctx *ctx, int store, int32_t partition, const char *key,
                     size_t klen, double by, int64_t ts, double *out,
                     const char **err);
/* Ordered scans: the first key >= from (> from when strict; from NULL:
 * the first key) of a partition; 1 and the entry, or 0 at the end. */
int sp_store_next(sp_ctx *ctx, int store, int32_t partition, const char *from,
                  size_t flen, int strict, const char **key, size_t *klen,
                  const char **val, size_t *vlen);
/* A windowed stream-stream join's side stores (the current record's
 * partition): sp_jstore_put adds a record of key at ts unless the side's
 * retention (counted from the latest time it saw) is past it; 1 added, 0
 * too old, < 0 error. Its value is val, or with tag >= 0 the SP_VAL_* tag
 * then val (a record's own JSON goes in without a Lua string made of it).
 * sp_jstore_next gives the side's records of key with a time in [lo, hi]
 * still within retention, in (time, arrival) order: zero *hit, then call
 * while it returns 1 (< 0: out of memory). hit->val stays valid until the
 * store changes. */
typedef struct {
    int started;
    uint32_t seq;
    int64_t ts;
    const char *val;
    size_t vlen;
} sp_jstore_hit;
/* sp_jstore_open marks a store as a side's once it is opened (and its
 * backend chosen): what its retention (ms of record time) drops then
 * leaves it oldest first, with no tombstone (sp_store_set_retention). */
int sp_jstore_open(sp_ctx *ctx, int store, int64_t retention, const char **err);
int sp_jstore_put(sp_ctx *ctx, int store, const char *key, size_t klen, int64_t ts, int tag,
                  const char *val, size_t vlen, int64_t retention, const char **err);
int sp_jstore_next(sp_ctx *ctx, int store, const char *key, size_t klen, int64_t lo, int64_t hi,
                   int64_t retention, sp_jstore_hit *hit);
/* Live keys of a partition (-1: all partitions). */
int64_t sp_store_size(sp_ctx *ctx, int store, int32_t partition);
/* The partitions a store holds: fills up to max, returns how many. */
int32_t sp_store_partitions(sp_ctx *ctx, int store, int32_t *out, int32_t max);
/* Entries live ttl_ms of stream time after their last write (0:
 * forever); expired ones read as missing and leave with a tombstone. */
int sp_store_set_ttl(sp_ctx *ctx, int store, int64_t ttl_ms, const char **err);
/* The task (sp_ctx_task) whose records a store holds, known when the
 * pipeline is built (an aggregation's): its partitions are that task's
 * topics' before a record is written (queries route by it). */
void sp_store_add_task(sp_ctx *ctx, int store, int32_t task);
/* Keeps a store's entries on disk (LMDB, under the state directory)
 * instead of in memory: for state larger than memory. */
int sp_store_set_disk(sp_ctx *ctx, int store, const char **err);
/* Ends a batch for the stores (commits disk stores' writes); the runtime
 * calls it after each batch. */
int sp_store_end_batch(sp_ctx *ctx, const char **err);
/* Memory: bytes of one store, of all stores, and the budget of all
 * (0: none); a put over the budget fails with a clear error. */
int64_t sp_store_bytes(sp_ctx *ctx, int store);
int64_t sp_store_total_bytes(sp_ctx *ctx);
void sp_store_set_budget(sp_ctx *ctx, int64_t bytes);

/* Time. A timer is a source: when it is due, one record per partition
 * (ts: the time it fired at) goes through its operators. Stream timers
 * fire as a partition's stream time (its highest record time) crosses a
 * multiple of every; wall timers every so many ms of the wall clock. */
int sp_source_timer(sp_ctx *ctx, int64_t every_ms, int wall, const char **err);
/* After a batch's records: updates stream times, expires store entries,
 * and appends the records of due timers to the batch; returns how many
 * were appended (process them, then call again until 0). */
int32_t sp_ctx_fire_timers(sp_ctx *ctx);
/* After record rec ran: the records of the stream timers its time made
 * due go right after it (as Kafka Streams punctuates after a record);
 * returns how many were inserted, or -1. */
int32_t sp_ctx_fire_stream_timers_after(sp_ctx *ctx, int32_t rec);
/* The wall clock the timers see: the executable sets real time, the test
 * driver a virtual one. */
void sp_ctx_set_wall_clock(sp_ctx *ctx, int64_t ms);
int64_t sp_ctx_wall_clock(sp_ctx *ctx);
/* Stream time of a partition (-1: no record yet); the driver may move it
 * forward. */
int64_t sp_ctx_stream_time(sp_ctx *ctx, int32_t partition);
void sp_ctx_set_stream_time(sp_ctx *ctx, int32_t partition, int64_t ms);
/* A topic partition's stream time: that of the tasks reading the topic, in
 * that partition (-1: none). It goes with the partition's committed offset
 * (as Kafka Streams commits partition time), so that a process that takes
 * the partition over, or a restart, goes on with it rather than from the
 * first record it reads; sp_ctx_resume_time sets it back (never earlier). */
int64_t sp_ctx_topic_time(sp_ctx *ctx, int32_t topic, int32_t partition);
void sp_ctx_resume_time(sp_ctx *ctx, int32_t topic, int32_t partition, int64_t ms);
/* Counts the current record's time (and those before it) into the
 * stream times of its partition now, before an operator moves it to
 * another partition (the test driver's in-place repartition). */
void sp_ctx_count_to_current(sp_ctx *ctx);
/* The number of topic ids given so far (0 .. count - 1). */
int32_t sp_topic_count(sp_ctx *ctx);

/* Sources registered so far (a new one's index is the count minus 1). */
int32_t sp_source_count(sp_ctx *ctx);
/* Stream time is kept per task: the partitions of one number of the
 * topics of one source declaration. sp_ctx_task interns a task's name
 * (the same name finds the same stream times after a reload; at most 63
 * tasks); a source is its own task until sp_source_set_task says which
 * one it belongs to. */
int32_t sp_ctx_task(sp_ctx *ctx, const char *name);
int sp_source_set_task(sp_ctx *ctx, int32_t source, int32_t task, const char **err);
/* A topic of sproc's own that the pipeline reads back (a repartition
 * topic: the executable creates it and drains it in bounded runs). */
int sp_source_internal(sp_ctx *ctx, const char *topic, const char **err);
/* A global table's topic: read whole by every process, outside the
 * consumer group, to its end before processing starts. */
int sp_source_set_global(sp_ctx *ctx, int32_t source, const char **err);
/* Topics (comma-separated) joined by key: the executable stops at start
 * when they do not have the same number of partitions. */
int sp_source_copartition(sp_ctx *ctx, const char *topics, const char **err);
/* 1 when Kafka sinks go to a real producer (the executable), 0 when they
 * stay in memory (the test driver). */
int sp_ctx_kafka_backed(sp_ctx *ctx);
/* Partitions of the in-memory Kafka (sp_ctx_set_partitions). */
int32_t sp_ctx_partitions(sp_ctx *ctx);

/* Windowed aggregation. Windows are [start, end) aligned to the epoch
 * (tumbling: advance = size), sliding [start, start + size] defined by
 * the records (Kafka Streams' SlidingWindows), or sessions (size is the
 * inactivity gap).
 * The accumulators live in a window store named name. Results (key: the
 * grouping key; value: JSON with window_start, window_end and each
 * aggregate by name) come as records of topic *topic after the batch's
 * records: at close (final, emit_update 0) or on every change (1), or at
 * most every emit_update ms of the wall clock when that is above 1 (the
 * changes of an interval compact into one result per window). */
enum { SP_WIN_TUMBLING = 0, SP_WIN_HOPPING = 1, SP_WIN_SLIDING = 2,
       SP_WIN_SESSION = 3 };
enum { SP_AGG_COUNT = 0, SP_AGG_SUM = 1, SP_AGG_MIN = 2, SP_AGG_MAX = 3,
       SP_AGG_AVG = 4, SP_AGG_FIRST = 5, SP_AGG_LAST = 6, SP_AGG_DISTINCT = 7,
       SP_AGG_APPROX_DISTINCT = 8, SP_AGG_CUSTOM = 9 };
int sp_window_create(sp_ctx *ctx, const char *name, int type, int64_t size,
                     int64_t advance, int64_t grace, int emit_update,
                     int32_t nagg, const int32_t *kinds,
                     const char *const *names, int32_t *topic, const char **err);
/* Adds the current record: its grouping key, event time, and each
 * aggregate's input: vals for numeric ones (NaN: none), sv/sl the bytes of
 * distinct counts' values (NULL: none; sv may be NULL without distinct
 * aggregates). Returns how many of its windows it was late for, or a
 * negative code. */
int sp_window_add(sp_ctx *ctx, int op, const char *key, size_t klen, int64_t ts,
                  const double *vals, const char *const *sv, const size_t *sl,
                  const char **err);
/* After sp_window_add: the windows the record joined (start, end, and
 * made: 1 for a window it made) up to max, returning how many there are;
 * for sessions, the starts of every session merged into the one it
 * joined (Kafka Streams merges them into a fresh accumulator). The Lua
 * side updates its own aggregates (SP_AGG_CUSTOM) there. Their
 * accumulators are entries of the companion store (id below): key = the
 * window's store key, then the byte 0x40 + the aggregate's index; value =
 * the accumulator as the Lua API stores a table. A sliding window's new
 * window is built from the records' own accumulators, kept under the
 * record's time's key and the byte 0x60 + the aggregate's index (a list,
 * in arrival order). A new sliding window may not hold the record (its
 * right window). */
int32_t sp_window_joined(sp_ctx *ctx, int64_t *starts, int64_t *ends, int32_t *made,
                         int32_t max);
int32_t sp_window_merged(sp_ctx *ctx, int64_t *starts, int32_t max);
int32_t sp_window_companion(sp_ctx *ctx, int op);
/* Stream time to infinity: every window closes at the next firing (the
 * end of a bounded run). */
void sp_ctx_close_all_windows(sp_ctx *ctx);
int sp_ctx_has_windows(sp_ctx *ctx);
/* A partition with no record for ms of wall-clock time has its stream
 * time advance with the wall clock from its last record's time, so its
 * windows close (0: off, Kafka Streams' behaviour). */
void sp_ctx_set_idle_timeout(sp_ctx *ctx, int64_t ms);

/* An ISO-8601 date or date-time ("2016-01-01T00:05:00Z", a space for the
 * T, no zone: UTC) as epoch milliseconds; 0, or -1 when it does not
 * parse. */
int sp_time_parse(const char *s, int64_t *ms);

/* A reload, at a batch boundary: forgets the sources, timers and window
 * operators of the running script; state (stores, stream times), sinks
 * and counters stay, and the new script's operators find their stores by
 * name. */
void sp_ctx_reset_topology(sp_ctx *ctx);

/* Rebalances as the test driver simulates them: every store change goes
 * to an in-memory changelog (<app>-<store>-changelog, written at each
 * batch's end by sp_store_flush_changelogs); a revoked partition's state is
 * dropped; an assigned one is restored by applying its changelog records
 * in order (val NULL: a delete). */
int sp_ctx_enable_changelogs(sp_ctx *ctx, const char *app_id, const char **err);
int sp_store_flush_changelogs(sp_ctx *ctx, const char **err);
void sp_ctx_drop_partition(sp_ctx *ctx, int32_t partition);
int sp_store_apply(sp_ctx *ctx, int store, int32_t partition, const char *key, size_t klen,
                   const char *val, size_t vlen, int64_t ts, const char **err);

/* Per-operator counters: the runtime registers each operator of the
 * pipeline (name, and the operator it follows, -1 for a source; a name
 * registered before is found again, so counts go on over reloads) and
 * counts the records that enter it in the array (at most 1024 operators;
 * -1 when full). */
int64_t *sp_ctx_op_counters(sp_ctx *ctx);
int32_t sp_ctx_operator(sp_ctx *ctx, const char *name, int32_t parent);
/* Taps (sproc tap): per operator, how many records may be sampled now
 * (the executable refills it while someone taps; 0 otherwise, so an
 * untapped operator costs one comparison). A sampled record is offered
 * with its key, value (JSON text, or bytes written as a string), time,
 * partition and offset (-1: none); the offer takes one of the count. */
int32_t *sp_ctx_op_taps(sp_ctx *ctx);
void sp_ctx_tap_offer(sp_ctx *ctx, int32_t op, const char *key, size_t klen, const char *val,
                      size_t vlen, int64_t ts, int32_t partition, int64_t offset);

/* SP_FFI_END */

#ifdef __cplusplus
}
#endif

#endif
