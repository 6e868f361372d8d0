/* Schemas of sources: the context keeps them, and a record's value is
 * replaced by its converted form, so every operator after the source
 * (field reads, select, outputs, Parquet files) sees typed values. */
#include <stdlib.h>

#include "sp_ctx.h"
#include "sp_schema.h"

int sp_schema_define(sp_ctx *ctx, const char *spec, const char **err) {
    sp_schema *s = sp_schema_create(spec, err);
    if (!s) return SP_EINVAL;
    sp_schema **t = realloc(ctx->schemas, (size_t)(ctx->nschemas + 1) * sizeof *t);
    if (!t) {
        sp_schema_destroy(s);
        *err = "out of memory";
        return SP_ENOMEM;
    }
    ctx->schemas = t;
    ctx->schemas[ctx->nschemas] = s;
    return ctx->nschemas++;
}

int sp_schema_apply(sp_ctx *ctx, int schema, const char **err) {
    int32_t cur = ctx->batch.cur;
    if (schema < 0 || schema >= ctx->nschemas) {
        *err = "no such schema";
        return SP_EINVAL;
    }
    if (cur < 0 || cur >= ctx->batch.n || ctx->json_rec[1] != cur) {
        *err = "the record's value is not parsed";
        return SP_ESTATE;
    }
    sp_rec *r = &ctx->batch.recs[cur];
    sp_schema *s = ctx->schemas[schema];
    if (sp_schema_convert(s, r->val, r->val_len, &ctx->json[1], err) != 0)
        return SP_EMALFORMED;
    sp_buf_reset(&ctx->canon);
    if (sp_schema_write_json(s, &ctx->canon) != 0) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    size_t pos;
    r->val = ctx->canon.data;
    r->val_len = ctx->canon.len;
    if (sp_json_index_parse(&ctx->json[1], r->val, r->val_len, err, &pos) != 0)
        return SP_EMALFORMED; /* cannot happen: we wrote it */
    return SP_OK;
}

void sp_ctx_destroy_schemas(sp_ctx *ctx) {
    for (int32_t i = 0; i < ctx->nschemas; i++) sp_schema_destroy(ctx->schemas[i]);
    free(ctx->schemas);
    ctx->schemas = NULL;
    ctx->nschemas = 0;
}
