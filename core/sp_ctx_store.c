/* The state-store side of the FFI: stores named by the user, split by the
 * partition of the record being processed, and their changelogs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_ctx.h"

/* Numbers are stored as a tag and the 8 bytes of a double, so that incr
 * needs no parsing (the Lua API tags its other value types the same way;
 * see lua/sproc/store.lua). */
#define TAG_NUMBER 'n'

/* Stream time for a store call about partition: the partition's, or the
 * current record's time when that is later (stream time moves at batch
 * ends, a record's own time counts at once). */
static int64_t store_now(sp_ctx *ctx, int32_t partition) {
    int64_t t = sp_ctx_part_stream_time(ctx, partition);
    if (ctx->batch.cur >= 0 && ctx->batch.cur < ctx->batch.n) {
        sp_rec *r = &ctx->batch.recs[ctx->batch.cur];
        if (r->partition == partition && r->ts > t) t = r->ts;
    }
    return t > 0 ? t : 0;
}

static int expired(const sp_store *s, const sp_kv_node *n, int64_t now) {
    return s->ttl > 0 && n->ts <= now - s->ttl;
}

static sp_store *get_store(sp_ctx *ctx, int id) {
    return id >= 0 && id < ctx->nstores ? ctx->stores[id] : NULL;
}

int32_t sp_store_find(sp_ctx *ctx, const char *name) {
    for (int32_t i = 0; i < ctx->nstores; i++)
        if (strcmp(ctx->stores[i]->name, name) == 0) return i;
    return -1;
}

int sp_store_open(sp_ctx *ctx, const char *name, int kind, const char **err) {
    if (!name || !*name) {
        *err = "a store needs a name";
        return SP_EINVAL;
    }
    if (kind != SP_STORE_KV) {
        *err = "unknown store kind";
        return SP_EINVAL;
    }
    /* The same name gives the same state: a reloaded script finds it. */
    int32_t id = sp_store_find(ctx, name);
    if (id >= 0) {
        if (ctx->stores[id]->kind != kind) {
            *err = "a store of that name exists with another kind";
            return SP_EINVAL;
        }
        return id;
    }
    sp_store **ss = realloc(ctx->stores, (size_t)(ctx->nstores + 1) * sizeof *ss);
    if (!ss) goto oom;
    ctx->stores = ss;
    sp_store *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    if (sp_store_init(s, name, kind, &ctx->store_bytes, ctx->store_budget) != 0) {
        free(s);
        goto oom;
    }
    s->sink = -1;
    ctx->stores[ctx->nstores] = s;
    return ctx->nstores++;
oom:
    *err = "out of memory";
    return SP_ENOMEM;
}

void sp_ctx_destroy_stores(sp_ctx *ctx) {
    for (int32_t i = 0; i < ctx->nstores; i++) {
        sp_store_destroy(ctx->stores[i]);
        free(ctx->stores[i]);
    }
    free(ctx->stores);
    ctx->stores = NULL;
    ctx->nstores = 0;
}

void sp_ctx_set_store_budget(sp_ctx *ctx, int64_t bytes) {
    ctx->store_budget = bytes > 0 ? bytes : 0;
    for (int32_t i = 0; i < ctx->nstores; i++)
        ctx->stores[i]->budget = ctx->store_budget;
}

int64_t sp_ctx_store_bytes(sp_ctx *ctx) { return ctx->store_bytes; }

int64_t sp_store_bytes(sp_ctx *ctx, int store) {
    sp_store *s = get_store(ctx, store);
    return s ? s->bytes : 0;
}

/* The partition a store call is about: the current record's when -1.
 * While a record is processed, its input segment joins the partition's so
 * that the changelog write holds the record's offset back. */
