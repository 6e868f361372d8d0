/* The state-store side of the FFI: stores named by the user, split by the
 * partition of the record being processed, and their changelogs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sp_ctx.h"
#include "sp_store.h"
#include "sp_lmdb.h"
#include "sp_log.h"

/* Numbers are stored as SP_VAL_NUMBER and the 8 bytes of a double, so
 * that incr needs no parsing (the Lua API tags its other value types the
 * same way; see lua/sproc/store.lua). */

/* The task of the record being processed, as a mask (0: none). */
static uint64_t current_task(sp_ctx *ctx) {
    int32_t t = ctx->batch.task;
    if (ctx->batch.cur < 0 || ctx->batch.cur >= ctx->batch.n || t < 0 || t >= SP_MAX_TASKS)
        return 0;
    return (uint64_t)1 << t;
}

/* Stream time for a call about a store's partition: that of the tasks
 * whose records wrote it, or the current record's time when that is
 * later (stream time moves at batch ends, a record's own time counts at
 * once). */
static int64_t store_now(sp_ctx *ctx, const sp_store *s, int32_t partition) {
    sp_ctx_count_to_current(ctx);
    int64_t t = sp_ctx_tasks_stream_time(ctx, s->tasks, partition);
    uint64_t cur = current_task(ctx);
    if (cur && (!s->tasks || (s->tasks & cur))) {
        sp_rec *r = &ctx->batch.recs[ctx->batch.cur];
        if (r->partition == partition && r->ts > t) t = r->ts;
    }
    return t > 0 ? t : 0;
}

static sp_store *get_store(sp_ctx *ctx, int id) {
    return id >= 0 && id < ctx->nstores ? ctx->stores[id] : NULL;
}

