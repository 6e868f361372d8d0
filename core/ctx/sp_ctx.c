/* sp_ctx: records in, outputs out. Everything Lua calls per record lives
 * here and stays free of Kafka client state, so the same code runs under
 * the executable, the test driver and the in-process benchmarks. */
#include "sp_ctx.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "sp_log.h"

const char *sp_version(void) { return SPROC_VERSION; }

static void free_owned(sp_ctx *ctx) {
    sp_owned *o = ctx->owned;
    while (o) {
        sp_owned *next = o->next;
        if (o->hdrs) rd_kafka_headers_destroy(o->hdrs);
        free(o);
        o = next;
    }
    ctx->owned = NULL;
}

/* The context's own fields; sp_ctx_create (engine/) composes it with the
 * subsystems' state. */
void sp_ctx_init(sp_ctx *ctx) {
    ctx->policy = SP_POLICY_FAIL;
    ctx->dlq_sink = -1;
    ctx->out_rec = -1;
    ctx->mem_partitions = 1;
    ctx->json_rec[0] = ctx->json_rec[1] = -1;
    ctx->batch.task = -1;
    sp_json_index_init(&ctx->json[0]);
    sp_json_index_init(&ctx->json[1]);
    sp_buf_init(&ctx->scratch);
    sp_buf_init(&ctx->project);
    sp_buf_init(&ctx->canon);
    sp_buf_init(&ctx->out_mem);
}

static void free_ops(sp_ctx *ctx);

void sp_ctx_fini(sp_ctx *ctx) {
    for (int32_t i = 0; i < ctx->nsinks; i++) {
        sp_sink *s = ctx->sinks[i];
        if (s->ops && s->ops->destroy) s->ops->destroy(s);
        free(s->name);
        free(s);
    }
    free(ctx->sinks);
    sp_ctx_destroy_timers(ctx);
    sp_ctx_destroy_schemas(ctx);
    free_ops(ctx);
    sp_ctx_clear_sources(ctx);
    free(ctx->sources);
    for (int32_t i = 0; i < ctx->ntasks; i++) free(ctx->tasks[i]);
    free(ctx->topic_tasks);
    for (int32_t i = 0; i < ctx->ntopics; i++) free(ctx->topics[i]);
    free(ctx->topics);
    free_owned(ctx);
    free(ctx->batch.recs);
    sp_out_clear(ctx);
    free(ctx->outs);
    if (ctx->pending_hdrs) rd_kafka_headers_destroy(ctx->pending_hdrs);
    sp_json_index_destroy(&ctx->json[0]);
    sp_json_index_destroy(&ctx->json[1]);
    sp_buf_destroy(&ctx->scratch);
    sp_buf_destroy(&ctx->project);
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
    sp_ctx_forget_topic_tasks(ctx);
}

sp_batch *sp_ctx_batch(sp_ctx *ctx) { return &ctx->batch; }
sp_stats *sp_ctx_stats(sp_ctx *ctx) { return &ctx->stats; }
void sp_ctx_capture_stdout(sp_ctx *ctx, int on) { ctx->capture_stdout = on; }

void sp_ctx_set_partitions(sp_ctx *ctx, int32_t n) {
    ctx->mem_partitions = n > 0 ? n : 1;
}

int32_t sp_topic_id(sp_ctx *ctx, const char *name) {
    for (int32_t i = 0; i < ctx->ntopics; i++)
        if (strcmp(ctx->topics[i], name) == 0) return i;
    char **t = realloc(ctx->topics, (ctx->ntopics + 1) * sizeof *t);
    if (!t) return SP_ENOMEM;
    ctx->topics = t;
    if (!(t[ctx->ntopics] = strdup(name))) return SP_ENOMEM;
    return ctx->ntopics++;
}

const char *sp_topic_name(sp_ctx *ctx, int32_t id) {
    if (id < 0 || id >= ctx->ntopics) return NULL;
    return ctx->topics[id];
}

