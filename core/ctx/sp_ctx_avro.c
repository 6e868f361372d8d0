/* Avro records in the Confluent wire format: a zero byte, the schema's
 * id (4 bytes, big-endian), the datum. Schemas are kept by id, fetched
 * from the registry the executable reaches (sp_ctx.registry) the first
 * time an id is seen, or added by the test driver; a sink's schema is
 * registered once under its subject for its id. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_avro.h"
#include "sp_ctx.h"

typedef struct avro_entry {
    int32_t id;
    sp_avro_schema *schema;
    char *subject, *text; /* registered here without a registry (the driver) */
} avro_entry;

struct sp_avro_cache {
    avro_entry *e;
    int32_t n, cap;
    sp_buf dec[2], enc, fetched;
    char err[512];
};

static struct sp_avro_cache *cache_of(sp_ctx *ctx) {
    if (!ctx->avro) {
        ctx->avro = calloc(1, sizeof *ctx->avro);
        if (ctx->avro) {
            sp_buf_init(&ctx->avro->dec[0]);
            sp_buf_init(&ctx->avro->dec[1]);
            sp_buf_init(&ctx->avro->enc);
            sp_buf_init(&ctx->avro->fetched);
        }
    }
    return ctx->avro;
}

void sp_ctx_destroy_avro(sp_ctx *ctx) {
    struct sp_avro_cache *c = ctx->avro;
    if (!c) return;
    for (int32_t i = 0; i < c->n; i++) {
        sp_avro_destroy(c->e[i].schema);
        free(c->e[i].subject);
        free(c->e[i].text);
    }
    free(c->e);
    sp_buf_destroy(&c->dec[0]);
    sp_buf_destroy(&c->dec[1]);
    sp_buf_destroy(&c->enc);
    sp_buf_destroy(&c->fetched);
    free(c);
    ctx->avro = NULL;
}

static avro_entry *find(struct sp_avro_cache *c, int32_t id) {
    for (int32_t i = 0; i < c->n; i++)
        if (c->e[i].id == id) return &c->e[i];
    return NULL;
}

static avro_entry *add(struct sp_avro_cache *c, int32_t id, const char *json, size_t len,
                       const char **err) {
    sp_avro_schema *s;
    if (sp_avro_parse(json, len, &s, c->err, sizeof c->err) != 0) {
        *err = c->err;
        return NULL;
    }
    if (c->n == c->cap) {
        int32_t cap = c->cap ? c->cap * 2 : 8;
        avro_entry *e = realloc(c->e, (size_t)cap * sizeof *e);
        if (!e) {
            sp_avro_destroy(s);
            *err = "out of memory";
            return NULL;
        }
        c->e = e;
        c->cap = cap;
    }
    avro_entry *e = &c->e[c->n++];
    memset(e, 0, sizeof *e);
    e->id = id;
    e->schema = s;
    return e;
}

int sp_avro_add_schema(sp_ctx *ctx, int32_t id, const char *json, size_t len, const char **err) {
    struct sp_avro_cache *c = cache_of(ctx);
    if (!c) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    if (find(c, id)) return SP_OK;
    return add(c, id, json, len, err) ? SP_OK : SP_EINVAL;
}

/* The schema of id, fetched when it is new. */
static avro_entry *schema_of(sp_ctx *ctx, struct sp_avro_cache *c, int32_t id, const char **err) {
    avro_entry *e = find(c, id);
    if (e) return e;
    if (!ctx->registry.fetch) {
        snprintf(c->err, sizeof c->err, "no schema with id %d (no registry)", (int)id);
        *err = c->err;
        return NULL;
    }
    sp_buf_reset(&c->fetched);
    if (ctx->registry.fetch(ctx->registry.opaque, id, &c->fetched, c->err, sizeof c->err) != 0) {
        *err = c->err;
        return NULL;
    }
    return add(c, id, c->fetched.data, c->fetched.len, err);
}

/* A framed datum as JSON into out. */
static int unframe(sp_ctx *ctx, struct sp_avro_cache *c, const char *p, size_t len, sp_buf *out,
                   const char **err) {
    const unsigned char *u = (const unsigned char *)p;
    if (len < 5 || u[0] != 0) {
        *err = "not Avro in the wire format (a zero byte, a schema id, the datum)";
        return SP_EMALFORMED;
    }
    int32_t id = (int32_t)((uint32_t)u[1] << 24 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 8 | u[4]);
    avro_entry *e = schema_of(ctx, c, id, err);
    if (!e) return SP_EMALFORMED;
    sp_buf_reset(out);
    if (sp_avro_decode(e->schema, p + 5, len - 5, out, c->err, sizeof c->err) != 0) {
        *err = c->err;
        return SP_EMALFORMED;
    }
    return SP_OK;
}

