/* A windowed stream-stream join's side buffers (lua/sproc/stream_join.lua
 * decides what joins; this keeps the per-record store work out of Lua,
 * where building keys and decoding bookkeeping entries cost more than the
 * join itself). A side's store holds its records under (key, time,
 * sequence) in the window-key layout, plus two entries of its own: the
 * latest record time the side saw (what its retention counts from) and
 * the last sequence number. Both are ordinary store entries, so a
 * changelog restore brings them back with the records. */
#include <stdlib.h>
#include <string.h>

#include "sp_ffi.h"
#include "sp_store.h"

/* Longer than 2 bytes, shorter than any record's key, after every time
 * (the Lua side of the join reads them too). */
static const char OBSERVED[] = "\377\377\377o", SEQ[] = "\377\377\377s";
#define BOOK_LEN 4
/* keys up to this long are built on the stack */
#define SMALL 242

static double number_of(sp_ctx *ctx, int store, const char *key, double none) {
    const char *v;
    size_t vlen;
    double d;
    if (sp_store_get(ctx, store, -1, key, BOOK_LEN, &v, &vlen) != 1 || vlen != 9 ||
        v[0] != SP_VAL_NUMBER)
        return none;
    memcpy(&d, v + 1, 8);
    return d;
}

static int put_number(sp_ctx *ctx, int store, const char *key, double d, const char **err) {
    char v[9];
    v[0] = SP_VAL_NUMBER;
    memcpy(v + 1, &d, 8);
    return sp_store_put_at(ctx, store, -1, key, BOOK_LEN, v, 9, -1, err);
}

static void be(unsigned char *p, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; i--, v >>= 8) p[i] = (unsigned char)(v & 0xff);
}

/* The store key of (key, ts, seq): what sproc.store's window keys are,
 * with the sequence after the time. Returns its length. */
static size_t wkey(unsigned char *out, const char *key, size_t klen, int64_t ts, uint32_t seq) {
    be(out, klen, 2);
    memcpy(out + 2, key, klen);
    be(out + 2 + klen, (uint64_t)ts, 8);
    be(out + 10 + klen, seq, 4);
    return klen + 14;
}

int sp_jstore_open(sp_ctx *ctx, int store, int64_t retention, const char **err) {
    /* records come in about time order: the oldest go first; and they are
     * read by a key's time range only */
    int rc = sp_store_set_aged(ctx, store, err);
    if (rc == 0) rc = sp_store_set_ranged(ctx, store, err);
    return rc != 0 ? rc : sp_store_set_retention(ctx, store, retention > 0 ? retention : 1, err);
}

/* key and value laid out for the store: the window key, then the value
 * (tagged when tag >= 0), in one buffer */
static int put_record(sp_ctx *ctx, int store, const char *key, size_t klen, int64_t ts,
                      uint32_t seq, int tag, const char *val, size_t vlen, const char **err) {
    unsigned char small[SMALL + 14 + 512], *k = small;
    size_t need = klen + 14 + (tag >= 0 ? 1 + vlen : 0);
    if (need > sizeof small && !(k = malloc(need))) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    size_t n = wkey(k, key, klen, ts, seq);
    if (tag >= 0) {
        unsigned char *v = k + n;
        v[0] = (unsigned char)tag;
        if (vlen) memcpy(v + 1, val, vlen);
        val = (const char *)v;
        vlen++;
    }
    int rc = sp_store_put_at(ctx, store, -1, (const char *)k, n, val, vlen, ts, err);
    if (k != small) free(k);
    return rc;
}

int sp_jstore_put(sp_ctx *ctx, int store, const char *key, size_t klen, int64_t ts, int tag,
                  const char *val, size_t vlen, int64_t retention, const char **err) {
    if (klen > 65535 || ts < 0) {
        *err = klen > 65535 ? "a join key is at most 65535 bytes" : "a joined record needs a time >= 0";
        return SP_EINVAL;
    }
    double obs = number_of(ctx, store, OBSERVED, -1);
    if ((double)ts > obs) {
        obs = (double)ts;
        int rc = put_number(ctx, store, OBSERVED, obs, err);
        if (rc != 0) return rc;
    }
    /* the other side can no longer look this far back: such records are
     * not kept, and those kept go (Kafka Streams drops a window store's
     * segments by its own stream time too) */
    if ((double)ts <= obs - (double)retention) return 0;
    if (obs - (double)retention >= 0)
        sp_store_sweep(ctx, store, -1, (int64_t)obs - retention, retention / 2 > 0 ? retention / 2 : 1);
    double seq;
    int rc = sp_store_incr(ctx, store, -1, SEQ, BOOK_LEN, 1, &seq, err);
    if (rc == 0) rc = put_record(ctx, store, key, klen, ts, (uint32_t)seq, tag, val, vlen, err);
    return rc == 0 ? 1 : rc;
}

/* The next hit from the key built in from (n bytes). */
static int next_hit(sp_ctx *ctx, int store, const unsigned char *from, size_t n, size_t klen,
                    int64_t hi, sp_jstore_hit *hit) {
    const char *k, *v;
    size_t kl, vl;
    int strict = hit->started > 1;
    hit->started = 2;
    if (sp_store_next_in(ctx, store, -1, (const char *)from, n, klen + 2, strict, &k, &kl, &v,
                         &vl) != 1)
        return 0;
    /* (sp_store_next_in gave a key of this key part) */
    if (kl != klen + 14) return 0;
    const unsigned char *t = (const unsigned char *)k + 2 + klen;
    int64_t ts = sp_store_window_time(k, kl);
    uint32_t seq = 0;
    for (int i = 8; i < 12; i++) seq = seq << 8 | t[i];
    if (ts > hi) return 0;
    hit->ts = ts;
    hit->seq = seq;
    hit->val = v;
    hit->vlen = vl;
    return 1;
}

int sp_jstore_next(sp_ctx *ctx, int store, const char *key, size_t klen, int64_t lo, int64_t hi,
                   int64_t retention, sp_jstore_hit *hit) {
    unsigned char small[SMALL + 14], *from = small;
    size_t n;
    if (klen > 65535) return 0;
    if (!hit->started) {
        /* what the side's retention dropped is not there to join */
        double obs = number_of(ctx, store, OBSERVED, -1);
        if (obs >= 0 && (int64_t)obs - retention + 1 > lo) lo = (int64_t)obs - retention + 1;
        if (lo < 0) lo = 0;
        if (hi < lo) return 0;
        hit->started = 1;
    }
    if (klen > SMALL && !(from = malloc(klen + 14))) return SP_ENOMEM;
    if (hit->started == 1)
        n = wkey(from, key, klen, lo, 0) - 4;
    else
        n = wkey(from, key, klen, hit->ts, hit->seq);
    int rc = next_hit(ctx, store, from, n, klen, hi, hit);
    if (from != small) free(from);
    return rc;
}
