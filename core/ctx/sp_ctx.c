/* sp_ctx: records in, outputs out. Everything Lua calls per record lives
 * here and stays free of Kafka client state, so the same code runs under
 * the executable, the test driver and the in-process benchmarks. */
#include "sp_ctx.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "sp_log.h"

const char *sp_version(void) { return SPROC_VERSION; }

/* The context's own fields; sp_ctx_create (engine/) composes it with the
 * subsystems' state. */
void sp_ctx_init(sp_ctx *ctx) {
    ctx->policy = SP_POLICY_FAIL;
    ctx->dlq_sink = -1;
    ctx->out_rec = -1;
    ctx->mem_partitions = 1;
    ctx->json_rec[0] = ctx->json_rec[1] = ctx->json_rec[2] = -1;
    ctx->batch.task = -1;
    sp_json_index_init(&ctx->json[0]);
    sp_json_index_init(&ctx->json[1]);
    sp_json_index_init(&ctx->json[2]);
    sp_buf_init(&ctx->joined);
    sp_buf_init(&ctx->scratch);
    sp_buf_init(&ctx->project);
    sp_buf_init(&ctx->jout[0]);
    sp_buf_init(&ctx->jout[1]);
    sp_buf_init(&ctx->canon);
    sp_buf_init(&ctx->out_mem);
}

static void free_ops(sp_ctx *ctx);

void sp_ctx_fini(sp_ctx *ctx) {
    for (int32_t i = 0; i < ctx->ntopic_specs; i++) {
        free(ctx->topic_specs[i].name);
        free(ctx->topic_specs[i].config);
    }
    free(ctx->topic_specs);
    for (int32_t i = 0; i < ctx->nsinks; i++) {
        sp_sink *s = ctx->sinks[i];
        if (s->ops && s->ops->destroy) s->ops->destroy(s);
        free(s->name);
        free(s);
    }
    free(ctx->sinks);
    sp_ctx_destroy_timers(ctx);
    sp_ctx_destroy_schemas(ctx);
    sp_ctx_destroy_avro(ctx);
    free_ops(ctx);
    sp_ctx_clear_sources(ctx);
    free(ctx->sources);
    for (int32_t i = 0; i < ctx->ntasks; i++) free(ctx->tasks[i]);
    free(ctx->topic_tasks);
    for (int32_t i = 0; i < ctx->ntopics; i++) free(ctx->topics[i]);
    free(ctx->topics);
    sp_batch_free_owned(ctx);
    free(ctx->batch.recs);
    sp_out_clear(ctx);
    free(ctx->outs);
    if (ctx->pending_hdrs) rd_kafka_headers_destroy(ctx->pending_hdrs);
    sp_json_index_destroy(&ctx->json[0]);
    sp_json_index_destroy(&ctx->json[1]);
    sp_json_index_destroy(&ctx->json[2]);
    sp_buf_destroy(&ctx->joined);
    sp_buf_destroy(&ctx->scratch);
    sp_buf_destroy(&ctx->project);
    sp_buf_destroy(&ctx->jout[0]);
    sp_buf_destroy(&ctx->jout[1]);
    sp_buf_destroy(&ctx->canon);
    sp_buf_destroy(&ctx->out_mem);
}

/* A reload forgets the running script's sources (sp_ctx_reset_topology). */
void sp_ctx_clear_sources(sp_ctx *ctx) {
    for (int32_t i = 0; i < ctx->nsources; i++) {
        free(ctx->sources[i].name);
        if (ctx->sources[i].re_ok == 1) regfree(&ctx->sources[i].re);
    }
    ctx->nsources = 0;
    for (int32_t i = 0; i < ctx->ncopart; i++) free(ctx->copart[i]);
    free(ctx->copart);
    ctx->copart = NULL;
    ctx->ncopart = 0;
    sp_ctx_forget_topic_tasks(ctx);
}

