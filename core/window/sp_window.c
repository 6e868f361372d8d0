/* Windowed aggregation in the core: tumbling, hopping and session windows
 * over event time, with grace, emitting a window's result when it closes
 * (final) or on every change (update). Accumulators live in a window store
 * (changelogged like any store), keyed by the grouping key and the window
 * start; a heap per partition orders open windows by the stream time at
 * which they close. Results wait in a list until the batch's records are
 * done, then join the batch as records of the operator's result topic, so
 * Lua runs the operators after the aggregation in the same protected call.
 * Hopping windows with final results and built-in aggregates keep panes
 * instead (sp_winop.panes): a record updates the one pane of `advance` ms
 * it falls in rather than every window it belongs to (12 of them for 1 h
 * by 5 min), and a closing window merges its size / advance panes.
 * Semantics follow design.md (Kafka Streams' rules). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sp_ctx.h"
#include "sp_store.h"
#include "sp_log.h"
#include "sp_window.h"

#define MAX_AGGS 32
/* A companion entry goes with its window; what a crash leaves behind (or
 * a sliding window's records) expires well after any window could use it. */
#define COMPANION_TTL(size, grace) (2 * ((size) + (grace)) + 3600000)

typedef struct hent {
    int64_t close_at;
    int64_t start;
    char *key;
    uint32_t klen;
} hent;

typedef struct widx {
    int32_t partition;
    /* the aggregation's own stream time on this partition: its input may
     * be a repartition topic whose time differs from the input's */
    int64_t stream, last_wall, last_event;
    int64_t saved; /* stream time as last written to the store */
    int built; /* the store's windows are in the heap */
    hent *h;
    size_t n, cap;
} widx;

typedef struct sp_winop {
    char *name;
    int type;
    int64_t size, advance, grace; /* session: size is the gap */
    int update;
    int32_t nagg;
    int32_t kinds[MAX_AGGS];
    char *names[MAX_AGGS];
    int store;
    int distinct; /* the companion store of distinct aggregates; -1 none */
    int32_t topic;
    int64_t late;
    widx *idx;
    int32_t nidx;
    /* update with an interval: the windows changed since the last
     * emission, per partition (a tree of their store keys) */
    int64_t interval, last_emit;
    int deferred; /* update results built at the next firing (an interval,
                   * or Lua aggregates that run after the record's add) */
    int custom;   /* aggregates in Lua: their accumulators are companion
                   * entries that the Lua side keeps */
    int panes;    /* the store holds panes [p, p + advance) and the heap each
                   * key's next window to close (see the file comment) */
    char tag;     /* the stored accumulators' first byte: 'w' windows, 'p'
                   * panes (a store kept under the other layout is refused) */
    sp_store changed;
    /* panes: each key's cursor, the start of its next window to close
     * (heap entries of another start are stale) */
    sp_store cursors;
} sp_winop;

/* Accumulator as stored: a tag byte, this header, two doubles per
 * aggregate. */
typedef struct acc_hdr {
    int64_t start, end; /* session: end is its last record's time */
    int64_t max_ts;
    int64_t n;
} acc_hdr;

typedef struct pending {
    char *key, *val;
    size_t klen, vlen;
    int64_t ts, start, end;
    int32_t partition, topic;
    void *seg;
    int tombstone;
} pending;

struct sp_windows {
    sp_winop **ops;
    int32_t nops;
    pending *pend;
    size_t npend, cap;
    sp_buf json, kbuf, abuf, cbuf;
    sp_buf rkey; /* the record's window key (sp_window_add, add_to) */
    int close_all;
    /* the last add: the windows the record joined (start, end, made by
     * it) and, for sessions, the starts of those merged into the one it
     * joined (Lua aggregates follow) */
    struct joined { int64_t start, end; int32_t made; } *joined;
    int32_t njoined, joined_cap;
    int64_t merged[64];
    int32_t nmerged;
};

static sp_windows *wins(sp_ctx *ctx) {
    if (!ctx->windows) {
        ctx->windows = calloc(1, sizeof *ctx->windows);
        if (ctx->windows) {
            sp_buf_init(&ctx->windows->json);
            sp_buf_init(&ctx->windows->kbuf);
            sp_buf_init(&ctx->windows->abuf);
            sp_buf_init(&ctx->windows->cbuf);
            sp_buf_init(&ctx->windows->rkey);
        }
    }
    return ctx->windows;
}

static void free_idx(widx *x) {
    for (size_t i = 0; i < x->n; i++) free(x->h[i].key);
    free(x->h);
    x->h = NULL;
    x->n = x->cap = 0;
    x->built = 0;
}

void sp_ctx_destroy_windows(sp_ctx *ctx) {
    sp_windows *w = ctx->windows;
    if (!w) return;
    for (int32_t i = 0; i < w->nops; i++) {
        sp_winop *op = w->ops[i];
        for (int32_t j = 0; j < op->nidx; j++) free_idx(&op->idx[j]);
        free(op->idx);
        sp_kv_destroy(&op->changed);
        sp_kv_destroy(&op->cursors);
        for (int32_t j = 0; j < op->nagg; j++) free(op->names[j]);
        free(op->name);
        free(op);
    }
    free(w->ops);
    for (size_t i = 0; i < w->npend; i++) {
        free(w->pend[i].key);
        free(w->pend[i].val);
    }
    free(w->pend);
    sp_buf_destroy(&w->json);
    sp_buf_destroy(&w->kbuf);
    sp_buf_destroy(&w->abuf);
    sp_buf_destroy(&w->cbuf);
    sp_buf_destroy(&w->rkey);
    free(w->joined);
    free(w);
    ctx->windows = NULL;
}

int sp_window_create(sp_ctx *ctx, const char *name, int type, int64_t size,
                     int64_t advance, int64_t grace, int emit_update,
                     int32_t nagg, const int32_t *kinds,
                     const char *const *names, int32_t *topic, const char **err) {
    sp_windows *w = wins(ctx);
    if (!w) goto oom;
    if (type != SP_WIN_TUMBLING && type != SP_WIN_HOPPING && type != SP_WIN_SESSION &&
        type != SP_WIN_SLIDING) {
        *err = "unknown window type";
        return SP_EINVAL;
    }
    if (size <= 0 || grace < 0 || nagg < 0 || nagg > MAX_AGGS ||
        (type == SP_WIN_HOPPING && (advance <= 0 || advance > size))) {
        *err = "bad window sizes (size > 0, 0 < advance <= size, grace >= 0) or too "
               "many aggregates";
        return SP_EINVAL;
    }
    /* the accumulators: a window store of the operator's name; a window
     * leaves it when it closes (no retention: the store's clock is the
     * partition's, which may run ahead of a repartitioned input) */
    int store = sp_store_open(ctx, name, SP_STORE_WINDOW, err);
    if (store < 0) return store;
    sp_winop **ops = realloc(w->ops, (size_t)(w->nops + 1) * sizeof *ops);
    if (!ops) goto oom;
    w->ops = ops;
    sp_winop *op = calloc(1, sizeof *op);
    if (!op) goto oom;
    op->name = strdup(name);
    op->type = type;
    op->size = size;
    op->advance = type == SP_WIN_HOPPING ? advance : size;
    op->grace = grace;
    op->update = emit_update != 0;
    op->interval = emit_update > 1 ? emit_update : 0;
    op->last_emit = -1;
    if (sp_kv_init(&op->changed, "changed", 0, NULL, 0) != 0) {
        free(op);
        goto oom;
    }
    if (sp_kv_init(&op->cursors, "cursors", 0, NULL, 0) != 0) {
        sp_kv_destroy(&op->changed);
        free(op);
        goto oom;
    }
    op->nagg = nagg;
    op->store = store;
    op->distinct = -1;
    for (int32_t i = 0; i < nagg; i++) {
        op->kinds[i] = kinds[i];
        op->names[i] = strdup(names[i]);
        if (kinds[i] == SP_AGG_CUSTOM) op->custom = 1;
        if (type == SP_WIN_SLIDING && (kinds[i] == SP_AGG_DISTINCT ||
                                       kinds[i] == SP_AGG_APPROX_DISTINCT)) {
            free(op);
            *err = "sliding windows take count, sum, min, max, avg, first, last and "
                   "aggregates written in Lua";
            return SP_EINVAL;
        }
        if ((kinds[i] == SP_AGG_DISTINCT || kinds[i] == SP_AGG_APPROX_DISTINCT ||
             kinds[i] == SP_AGG_CUSTOM || type == SP_WIN_SLIDING) &&
            op->distinct < 0) {
            /* the values seen (exact) or the HyperLogLog registers, per
             * window, next to the accumulators */
            char dname[512];
            snprintf(dname, sizeof dname, "%s.distinct", name);
            op->distinct = sp_store_open(ctx, dname, SP_STORE_KV, err);
            if (op->distinct < 0 ||
                sp_store_set_ttl(ctx, op->distinct, COMPANION_TTL(size, grace), err) != SP_OK) {
                free(op);
                return SP_EINVAL;
            }
        }
    }
    /* sliding windows compute results from their records, when needed */
    op->deferred = op->update && (op->interval > 0 || op->custom || type == SP_WIN_SLIDING);
    op->panes = type == SP_WIN_HOPPING && !op->update && op->distinct < 0 &&
                op->advance < size && size % op->advance == 0;
    op->tag = op->panes ? 'p' : 'w';
    char src[512];
    snprintf(src, sizeof src, "[window %s]", name);
    int t = sp_ctx_add_source(ctx, 4, src, err);
    if (t < 0) {
        free(op->name);
        free(op);
        return t;
    }
    op->topic = t;
    *topic = t;
    w->ops[w->nops] = op;
    return w->nops++;
oom:
    *err = "out of memory";
    return SP_ENOMEM;
}