int sp_rec_avro(sp_ctx *ctx, int32_t rec, int32_t which, size_t *err_pos, const char **err) {
    struct sp_avro_cache *c = cache_of(ctx);
    *err_pos = 0;
    if (!c || rec < 0 || rec >= ctx->batch.n || which < 0 || which > 1) {
        *err = c ? "no such record" : "out of memory";
        return SP_EINVAL;
    }
    sp_rec *r = &ctx->batch.recs[rec];
    const char **p = which ? &r->val : &r->key;
    size_t *len = which ? &r->val_len : &r->key_len;
    sp_buf *out = &c->dec[which];
    /* null, or decoded already (by another source of its topic) */
    if (!*p || *p == out->data) return sp_rec_json(ctx, rec, which, err_pos, err);
    int rc = unframe(ctx, c, *p, *len, out, err);
    if (rc != SP_OK) return rc;
    /* the JSON becomes the record's, as a schema's conversion does: sinks
     * that write it as it came write it as JSON */
    *p = out->data ? out->data : "";
    *len = out->len;
    return sp_rec_json(ctx, rec, which, err_pos, err);
}

int sp_avro_unframe(sp_ctx *ctx, const char *p, size_t len, const char **out, size_t *out_len,
                    const char **err) {
    struct sp_avro_cache *c = cache_of(ctx);
    if (!c) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    int rc = unframe(ctx, c, p, len, &c->enc, err);
    *out = c->enc.data ? c->enc.data : "";
    *out_len = c->enc.len;
    return rc;
}

int32_t sp_avro_register(sp_ctx *ctx, const char *subject, const char *schema, size_t len,
                         const char **err) {
    struct sp_avro_cache *c = cache_of(ctx);
    int32_t id = -1;
    if (!c) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    sp_avro_schema *check;
    if (sp_avro_parse(schema, len, &check, c->err, sizeof c->err) != 0) {
        *err = c->err;
        return SP_EINVAL;
    }
    sp_avro_destroy(check);
    if (ctx->registry.register_schema) {
        if (ctx->registry.register_schema(ctx->registry.opaque, subject, schema, len, &id, c->err,
                                          sizeof c->err) != 0) {
            *err = c->err;
            return SP_EIO;
        }
    } else {
        /* no registry (the test driver): ids of this context's own, one
         * per subject and schema text */
        for (int32_t i = 0; i < c->n && id < 0; i++)
            if (c->e[i].subject && !strcmp(c->e[i].subject, subject) && strlen(c->e[i].text) == len &&
                !memcmp(c->e[i].text, schema, len))
                id = c->e[i].id;
        for (int32_t i = 0; id < 0 && i <= c->n; i++)
            if (!find(c, 1000 + i)) id = 1000 + i;
    }
    avro_entry *e = find(c, id);
    if (!e && !(e = add(c, id, schema, len, err))) return SP_EINVAL;
    if (!e->subject) {
        e->subject = strdup(subject);
        e->text = malloc(len + 1);
        if (e->text) memcpy(e->text, schema, len), e->text[len] = '\0';
    }
    return id;
}

int sp_avro_frame(sp_ctx *ctx, int32_t id, const char *json, size_t len, const char **out,
                  size_t *out_len, const char **err) {
    struct sp_avro_cache *c = cache_of(ctx);
    avro_entry *e = c ? find(c, id) : NULL;
    if (!e) {
        *err = c ? "no schema with that id here" : "out of memory";
        return SP_EINVAL;
    }
    unsigned char head[5] = {0, (unsigned char)(id >> 24), (unsigned char)(id >> 16),
                             (unsigned char)(id >> 8), (unsigned char)id};
    sp_buf_reset(&c->enc);
    if (sp_buf_append(&c->enc, head, 5) != 0) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    if (sp_avro_encode(e->schema, json, len, &c->enc, c->err, sizeof c->err) != 0) {
        *err = c->err;
        return SP_EMALFORMED;
    }
    *out = c->enc.data;
    *out_len = c->enc.len;
    return SP_OK;
}

int sp_avro_use_id(sp_ctx *ctx, int32_t id, const char **err) {
    struct sp_avro_cache *c = cache_of(ctx);
    if (!c) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    return schema_of(ctx, c, id, err) ? SP_OK : SP_EINVAL;
}
