/* The in-memory Kafka sink: what the test driver and in-process runs read
 * back. It picks partitions as a Java producer would, so specs can assert
 * on them. */
#include <stdlib.h>

#include "sp_ctx.h"
#include "sp_sink.h"

static int mem_write(sp_sink *s, sp_msg *m, const char **err) {
    sp_ctx *ctx = s->ctx;
    if (ctx->nouts == ctx->outs_cap) {
        int32_t cap = ctx->outs_cap ? ctx->outs_cap * 2 : 64;
        sp_captured *o = realloc(ctx->outs, (size_t)cap * sizeof *o);
        if (!o) goto oom;
        ctx->outs = o;
        ctx->outs_cap = cap;
    }
    /* one buffer for all outputs' bytes: no allocation per output */
    size_t at = ctx->out_mem.len;
    if (sp_buf_append(&ctx->out_mem, m->key, m->key ? m->key_len : 0) != 0 ||
        sp_buf_append(&ctx->out_mem, m->val, m->val ? m->val_len : 0) != 0)
        goto oom;
    sp_captured *c = &ctx->outs[ctx->nouts++];
    c->hdrs = m->hdrs;
    c->key_off = at;
    c->val_off = at + (m->key ? m->key_len : 0);
    c->out.topic = s->name;
    c->out.key = m->key ? "" : NULL; /* set when read (sp_out_get) */
    c->out.key_len = m->key ? m->key_len : 0;
    c->out.val = m->val ? "" : NULL;
    c->out.val_len = m->val ? m->val_len : 0;
    c->out.ts = m->ts;
    c->out.partition = m->partition >= 0 ? m->partition : -1;
    c->out.nhdrs = m->hdrs ? (int32_t)rd_kafka_header_cnt(m->hdrs) : 0;
    return SP_OK;
oom:
    if (m->hdrs) rd_kafka_headers_destroy(m->hdrs);
    *err = "out of memory";
    return SP_ENOMEM;
}

static const sp_sink_ops mem_ops = {"kafka", mem_write, NULL, NULL, NULL};

int sp_sink_mem_open(sp_sink *s, const char **err) {
    (void)err;
    s->ops = &mem_ops;
    return SP_OK;
}