int32_t sp_window_joined(sp_ctx *ctx, int64_t *starts, int64_t *ends, int32_t *made,
                         int32_t max) {
    sp_windows *w = ctx->windows;
    int32_t n = 0;
    for (; w && n < w->njoined && n < max; n++) {
        starts[n] = w->joined[n].start;
        ends[n] = w->joined[n].end;
        made[n] = w->joined[n].made;
    }
    return w ? w->njoined : 0;
}

/* Notes a window the record joined (or made, for a sliding window it is
 * not in), for the Lua aggregates. */
static int note_joined(sp_windows *w, int64_t start, int64_t end, int made) {
    if (w->njoined == w->joined_cap) {
        int32_t cap = w->joined_cap ? w->joined_cap * 2 : 16;
        struct joined *j = realloc(w->joined, (size_t)cap * sizeof *j);
        if (!j) return SP_ENOMEM;
        w->joined = j;
        w->joined_cap = cap;
    }
    w->joined[w->njoined++] = (struct joined){start, end, made};
    return SP_OK;
}

int32_t sp_window_merged(sp_ctx *ctx, int64_t *starts, int32_t max) {
    sp_windows *w = ctx->windows;
    int32_t n = 0;
    for (; w && n < w->nmerged && n < max; n++) starts[n] = w->merged[n];
    return n;
}

int32_t sp_window_companion(sp_ctx *ctx, int op) {
    sp_windows *w = ctx->windows;
    return w && op >= 0 && op < w->nops ? w->ops[op]->distinct : -1;
}

/* --- keys and accumulators ---------------------------------------------- */

/* The window store's key: the key's length (2 bytes), the key, the start
 * (8 bytes big-endian), as lua/sproc/store.lua writes it too. */
static int wkey(sp_buf *b, const char *key, size_t klen, int64_t start) {
    unsigned char hdr[2] = {(unsigned char)(klen >> 8), (unsigned char)klen};
    unsigned char t[8];
    for (int i = 7; i >= 0; i--, start >>= 8) t[i] = (unsigned char)(start & 0xff);
    sp_buf_reset(b);
    return sp_buf_append(b, hdr, 2) || sp_buf_append(b, key, klen) || sp_buf_append(b, t, 8);
}

/* A window key's start (wkey's last 8 bytes, big-endian). */
static int64_t get_be64(const char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | (unsigned char)p[i];
    return (int64_t)v;
}

static size_t acc_size(const sp_winop *op) {
    return 1 + sizeof(acc_hdr) + 16 * (size_t)op->nagg;
}

static void acc_init(const sp_winop *op, acc_hdr *h, double (*s)[2], int64_t start,
                     int64_t end) {
    h->start = start;
    h->end = end;
    h->max_ts = INT64_MIN;
    h->n = 0;
    for (int32_t i = 0; i < op->nagg; i++) {
        s[i][0] = 0;
        s[i][1] = 0;
        if (op->kinds[i] == SP_AGG_MIN) s[i][0] = INFINITY;
        if (op->kinds[i] == SP_AGG_MAX) s[i][0] = -INFINITY;
        if (op->kinds[i] == SP_AGG_FIRST) s[i][1] = INFINITY;  /* its time */
        if (op->kinds[i] == SP_AGG_LAST) s[i][1] = -INFINITY;
    }
}

static void acc_add(const sp_winop *op, acc_hdr *h, double (*s)[2], int64_t ts,
                    const double *v) {
    h->n++;
    if (ts > h->max_ts) h->max_ts = ts;
    for (int32_t i = 0; i < op->nagg; i++) {
        int k = op->kinds[i];
        if (k == SP_AGG_COUNT) {
            s[i][0] += 1;
            continue;
        }
        if (isnan(v[i])) continue; /* no value: the record does not count here */
        switch (k) {
        case SP_AGG_SUM: s[i][0] += v[i]; break;
        case SP_AGG_MIN: if (v[i] < s[i][0]) s[i][0] = v[i]; break;
        case SP_AGG_MAX: if (v[i] > s[i][0]) s[i][0] = v[i]; break;
        case SP_AGG_AVG: s[i][0] += v[i]; s[i][1] += 1; break;
        case SP_AGG_FIRST: if ((double)ts < s[i][1]) { s[i][0] = v[i]; s[i][1] = (double)ts; } break;
        case SP_AGG_LAST: if ((double)ts >= s[i][1]) { s[i][0] = v[i]; s[i][1] = (double)ts; } break;
        }
    }
}

static void acc_merge(const sp_winop *op, acc_hdr *h, double (*s)[2],
                      const acc_hdr *oh, double (*o)[2]) {
    h->n += oh->n;
    if (oh->max_ts > h->max_ts) h->max_ts = oh->max_ts;
    if (oh->start < h->start) h->start = oh->start;
    if (oh->end > h->end) h->end = oh->end;
    for (int32_t i = 0; i < op->nagg; i++) {
        switch (op->kinds[i]) {
        case SP_AGG_COUNT: case SP_AGG_SUM: s[i][0] += o[i][0]; break;
        case SP_AGG_MIN: if (o[i][0] < s[i][0]) s[i][0] = o[i][0]; break;
        case SP_AGG_MAX: if (o[i][0] > s[i][0]) s[i][0] = o[i][0]; break;
        case SP_AGG_AVG: s[i][0] += o[i][0]; s[i][1] += o[i][1]; break;
        case SP_AGG_FIRST: if (o[i][1] < s[i][1]) { s[i][0] = o[i][0]; s[i][1] = o[i][1]; } break;
        case SP_AGG_LAST: if (o[i][1] >= s[i][1]) { s[i][0] = o[i][0]; s[i][1] = o[i][1]; } break;
        }
    }
}

/* Reads an accumulator from stored bytes; 0 when they are not one. */
static int acc_read(const sp_winop *op, const char *val, size_t vlen, acc_hdr *h,
                    double (*s)[2]) {
    if (vlen != acc_size(op) || val[0] != op->tag) return 0;
    memcpy(h, val + 1, sizeof *h);
    memcpy(s, val + 1 + sizeof *h, 16 * (size_t)op->nagg);
    return 1;
}

static int acc_write(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key,
                     size_t klen, const acc_hdr *h, double (*s)[2], const char **err) {
    sp_windows *w = ctx->windows;
    sp_buf *a = &w->abuf;
    sp_buf_reset(a);
    if (sp_buf_putc(a, op->tag) || sp_buf_append(a, h, sizeof *h) ||
        sp_buf_append(a, s, 16 * (size_t)op->nagg) || wkey(&w->kbuf, key, klen, h->start)) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    /* the entry's time, for the store's retention: when the window ends */
    return sp_store_put_at(ctx, op->store, part, w->kbuf.data, w->kbuf.len, a->data,
                           a->len, h->end, err);
}

static int64_t close_at(const sp_winop *op, const acc_hdr *h) {
    /* tumbling and hopping: [start, end) closes at end + grace; a session
     * [first, last] once stream time passes last + gap + grace (Kafka
     * Streams takes a record merging into it until then) */
    if (op->type == SP_WIN_SESSION) return h->end + op->size + op->grace + 1;
    /* a sliding window's end is included: it closes a millisecond later */
    return op->type == SP_WIN_SLIDING ? h->end + 1 + op->grace : h->end + op->grace;
}

/* --- results ------------------------------------------------------------ */

static int dkey(sp_buf *b, const char *key, size_t klen, int64_t start, int agg,
                const char *v, size_t vn);
static int slide_compute(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key, size_t klen,
                         acc_hdr *h, double (*s)[2]);