int sp_ctx_declare_topic(sp_ctx *ctx, const char *name, int32_t partitions, int32_t replication,
                         const char *config) {
    int32_t i = 0;
    /* a reload declares again: the latest declaration counts */
    while (i < ctx->ntopic_specs && strcmp(ctx->topic_specs[i].name, name) != 0) i++;
    if (i == ctx->ntopic_specs) {
        sp_topic_spec *n = realloc(ctx->topic_specs, (size_t)(i + 1) * sizeof *n);
        if (!n) return -1;
        ctx->topic_specs = n;
        n[i] = (sp_topic_spec){strdup(name), 0, 0, NULL};
        if (!n[i].name) return -1;
        ctx->ntopic_specs++;
    }
    sp_topic_spec *t = &ctx->topic_specs[i];
    free(t->config);
    t->config = strdup(config ? config : "");
    t->partitions = partitions;
    t->replication = replication;
    return t->config ? 0 : -1;
}

sp_batch *sp_ctx_batch(sp_ctx *ctx) { return &ctx->batch; }
sp_stats *sp_ctx_stats(sp_ctx *ctx) { return &ctx->stats; }
void sp_ctx_capture_stdout(sp_ctx *ctx, int on) { ctx->capture_stdout = on; }

void sp_ctx_set_partitions(sp_ctx *ctx, int32_t n) {
    ctx->mem_partitions = n > 0 ? n : 1;
}

int64_t *sp_ctx_op_counters(sp_ctx *ctx) {
    if (!ctx->ops) ctx->ops = calloc(1, sizeof *ctx->ops);
    return ctx->ops ? ctx->ops->in : NULL;
}

int32_t sp_ctx_operator(sp_ctx *ctx, const char *name, int32_t parent) {
    if (!sp_ctx_op_counters(ctx)) return -1;
    sp_opstats *o = ctx->ops;
    /* a reloaded pipeline's operator of the same name counts on */
    for (int32_t i = 0; i < o->n; i++)
        if (strcmp(o->name[i], name) == 0) {
            o->parent[i] = parent;
            return i;
        }
    if (o->n == SP_MAX_OPERATORS) return -1;
    if (!(o->name[o->n] = strdup(name))) return -1;
    o->parent[o->n] = parent;
    return o->n++;
}

int32_t *sp_ctx_op_taps(sp_ctx *ctx) {
    return sp_ctx_op_counters(ctx) ? ctx->ops->taps : NULL;
}

void sp_ctx_tap_offer(sp_ctx *ctx, int32_t op, const char *key, size_t klen, const char *val,
                      size_t vlen, int64_t ts, int32_t partition, int64_t offset) {
    sp_opstats *o = ctx->ops;
    if (!o || op < 0 || op >= o->n || o->taps[op] <= 0) return;
    o->taps[op]--;
    if (!o->on_tap) return;
    sp_buf *b = &o->line;
    sp_json_index ix;
    const char *err;
    size_t pos;
    sp_buf_reset(b);
    int rc = sp_buf_append(b, "{\"operator\":", 12) | sp_json_write_string(b, o->name[op], strlen(o->name[op])) |
             sp_buf_append(b, ",\"key\":", 7);
    rc |= key ? sp_json_write_text(b, key, klen) : sp_buf_append(b, "null", 4);
    rc |= sp_buf_append(b, ",\"value\":", 9);
    /* JSON text as it is; other bytes as a string */
    sp_json_index_init(&ix);
    if (!val) rc |= sp_buf_append(b, "null", 4);
    else if (vlen && sp_json_index_parse(&ix, val, vlen, &err, &pos) == 0) rc |= sp_json_append_line(b, val, vlen);
    else rc |= sp_json_write_text(b, val, vlen);
    sp_json_index_destroy(&ix);
    rc |= sp_buf_append(b, ",\"ts\":", 6) | sp_json_write_int(b, ts) |
          sp_buf_append(b, ",\"partition\":", 13) | sp_json_write_int(b, partition) |
          sp_buf_append(b, ",\"offset\":", 10) | sp_json_write_int(b, offset) | sp_buf_append(b, "}\n", 2);
    if (rc == 0) o->on_tap(o->tap_opaque, op, b->data, b->len);
}