int sp_store_kind(sp_ctx *ctx, int store) {
    sp_store *s = get_store(ctx, store);
    return s ? s->kind : -1;
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
    if (kind != SP_STORE_KV && kind != SP_STORE_WINDOW) {
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
    if (sp_kv_init(s, name, kind, &ctx->store_bytes, ctx->store_budget) != 0) {
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

/* A temporary state directory (the test driver's) goes with its context. */
static void remove_temp_state(sp_ctx *ctx) {
    char path[4096];
    for (int32_t i = 0; i < ctx->nstores; i++) {
        if (!ctx->stores[i]->disk) continue;
        const char *files[] = {"data.mdb", "lock.mdb", ""};
        for (int f = 0; f < 3; f++) {
            snprintf(path, sizeof path, "%s/%s.lmdb/%s", ctx->state_dir,
                     ctx->stores[i]->name, files[f]);
            if (f < 2) unlink(path); else rmdir(path);
        }
    }
    rmdir(ctx->state_dir);
}

void sp_store_destroy_all(sp_ctx *ctx) {
    for (int32_t i = 0; i < ctx->nstores; i++) {
        sp_lmdb_close(ctx->stores[i]->lmdb);
        ctx->stores[i]->lmdb = NULL;
    }
    if (ctx->state_dir && ctx->state_dir_temp) remove_temp_state(ctx);
    for (int32_t i = 0; i < ctx->nstores; i++) {
        sp_kv_destroy(ctx->stores[i]);
        free(ctx->stores[i]);
    }
    free(ctx->stores);
    free(ctx->state_dir);
    ctx->state_dir = NULL;
    ctx->stores = NULL;
    ctx->nstores = 0;
}

int sp_store_set_dir(sp_ctx *ctx, const char *dir) {
    char *d = strdup(dir);
    if (!d) return SP_ENOMEM;
    free(ctx->state_dir);
    ctx->state_dir = d;
    ctx->state_dir_temp = 0;
    return SP_OK;
}

void sp_store_set_budget(sp_ctx *ctx, int64_t bytes) {
    ctx->store_budget = bytes > 0 ? bytes : 0;
    for (int32_t i = 0; i < ctx->nstores; i++)
        ctx->stores[i]->budget = ctx->store_budget;
}

int64_t sp_store_total_bytes(sp_ctx *ctx) { return ctx->store_bytes; }

int64_t sp_store_bytes(sp_ctx *ctx, int store) {
    sp_store *s = get_store(ctx, store);
    return s ? s->bytes : 0;
}

/* The partition a store call is about: the current record's when -1.
 * While a record is processed, its input segment joins the partition's so
 * that the changelog write holds the record's offset back. */
static int32_t which_partition(sp_ctx *ctx, int32_t partition, const char **err) {
    if (partition >= 0) return partition;
    if (ctx->batch.cur >= 0 && ctx->batch.cur < ctx->batch.n)
        return ctx->batch.recs[ctx->batch.cur].partition;
    *err = "no record is being processed: give a partition";
    return -1;
}

static sp_kv_part *part_for(sp_ctx *ctx, sp_store *s, int32_t partition,
                            int create, const char **err) {
    sp_rec *r = NULL;
    if (ctx->batch.cur >= 0 && ctx->batch.cur < ctx->batch.n)
        r = &ctx->batch.recs[ctx->batch.cur];
    partition = s->global ? 0 : which_partition(ctx, partition, err);
    if (partition < 0) return NULL;
    sp_kv_part *p = sp_kv_part_of(s, partition, create);
    if (!p) {
        if (create) *err = "out of memory";
        return NULL;
    }
    /* a write: the store's TTL runs on the writer's stream time too */
    if (create) s->tasks |= current_task(ctx);
    if (create && s->track && r && r->seg && r->partition == partition) {
        /* the first segment of each input topic-partition since the last
         * flush is held; later ones are behind it anyway */
        sp_seg *seg = r->seg;
        int i;
        for (i = 0; i < p->nsegs && ((sp_seg *)p->segs[i])->tp != seg->tp; i++) {
        }
        if (i == p->nsegs) {
            if (p->nsegs == (int)(sizeof p->segs / sizeof *p->segs)) {
                *err = "more than 4 input topics change one store partition";
                return NULL;
            }
            sp_seg_ref(seg);
            p->segs[p->nsegs++] = seg;
        }
    }
    return p;
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

/* A disk store's LMDB environment, opened on first use under the state
 * directory (a temporary one when none is set, as in the test driver). */
static sp_lmdb *disk(sp_ctx *ctx, sp_store *s, const char **err) {
    if (s->lmdb) return s->lmdb;
    if (!ctx->state_dir) {
        const char *tmp = getenv("TMPDIR");
        char buf[4096];
        snprintf(buf, sizeof buf, "%s/sproc-state-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(buf) || !(ctx->state_dir = strdup(buf))) {
            *err = "cannot create a temporary state directory";
            return NULL;
        }
        ctx->state_dir_temp = 1;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s.lmdb", ctx->state_dir, s->name);
    if (sp_lmdb_open(&s->lmdb, dir, err) != 0) return NULL;
    return s->lmdb;
}

/* Entry of key, across backends: 1 and the value, 0 missing or expired,
 * negative on error. */
static int lookup(sp_ctx *ctx, sp_store *s, int32_t part, const char *key,
                  size_t klen, const char **val, size_t *vlen, int64_t *tsp, const char **err) {
    int64_t ts;
    if (!tsp) tsp = &ts;
    if (s->disk) {
        sp_lmdb *l = disk(ctx, s, err);
        if (!l) return SP_EIO;
        int rc = sp_lmdb_get(l, part, key, klen, val, vlen, tsp, err);
        if (rc < 0) return SP_EIO;
        if (rc == 0) return 0;
    } else {
        sp_kv_part *p = sp_kv_part_of(s, part, 0);
        sp_kv_node *n = p ? sp_kv_get(p, key, klen) : NULL;
        if (!n) return 0;
        *val = n->val;
        *vlen = n->vlen;
        *tsp = n->ts;
    }
    return s->ttl > 0 && !ctx->ttl_hold && *tsp <= store_now(ctx, s, part) - s->ttl ? 0 : 1;
}

/* A disk store's changes are listed in the partition's tree until the
 * batch's changelog writes. */
static int mark_changed(sp_ctx *ctx, sp_store *s, sp_kv_part *p,
                        const char *key, size_t klen, int64_t ts, const char **err) {
    if (!s->track) return SP_OK;
    int rc = sp_kv_put(s, p, key, klen, "", 0, ts, err);
    if (rc == SP_STORE_EFULL) return full(ctx, err);
    return rc == 0 ? SP_OK : SP_ENOMEM;
}

/* ts: the entry's time for its TTL (a window's start), or -1 for now */
static int write_entry(sp_ctx *ctx, sp_store *s, sp_kv_part *p, const char *key,
                       size_t klen, const char *val, size_t vlen, int64_t ts,
                       const char **err) {
    int64_t now = ts >= 0 ? ts : store_now(ctx, s, p->partition);
    if (s->disk) {
        sp_lmdb *l = disk(ctx, s, err);
        if (!l || sp_lmdb_put(l, p->partition, key, klen, val, vlen, now, err) != 0)
            return SP_EIO;
        return mark_changed(ctx, s, p, key, klen, now, err);
    }
    int rc = sp_kv_put(s, p, key, klen, val, vlen, now, err);
    if (rc == SP_STORE_EFULL) return full(ctx, err);
    return rc == 0 ? SP_OK : SP_ENOMEM;
}

static int check_args(sp_store *s, const char *key, const char **err) {
    if (s && key) return SP_OK;
    *err = s ? "a store key must not be nil" : "no such store";
    return SP_EINVAL;
}

int sp_store_get(sp_ctx *ctx, int store, int32_t partition, const char *key,
                 size_t klen, const char **val, size_t *vlen) {
    return sp_store_get_ts(ctx, store, partition, key, klen, val, vlen, NULL);
}

int sp_store_get_ts(sp_ctx *ctx, int store, int32_t partition, const char *key,
                    size_t klen, const char **val, size_t *vlen, int64_t *ts) {
    const char *err;
    sp_store *s = get_store(ctx, store);
    if (!s || !key) return SP_EINVAL;
    int32_t part = s->global ? 0 : which_partition(ctx, partition, &err);
    if (part < 0) return 0;
    int rc = lookup(ctx, s, part, key, klen, val, vlen, ts, &err);
    if (rc < 0) sp_warn("store %s: %s", s->name, err);
    return rc > 0 ? 1 : 0;
}

int sp_store_set_source(sp_ctx *ctx, int store, const char *topic, int tag, int global,
                        const char **err) {
    sp_store *s = get_store(ctx, store);
    if (!s || !topic) {
        *err = s ? "a table needs a topic" : "no such store";
        return SP_EINVAL;
    }
    if (s->source && (strcmp(s->source, topic) != 0 || s->global != global)) {
        *err = "the store holds another table's state";
        return SP_EINVAL;
    }
    if (s->sink >= 0 && !s->source) {
        *err = "the store has a changelog of its own already";
        return SP_EINVAL;
    }
    if (!s->source && !(s->source = strdup(topic))) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    s->source_tag = tag;
    s->global = global != 0;
    return SP_OK;
}

int sp_store_put_at(sp_ctx *ctx, int store, int32_t partition, const char *key,
                    size_t klen, const char *val, size_t vlen, int64_t ts,
                    const char **err) {
    sp_store *s = get_store(ctx, store);
    if (check_args(s, key, err)) return SP_EINVAL;
    sp_kv_part *p = part_for(ctx, s, partition, 1, err);
    if (!p) return SP_ESTATE;
    return write_entry(ctx, s, p, key, klen, val, vlen, ts, err);
}

char *sp_store_upsert(sp_ctx *ctx, int store, int32_t partition, const char *key,
                          size_t klen, size_t vlen, int64_t ts, int *created,
                          const char **err) {
    sp_store *s = get_store(ctx, store);
    *created = 0;
    if (!s || !key || s->disk || s->ttl > 0) return NULL; /* the general path */
    sp_kv_part *p = part_for(ctx, s, partition, 1, err);
    if (!p) {
        *created = -1;
        return NULL;
    }
    char *v = sp_kv_upsert(s, p, key, klen, vlen, ts, created);
    if (!v) {
        if (*created == SP_STORE_EFULL) full(ctx, err); else *err = "out of memory";
        *created = -1;
    }
    return v;
}

int sp_store_put(sp_ctx *ctx, int store, int32_t partition, const char *key,
                 size_t klen, const char *val, size_t vlen, const char **err) {
    return sp_store_put_at(ctx, store, partition, key, klen, val, vlen, -1, err);
}

int sp_store_delete(sp_ctx *ctx, int store, int32_t partition,
                    const char *key, size_t klen, const char **err) {
    sp_store *s = get_store(ctx, store);
    if (check_args(s, key, err)) return SP_EINVAL;
    sp_kv_part *p = part_for(ctx, s, partition, 1, err);
    if (!p) return SP_ESTATE;
    if (s->disk) {
        sp_lmdb *l = disk(ctx, s, err);
        int rc = l ? sp_lmdb_del(l, p->partition, key, klen, err) : -1;
        if (rc < 0) return SP_EIO;
        return rc ? mark_changed(ctx, s, p, key, klen, store_now(ctx, s, p->partition), err)
                  : SP_OK;
    }
    return sp_kv_delete(s, p, key, klen, err) == 0 ? SP_OK : SP_ENOMEM;
}

int sp_store_incr(sp_ctx *ctx, int store, int32_t partition, const char *key,
                  size_t klen, double by, double *out, const char **err) {
    return sp_store_incr_at(ctx, store, partition, key, klen, by, -1, out, err);
}

int sp_store_incr_at(sp_ctx *ctx, int store, int32_t partition, const char *key,
                     size_t klen, double by, int64_t ts, double *out,
                     const char **err) {
    sp_store *s = get_store(ctx, store);
    if (check_args(s, key, err)) return SP_EINVAL;
    sp_kv_part *p = part_for(ctx, s, partition, 1, err);
    if (!p) return SP_ESTATE;
    double v = 0;
    const char *cur;
    size_t curlen;
    int rc = lookup(ctx, s, p->partition, key, klen, &cur, &curlen, NULL, err);
    if (rc < 0) return rc;
    if (rc > 0) {
        if (curlen != 1 + sizeof v || cur[0] != SP_VAL_NUMBER) {
            *err = "incr on a value that is not a number";
            return SP_EINVAL;
        }
        memcpy(&v, cur + 1, sizeof v);
    }
    v += by;
    char buf[1 + sizeof v];
    buf[0] = SP_VAL_NUMBER;
    memcpy(buf + 1, &v, sizeof v);
    rc = write_entry(ctx, s, p, key, klen, buf, sizeof buf, ts, err);
    if (rc == SP_OK) *out = v;
    return rc;
}

int sp_store_next(sp_ctx *ctx, int store, int32_t partition, const char *from,
                  size_t flen, int strict, const char **key, size_t *klen,
                  const char **val, size_t *vlen) {
    return sp_store_next_in(ctx, store, partition, from, flen, 0, strict, key, klen, val, vlen);
}

int sp_store_next_in(sp_ctx *ctx, int store, int32_t partition, const char *from,
                     size_t flen, size_t plen, int strict, const char **key, size_t *klen,
                     const char **val, size_t *vlen) {
    const char *err;
    sp_store *s = get_store(ctx, store);
    if (!s) return SP_EINVAL;
    int32_t part = s->global ? 0 : which_partition(ctx, partition, &err);
    if (part < 0) return 0;
    int64_t now = store_now(ctx, s, part), ts;
    for (;;) {
        if (s->disk) {
            sp_lmdb *l = disk(ctx, s, &err);
            if (!l || sp_lmdb_seek(l, part, from, flen, strict, key, klen, val, vlen,
                                   &ts, &err) != 1 ||
                (plen && (*klen < plen || memcmp(*key, from, plen) != 0)))
                return 0;
        } else {
            sp_kv_part *p = sp_kv_part_of(s, part, 0);
            sp_kv_node *n = !p      ? NULL
                            : plen ? sp_kv_seek_in(p, from, flen, plen, strict)
                                   : sp_kv_seek(p, from, flen, strict);
            if (!n) return 0;
            *key = n->key;
            *klen = n->klen;
            *val = n->val;
            *vlen = n->vlen;
            ts = n->ts;
        }
        if (s->ttl <= 0 || ctx->ttl_hold || ts > now - s->ttl) return 1;
        /* expired, not swept yet: skip it */
        from = *key;
        flen = *klen;
        strict = 1;
    }
}

void sp_store_add_task(sp_ctx *ctx, int store, int32_t task) {
    sp_store *s = get_store(ctx, store);
    if (s && task >= 0 && task < SP_MAX_TASKS) s->tasks |= (uint64_t)1 << task;
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

int sp_store_set_disk(sp_ctx *ctx, int store, const char **err) {
    sp_store *s = get_store(ctx, store);
    if (!s) {
        *err = "no such store";
        return SP_EINVAL;
    }
    if (s->disk) return SP_OK;
    if (s->nparts > 0 && sp_store_size(ctx, store, -1) > 0) {
        *err = "a store of that name holds state in memory already";
        return SP_EINVAL;
    }
    s->disk = 1;
    return SP_OK;
}

int64_t sp_store_size(sp_ctx *ctx, int store, int32_t partition) {
    sp_store *s = get_store(ctx, store);
    int64_t n = 0;
    if (!s) return 0;
    if (s->disk) {
        const char *err;
        int32_t parts[1024];
        sp_lmdb *l = disk(ctx, s, &err);
        if (!l) return 0;
        int32_t np = sp_lmdb_partitions(l, parts, 1024);
        for (int32_t i = 0; i < np && i < 1024; i++)
            if (partition < 0 || parts[i] == partition) n += sp_lmdb_count(l, parts[i]);
        return n;
    }
    for (int32_t i = 0; i < s->nparts; i++)
        if (partition < 0 || s->parts[i].partition == partition)
            n += s->parts[i].count;
    return n;
}

int32_t sp_store_partitions(sp_ctx *ctx, int store, int32_t *out, int32_t max) {
    sp_store *s = get_store(ctx, store);
    if (!s) return 0;
    if (s->disk) {
        const char *err;
        sp_lmdb *l = disk(ctx, s, &err);
        return l ? sp_lmdb_partitions(l, out, max) : 0;
    }
    for (int32_t i = 0; i < s->nparts && i < max; i++) out[i] = s->parts[i].partition;
    return s->nparts;
}

int sp_store_end_batch(sp_ctx *ctx, const char **err) {
    for (int32_t i = 0; i < ctx->nstores; i++) {
        sp_store *s = ctx->stores[i];
        if (s->lmdb && sp_lmdb_commit(s->lmdb, err) != 0) return SP_EIO;
    }
    return SP_OK;
}

static void expired_key(void *arg, const char *key, size_t klen) {
    void **a = arg;
    const char *err;
    mark_changed(a[0], a[1], a[2], key, klen, 0, &err);
}

int64_t sp_store_expire(sp_ctx *ctx, sp_store *s, int32_t partition, int64_t ts) {
    sp_kv_part *p = sp_kv_part_of(s, partition, s->disk);
    if (!p) return 0;
    if (!s->disk) return sp_kv_expire(s, p, ts);
    const char *err;
    sp_lmdb *l = disk(ctx, s, &err);
    void *arg[3] = {ctx, s, p};
    /* a retention store's changelog forgets by time itself */
    return l ? sp_lmdb_expire(l, partition, ts, s->retention ? NULL : expired_key, arg) : 0;
}

static int64_t sweep(sp_ctx *ctx, sp_store *s, sp_kv_part *p, int64_t ts, int64_t every) {
    if (!p || (p->swept_ms >= 0 && ts - p->swept_ms < every)) return 0;
    p->swept_ms = ts;
    if (s->aged && !s->disk) return sp_kv_expire_oldest(s, p, ts);
    return sp_store_expire(ctx, s, p->partition, ts);
}

int64_t sp_store_sweep(sp_ctx *ctx, int store, int32_t partition, int64_t ts, int64_t every) {
    const char *err;
    sp_store *s = get_store(ctx, store);
    if (!s) return 0;
    partition = s->global ? 0 : which_partition(ctx, partition, &err);
    return sweep(ctx, s, partition >= 0 ? sp_kv_part_of(s, partition, s->disk) : NULL, ts, every);
}

int sp_store_set_retention(sp_ctx *ctx, int store, int64_t retention_ms, const char **err) {
    sp_store *s = get_store(ctx, store);
    if (!s || retention_ms <= 0) {
        *err = s ? "a retention is > 0 ms" : "no such store";
        return SP_EINVAL;
    }
    s->retention = retention_ms;
    return SP_OK;
}

int64_t sp_store_window_time(const char *key, size_t klen) {
    const unsigned char *k = (const unsigned char *)key;
    size_t at = klen >= 2 ? 2 + ((size_t)k[0] << 8 | k[1]) : klen;
    uint64_t t = 0;
    if (at + 8 > klen) return -1;
    for (int i = 0; i < 8; i++) t = t << 8 | k[at + i];
    return (int64_t)t;
}

/* A retention store's restore keeps what its records' own clock keeps (as
 * Kafka Streams' segmented stores restore): its changelog holds records
 * for a day past their retention, and loading them all only to sweep them
 * at the first new record would take that much memory. The record time is
 * its key's (the changelog's is the time it was written). 1: the record
 * is kept, with its time in *ts. */
static int restore_keeps(sp_ctx *ctx, sp_store *s, int32_t partition, const char *key,
                         size_t klen, const char *val, int64_t *ts) {
    sp_kv_part *p;
    int64_t t = s->retention ? sp_store_window_time(key, klen) : -1;
    if (t < 0 || !(p = sp_kv_part_of(s, partition, 1))) return 1;
    *ts = t;
    if (*ts > p->restored_ms) p->restored_ms = *ts;
    int64_t cut = p->restored_ms - s->retention;
    if (cut < 0) return 1;
    sweep(ctx, s, p, cut, s->retention / 2 > 0 ? s->retention / 2 : 1);
    return !val || *ts > cut;
}

int sp_store_set_aged(sp_ctx *ctx, int store, const char **err) {
    sp_store *s = get_store(ctx, store);
    if (!s) {
        *err = "no such store";
        return SP_EINVAL;
    }
    if (!s->disk) sp_kv_set_aged(s);
    return SP_OK;
}

int sp_store_set_ranged(sp_ctx *ctx, int store, const char **err) {
    sp_store *s = get_store(ctx, store);
    if (!s) {
        *err = "no such store";
        return SP_EINVAL;
    }
    if (sp_kv_set_ranged(s) != 0) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    return SP_OK;
}

int sp_store_restore_apply(sp_ctx *ctx, sp_store *s, int32_t partition, const char *key,
                       size_t klen, const char *val, size_t vlen, int64_t ts,
                       const char **err) {
    if (!restore_keeps(ctx, s, partition, key, klen, val, &ts)) return 0;
    if (s->disk) {
        sp_lmdb *l = disk(ctx, s, err);
        if (!l) return -1;
        if (!val) return sp_lmdb_del(l, partition, key, klen, err) < 0 ? -1 : 0;
        return sp_lmdb_put(l, partition, key, klen, val, vlen, ts, err);
    }
    sp_kv_part *p = sp_kv_part_of(s, partition, 1);
    if (!p) {
        *err = "out of memory";
        return -1;
    }
    return sp_kv_apply(s, p, key, klen, val, vlen, ts, err) == 0 ? 0 : -1;
}

int sp_store_apply(sp_ctx *ctx, int store, int32_t partition, const char *key, size_t klen,
                   const char *val, size_t vlen, int64_t ts, const char **err) {
    sp_store *s = get_store(ctx, store);
    if (!s || !key) {
        *err = s ? "a store key must not be nil" : "no such store";
        return SP_EINVAL;
    }
    if (sp_store_restore_apply(ctx, s, partition, key, klen, val, vlen, ts, err) != 0) return SP_EIO;
    sp_kv_part *p = sp_kv_part_of(s, partition, 1);
    return p ? SP_OK : SP_ENOMEM;
}

void sp_store_drop_partition(sp_ctx *ctx, int32_t partition) {
    const char *err;
    for (int32_t i = 0; i < ctx->nstores; i++) {
        sp_store *s = ctx->stores[i];
        if (s->global) continue;
        if (s->disk && disk(ctx, s, &err)) sp_lmdb_drop(s->lmdb, partition, &err);
        sp_kv_drop_part(s, partition);
    }
    sp_store_end_batch(ctx, &err);
}

sp_lmdb *sp_store_disk(sp_ctx *ctx, sp_store *s, const char **err) {
    return s->disk ? disk(ctx, s, err) : NULL;
}

/* One changed key of a store partition to its changelog: its value now,
 * or a tombstone, once per input segment the partition holds (usually
 * one: each write holds its segment until Kafka has the change). */
static int flush_key(sp_ctx *ctx, sp_store *s, sp_sink *k, sp_kv_part *p, sp_kv_node *n,
                     rd_kafka_headers_t *hdrs, const char **err) {
    const char *val = n->val;
    size_t vlen = n->vlen;
    int64_t ts = n->ts;
    /* put and deleted again since the last flush: the changelog never had it */
    if (!s->disk && !val && !n->logged) return SP_OK;
    if (s->disk) {
        sp_lmdb *l = disk(ctx, s, err);
        int rc = l ? sp_lmdb_get(l, p->partition, n->key, n->klen, &val, &vlen, &ts, err) : -1;
        if (rc < 0) return SP_EIO;
        if (rc == 0) val = NULL, vlen = 0;
    }
    /* a join side's changelog deletes by the time a record was written, a
     * day past the retention: by its record time, the broker would delete
     * at once what a run over last month's data writes (restore takes the
     * record time from the key) */
    if (s->retention) ts = 0;
    int rc = SP_OK;
    int nw = p->nsegs ? p->nsegs : 1;
    for (int w = 0; w < nw && rc == SP_OK; w++) {
        /* the record's time is the entry's: a restore gets the TTL clock
         * back from it */
        sp_msg m = {n->key, val, n->klen, vlen, ts, hdrs ? rd_kafka_headers_copy(hdrs) : NULL,
                    p->nsegs ? p->segs[w] : NULL, p->partition, NULL};
        rc = k->ops->write(k, &m, err);
    }
    return rc;
}

/* The changes since the last flush to the changelogs (disk_only: of disk
 * stores only, whose lists of changed keys are memory). */
static int flush_changelogs(sp_ctx *ctx, int disk_only, const char **err) {
    int rc = SP_OK;
    for (int32_t i = 0; i < ctx->nstores && rc == SP_OK; i++) {
        sp_store *s = ctx->stores[i];
        if (s->sink < 0 || (disk_only && !s->disk)) continue;
        sp_sink *k = sp_ctx_sink(ctx, s->sink);
        for (int32_t j = 0; j < s->nparts && rc == SP_OK; j++) {
            sp_kv_part *p = &s->parts[j];
            rd_kafka_headers_t *hdrs =
                p->ndirty && ctx->changelog_headers
                    ? ctx->changelog_headers(ctx->changelog_headers_opaque, p->partition)
                    : NULL;
            for (size_t d = 0; d < p->ndirty && rc == SP_OK; d++)
                rc = flush_key(ctx, s, k, p, p->dirty[d], hdrs, err);
            if (hdrs) rd_kafka_headers_destroy(hdrs);
            if (rc != SP_OK) break;
            if (s->disk)
                sp_kv_clear(s, p);
            else
                sp_kv_clean(s, p);
            /* the writes hold what the partition held */
            sp_kv_release_segs(p);
        }
    }
    return rc;
}

int sp_store_flush_changelogs(sp_ctx *ctx, const char **err) {
    int rc = flush_changelogs(ctx, 0, err);
    return rc != SP_OK ? rc : sp_store_end_batch(ctx, err);
}

int sp_store_flush_disk_changelogs(sp_ctx *ctx, const char **err) {
    return flush_changelogs(ctx, 1, err);
}