static int json_result(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key, size_t klen,
                       sp_buf *b, const acc_hdr *h, double (*s)[2]) {
    int rc = 0;
    sp_buf_reset(b);
    rc |= sp_buf_append(b, "{\"window_start\":", 16);
    rc |= sp_json_write_int(b, h->start);
    rc |= sp_buf_append(b, ",\"window_end\":", 14);
    rc |= sp_json_write_int(b, h->end);
    for (int32_t i = 0; i < op->nagg; i++) {
        rc |= sp_buf_putc(b, ',');
        rc |= sp_json_write_string(b, op->names[i], strlen(op->names[i]));
        rc |= sp_buf_putc(b, ':');
        double v = s[i][0];
        switch (op->kinds[i]) {
        case SP_AGG_COUNT: case SP_AGG_DISTINCT: case SP_AGG_APPROX_DISTINCT:
            rc |= sp_json_write_int(b, (int64_t)v);
            continue;
        case SP_AGG_CUSTOM: {
            /* the Lua aggregate's accumulator, as the store keeps a table
             * (JSON after its tag); its result function runs in Lua */
            const char *cv;
            size_t cl;
            sp_buf *kb = &ctx->windows->cbuf;
            double d;
            if (dkey(kb, key, klen, h->start, 0x40 | i, NULL, 0) != 0 ||
                sp_store_get(ctx, op->distinct, part, kb->data, kb->len, &cv, &cl) != 1 || cl < 1)
                rc |= sp_buf_append(b, "null", 4);
            else if (cv[0] == 'j')
                rc |= sp_buf_append(b, cv + 1, cl - 1);
            else if (cv[0] == 'n' && cl == 1 + sizeof d && (memcpy(&d, cv + 1, sizeof d), 1))
                rc |= isfinite(d) ? sp_json_write_number(b, d) : sp_buf_append(b, "null", 4);
            else if (cv[0] == 's')
                rc |= sp_json_write_string(b, cv + 1, cl - 1);
            else if (cv[0] == 't' || cv[0] == 'f')
                rc |= cv[0] == 't' ? sp_buf_append(b, "true", 4) : sp_buf_append(b, "false", 5);
            else
                rc |= sp_buf_append(b, "null", 4);
            continue;
        }
        case SP_AGG_AVG: v = s[i][1] > 0 ? s[i][0] / s[i][1] : NAN; break;
        case SP_AGG_FIRST: case SP_AGG_LAST: if (isinf(s[i][1])) v = NAN; break;
        case SP_AGG_MIN: case SP_AGG_MAX: if (isinf(v)) v = NAN; break;
        }
        rc |= isnan(v) ? sp_buf_append(b, "null", 4) : sp_json_write_number(b, v);
    }
    rc |= sp_buf_putc(b, '}');
    return rc ? SP_ENOMEM : SP_OK;
}

static int queue_result(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key,
                        size_t klen, const acc_hdr *h, double (*s)[2], int tombstone) {
    sp_windows *w = ctx->windows;
    if (w->npend == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        pending *p = realloc(w->pend, cap * sizeof *p);
        if (!p) return SP_ENOMEM;
        w->pend = p;
        w->cap = cap;
    }
    pending *p = &w->pend[w->npend];
    memset(p, 0, sizeof *p);
    if (!tombstone && json_result(ctx, op, part, key, klen, &w->json, h, s) != SP_OK)
        return SP_ENOMEM;
    p->key = malloc(klen ? klen : 1);
    p->val = tombstone ? NULL : malloc(w->json.len);
    if (!p->key || (!tombstone && !p->val)) {
        free(p->key);
        free(p->val);
        return SP_ENOMEM;
    }
    memcpy(p->key, key, klen);
    p->klen = klen;
    if (!tombstone) {
        memcpy(p->val, w->json.data, w->json.len);
        p->vlen = w->json.len;
    }
    p->ts = h->max_ts;
    p->start = h->start;
    p->end = h->end;
    p->partition = part;
    p->topic = op->topic;
    p->tombstone = tombstone;
    /* a result belongs to the input segments of its partition in this
     * batch, like the store's changelog writes */
    sp_store *st = ctx->stores[op->store];
    sp_kv_part *kp = sp_kv_part_of(st, part, 0);
    p->seg = kp && kp->nsegs ? kp->segs[0] : NULL;
    w->npend++;
    return SP_OK;
}

/* Update results: at once, or with an interval only the window's latest
 * state when the interval has passed (bursts compact into one). */
static int updated(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key, size_t klen,
                   const acc_hdr *h, double (*s)[2]) {
    if (!op->deferred) return queue_result(ctx, op, part, key, klen, h, s, 0);
    sp_windows *w = ctx->windows;
    const char *err;
    sp_kv_part *p = sp_kv_part_of(&op->changed, part, 1);
    if (!p || wkey(&w->kbuf, key, klen, h->start) ||
        sp_kv_put(&op->changed, p, w->kbuf.data, w->kbuf.len, "", 0, 0, &err) != 0)
        return SP_ENOMEM;
    return SP_OK;
}

/* Emits the changed windows' current results (all of them, or one
 * partition's one window when it closes: wk non-NULL). */
static int emit_changed(sp_ctx *ctx, sp_winop *op, int32_t part, const char *wk, size_t wklen) {
    acc_hdr h;
    double s[MAX_AGGS][2];
    const char *v;
    size_t vl;
    for (int32_t i = 0; i < op->changed.nparts; i++) {
        sp_kv_part *p = &op->changed.parts[i];
        if (wk && p->partition != part) continue;
        for (sp_kv_node *n = wk ? sp_kv_get(p, wk, wklen) : sp_kv_seek(p, NULL, 0, 0); n;
             n = wk ? NULL : sp_kv_seek(p, n->key, n->klen, 1)) {
            size_t ulen = ((size_t)(unsigned char)n->key[0] << 8) | (unsigned char)n->key[1];
            if (sp_store_get(ctx, op->store, p->partition, n->key, n->klen, &v, &vl) == 1 &&
                acc_read(op, v, vl, &h, s) &&
                ((op->type == SP_WIN_SLIDING &&
                  slide_compute(ctx, op, p->partition, n->key + 2, ulen, &h, s) != SP_OK) ||
                 queue_result(ctx, op, p->partition, n->key + 2, ulen, &h, s, 0) != SP_OK))
                return SP_ENOMEM;
        }
        if (wk) {
            const char *err;
            sp_kv_delete(&op->changed, p, wk, wklen, &err);
        } else {
            sp_kv_clear(&op->changed, p);
        }
    }
    return SP_OK;
}

/* --- the open-window index ---------------------------------------------- */

static widx *index_of(sp_winop *op, int32_t part) {
    for (int32_t i = 0; i < op->nidx; i++)
        if (op->idx[i].partition == part) return &op->idx[i];
    widx *x = realloc(op->idx, (size_t)(op->nidx + 1) * sizeof *x);
    if (!x) return NULL;
    op->idx = x;
    x = &op->idx[op->nidx++];
    memset(x, 0, sizeof *x);
    x->partition = part;
    x->stream = x->last_wall = x->last_event = x->saved = -1;
    return x;
}

static void sift_up(hent *h, size_t i) {
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].close_at <= h[i].close_at) break;
        hent t = h[p];
        h[p] = h[i];
        h[i] = t;
        i = p;
    }
}

static void sift_down(hent *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && h[l].close_at < h[m].close_at) m = l;
        if (r < n && h[r].close_at < h[m].close_at) m = r;
        if (m == i) break;
        hent t = h[m];
        h[m] = h[i];
        h[i] = t;
        i = m;
    }
}

static int heap_push(widx *x, int64_t close, int64_t start, const char *key, size_t klen) {
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 64;
        hent *h = realloc(x->h, cap * sizeof *h);
        if (!h) return -1;
        x->h = h;
        x->cap = cap;
    }
    hent *e = &x->h[x->n];
    e->key = malloc(klen ? klen : 1);
    if (!e->key) return -1;
    memcpy(e->key, key, klen);
    e->klen = (uint32_t)klen;
    e->close_at = close;
    e->start = start;
    sift_up(x->h, x->n++);
    return 0;
}

/* After a restart or a restore the open windows are in the store only:
 * put them in the heap before the partition's first use. */
/* The aggregation's stream time of a partition is kept in its window
 * store under a key no window has (2 bytes), so that a restart goes on
 * from it, changelogged with the windows. */
static const char STREAM_KEY[2] = {'\xff', '\xff'};

static int save_stream(sp_ctx *ctx, sp_winop *op, widx *x) {
    const char *err;
    if (x->stream == x->saved) return SP_OK;
    int rc = sp_store_put_at(ctx, op->store, x->partition, STREAM_KEY, 2,
                             (const char *)&x->stream, sizeof x->stream, x->stream, &err);
    if (rc == SP_OK) x->saved = x->stream;
    return rc;
}

