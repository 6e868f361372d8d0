/* The batch: records pushed in (by the runner, the test driver, timers
 * and windows), read by Lua through views of their bytes, their headers
 * and the field index of their JSON; and the outputs kept in memory for
 * the test driver. */
#include "sp_ctx.h"

#include <stdlib.h>
#include <string.h>

/* Frees what the batch's records owned (their parsed headers). */
void sp_batch_free_owned(sp_ctx *ctx) {
    sp_owned *o = ctx->owned;
    while (o) {
        sp_owned *next = o->next;
        if (o->hdrs) rd_kafka_headers_destroy(o->hdrs);
        free(o);
        o = next;
    }
    ctx->owned = NULL;
}

/* A consumed record's headers are parsed when first needed: librdkafka
 * parses them on every call (an allocation even when there are none), and
 * most records never need them. */
rd_kafka_headers_t *sp_batch_headers(sp_rec *r) {
    if (r->kmsg) {
        rd_kafka_headers_t *h = NULL;
        if (rd_kafka_message_headers(r->kmsg, &h) == 0 && rd_kafka_header_cnt(h) > 0)
            r->hdrs = h;
        r->kmsg = NULL;
    }
    return r->hdrs;
}

int sp_rec_header(sp_ctx *ctx, int32_t rec, int32_t i, const char **name,
                  const char **val, size_t *val_len) {
    if (rec < 0 || rec >= ctx->batch.n || i < 0 || !sp_batch_headers(&ctx->batch.recs[rec]))
        return 1;
    const void *v;
    if (rd_kafka_header_get_all(ctx->batch.recs[rec].hdrs, (size_t)i, name,
                                &v, val_len))
        return 1;
    *val = v;
    return 0;
}

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

int32_t sp_json_parse_joined(sp_ctx *ctx, const char *p, size_t len) {
    const char *err;
    size_t pos;
    ctx->json_rec[2] = -1;
    /* a copy: the store's bytes may move before the view is read */
    sp_buf_reset(&ctx->joined);
    if (sp_buf_append(&ctx->joined, p, len) != 0) return SP_ENOMEM;
    if (sp_json_index_parse(&ctx->json[2], ctx->joined.data, len, &err, &pos) != 0)
        return SP_EMALFORMED;
    ctx->json_rec[2] = 0;
    return ctx->json[2].root_type;
}

int sp_json_get(sp_ctx *ctx, int32_t which, const char *name,
                  size_t name_len, sp_field *out) {
    out->type = SP_JSON_MISSING;
    if (which < 0 || which > 2 || ctx->json_rec[which] < 0) return SP_ESTATE;
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
    if (which < 0 || which > 2 || ctx->json_rec[which] < 0) return SP_ESTATE;
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
    if (which < 0 || which > 2 || ctx->json_rec[which] < 0) return 0;
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

sp_rec *sp_batch_add(sp_ctx *ctx) {
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
    sp_batch_free_owned(ctx);
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
    sp_rec *r = o ? sp_batch_add(ctx) : NULL;
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