static void free_ops(sp_ctx *ctx) {
    if (!ctx->ops) return;
    sp_buf_destroy(&ctx->ops->line);
    for (int32_t i = 0; i < ctx->ops->n; i++) free(ctx->ops->name[i]);
    free(ctx->ops);
    ctx->ops = NULL;
}

int32_t sp_source_count(sp_ctx *ctx) { return ctx->nsources; }

void sp_ctx_forget_topic_tasks(sp_ctx *ctx) { ctx->ntopic_tasks = 0; }

int sp_ctx_kafka_backed(sp_ctx *ctx) { return ctx->kafka.open != NULL; }
int32_t sp_ctx_partitions(sp_ctx *ctx) { return ctx->mem_partitions > 0 ? ctx->mem_partitions : 1; }

/* --- sinks --- */

sp_sink *sp_ctx_sink(sp_ctx *ctx, int id) {
    if (id < 0 || id >= ctx->nsinks) return NULL;
    return ctx->sinks[id];
}

int sp_ctx_add_sink(sp_ctx *ctx, sp_sink *s, const char **err) {
    sp_sink **t = realloc(ctx->sinks, (ctx->nsinks + 1) * sizeof *t);
    if (!t) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    ctx->sinks = t;
    t[ctx->nsinks] = s;
    return ctx->nsinks++;
}

void sp_ctx_sinks_assigned(sp_ctx *ctx) {
    for (int32_t i = 0; i < ctx->nsinks; i++)
        if (ctx->sinks[i]->ops && ctx->sinks[i]->ops->assigned)
            ctx->sinks[i]->ops->assigned(ctx->sinks[i]);
}

/* --- JSON --- */

/* --- test driver side --- */

int32_t sp_out_count(sp_ctx *ctx) { return ctx->nouts; }

int sp_ctx_flush_sinks(sp_ctx *ctx, int force, const char **err) {
    int rc = SP_OK;
    for (int32_t i = 0; i < ctx->nsinks && rc == SP_OK; i++) {
        sp_sink *s = ctx->sinks[i];
        if (s->ops->flush) rc = s->ops->flush(s, force, err);
    }
    return rc;
}

int sp_ctx_flush(sp_ctx *ctx, const char **err) {
    return sp_ctx_flush_sinks(ctx, 1, err);
}

void sp_log_line(int level, const char *msg) {
    if (level < SP_LOG_ERROR) level = SP_LOG_ERROR;
    if (level > SP_LOG_DEBUG) level = SP_LOG_DEBUG;
    sp_log(level, "%s", msg);
}

void sp_log_record(sp_ctx *ctx, int level, int32_t rec, const char *msg) {
    if (level < SP_LOG_ERROR) level = SP_LOG_ERROR;
    if (level > SP_LOG_DEBUG) level = SP_LOG_DEBUG;
    if (rec < 0 || rec >= ctx->batch.n) {
        sp_log(level, "%s", msg);
        return;
    }
    const sp_rec *r = &ctx->batch.recs[rec];
    char part[16], off[24];
    snprintf(part, sizeof part, "%" PRId32, r->partition);
    snprintf(off, sizeof off, "%" PRId64, r->offset);
    const char *topic = r->topic >= 0 && r->topic < ctx->ntopics ? ctx->topics[r->topic] : "";
    /* the core's own records (timers, window results) have no offset */
    const char *kv[] = {"topic", topic, "partition", part, r->offset >= 0 ? "offset" : NULL, off, NULL};
    sp_log_kv(level, kv, "%s", msg);
}

int32_t sp_partition_for(const char *key, size_t len, int32_t partitions) {
    if (partitions <= 0) return 0;
    /* librdkafka's murmur2 partitioner is the Java client's algorithm; it
     * only hashes, so no topic handle is needed. */
    return rd_kafka_msg_partitioner_murmur2(NULL, key, len, partitions, NULL,
                                            NULL);
}