static int64_t first_window(const sp_winop *op, int64_t p, int64_t stream);
static int set_cursor(sp_winop *op, int32_t part, const char *key, size_t klen, int64_t c,
                      widx *x);

/* An accumulator of this shape: the aggregation's (its tag, size and, for
 * fixed windows, its length); 0 for one kept under another layout (the
 * aggregation's window sizes, emit mode or aggregates changed but its
 * name did not), -1 for what is not an accumulator. */
static int fits(const sp_winop *op, const char *v, size_t vl, const acc_hdr *h) {
    if (vl < 1 || (v[0] != 'w' && v[0] != 'p')) return -1;
    if (v[0] != op->tag || vl != acc_size(op)) return 0;
    if (op->type == SP_WIN_TUMBLING || op->type == SP_WIN_HOPPING)
        return h->end - h->start == (op->panes ? op->advance : op->size);
    return 1;
}

static int build_index(sp_ctx *ctx, sp_winop *op, widx *x, const char **err) {
    const char *k, *v;
    size_t kl, vl;
    if (sp_store_get(ctx, op->store, x->partition, STREAM_KEY, 2, &v, &vl) == 1 &&
        vl == sizeof(int64_t)) {
        int64_t t;
        memcpy(&t, v, sizeof t);
        if (t > x->stream) x->stream = t;
        x->saved = t;
    }
    acc_hdr h;
    double s[MAX_AGGS][2];
    const char *from = NULL;
    size_t flen = 0;
    int strict = 0, rc = SP_OK;
    char *last = NULL, *prev = NULL;
    size_t prevlen = 0;
    x->built = 1;
    while (rc == SP_OK && sp_store_next(ctx, op->store, x->partition, from, flen, strict, &k,
                                        &kl, &v, &vl) == 1) {
        char *copy = malloc(kl);
        if (!copy) {
            rc = SP_ENOMEM;
            break;
        }
        memcpy(copy, k, kl);
        from = copy;
        flen = kl;
        strict = 1;
        if (kl < 10) { /* the stream-time entry */
            free(last);
            last = copy;
            continue;
        }
        if (vl >= 1 + sizeof h) memcpy(&h, v + 1, sizeof h);
        int f = vl >= 1 + sizeof h ? fits(op, v, vl, &h) : -1;
        if (f == 0) {
            static char msg[512];
            snprintf(msg, sizeof msg,
                     "aggregate(%s): its store holds windows kept another way (the "
                     "window's size, advance, emit mode or aggregates changed under the "
                     "same name): keep them, or give the aggregation a new name",
                     op->name);
            *err = msg;
            rc = SP_EINVAL;
        } else if (f > 0 && acc_read(op, v, vl, &h, s)) {
            size_t ulen = ((size_t)(unsigned char)k[0] << 8) | (unsigned char)k[1];
            if (!op->panes) {
                if (heap_push(x, close_at(op, &h), h.start, copy + 2, ulen) != 0) rc = SP_ENOMEM;
            } else if (!prev || prevlen != kl || memcmp(prev, copy, kl - 8) != 0) {
                /* a key's first pane: its cursor, at the first window
                 * still open */
                rc = set_cursor(op, x->partition, copy + 2, ulen,
                                first_window(op, h.start, x->stream), x);
                free(prev);
                prev = malloc(kl);
                if (prev) memcpy(prev, copy, kl), prevlen = kl;
            }
        }
        free(last);
        last = copy;
    }
    free(last);
    free(prev);
    return rc;
}

/* --- distinct counts ---------------------------------------------------- */

#define HLL_P 11
#define HLL_M (1 << HLL_P)