static sp_kv_part *part_for(sp_ctx *ctx, sp_store *s, int32_t partition,
                            int create, const char **err) {
    sp_rec *r = NULL;
    if (ctx->batch.cur >= 0 && ctx->batch.cur < ctx->batch.n)
        r = &ctx->batch.recs[ctx->batch.cur];
    if (partition < 0) {
        if (!r) {
            *err = "no record is being processed: give a partition";
            return NULL;
        }
        partition = r->partition;
    }
    sp_kv_part *p = sp_store_part(s, partition, create);
    if (!p) {
        if (create) *err = "out of memory";
        return NULL;
    }
    if (create && s->track && r && r->seg && r->partition == partition) {
        int i;
        for (i = 0; i < p->nsegs && p->segs[i] != r->seg; i++) {
        }
        if (i == p->nsegs) {
            if (p->nsegs == (int)(sizeof p->segs / sizeof *p->segs)) {
                *err = "too many input topics share a store partition in one batch";
                return NULL;
            }
            p->segs[p->nsegs++] = r->seg;
        }
    }
    return p;
}

int sp_store_get(sp_ctx *ctx, int store, int32_t partition, const char *key,
                 size_t klen, const char **val, size_t *vlen) {
    const char *err;
    sp_store *s = get_store(ctx, store);
    if (!s) return SP_EINVAL;
    sp_kv_part *p = part_for(ctx, s, partition, 0, &err);
    sp_kv_node *n = p ? sp_kv_get(p, key, klen) : NULL;
    if (!n || expired(s, n, store_now(ctx, p->partition))) return 0;
    *val = n->val;
    *vlen = n->vlen;
    return 1;
}

static int full(sp_ctx *ctx, const char **err) {
    static char msg[256];
    snprintf(msg, sizeof msg,
             "the state stores hold %lld bytes and their memory budget "
             "(sproc.state.max.bytes) is %lld: raise it, or use a disk-backed "
             "store",
             (long long)ctx->store_bytes, (long long)ctx->store_budget);
    *err = msg;
    return SP_ENOMEM;
}

int sp_store_put(sp_ctx *ctx, int store, int32_t partition, const char *key,
                 size_t klen, const char *val, size_t vlen, const char **err) {
    sp_store *s = get_store(ctx, store);
    if (!s || !key) {
        *err = s ? "a store key must not be nil" : "no such store";
        return SP_EINVAL;
    }
    sp_kv_part *p = part_for(ctx, s, partition, 1, err);
    if (!p) return SP_ESTATE;
    int rc = sp_kv_put(s, p, key, klen, val, vlen, store_now(ctx, p->partition), err);
    if (rc == SP_STORE_EFULL) return full(ctx, err);
    return rc == 0 ? SP_OK : SP_ENOMEM;
}

int sp_store_delete(sp_ctx *ctx, int store, int32_t partition,
                    const char *key, size_t klen, const char **err) {
    sp_store *s = get_store(ctx, store);
    if (!s || !key) {
        *err = s ? "a store key must not be nil" : "no such store";
        return SP_EINVAL;
    }
    sp_kv_part *p = part_for(ctx, s, partition, 1, err);
    if (!p) return SP_ESTATE;
    return sp_kv_delete(s, p, key, klen, err) == 0 ? SP_OK : SP_ENOMEM;
}

int sp_store_incr(sp_ctx *ctx, int store, int32_t partition, const char *key,
                  size_t klen, double by, double *out, const char **err) {
    sp_store *s = get_store(ctx, store);
    if (!s || !key) {
        *err = s ? "a store key must not be nil" : "no such store";
        return SP_EINVAL;
    }
    sp_kv_part *p = part_for(ctx, s, partition, 1, err);
    if (!p) return SP_ESTATE;
    double v = 0;
    int64_t now = store_now(ctx, p->partition);
    sp_kv_node *n = sp_kv_get(p, key, klen);
    if (n && !expired(s, n, now)) {
        if (n->vlen != 1 + sizeof v || n->val[0] != TAG_NUMBER) {
            *err = "incr on a value that is not a number";
            return SP_EINVAL;
        }
        memcpy(&v, n->val + 1, sizeof v);
    }
    v += by;
    char buf[1 + sizeof v];
    buf[0] = TAG_NUMBER;
    memcpy(buf + 1, &v, sizeof v);
    int rc = sp_kv_put(s, p, key, klen, buf, sizeof buf, now, err);
    if (rc == SP_STORE_EFULL) return full(ctx, err);
    if (rc != 0) return SP_ENOMEM;
    *out = v;
    return SP_OK;
}

