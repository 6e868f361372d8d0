/* sp_window: windowed aggregation (see sp_window.c). The FFI functions are
 * in sp_ffi.h; these are the core's own hooks. */
#ifndef SP_WINDOW_H
#define SP_WINDOW_H

#include "sp_buf.h"
#include "sp_ffi.h"

typedef struct sp_windows sp_windows;

void sp_ctx_destroy_windows(sp_ctx *ctx);
/* Closes the windows stream time closed and appends the results waiting
 * to the batch; returns how many records were appended, or -1. */
int32_t sp_windows_fire(sp_ctx *ctx);
/* The partition went elsewhere: forget its open-window index. */
void sp_windows_drop_partition(sp_ctx *ctx, int32_t partition);
/* Appends each aggregation's late count in Prometheus text. */
int sp_windows_render(sp_ctx *ctx, sp_buf *b);
/* Logs each aggregation's late count (at the end of a run). */
void sp_windows_log(sp_ctx *ctx);
/* The shortest emit interval of update-mode windows (0: none). */
int64_t sp_windows_interval_min(sp_ctx *ctx);
/* Interactive queries: the open windows of an aggregation's store (store
 * id) on one partition, each as its result JSON, given to fn with its key
 * (the user's): of key only (NULL: every key), with a start within [from,
 * to]. fn returns nonzero to stop. SP_OK, SP_EINVAL when the store is no
 * aggregation's, SP_ENOMEM. */
typedef int (*sp_window_query_fn)(void *arg, const char *key, size_t klen, const char *json,
                                  size_t jlen);
int sp_window_query(sp_ctx *ctx, int32_t store, int32_t partition, const char *key,
                    size_t klen, int64_t from, int64_t to, sp_window_query_fn fn, void *arg);
/* 1 when store id is an aggregation's window store. */
int sp_window_is_store(sp_ctx *ctx, int32_t store);

#endif