static uint64_t hash64(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a, then splitmix64's finalizer */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

static void hll_add(uint8_t *reg, const char *v, size_t n) {
    uint64_t h = hash64(v, n);
    uint32_t j = (uint32_t)(h >> (64 - HLL_P));
    uint64_t w = (h << HLL_P) | ((uint64_t)1 << (HLL_P - 1));
    uint8_t rank = (uint8_t)(__builtin_clzll(w) + 1);
    if (rank > reg[j]) reg[j] = rank;
}

static double hll_estimate(const uint8_t *reg) {
    double sum = 0, m = HLL_M;
    int zeros = 0;
    for (int j = 0; j < HLL_M; j++) {
        sum += ldexp(1.0, -reg[j]);
        zeros += reg[j] == 0;
    }
    double e = 0.7213 / (1 + 1.079 / m) * m * m / sum;
    if (e <= 2.5 * m && zeros > 0) e = m * log(m / zeros); /* small range */
    return floor(e + 0.5);
}

/* The companion key: the window's key, then the aggregate (high bit: HLL
 * registers), then for exact counts the value. */
static int dkey(sp_buf *b, const char *key, size_t klen, int64_t start, int agg,
                const char *v, size_t vn) {
    unsigned char a = (unsigned char)agg;
    return wkey(b, key, klen, start) || sp_buf_append(b, &a, 1) || (vn && sp_buf_append(b, v, vn));
}

static int distinct_add(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key,
                        size_t klen, const acc_hdr *h, double (*s)[2],
                        const char *const *sv, const size_t *sl, const char **err) {
    sp_windows *w = ctx->windows;
    for (int32_t i = 0; i < op->nagg && sv; i++) {
        int k = op->kinds[i];
        if ((k != SP_AGG_DISTINCT && k != SP_AGG_APPROX_DISTINCT) || !sv[i]) continue;
        const char *v;
        size_t vl;
        if (k == SP_AGG_DISTINCT) {
            if (dkey(&w->kbuf, key, klen, h->start, i, sv[i], sl[i])) return SP_ENOMEM;
            if (sp_store_get(ctx, op->distinct, part, w->kbuf.data, w->kbuf.len, &v, &vl) == 1)
                continue;
            int rc = sp_store_put_at(ctx, op->distinct, part, w->kbuf.data, w->kbuf.len, "", 0,
                                     h->end, err);
            if (rc != SP_OK) return rc;
            s[i][0] += 1;
            continue;
        }
        uint8_t reg[HLL_M];
        if (dkey(&w->kbuf, key, klen, h->start, 0x80 | i, NULL, 0)) return SP_ENOMEM;
        if (sp_store_get(ctx, op->distinct, part, w->kbuf.data, w->kbuf.len, &v, &vl) == 1 &&
            vl == HLL_M)
            memcpy(reg, v, HLL_M);
        else
            memset(reg, 0, HLL_M);
        hll_add(reg, sv[i], sl[i]);
        s[i][0] = hll_estimate(reg);
        int rc = sp_store_put_at(ctx, op->distinct, part, w->kbuf.data, w->kbuf.len,
                                 (const char *)reg, HLL_M, h->end, err);
        if (rc != SP_OK) return rc;
    }
    return SP_OK;
}

/* Calls fn for each companion entry of a window (key copied: fn may
 * change the store). */
static int each_distinct(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key,
                         size_t klen, int64_t start,
                         int (*fn)(sp_ctx *, sp_winop *, int32_t, const char *, size_t,
                                   const char *, size_t, void *),
                         void *arg) {
    sp_windows *w = ctx->windows;
    if (op->distinct < 0) return SP_OK;
    if (wkey(&w->kbuf, key, klen, start)) return SP_ENOMEM;
    size_t plen = w->kbuf.len;
    char *prefix = malloc(plen), *cur = NULL;
    if (!prefix) return SP_ENOMEM;
    memcpy(prefix, w->kbuf.data, plen);
    const char *k, *v;
    size_t kl, vl, curlen = plen;
    int strict = 0, rc = SP_OK;
    cur = malloc(plen);
    if (!cur) rc = SP_ENOMEM;
    else memcpy(cur, prefix, plen);
    while (rc == SP_OK && sp_store_next(ctx, op->distinct, part, cur, curlen, strict, &k, &kl, &v,
                                        &vl) == 1) {
        if (kl < plen || memcmp(k, prefix, plen) != 0) break;
        char *nk = malloc(kl + vl + 1);
        if (!nk) {
            rc = SP_ENOMEM;
            break;
        }
        memcpy(nk, k, kl);
        memcpy(nk + kl, v, vl);
        free(cur);
        cur = nk;
        curlen = kl;
        strict = 1;
        rc = fn(ctx, op, part, nk, kl, nk + kl, vl, arg);
    }
    free(cur);
    free(prefix);
    return rc;
}

static int drop_one(sp_ctx *ctx, sp_winop *op, int32_t part, const char *k, size_t kl,
                    const char *v, size_t vl, void *arg) {
    const char *err;
    (void)v, (void)vl, (void)arg;
    return sp_store_delete(ctx, op->distinct, part, k, kl, &err);
}

typedef struct move_arg {
    const char *key;
    size_t klen;
    acc_hdr *to;
} move_arg;

/* A merged-away session's entries go to the session it merged into. */
static int move_one(sp_ctx *ctx, sp_winop *op, int32_t part, const char *k, size_t kl,
                    const char *v, size_t vl, void *arg) {
    move_arg *m = arg;
    sp_windows *w = ctx->windows;
    const char *err, *cur;
    size_t curlen;
    size_t tail = 2 + m->klen + 8; /* what follows the window's key */
    unsigned char agg = (unsigned char)k[tail];
    if (agg & 0x40) return SP_OK; /* a Lua aggregate's: Lua merges those */
    if (dkey(&w->kbuf, m->key, m->klen, m->to->start, agg, k + tail + 1, kl - tail - 1))
        return SP_ENOMEM;
    if (agg & 0x80) {
        uint8_t reg[HLL_M];
        memset(reg, 0, HLL_M);
        if (sp_store_get(ctx, op->distinct, part, w->kbuf.data, w->kbuf.len, &cur, &curlen) == 1 &&
            curlen == HLL_M)
            memcpy(reg, cur, HLL_M);
        for (size_t j = 0; j < HLL_M && vl == HLL_M; j++)
            if ((uint8_t)v[j] > reg[j]) reg[j] = (uint8_t)v[j];
        int rc = sp_store_put_at(ctx, op->distinct, part, w->kbuf.data, w->kbuf.len,
                                 (const char *)reg, HLL_M, m->to->end, &err);
        if (rc != SP_OK) return rc;
    } else {
        int rc = sp_store_put_at(ctx, op->distinct, part, w->kbuf.data, w->kbuf.len, "", 0,
                                 m->to->end, &err);
        if (rc != SP_OK) return rc;
    }
    return sp_store_delete(ctx, op->distinct, part, k, kl, &err);
}

typedef struct count_arg {
    const sp_winop *op;
    size_t tail;
    double (*s)[2];
} count_arg;

static int count_one(sp_ctx *ctx, sp_winop *op, int32_t part, const char *k, size_t kl,
                     const char *v, size_t vl, void *arg) {
    count_arg *c = arg;
    (void)ctx, (void)op, (void)part, (void)kl;
    unsigned char agg = (unsigned char)k[c->tail];
    if (agg & 0x40) return SP_OK; /* a Lua aggregate's: Lua merges those */
    if (agg & 0x80) {
        if (vl == HLL_M) c->s[agg & 0x7f][0] = hll_estimate((const uint8_t *)v);
    } else {
        c->s[agg][0] += 1;
    }
    return SP_OK;
}

/* After sessions merged: their distinct counts are those of the union. */
static int distinct_recount(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key,
                            size_t klen, const acc_hdr *h, double (*s)[2]) {
    count_arg c = {op, 2 + klen + 8, s};
    for (int32_t i = 0; i < op->nagg; i++)
        if (op->kinds[i] == SP_AGG_DISTINCT || op->kinds[i] == SP_AGG_APPROX_DISTINCT) s[i][0] = 0;
    return each_distinct(ctx, op, part, key, klen, h->start, count_one, &c);
}

/* --- adding a record ---------------------------------------------------- */

static int close_due(sp_ctx *ctx, sp_winop *op, widx *x, int64_t stream);

/* The window store's key of the record's window at start, in place in the
 * buffer that sp_window_add filled with the key (wkey): only the start
 * changes from one window to the next. */
static void wkey_start(sp_buf *b, int64_t start) {
    unsigned char *t = (unsigned char *)b->data + b->len - 8;
    for (int i = 7; i >= 0; i--, start >>= 8) t[i] = (unsigned char)(start & 0xff);
}

static int add_to(sp_ctx *ctx, sp_winop *op, int32_t part, widx *x, const char *key,
                  size_t klen, int64_t start, int64_t end, int64_t ts, const double *vals,
                  const char *const *sv, const size_t *sl, int *made, const char **err) {
    sp_windows *w = ctx->windows;
    acc_hdr h;
    double s[MAX_AGGS][2];
    const char *v;
    size_t vl;
    wkey_start(&w->rkey, start);
    /* in memory: the accumulator changes in place, one lookup */
    int created, found, rc;
    char *acc = sp_store_upsert(ctx, op->store, part, w->rkey.data, w->rkey.len,
                                    acc_size(op), end, &created, err);
    if (acc) {
        found = !created && acc_read(op, acc, acc_size(op), &h, s);
        if (!found) acc_init(op, &h, s, start, end);
        acc_add(op, &h, s, ts, vals);
        rc = op->distinct >= 0 ? distinct_add(ctx, op, part, key, klen, &h, s, sv, sl, err)
                               : SP_OK;
        if (rc != SP_OK) return rc;
        acc[0] = op->tag;
        memcpy(acc + 1, &h, sizeof h);
        memcpy(acc + 1 + sizeof h, s, 16 * (size_t)op->nagg);
    } else if (created < 0) {
        return SP_ENOMEM;
    } else {
        found = sp_store_get(ctx, op->store, part, w->rkey.data, w->rkey.len, &v, &vl) == 1 &&
                acc_read(op, v, vl, &h, s);
        if (!found) acc_init(op, &h, s, start, end);
        acc_add(op, &h, s, ts, vals);
        rc = distinct_add(ctx, op, part, key, klen, &h, s, sv, sl, err);
        if (rc != SP_OK) return rc;
        rc = acc_write(ctx, op, part, key, klen, &h, s, err);
        if (rc != SP_OK) return rc;
    }
    if (made) *made = !found;
    if (op->custom && note_joined(w, start, end, !found) != SP_OK) return SP_ENOMEM;
    /* a window closes from the heap; panes through their key's cursor */
    if (!found && !op->panes && heap_push(x, close_at(op, &h), start, key, klen) != 0)
        return SP_ENOMEM;
    if (op->update && updated(ctx, op, part, key, klen, &h, s) != SP_OK) return SP_ENOMEM;
    return SP_OK;
}

/* --- panes ---------------------------------------------------------------- */

/* The earliest window that holds pane p and is still open at stream time
 * stream: its start is a multiple of advance, at least 0, above
 * stream - size - grace (a window closes when stream time reaches its end
 * plus grace). Above p when every window of the pane has closed. */
static int64_t first_window(const sp_winop *op, int64_t p, int64_t stream) {
    int64_t s = p - op->size + op->advance;
    if (s < 0) s = 0;
    if (stream >= 0) {
        int64_t lim = stream - op->size - op->grace, q = lim / op->advance;
        if (lim % op->advance != 0 && lim < 0) q--;
        int64_t open = (q + 1) * op->advance; /* the smallest multiple above lim */
        if (open > s) s = open;
    }
    return s;
}

/* A key's cursor (NULL: it has no panes), and its setting. */
static int64_t *cursor_of(sp_winop *op, int32_t part, const char *key, size_t klen) {
    sp_kv_part *p = sp_kv_part_of(&op->cursors, part, 0);
    sp_kv_node *n = p ? sp_kv_get(p, key, klen) : NULL;
    return n ? (int64_t *)(void *)n->val : NULL;
}

static int set_cursor(sp_winop *op, int32_t part, const char *key, size_t klen, int64_t c,
                      widx *x) {
    const char *err;
    sp_kv_part *p = sp_kv_part_of(&op->cursors, part, 1);
    if (!p || sp_kv_put(&op->cursors, p, key, klen, (const char *)&c, sizeof c, 0, &err) != 0)
        return SP_ENOMEM;
    return heap_push(x, c + op->size + op->grace, c, key, klen) == 0 ? SP_OK : SP_ENOMEM;
}

/* A record goes to its pane if any window it belongs to is still open;
 * *late counts those that are not. */
static int add_pane(sp_ctx *ctx, sp_winop *op, int32_t part, widx *x, const char *key,
                    size_t klen, int64_t ts, int64_t stream, const double *vals, int *late,
                    const char **err) {
    int64_t p = ts - ts % op->advance;
    int64_t lo = p - op->size + op->advance;
    if (lo < 0) lo = 0;
    int64_t s = first_window(op, p, stream);
    if (s > p) {
        *late = (int)((p - lo) / op->advance + 1);
        return SP_OK;
    }
    *late = (int)((s - lo) / op->advance);
    int made = 0;
    int rc = add_to(ctx, op, part, x, key, klen, p, p + op->advance, ts, vals, NULL, NULL,
                    &made, err);
    /* a new pane may hold the key's earliest open window (a record out of
     * order): the cursor moves back to it */
    if (rc == SP_OK && made) {
        int64_t *cur = cursor_of(op, part, key, klen);
        if (!cur || s < *cur) rc = set_cursor(op, part, key, klen, s, x);
    }
    return rc;
}

/* The key's window at cursor e closes: its panes merge into the result
 * (when it has any: a window without records has none), those no later
 * window holds leave, and the cursor moves to the next window with a
 * pane. */
static int close_panes(sp_ctx *ctx, sp_winop *op, widx *x, const hent *e) {
    sp_windows *w = ctx->windows;
    int64_t *cur = cursor_of(op, x->partition, e->key, e->klen);
    if (!cur || *cur != e->start) return SP_OK; /* a cursor moved since */
    int64_t c = e->start, end = c + op->size, next = -1;
    acc_hdr h, ph;
    double s[MAX_AGGS][2], ps[MAX_AGGS][2];
    acc_init(op, &h, s, c, end);
    int any = 0, strict = 0, rc = SP_OK;
    const char *k, *v, *err;
    size_t kl, vl;
    sp_buf *from = &w->cbuf;
    if (wkey(from, e->key, e->klen, 0) != 0) return SP_ENOMEM;
    while (rc == SP_OK && sp_store_next(ctx, op->store, x->partition, from->data, from->len,
                                        strict, &k, &kl, &v, &vl) == 1) {
        if (kl != from->len || memcmp(k, from->data, kl - 8) != 0) break; /* another key */
        int64_t pane = get_be64(k + kl - 8);
        if (pane >= end) {
            if (next < 0) next = pane;
            break;
        }
        if (pane >= c && acc_read(op, v, vl, &ph, ps)) {
            acc_merge(op, &h, s, &ph, ps);
            any = 1;
        }
        if (pane >= c + op->advance && next < 0) next = pane;
        memcpy(from->data, k, kl);
        strict = 1;
        if (pane < c + op->advance)
            rc = sp_store_delete(ctx, op->store, x->partition, from->data, from->len, &err);
    }
    h.start = c;
    h.end = end;
    if (rc == SP_OK && any) rc = queue_result(ctx, op, x->partition, e->key, e->klen, &h, s, 0);
    if (rc == SP_OK && next >= 0) {
        int64_t ns = next - op->size + op->advance;
        if (ns < c + op->advance) ns = c + op->advance;
        rc = set_cursor(op, x->partition, e->key, e->klen, ns, x);
    } else if (rc == SP_OK) {
        sp_kv_part *p = sp_kv_part_of(&op->cursors, x->partition, 0);
        if (p) sp_kv_delete(&op->cursors, p, e->key, e->klen, &err);
    }
    return rc;
}

/* Sessions of key that the record at ts touches (at most the gap away)
 * merge with it into one (Kafka Streams' findSessions). A session that
 * stream time closed is not among them, whether or not the batch's end
 * removed it yet, so that results do not depend on batching. A record
 * whose merged session would end before stream time - gap - grace is
 * late, and changes nothing. */
static int add_session(sp_ctx *ctx, sp_winop *op, int32_t part, widx *x, const char *key,
                       size_t klen, int64_t ts, int64_t stream, const double *vals,
                       const char *const *sv, const size_t *sl, const char **err) {
    sp_windows *w = ctx->windows;
    acc_hdr h, oh;
    double s[MAX_AGGS][2], o[MAX_AGGS][2];
    /* as Kafka Streams: a fresh accumulator, the sessions merged into it
     * in time order, then the record (so that last() of equal times is
     * the record's, first() the earlier one's) */
    acc_init(op, &h, s, ts, ts);
    /* a key's sessions are adjacent in the store, in start order */
    int64_t merged[64];
    int nmerged = 0;
    if (wkey(&w->kbuf, key, klen, 0)) return SP_ENOMEM;
    char *from = malloc(w->kbuf.len);
    if (!from) return SP_ENOMEM;
    memcpy(from, w->kbuf.data, w->kbuf.len);
    size_t flen = w->kbuf.len;
    int strict = 0, rc = SP_OK;
    const char *k, *v;
    size_t kl, vl;
    while (nmerged < 64 && sp_store_next(ctx, op->store, part, from, flen, strict, &k, &kl, &v,
                                         &vl) == 1) {
        if (kl != klen + 10 || memcmp(k + 2, key, klen) != 0 ||
            (size_t)(((unsigned char)k[0] << 8) | (unsigned char)k[1]) != klen)
            break;
        memcpy(from, k, kl); /* same length as the probe */
        strict = 1;
        if (!acc_read(op, v, vl, &oh, o)) continue;
        if (oh.start > ts + op->size) break; /* later sessions are further away */
        if (oh.end < ts - op->size || close_at(op, &oh) <= stream) continue;
        acc_merge(op, &h, s, &oh, o);
        merged[nmerged++] = oh.start;
    }
    acc_add(op, &h, s, ts, vals);
    /* late: the merged session closed already */
    if (h.end < stream - op->grace - op->size) {
        free(from);
        return 1;
    }
    /* update: each merged session's result is withdrawn (a tombstone),
     * as Kafka Streams removes and forwards it */
    for (int i = 0; i < nmerged && op->update && rc == SP_OK; i++) {
        if (wkey(&w->kbuf, key, klen, merged[i]) ||
            sp_store_get(ctx, op->store, part, w->kbuf.data, w->kbuf.len, &v, &vl) != 1 ||
            !acc_read(op, v, vl, &oh, o))
            rc = SP_ENOMEM;
        else
            rc = queue_result(ctx, op, part, key, klen, &oh, o, 1);
    }
    free(from);
    if (rc != SP_OK) return rc;
    move_arg m = {key, klen, &h};
    w->njoined = 0;
    if (op->custom && note_joined(w, h.start, h.end, 1) != SP_OK) return SP_ENOMEM;
    for (int i = 0; i < nmerged && w->nmerged < 64; i++) w->merged[w->nmerged++] = merged[i];
    for (int i = 0; i < nmerged; i++) {
        if (wkey(&w->kbuf, key, klen, merged[i])) return SP_ENOMEM;
        rc = sp_store_delete(ctx, op->store, part, w->kbuf.data, w->kbuf.len, err);
        if (rc == SP_OK && merged[i] != h.start)
            rc = each_distinct(ctx, op, part, key, klen, merged[i], move_one, &m);
        if (rc != SP_OK) return rc;
    }
    rc = distinct_add(ctx, op, part, key, klen, &h, s, sv, sl, err);
    if (rc == SP_OK && nmerged > 0 && op->distinct >= 0)
        rc = distinct_recount(ctx, op, part, key, klen, &h, s);
    if (rc != SP_OK) return rc;
    rc = acc_write(ctx, op, part, key, klen, &h, s, err);
    if (rc != SP_OK) return rc;
    /* the heap keeps stale entries of merged sessions: closing skips them */
    if (heap_push(x, close_at(op, &h), h.start, key, klen) != 0) return SP_ENOMEM;
    if (op->update && updated(ctx, op, part, key, klen, &h, s) != SP_OK) return SP_ENOMEM;
    return 0;
}

/* --- sliding windows ------------------------------------------------------
 * Kafka Streams' SlidingWindows: windows [start, start + size], both ends
 * included, defined by the records: each record's left window ends at it,
 * and its right window starts 1 ms after it when a record follows within
 * size. The records themselves are kept (companion entries 0x20, by time)
 * and a window's aggregate is computed from them when it is needed; the
 * window store holds a marker per window. */

static uint64_t slide_seq;

static int raw_key(sp_buf *b, const char *key, size_t klen, int64_t t, uint64_t seq) {
    unsigned char tail[9];
    tail[0] = 0x20;
    for (int i = 8; i >= 1; i--, seq >>= 8) tail[i] = (unsigned char)(seq & 0xff);
    return wkey(b, key, klen, t) || sp_buf_append(b, tail, 9);
}

/* Calls fn(t, vals) for each kept record of key with from <= t <= to. */
static int each_raw(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key, size_t klen,
                    int64_t from, int64_t to,
                    void (*fn)(void *arg, int64_t t, const double *vals), void *arg) {
    sp_windows *w = ctx->windows;
    if (from < 0) from = 0;
    if (wkey(&w->cbuf, key, klen, from)) return SP_ENOMEM;
    size_t plen = 2 + klen;
    char *cur = malloc(w->cbuf.len + 9);
    if (!cur) return SP_ENOMEM;
    memcpy(cur, w->cbuf.data, w->cbuf.len);
    size_t curlen = w->cbuf.len;
    int strict = 0;
    const char *k, *v;
    size_t kl, vl;
    while (sp_store_next(ctx, op->distinct, part, cur, curlen, strict, &k, &kl, &v, &vl) == 1) {
        /* the key's entries are in time order; Lua aggregates keep
         * entries of their own among them (shorter) */
        if (kl < plen + 9 || kl > plen + 17 || memcmp(k, cur, plen) != 0) break;
        int64_t t = get_be64(k + plen);
        if (t > to) break;
        memcpy(cur, k, kl);
        curlen = kl;
        strict = 1;
        if (kl != plen + 17 || (unsigned char)k[plen + 8] != 0x20 ||
            vl != 8 * (size_t)op->nagg)
            continue;
        double vals[MAX_AGGS];
        memcpy(vals, v, vl);
        fn(arg, t, vals);
    }
    free(cur);
    return SP_OK;
}

typedef struct slide_acc {
    const sp_winop *op;
    acc_hdr *h;
    double (*s)[2];
} slide_acc;

static void slide_add(void *arg, int64_t t, const double *vals) {
    slide_acc *a = arg;
    acc_add(a->op, a->h, a->s, t, vals);
}

static void slide_any(void *arg, int64_t t, const double *vals) {
    (void)t, (void)vals;
    *(int *)arg = 1;
}

static void slide_times(void *arg, int64_t t, const double *vals) {
    (void)vals;
    int64_t *a = arg; /* a[0]: count, then times */
    if (a[0] < 255 && (a[0] == 0 || a[a[0]] != t)) a[++a[0]] = t;
}

/* The window's aggregate, from its records. */
static int slide_compute(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key, size_t klen,
                         acc_hdr *h, double (*s)[2]) {
    int64_t start = h->start, end = h->end;
    acc_init(op, h, s, start, end);
    slide_acc a = {op, h, s};
    return each_raw(ctx, op, part, key, klen, start, end, slide_add, &a);
}

/* A window marker, made once: 1 when it is new, 0 when it exists or
 * closed already. */
static int slide_window(sp_ctx *ctx, sp_winop *op, int32_t part, widx *x, const char *key,
                        size_t klen, int64_t start, int64_t stream, const char **err) {
    sp_windows *w = ctx->windows;
    const char *v;
    size_t vl;
    acc_hdr h;
    double s[MAX_AGGS][2];
    int64_t end = start + op->size;
    if (end + 1 + op->grace <= stream) return 0; /* closed already */
    if (wkey(&w->kbuf, key, klen, start)) return SP_ENOMEM;
    if (sp_store_get(ctx, op->store, part, w->kbuf.data, w->kbuf.len, &v, &vl) == 1) return 0;
    acc_init(op, &h, s, start, end);
    int rc = acc_write(ctx, op, part, key, klen, &h, s, err);
    if (rc != SP_OK) return rc;
    if (heap_push(x, close_at(op, &h), start, key, klen) != 0) return SP_ENOMEM;
    return 1;
}

/* A record at t (Kafka Streams' KStreamSlidingWindowAggregate): dropped
 * when even [t, t + size] is behind stream time - grace; otherwise kept,
 * in every open window that holds it (its left window [t - size, t] only
 * when that is still open: a record late for it counts as late), with its
 * right window [t + 1, t + 1 + size] made when a record follows within
 * size, and the right windows of the records before it within size. */
static int add_sliding(sp_ctx *ctx, sp_winop *op, int32_t part, widx *x, const char *key,
                       size_t klen, int64_t t, int64_t stream, const double *vals,
                       const char **err) {
    sp_windows *w = ctx->windows;
    if (t + op->size + op->grace < stream) return 1;
    int late = t + op->grace < stream;
    if (raw_key(&w->kbuf, key, klen, t, ++slide_seq + (uint64_t)ctx->wall_ms * 1000000u))
        return SP_ENOMEM;
    int rc = sp_store_put_at(ctx, op->distinct, part, w->kbuf.data, w->kbuf.len,
                             (const char *)vals, 8 * (size_t)op->nagg, t, err);
    if (rc != SP_OK) return rc;
    w->njoined = 0;
    /* the windows that hold it and are new (for the Lua aggregates) */
    int64_t made[257];
    int nmade = 0;
    /* the left window; early records share [0, size] */
    int64_t left = t - op->size < 0 ? 0 : t - op->size;
    rc = slide_window(ctx, op, part, x, key, klen, left, stream, err);
    if (rc > 0) made[nmade++] = left;
    /* its right window, when a record follows within size: a window it
     * is not in, new all the same */
    int after = 0, right = 0;
    if (rc >= 0) rc = each_raw(ctx, op, part, key, klen, t + 1, t + op->size, slide_any, &after);
    if (rc >= 0 && after) rc = right = slide_window(ctx, op, part, x, key, klen, t + 1, stream, err);
    /* the right windows of the records before it within size now hold a
     * record */
    int64_t times[256] = {0};
    if (rc >= 0) rc = each_raw(ctx, op, part, key, klen, t - op->size, t - 1, slide_times, times);
    for (int64_t i = 1; rc >= 0 && i <= times[0]; i++) {
        rc = slide_window(ctx, op, part, x, key, klen, times[i] + 1, stream, err);
        if (rc > 0) made[nmade++] = times[i] + 1;
    }
    if (rc < 0) return rc;
    /* every open window that holds it changed (and the new right window
     * is news): results in update mode, accumulators of Lua aggregates */
    if (right > 0) {
        acc_hdr h;
        double s[MAX_AGGS][2];
        acc_init(op, &h, s, t + 1, t + 1 + op->size);
        if ((op->update && updated(ctx, op, part, key, klen, &h, s) != SP_OK) ||
            (op->custom && note_joined(w, t + 1, t + 1 + op->size, 1) != SP_OK))
            return SP_ENOMEM;
    }
    if (!op->update && !op->custom) return late;
    const char *k, *v;
    size_t kl, vl;
    if (wkey(&w->kbuf, key, klen, left)) return SP_ENOMEM;
    char *cur = malloc(w->kbuf.len);
    if (!cur) return SP_ENOMEM;
    memcpy(cur, w->kbuf.data, w->kbuf.len);
    size_t curlen = w->kbuf.len;
    int strict = 0;
    while (rc >= 0 &&
           sp_store_next(ctx, op->store, part, cur, curlen, strict, &k, &kl, &v, &vl) == 1) {
        acc_hdr h;
        double s[MAX_AGGS][2];
        if (kl != curlen || memcmp(k, cur, 2 + klen) != 0 || !acc_read(op, v, vl, &h, s) ||
            h.start > t)
            break;
        memcpy(cur, k, kl);
        strict = 1;
        /* not the windows stream time closed (the batch's end removes them) */
        if (h.end < t || close_at(op, &h) <= stream) continue;
        int is_new = 0;
        for (int i = 0; i < nmade; i++) is_new |= made[i] == h.start;
        if ((op->update && updated(ctx, op, part, key, klen, &h, s) != SP_OK) ||
            (op->custom && note_joined(w, h.start, h.end, is_new) != SP_OK))
            rc = SP_ENOMEM;
    }
    free(cur);
    return rc < 0 ? rc : late;
}

int sp_window_add(sp_ctx *ctx, int opi, const char *key, size_t klen, int64_t ts,
                  const double *vals, const char *const *sv, const size_t *sl,
                  const char **err) {
    sp_windows *w = ctx->windows;
    if (!w || opi < 0 || opi >= w->nops || !key) {
        *err = key ? "no such window operator" : "a window needs a key";
        return SP_EINVAL;
    }
    if (ctx->batch.cur < 0 || ctx->batch.cur >= ctx->batch.n) {
        *err = "no record is being processed";
        return SP_ESTATE;
    }
    if (klen > 65535) {
        *err = "a grouping key is at most 65535 bytes";
        return SP_EINVAL;
    }
    if (ts < 0) {
        *err = "a windowed record needs a time >= 0";
        return SP_EINVAL;
    }
    sp_winop *op = w->ops[opi];
    int32_t part = ctx->batch.recs[ctx->batch.cur].partition;
    w->njoined = w->nmerged = 0;
    widx *x = index_of(op, part);
    if (!x) return SP_ENOMEM;
    /* the store's windows (after a restart, reload or restore) are indexed
     * at the stream time they were kept at: a pane's cursor is the first
     * window open then, and this record's time must not pass them by */
    if (!x->built && build_index(ctx, op, x, err) != SP_OK) return SP_EINVAL;
    /* stream time moves before the lateness check */
    if (ts > x->stream) x->stream = ts;
    x->last_wall = ctx->wall_ms;
    x->last_event = x->stream;
    int64_t stream = x->stream;
    int late = 0, rc = SP_OK;
    if (op->type == SP_WIN_SLIDING) {
        /* a sliding window's result is computed from its records when it
         * closes: the windows this record's time closed close before it
         * is kept, so that it is not among their records whatever the
         * batch */
        rc = close_due(ctx, op, x, stream);
        if (rc != SP_OK) return rc;
    }
    if (op->type == SP_WIN_SESSION || op->type == SP_WIN_SLIDING) {
        rc = op->type == SP_WIN_SESSION
                 ? add_session(ctx, op, part, x, key, klen, ts, stream, vals, sv, sl, err)
                 : add_sliding(ctx, op, part, x, key, klen, ts, stream, vals, err);
        late = rc == 1;
        rc = rc == 1 ? SP_OK : rc;
    } else if (op->panes) {
        /* windows the record is late for close before it joins a pane they
         * share with windows it is not late for */
        rc = close_due(ctx, op, x, stream);
        if (rc == SP_OK && wkey(&w->rkey, key, klen, 0)) return SP_ENOMEM;
        if (rc == SP_OK) rc = add_pane(ctx, op, part, x, key, klen, ts, stream, vals, &late, err);
    } else {
        /* every window [s, s + size) with s <= ts < s + size, s a multiple
         * of advance (Kafka Streams' windowsFor) */
        if (wkey(&w->rkey, key, klen, 0)) return SP_ENOMEM;
        int64_t first = ts - ts % op->advance;
        for (int64_t s = first; s >= 0 && s > ts - op->size && rc == SP_OK; s -= op->advance) {
            int64_t e = s + op->size;
            if (e <= stream - op->grace) {
                late++;
                continue;
            }
            rc = add_to(ctx, op, part, x, key, klen, s, e, ts, vals, sv, sl, NULL, err);
        }
    }
    if (rc != SP_OK) return rc;
    op->late += late;
    ctx->stats.late += late;
    return late;
}

/* --- closing ------------------------------------------------------------ */

static int close_due(sp_ctx *ctx, sp_winop *op, widx *x, int64_t stream) {
    sp_windows *w = ctx->windows;
    acc_hdr h;
    double s[MAX_AGGS][2];
    const char *v, *err;
    size_t vl;
    while (x->n > 0 && (w->close_all || x->h[0].close_at <= stream)) {
        hent e = x->h[0];
        x->h[0] = x->h[--x->n];
        sift_down(x->h, x->n, 0);
        int rc = SP_OK;
        if (op->panes) {
            rc = close_panes(ctx, op, x, &e);
        } else if (wkey(&w->kbuf, e.key, e.klen, e.start) == 0 &&
            sp_store_get(ctx, op->store, x->partition, w->kbuf.data, w->kbuf.len, &v, &vl) == 1 &&
            acc_read(op, v, vl, &h, s) && (w->close_all || close_at(op, &h) <= stream) &&
            close_at(op, &h) == e.close_at) {
            if (op->type == SP_WIN_SLIDING)
                rc = slide_compute(ctx, op, x->partition, e.key, e.klen, &h, s);
            if (rc != SP_OK) {
            } else if (!op->update)
                rc = queue_result(ctx, op, x->partition, e.key, e.klen, &h, s, 0);
            else if (op->deferred && wkey(&w->kbuf, e.key, e.klen, e.start) == 0) {
                /* its last change must not wait for an interval that
                 * would find it gone */
                char *k = malloc(w->kbuf.len);
                if (!k) return SP_ENOMEM;
                memcpy(k, w->kbuf.data, w->kbuf.len);
                rc = emit_changed(ctx, op, x->partition, k, w->kbuf.len);
                free(k);
            }
            if (rc == SP_OK && wkey(&w->kbuf, e.key, e.klen, e.start) == 0)
                rc = sp_store_delete(ctx, op->store, x->partition, w->kbuf.data, w->kbuf.len,
                                     &err);
            if (rc == SP_OK)
                rc = each_distinct(ctx, op, x->partition, e.key, e.klen, e.start, drop_one, NULL);
        }
        free(e.key);
        if (rc != SP_OK) return rc;
    }
    return SP_OK;
}

void sp_ctx_close_all_windows(sp_ctx *ctx) {
    sp_windows *w = wins(ctx);
    if (w) w->close_all = 1;
}

int sp_ctx_has_windows(sp_ctx *ctx) { return ctx->windows && ctx->windows->nops > 0; }

int sp_windows_render(sp_ctx *ctx, sp_buf *b) {
    int rc = 0;
    char line[640];
    if (!ctx->windows || ctx->windows->nops == 0) return 0;
    rc |= sp_buf_append(b, "# TYPE sproc_window_late_total counter\n", 39);
    for (int32_t i = 0; i < ctx->windows->nops; i++) {
        sp_winop *op = ctx->windows->ops[i];
        int n = snprintf(line, sizeof line, "sproc_window_late_total{aggregate=\"%s\"} %lld\n",
                         op->name, (long long)op->late);
        rc |= sp_buf_append(b, line, (size_t)n);
    }
    return rc;
}

void sp_windows_log(sp_ctx *ctx) {
    for (int32_t i = 0; ctx->windows && i < ctx->windows->nops; i++) {
        sp_winop *op = ctx->windows->ops[i];
        sp_info("aggregate %s: %lld late (record, window) pairs dropped", op->name,
                (long long)op->late);
    }
}

int64_t sp_windows_interval_min(sp_ctx *ctx) {
    int64_t m = 0;
    for (int32_t i = 0; ctx->windows && i < ctx->windows->nops; i++) {
        int64_t v = ctx->windows->ops[i]->interval;
        if (v > 0 && (m == 0 || v < m)) m = v;
    }
    return m;
}

void sp_windows_drop_partition(sp_ctx *ctx, int32_t partition) {
    sp_windows *w = ctx->windows;
    if (!w) return;
    for (int32_t i = 0; i < w->nops; i++) {
        sp_winop *op = w->ops[i];
        for (int32_t j = 0; j < op->nidx; j++)
            if (op->idx[j].partition == partition) {
                free_idx(&op->idx[j]);
                op->idx[j] = op->idx[--op->nidx];
                break;
            }
        sp_kv_drop_part(&op->cursors, partition);
    }
}

/* Closes what stream time (or the end of a bounded run) closed, then moves
 * the results into the batch; returns how many records were appended. */
int32_t sp_windows_fire(sp_ctx *ctx) {
    sp_windows *w = ctx->windows;
    if (!w) return 0;
    for (int32_t i = 0; i < w->nops; i++) {
        sp_winop *op = w->ops[i];
        if (w->close_all) {
            /* every partition the store holds windows of (a partition
             * restored or reloaded and not seen since has no index yet) */
            int32_t parts[1024];
            int32_t np = sp_store_partitions(ctx, op->store, parts, 1024);
            for (int32_t k = 0; k < np && k < 1024; k++) {
                widx *x = index_of(op, parts[k]);
                const char *err;
                if (x && !x->built && build_index(ctx, op, x, &err) != SP_OK) {
                    sp_error("%s", err);
                    return -1;
                }
            }
        }
        for (int32_t j = 0; j < op->nidx; j++) {
            widx *x = &op->idx[j];
            /* an idle partition's stream time follows the wall clock from
             * its last record's time */
            int64_t idle = ctx->wall_ms - x->last_wall;
            if (ctx->idle_ms > 0 && x->last_wall >= 0 && idle >= ctx->idle_ms &&
                x->last_event + idle > x->stream)
                x->stream = x->last_event + idle;
            if (close_due(ctx, op, x, x->stream) != SP_OK || save_stream(ctx, op, x) != SP_OK)
                return -1;
        }
        if (op->deferred) {
            if (op->last_emit < 0) op->last_emit = ctx->wall_ms;
            if (ctx->wall_ms - op->last_emit >= op->interval) {
                if (emit_changed(ctx, op, 0, NULL, 0) != SP_OK) return -1;
                op->last_emit = ctx->wall_ms;
            }
        }
    }
    int32_t before = ctx->batch.n;
    const char *err;
    for (size_t i = 0; i < w->npend; i++) {
        pending *p = &w->pend[i];
        if (sp_batch_push(ctx, p->topic, p->partition, -1, p->key, p->klen, p->val, p->vlen,
                          p->ts, &err) != SP_OK)
            return -1;
        ctx->batch.recs[ctx->batch.n - 1].seg = p->seg;
        if (p->tombstone) {
            char num[32];
            int n = snprintf(num, sizeof num, "%lld", (long long)p->start);
            sp_batch_push_header(ctx, "sproc.window.start", num, (size_t)n, &err);
            n = snprintf(num, sizeof num, "%lld", (long long)p->end);
            sp_batch_push_header(ctx, "sproc.window.end", num, (size_t)n, &err);
        }
        free(p->key);
        free(p->val);
    }
    w->npend = 0;
    return ctx->batch.n - before;
}