static int add_source(sp_ctx *ctx, int kind, const char *name,
                      const char **err) {
    int32_t topic = sp_topic_id(ctx, name);
    sp_source *s = realloc(ctx->sources, (ctx->nsources + 1) * sizeof *s);
    if (topic < 0 || !s) {
        if (s) ctx->sources = s;
        *err = "out of memory";
        return SP_ENOMEM;
    }
    ctx->sources = s;
    s[ctx->nsources].kind = kind;
    s[ctx->nsources].name = strdup(name);
    s[ctx->nsources].topic = topic;
    s[ctx->nsources].re_ok = 0;
    s[ctx->nsources].internal = 0;
    s[ctx->nsources].task = sp_ctx_task(ctx, name);
    if (!s[ctx->nsources].name || s[ctx->nsources].task == SP_ENOMEM) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    ctx->nsources++;
    sp_ctx_forget_topic_tasks(ctx);
    return topic;
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

static void free_ops(sp_ctx *ctx) {
    if (!ctx->ops) return;
    for (int32_t i = 0; i < ctx->ops->n; i++) free(ctx->ops->name[i]);
    free(ctx->ops);
    ctx->ops = NULL;
}

int sp_topic_internal(sp_ctx *ctx, int32_t topic) {
    for (int32_t i = 0; i < ctx->nsources; i++)
        if (ctx->sources[i].internal && ctx->sources[i].topic == topic) return 1;
    return 0;
}

int sp_ctx_add_source(sp_ctx *ctx, int kind, const char *name, const char **err) {
    return add_source(ctx, kind, name, err);
}

int32_t sp_source_count(sp_ctx *ctx) { return ctx->nsources; }

int sp_source_set_task(sp_ctx *ctx, int32_t source, int32_t task, const char **err) {
    if (source < 0 || source >= ctx->nsources || task < 0 || task >= ctx->ntasks) {
        *err = task == SP_EINVAL ? "too many sources (63 at most)" : "no such source or task";
        return SP_EINVAL;
    }
    ctx->sources[source].task = task;
    sp_ctx_forget_topic_tasks(ctx);
    return SP_OK;
}

void sp_ctx_forget_topic_tasks(sp_ctx *ctx) { ctx->ntopic_tasks = 0; }

int sp_source_internal(sp_ctx *ctx, const char *topic, const char **err) {
    int t = add_source(ctx, 0, topic, err);
    if (t >= 0) ctx->sources[ctx->nsources - 1].internal = 1;
    /* what goes there is not an output either */
    for (int32_t i = 0; t >= 0 && i < ctx->nsinks; i++)
        if (strcmp(ctx->sinks[i]->name, topic) == 0) ctx->sinks[i]->internal = 1;
    return t;
}

int sp_ctx_kafka_backed(sp_ctx *ctx) { return ctx->kafka.open != NULL; }
int32_t sp_ctx_partitions(sp_ctx *ctx) { return ctx->mem_partitions > 0 ? ctx->mem_partitions : 1; }

int sp_source_kafka(sp_ctx *ctx, const char *topic, int is_pattern,
                    const char **err) {
    if (!topic || !*topic) {
        *err = "a Kafka source needs a topic";
        return SP_EINVAL;
    }
    return add_source(ctx, is_pattern ? 1 : 0, topic, err);
}

int sp_source_file(sp_ctx *ctx, const char *path, const char **err) {
    if (!path || !*path) {
        *err = "a file source needs a path";
        return SP_EINVAL;
    }
    return add_source(ctx, 2, path, err);
}

int sp_source_timer(sp_ctx *ctx, int64_t every_ms, int wall, const char **err) {
    char name[64];
    if (every_ms <= 0) {
        *err = "a timer needs every > 0 milliseconds";
        return SP_EINVAL;
    }
    snprintf(name, sizeof name, "[timer %d]", ctx->ntimers + 1);
    int topic = add_source(ctx, 3, name, err);
    if (topic < 0) return topic;
    int rc = sp_ctx_timer_add(ctx, topic, every_ms, wall, err);
    return rc < 0 ? rc : topic;
}

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

/* records_out counts records that gave output, once each however many
 * outputs they gave, so that in = out + filtered + skipped +
 * dead-lettered for records that reach a sink (a window's results are
 * records of their own). */
static void count_out(sp_ctx *ctx, const sp_msg *m) {
    int32_t cur = ctx->batch.cur;
    if (cur >= 0 && cur == ctx->out_rec) return;
    ctx->out_rec = cur;
    ctx->stats.records_out++;
    if (m->in && m->in->slot) ((sp_slot *)m->in->slot)->counted = 1;
}

int sp_ctx_write(sp_ctx *ctx, int sink, sp_msg *m, const char **err) {
    sp_sink *s = sp_ctx_sink(ctx, sink);
    if (!s) {
        if (m->hdrs) rd_kafka_headers_destroy(m->hdrs);
        *err = "no such sink";
        return SP_EINVAL;
    }
    int rc = s->ops->write(s, m, err);
    if (rc == SP_OK && !s->internal) count_out(ctx, m);
    return rc;
}

void sp_ctx_record_failed(sp_ctx *ctx, int32_t rec) {
    if (rec < 0 || rec != ctx->out_rec) return;
    ctx->stats.records_out--;
    ctx->out_rec = -1;
    sp_slot *sl = rec < ctx->batch.n ? ctx->batch.recs[rec].slot : NULL;
    if (sl) sl->counted = 0;
}

static sp_rec *current(sp_ctx *ctx) {
    if (ctx->batch.cur < 0 || ctx->batch.cur >= ctx->batch.n) return NULL;
    return &ctx->batch.recs[ctx->batch.cur];
}

/* A consumed record's headers are parsed when first needed: librdkafka
 * parses them on every call (an allocation even when there are none), and
 * most records never need them. */
static rd_kafka_headers_t *rec_headers(sp_rec *r) {
    if (r->kmsg) {
        rd_kafka_headers_t *h = NULL;
        if (rd_kafka_message_headers(r->kmsg, &h) == 0 && rd_kafka_header_cnt(h) > 0)
            r->hdrs = h;
        r->kmsg = NULL;
    }
    return r->hdrs;
}

int sp_emit_header(sp_ctx *ctx, const char *name, size_t name_len,
                   const char *val, size_t val_len, const char **err) {
    if (!ctx->pending_hdrs && !(ctx->pending_hdrs = rd_kafka_headers_new(4))) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    rd_kafka_header_add(ctx->pending_hdrs, name, (ssize_t)name_len, val,
                        (ssize_t)val_len);
    return SP_OK;
}

int sp_emit(sp_ctx *ctx, int sink, const char *key, size_t key_len,
            const char *val, size_t val_len, int64_t ts, int fwd_headers,
            const char **err) {
    sp_rec *r = current(ctx);
    sp_msg m = {key, val, key_len, val_len, ts, NULL, r ? r->seg : NULL, -1,
                r && r->offset >= 0 ? r : NULL};
    rd_kafka_headers_t *in = r && fwd_headers ? rec_headers(r) : NULL;
    if (fwd_headers && in) {
        m.hdrs = rd_kafka_headers_copy(in);
        if (ctx->pending_hdrs) {
            const char *n;
            const void *v;
            size_t vl;
            for (size_t i = 0;
                 !rd_kafka_header_get_all(ctx->pending_hdrs, i, &n, &v, &vl);
                 i++)
                rd_kafka_header_add(m.hdrs, n, -1, v, (ssize_t)vl);
            rd_kafka_headers_destroy(ctx->pending_hdrs);
        }
    } else {
        m.hdrs = ctx->pending_hdrs;
    }
    ctx->pending_hdrs = NULL;
    return sp_ctx_write(ctx, sink, &m, err);
}

int sp_emit_rec(sp_ctx *ctx, int sink, int has_ts, int64_t ts, int fwd_headers,
                const char **err) {
    sp_rec *r = current(ctx);
    if (!r) {
        *err = "no record is being processed";
        return SP_ESTATE;
    }
    return sp_emit(ctx, sink, r->key, r->key_len, r->val, r->val_len,
                   has_ts ? ts : r->ts, fwd_headers, err);
}

rd_kafka_headers_t *sp_ctx_dead_letter_headers(sp_ctx *ctx,
                                              const rd_kafka_headers_t *in,
                                              const char *why, size_t why_len,
                                              const char *topic,
                                              int32_t partition,
                                              int64_t offset, int64_t ts) {
    (void)ctx;
    rd_kafka_headers_t *h = in ? rd_kafka_headers_copy(in)
                               : rd_kafka_headers_new(4);
    char num[32];
    if (!h) return NULL;
    rd_kafka_header_add(h, "sproc.error", -1, why, (ssize_t)why_len);
    if (topic) rd_kafka_header_add(h, "sproc.source.topic", -1, topic, -1);
    snprintf(num, sizeof num, "%" PRId32, partition);
    rd_kafka_header_add(h, "sproc.source.partition", -1, num, -1);
    snprintf(num, sizeof num, "%" PRId64, offset);
    rd_kafka_header_add(h, "sproc.source.offset", -1, num, -1);
    /* also the record's own timestamp: a dead letter sent again (too large
     * for its topic) has lost it */
    snprintf(num, sizeof num, "%" PRId64, ts);
    rd_kafka_header_add(h, "sproc.source.timestamp", -1, num, -1);
    return h;
}

int sp_dead_letter(sp_ctx *ctx, int32_t rec, const char *why, size_t why_len,
                   const char **err) {
    if (ctx->dlq_sink < 0) {
        *err = "no dead-letter topic configured";
        return SP_ESTATE;
    }
    if (rec < 0 || rec >= ctx->batch.n) {
        *err = "no such record";
        return SP_EINVAL;
    }
    sp_rec *r = &ctx->batch.recs[rec];
    sp_msg m = {r->key, r->val, r->key_len, r->val_len, r->ts, NULL, r->seg, -1, r};
    sp_sink *dlq = sp_ctx_sink(ctx, ctx->dlq_sink);
    for (int pass = 0; pass < 2; pass++) {
        m.hdrs = sp_ctx_dead_letter_headers(ctx, rec_headers(r), why, why_len,
                                            sp_topic_name(ctx, r->topic), r->partition,
                                            r->offset, r->ts);
        /* a dead letter is not an output */
        int rc = dlq->ops->write(dlq, &m, err);
        if (rc == SP_OK) {
            ctx->stats.dead_lettered++;
            return SP_OK;
        }
        /* too large for the dead-letter topic too: the error and the
         * coordinates without the value (it is still in its topic) */
        if (!m.val_len) return rc;
        m.val = NULL;
        m.val_len = 0;
    }
    return SP_EIO;
}

int sp_rec_header(sp_ctx *ctx, int32_t rec, int32_t i, const char **name,
                  const char **val, size_t *val_len) {
    if (rec < 0 || rec >= ctx->batch.n || i < 0 || !rec_headers(&ctx->batch.recs[rec]))
        return 1;
    const void *v;
    if (rd_kafka_header_get_all(ctx->batch.recs[rec].hdrs, (size_t)i, name,
                                &v, val_len))
        return 1;
    *val = v;
    return 0;
}

/* --- JSON --- */

int sp_rec_json(sp_ctx *ctx, int32_t rec, int32_t which, size_t *err_pos,
                const char **err) {
    if (rec < 0 || rec >= ctx->batch.n || which < 0 || which > 1) {
        *err = "no such record";
        return SP_EINVAL;
    }
    sp_rec *r = &ctx->batch.recs[rec];
    const char *p = which ? r->val : r->key;
    size_t len = which ? r->val_len : r->key_len;
    ctx->json_rec[which] = -1;
    if (!p) {
        ctx->json[which].n = 0;
        ctx->json[which].root_type = SP_JSON_NULL;
        ctx->json_rec[which] = rec;
        return SP_OK;
    }
    *err_pos = 0;
    if (sp_json_index_parse(&ctx->json[which], p, len, err, err_pos) != 0)
        return SP_EMALFORMED;
    ctx->json_rec[which] = rec;
    return SP_OK;
}

int sp_json_get(sp_ctx *ctx, int32_t which, const char *name,
                  size_t name_len, sp_field *out) {
    out->type = SP_JSON_MISSING;
    if (which < 0 || which > 1 || ctx->json_rec[which] < 0) return SP_ESTATE;
    int i = sp_json_index_find(&ctx->json[which], name, name_len);
    if (i < 0) return SP_OK;
    const sp_json_field *f = &ctx->json[which].fields[i];
    out->p = f->val;
    out->len = f->val_len;
    out->type = f->type;
    out->escaped = f->val_escaped;
    return SP_OK;
}

int sp_json_project(sp_ctx *ctx, int32_t which, const char *const *names,
                    const size_t *name_lens, int32_t n, const char **out,
                    size_t *out_len) {
    if (which < 0 || which > 1 || ctx->json_rec[which] < 0) return SP_ESTATE;
    sp_buf *b = &ctx->project;
    const sp_json_index *ix = &ctx->json[which];
    int rc = 0;
    sp_buf_reset(b);
    rc |= sp_buf_putc(b, '{');
    for (int32_t i = 0; i < n; i++) {
        if (i) rc |= sp_buf_putc(b, ',');
        rc |= sp_json_write_string(b, names[i], name_lens[i]);
        rc |= sp_buf_putc(b, ':');
        int f = sp_json_index_find(ix, names[i], name_lens[i]);
        if (f < 0) {
            rc |= sp_buf_append(b, "null", 4);
        } else if (ix->fields[f].type == SP_JSON_STRING) {
            /* the index points between the quotes; escapes stay as they are */
            rc |= sp_buf_putc(b, '"');
            rc |= sp_buf_append(b, ix->fields[f].val, ix->fields[f].val_len);
            rc |= sp_buf_putc(b, '"');
        } else {
            rc |= sp_buf_append(b, ix->fields[f].val, ix->fields[f].val_len);
        }
    }
    rc |= sp_buf_putc(b, '}');
    if (rc) return SP_ENOMEM;
    *out = b->data;
    *out_len = b->len;
    return SP_OK;
}

int32_t sp_json_root(sp_ctx *ctx, int32_t which) {
    if (which < 0 || which > 1 || ctx->json_rec[which] < 0) return 0;
    return ctx->json[which].root_type;
}

const char *sp_json_unescaped(sp_ctx *ctx, const char *p, size_t len,
                              size_t *out_len) {
    sp_buf_reset(&ctx->scratch);
    if (sp_buf_reserve(&ctx->scratch, len + 1) != 0) {
        *out_len = 0;
        return NULL;
    }
    *out_len = sp_json_unescape(p, len, ctx->scratch.data);
    return ctx->scratch.data;
}

double sp_json_to_number(const char *p, size_t len) {
    return sp_json_number(p, len);
}

/* --- test driver side --- */

sp_rec *sp_ctx_batch_add(sp_ctx *ctx) {
    if (ctx->batch.n == ctx->cap) {
        int32_t cap = ctx->cap ? ctx->cap * 2 : 64;
        sp_rec *r = realloc(ctx->batch.recs, (size_t)cap * sizeof *r);
        if (!r) return NULL;
        ctx->batch.recs = r;
        ctx->cap = cap;
    }
    sp_rec *r = &ctx->batch.recs[ctx->batch.n++];
    memset(r, 0, sizeof *r);
    return r;
}

int sp_batch_reset(sp_ctx *ctx) {
    free_owned(ctx);
    ctx->batch.n = 0;
    ctx->batch.cur = -1;
    ctx->out_rec = -1;
    ctx->scanned = 0;
    ctx->json_rec[0] = ctx->json_rec[1] = -1;
    return SP_OK;
}

int sp_batch_push(sp_ctx *ctx, int32_t topic, int32_t partition,
                  int64_t offset, const char *key, size_t key_len,
                  const char *val, size_t val_len, int64_t ts,
                  const char **err) {
    sp_owned *o = malloc(sizeof *o + key_len + val_len);
    sp_rec *r = o ? sp_ctx_batch_add(ctx) : NULL;
    if (!r) {
        free(o);
        *err = "out of memory";
        return SP_ENOMEM;
    }
    char *mem = (char *)(o + 1);
    o->hdrs = NULL;
    o->next = ctx->owned;
    ctx->owned = o;
    if (key_len) memcpy(mem, key, key_len);
    if (val_len) memcpy(mem + key_len, val, val_len);
    r->key = key ? mem : NULL;
    r->key_len = key ? key_len : 0;
    r->val = val ? mem + key_len : NULL;
    r->val_len = val ? val_len : 0;
    r->ts = ts;
    r->offset = offset;
    r->partition = partition;
    r->topic = topic;
    r->owner = o;
    return SP_OK;
}

int sp_batch_push_header(sp_ctx *ctx, const char *name, const char *val,
                         size_t val_len, const char **err) {
    if (ctx->batch.n == 0) {
        *err = "no record to add a header to";
        return SP_ESTATE;
    }
    sp_rec *r = &ctx->batch.recs[ctx->batch.n - 1];
    sp_owned *o = r->owner;
    if (!o->hdrs && !(o->hdrs = rd_kafka_headers_new(4))) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    rd_kafka_header_add(o->hdrs, name, -1, val, (ssize_t)val_len);
    r->hdrs = o->hdrs;
    return SP_OK;
}

int32_t sp_out_count(sp_ctx *ctx) { return ctx->nouts; }

int sp_out_get(sp_ctx *ctx, int32_t i, sp_out *out) {
    if (i < 0 || i >= ctx->nouts) return SP_EINVAL;
    sp_captured *c = &ctx->outs[i];
    *out = c->out;
    if (c->out.key) out->key = ctx->out_mem.data + c->key_off;
    if (c->out.val) out->val = ctx->out_mem.data + c->val_off;
    /* the partition a Java producer picks: worked out when asked for */
    if (out->partition < 0)
        out->partition = out->key ? sp_partition_for(out->key, out->key_len, ctx->mem_partitions) : 0;
    return SP_OK;
}

int sp_out_header(sp_ctx *ctx, int32_t i, int32_t h, const char **name,
                  const char **val, size_t *val_len) {
    if (i < 0 || i >= ctx->nouts || !ctx->outs[i].hdrs || h < 0) return 1;
    const void *v;
    if (rd_kafka_header_get_all(ctx->outs[i].hdrs, (size_t)h, name, &v,
                                val_len))
        return 1;
    *val = v;
    return 0;
}

void sp_out_clear(sp_ctx *ctx) {
    for (int32_t i = 0; i < ctx->nouts; i++) {
        if (ctx->outs[i].hdrs) rd_kafka_headers_destroy(ctx->outs[i].hdrs);
    }
    ctx->nouts = 0;
    sp_buf_reset(&ctx->out_mem);
}

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

int sp_source_matches(sp_ctx *ctx, int32_t source, int32_t topic) {
    const char *name = sp_topic_name(ctx, topic);
    if (!name || source < 0 || source >= ctx->nsources) return 0;
    sp_source *s = &ctx->sources[source];
    if (s->kind != 1) return s->topic == topic;
    /* Kafka matches a subscription pattern against the whole name. */
    if (!s->re_ok) {
        size_t n = strlen(s->name) + 8;
        char *anchored = malloc(n);
        if (!anchored) return 0;
        snprintf(anchored, n, "^(%s)$", s->name);
        s->re_ok = regcomp(&s->re, anchored, REG_EXTENDED | REG_NOSUB) == 0 ? 1 : -1;
        free(anchored);
    }
    return s->re_ok == 1 && regexec(&s->re, name, 0, NULL, 0) == 0;
}

int32_t sp_source_for(sp_ctx *ctx, int32_t topic) {
    for (int32_t i = 0; i < ctx->nsources; i++)
        if (sp_source_matches(ctx, i, topic)) return i;
    return -1;
}

int32_t sp_partition_for(const char *key, size_t len, int32_t partitions) {
    if (partitions <= 0) return 0;
    /* librdkafka's murmur2 partitioner is the Java client's algorithm; it
     * only hashes, so no topic handle is needed. */
    return rd_kafka_msg_partitioner_murmur2(NULL, key, len, partitions, NULL,
                                            NULL);
}
