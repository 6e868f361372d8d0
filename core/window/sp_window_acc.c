/* Accumulators: window keys, the C aggregates' accumulators and their merging, and distinct counts (exact values, or HyperLogLog registers) kept beside them. */
#include "sp_window_int.h"

/* --- distinct counts ---------------------------------------------------- */

#define HLL_P 11

#define HLL_M (1 << HLL_P)

typedef struct count_arg {
    const sp_winop *op;
    size_t tail;
    double (*s)[2];
} count_arg;

/* --- keys and accumulators ---------------------------------------------- */

/* The window store's key: the key's length (2 bytes), the key, the start
 * (8 bytes big-endian), as lua/sproc/store.lua writes it too. */
int sp_window_wkey(sp_buf *b, const char *key, size_t klen, int64_t start) {
    unsigned char hdr[2] = {(unsigned char)(klen >> 8), (unsigned char)klen};
    unsigned char t[8];
    for (int i = 7; i >= 0; i--, start >>= 8) t[i] = (unsigned char)(start & 0xff);
    sp_buf_reset(b);
    return sp_buf_append(b, hdr, 2) || sp_buf_append(b, key, klen) || sp_buf_append(b, t, 8);
}

/* A window key's start (wkey's last 8 bytes, big-endian). */
int64_t sp_window_get_be64(const char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | (unsigned char)p[i];
    return (int64_t)v;
}

size_t sp_window_acc_size(const sp_winop *op) {
    return 1 + sizeof(acc_hdr) + 16 * (size_t)op->nagg;
}

