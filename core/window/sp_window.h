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

#endif
