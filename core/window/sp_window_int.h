/* The windows' parts (window/sp_window*.c) share this: the aggregation
 * operators' state and the functions one part calls in another. The
 * FFI functions are in sp_ffi.h, the core's hooks in sp_window.h. */
#ifndef SP_WINDOW_INT_H
#define SP_WINDOW_INT_H

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

typedef struct move_arg {
    const char *key;
    size_t klen;
    acc_hdr *to;
} move_arg;

sp_windows *sp_windows_of(sp_ctx *ctx);
void sp_window_free_idx(widx *x);
int sp_window_note_joined(sp_windows *w, int64_t start, int64_t end, int made);
int sp_window_wkey(sp_buf *b, const char *key, size_t klen, int64_t start);
int64_t sp_window_get_be64(const char *p);
size_t sp_window_acc_size(const sp_winop *op);
void sp_window_acc_init(const sp_winop *op, acc_hdr *h, double (*s)[2], int64_t start,
                     int64_t end);
void sp_window_acc_add(const sp_winop *op, acc_hdr *h, double (*s)[2], int64_t ts,
                    const double *v);
void sp_window_acc_merge(const sp_winop *op, acc_hdr *h, double (*s)[2],
                      const acc_hdr *oh, double (*o)[2]);
int sp_window_acc_read(const sp_winop *op, const char *val, size_t vlen, acc_hdr *h,
                    double (*s)[2]);
int sp_window_acc_write(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key,
                     size_t klen, const acc_hdr *h, double (*s)[2], const char **err);
int64_t sp_window_close_at(const sp_winop *op, const acc_hdr *h);
int sp_window_json_result(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key, size_t klen,
                       sp_buf *b, const acc_hdr *h, double (*s)[2]);
int sp_window_queue_result(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key,
                        size_t klen, const acc_hdr *h, double (*s)[2], int tombstone);
int sp_window_updated(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key, size_t klen,
                   const acc_hdr *h, double (*s)[2]);
int sp_window_emit_changed(sp_ctx *ctx, sp_winop *op, int32_t part, const char *wk, size_t wklen);
widx *sp_window_index_of(sp_winop *op, int32_t part);
void sp_window_sift_down(hent *h, size_t n, size_t i);
int sp_window_heap_push(widx *x, int64_t close, int64_t start, const char *key, size_t klen);
int sp_window_save_stream(sp_ctx *ctx, sp_winop *op, widx *x);
int sp_window_fits(const sp_winop *op, const char *v, size_t vl, const acc_hdr *h);
int sp_window_build_index(sp_ctx *ctx, sp_winop *op, widx *x, const char **err);
double sp_window_hll_estimate(const uint8_t *reg);
int sp_window_dkey(sp_buf *b, const char *key, size_t klen, int64_t start, int agg,
                const char *v, size_t vn);
int sp_window_distinct_add(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key,
                        size_t klen, const acc_hdr *h, double (*s)[2],
                        const char *const *sv, const size_t *sl, const char **err);
int sp_window_each_distinct(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key,
                         size_t klen, int64_t start,
                         int (*fn)(sp_ctx *, sp_winop *, int32_t, const char *, size_t,
                                   const char *, size_t, void *),
                         void *arg);
int sp_window_drop_one(sp_ctx *ctx, sp_winop *op, int32_t part, const char *k, size_t kl,
                    const char *v, size_t vl, void *arg);
int sp_window_move_one(sp_ctx *ctx, sp_winop *op, int32_t part, const char *k, size_t kl,
                    const char *v, size_t vl, void *arg);
int sp_window_distinct_recount(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key,
                            size_t klen, const acc_hdr *h, double (*s)[2]);
void sp_window_wkey_start(sp_buf *b, int64_t start);
int sp_window_add_to(sp_ctx *ctx, sp_winop *op, int32_t part, widx *x, const char *key,
                  size_t klen, int64_t start, int64_t end, int64_t ts, const double *vals,
                  const char *const *sv, const size_t *sl, int *made, const char **err);
int64_t sp_window_first_window(const sp_winop *op, int64_t p, int64_t stream);
/* A pane layout's key: the start of its next window to close (NULL: the
 * key has no panes). */
int64_t *sp_window_cursor_of(sp_winop *op, int32_t part, const char *key, size_t klen);
int sp_window_set_cursor(sp_winop *op, int32_t part, const char *key, size_t klen, int64_t c,
                      widx *x);
int sp_window_add_pane(sp_ctx *ctx, sp_winop *op, int32_t part, widx *x, const char *key,
                    size_t klen, int64_t ts, int64_t stream, const double *vals, int *late,
                    const char **err);
int sp_window_close_panes(sp_ctx *ctx, sp_winop *op, widx *x, const hent *e);
int sp_window_add_session(sp_ctx *ctx, sp_winop *op, int32_t part, widx *x, const char *key,
                       size_t klen, int64_t ts, int64_t stream, const double *vals,
                       const char *const *sv, const size_t *sl, const char **err);
int sp_window_raw_key(sp_buf *b, const char *key, size_t klen, int64_t t, uint64_t seq);
int sp_window_each_raw(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key, size_t klen,
                    int64_t from, int64_t to,
                    void (*fn)(void *arg, int64_t t, const double *vals), void *arg);
int sp_window_slide_compute(sp_ctx *ctx, sp_winop *op, int32_t part, const char *key, size_t klen,
                         acc_hdr *h, double (*s)[2]);
int sp_window_slide_window(sp_ctx *ctx, sp_winop *op, int32_t part, widx *x, const char *key,
                        size_t klen, int64_t start, int64_t stream, const char **err);
int sp_window_add_sliding(sp_ctx *ctx, sp_winop *op, int32_t part, widx *x, const char *key,
                       size_t klen, int64_t t, int64_t stream, const double *vals,
                       const char **err);
int sp_window_close_due(sp_ctx *ctx, sp_winop *op, widx *x, int64_t stream);

#endif