void sp_window_acc_init(const sp_winop *op, acc_hdr *h, double (*s)[2], int64_t start,
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

void sp_window_acc_add(const sp_winop *op, acc_hdr *h, double (*s)[2], int64_t ts,
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

void sp_window_acc_merge(const sp_winop *op, acc_hdr *h, double (*s)[2],
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
int sp_window_acc_read(const sp_winop *op, const char *val, size_t vlen, acc_hdr *h,
                    double (*s)[2]) {
    if (vlen != sp_window_acc_size(op) || val[0] != op->tag) return 0;
    memcpy(h, val + 1, sizeof *h);
    memcpy(s, val + 1 + sizeof *h, 16 * (size_t)op->nagg);
    return 1;
}

int sp_window_acc_write(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key,
                     size_t klen, const acc_hdr *h, double (*s)[2], const char **err) {
    sp_windows *w = ctx->windows;
    sp_buf *a = &w->abuf;
    sp_buf_reset(a);
    if (sp_buf_putc(a, op->tag) || sp_buf_append(a, h, sizeof *h) ||
        sp_buf_append(a, s, 16 * (size_t)op->nagg) || sp_window_wkey(&w->kbuf, key, klen, h->start)) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    /* the entry's time, for the store's retention: when the window ends */
    return sp_store_put_at(ctx, op->store, part, w->kbuf.data, w->kbuf.len, a->data,
                           a->len, h->end, err);
}

int64_t sp_window_close_at(const sp_winop *op, const acc_hdr *h) {
    /* tumbling and hopping: [start, end) closes at end + grace; a session
     * [first, last] once stream time passes last + gap + grace (Kafka
     * Streams takes a record merging into it until then) */
    if (op->type == SP_WIN_SESSION) return h->end + op->size + op->grace + 1;
    /* a sliding window's end is included: it closes a millisecond later */
    return op->type == SP_WIN_SLIDING ? h->end + 1 + op->grace : h->end + op->grace;
}

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

double sp_window_hll_estimate(const uint8_t *reg) {
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
int sp_window_dkey(sp_buf *b, const char *key, size_t klen, int64_t start, int agg,
                const char *v, size_t vn) {
    unsigned char a = (unsigned char)agg;
    return sp_window_wkey(b, key, klen, start) || sp_buf_append(b, &a, 1) || (vn && sp_buf_append(b, v, vn));
}

int sp_window_distinct_add(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key,
                        size_t klen, const acc_hdr *h, double (*s)[2],
                        const char *const *sv, const size_t *sl, const char **err) {
    sp_windows *w = ctx->windows;
    for (int32_t i = 0; i < op->nagg && sv; i++) {
        int k = op->kinds[i];
        if ((k != SP_AGG_DISTINCT && k != SP_AGG_APPROX_DISTINCT) || !sv[i]) continue;
        const char *v;
        size_t vl;
        if (k == SP_AGG_DISTINCT) {
            if (sp_window_dkey(&w->kbuf, key, klen, h->start, i, sv[i], sl[i])) return SP_ENOMEM;
            if (sp_store_get(ctx, op->distinct, part, w->kbuf.data, w->kbuf.len, &v, &vl) == 1)
                continue;
            int rc = sp_store_put_at(ctx, op->distinct, part, w->kbuf.data, w->kbuf.len, "", 0,
                                     h->end, err);
            if (rc != SP_OK) return rc;
            s[i][0] += 1;
            continue;
        }
        uint8_t reg[HLL_M];
        if (sp_window_dkey(&w->kbuf, key, klen, h->start, 0x80 | i, NULL, 0)) return SP_ENOMEM;
        if (sp_store_get(ctx, op->distinct, part, w->kbuf.data, w->kbuf.len, &v, &vl) == 1 &&
            vl == HLL_M)
            memcpy(reg, v, HLL_M);
        else
            memset(reg, 0, HLL_M);
        hll_add(reg, sv[i], sl[i]);
        s[i][0] = sp_window_hll_estimate(reg);
        int rc = sp_store_put_at(ctx, op->distinct, part, w->kbuf.data, w->kbuf.len,
                                 (const char *)reg, HLL_M, h->end, err);
        if (rc != SP_OK) return rc;
    }
    return SP_OK;
}

/* Calls fn for each companion entry of a window (key copied: fn may
 * change the store). */
int sp_window_each_distinct(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key,
                         size_t klen, int64_t start,
                         int (*fn)(sp_ctx *, sp_winop *, int32_t, const char *, size_t,
                                   const char *, size_t, void *),
                         void *arg) {
    sp_windows *w = ctx->windows;
    if (op->distinct < 0) return SP_OK;
    if (sp_window_wkey(&w->kbuf, key, klen, start)) return SP_ENOMEM;
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

int sp_window_drop_one(sp_ctx *ctx, sp_winop *op, int32_t part, const char *k, size_t kl,
                    const char *v, size_t vl, void *arg) {
    const char *err;
    (void)v, (void)vl, (void)arg;
    return sp_store_delete(ctx, op->distinct, part, k, kl, &err);
}

/* A merged-away session's entries go to the session it merged into. */
int sp_window_move_one(sp_ctx *ctx, sp_winop *op, int32_t part, const char *k, size_t kl,
                    const char *v, size_t vl, void *arg) {
    move_arg *m = arg;
    sp_windows *w = ctx->windows;
    const char *err, *cur;
    size_t curlen;
    size_t tail = 2 + m->klen + 8; /* what follows the window's key */
    unsigned char agg = (unsigned char)k[tail];
    if (agg & 0x40) return SP_OK; /* a Lua aggregate's: Lua merges those */
    if (sp_window_dkey(&w->kbuf, m->key, m->klen, m->to->start, agg, k + tail + 1, kl - tail - 1))
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

static int count_one(sp_ctx *ctx, sp_winop *op, int32_t part, const char *k, size_t kl,
                     const char *v, size_t vl, void *arg) {
    count_arg *c = arg;
    (void)ctx, (void)op, (void)part, (void)kl;
    unsigned char agg = (unsigned char)k[c->tail];
    if (agg & 0x40) return SP_OK; /* a Lua aggregate's: Lua merges those */
    if (agg & 0x80) {
        if (vl == HLL_M) c->s[agg & 0x7f][0] = sp_window_hll_estimate((const uint8_t *)v);
    } else {
        c->s[agg][0] += 1;
    }
    return SP_OK;
}

/* After sessions merged: their distinct counts are those of the union. */
int sp_window_distinct_recount(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key,
                            size_t klen, const acc_hdr *h, double (*s)[2]) {
    count_arg c = {op, 2 + klen + 8, s};
    for (int32_t i = 0; i < op->nagg; i++)
        if (op->kinds[i] == SP_AGG_DISTINCT || op->kinds[i] == SP_AGG_APPROX_DISTINCT) s[i][0] = 0;
    return sp_window_each_distinct(ctx, op, part, key, klen, h->start, count_one, &c);
}

/* The window store's key of the record's window at start, in place in the
 * buffer that sp_window_add filled with the key (wkey): only the start
 * changes from one window to the next. */
void sp_window_wkey_start(sp_buf *b, int64_t start) {
    unsigned char *t = (unsigned char *)b->data + b->len - 8;
    for (int i = 7; i >= 0; i--, start >>= 8) t[i] = (unsigned char)(start & 0xff);
}