int sp_store_next(sp_ctx *ctx, int store, int32_t partition, const char *from,
                  size_t flen, int strict, const char **key, size_t *klen,
                  const char **val, size_t *vlen) {
    const char *err;
    sp_store *s = get_store(ctx, store);
    if (!s) return SP_EINVAL;
    sp_kv_part *p = part_for(ctx, s, partition, 0, &err);
    sp_kv_node *n = p ? sp_kv_seek(p, from, flen, strict) : NULL;
    if (n && s->ttl > 0) {
        int64_t now = store_now(ctx, p->partition);
        while (n && expired(s, n, now)) n = sp_kv_seek(p, n->key, n->klen, 1);
    }
    if (!n) return 0;
    *key = n->key;
    *klen = n->klen;
    *val = n->val;
    *vlen = n->vlen;
    return 1;
}

int sp_store_set_ttl(sp_ctx *ctx, int store, int64_t ttl_ms, const char **err) {
    sp_store *s = get_store(ctx, store);
    if (!s || ttl_ms < 0) {
        *err = s ? "a TTL must not be negative" : "no such store";
        return SP_EINVAL;
    }
    s->ttl = ttl_ms;
    return SP_OK;
}

int64_t sp_store_size(sp_ctx *ctx, int store, int32_t partition) {
    sp_store *s = get_store(ctx, store);
    int64_t n = 0;
    if (!s) return 0;
    for (int32_t i = 0; i < s->nparts; i++)
        if (partition < 0 || s->parts[i].partition == partition)
            n += s->parts[i].count;
    return n;
}

int32_t sp_store_partitions(sp_ctx *ctx, int store, int32_t *out, int32_t max) {
    sp_store *s = get_store(ctx, store);
    if (!s) return 0;
    for (int32_t i = 0; i < s->nparts && i < max; i++) out[i] = s->parts[i].partition;
    return s->nparts;
}

int sp_ctx_open_changelogs(sp_ctx *ctx, const char *app_id, const char **err) {
    for (int32_t i = 0; i < ctx->nstores; i++) {
        sp_store *s = ctx->stores[i];
        if (s->sink >= 0) continue;
        char topic[512];
        snprintf(topic, sizeof topic, "%s-%s-changelog", app_id, s->name);
        int rc = sp_sink_kafka(ctx, topic, err);
        if (rc < 0) return rc;
        s->sink = rc;
        s->track = 1;
        sp_ctx_sink(ctx, rc)->tag = s;
    }
    return SP_OK;
}

sp_store *sp_ctx_changelog_store(sp_ctx *ctx, const char *topic) {
    for (int32_t i = 0; i < ctx->nstores; i++) {
        sp_store *s = ctx->stores[i];
        sp_sink *k = s->sink >= 0 ? sp_ctx_sink(ctx, s->sink) : NULL;
        if (k && strcmp(k->name, topic) == 0) return s;
    }
    return NULL;
}

int sp_ctx_flush_changelogs(sp_ctx *ctx, const char **err) {
    for (int32_t i = 0; i < ctx->nstores; i++) {
        sp_store *s = ctx->stores[i];
        if (s->sink < 0) continue;
        sp_sink *k = sp_ctx_sink(ctx, s->sink);
        for (int32_t j = 0; j < s->nparts; j++) {
            sp_kv_part *p = &s->parts[j];
            for (size_t d = 0; d < p->ndirty; d++) {
                sp_kv_node *n = p->dirty[d];
                /* one write per input segment (usually one): each holds
                 * its segment until Kafka has the change */
                int nw = p->nsegs ? p->nsegs : 1;
                for (int w = 0; w < nw; w++) {
                    /* the record's time is the entry's: a restore gets
                     * the TTL clock back from it */
                    sp_msg m = {n->key, n->val, n->klen, n->vlen, n->ts, NULL,
                                p->nsegs ? p->segs[w] : NULL, p->partition};
                    int rc = k->ops->write(k, &m, err);
                    if (rc != SP_OK) return rc;
                }
            }
            sp_kv_clean(s, p);
            p->nsegs = 0;
        }
    }
    return SP_OK;
}
