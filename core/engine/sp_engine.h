/* The engine (sp_ctx_engine.c): what composes the core's subsystems, for
 * the executable (the FFI functions it implements are in sp_ffi.h). */
#ifndef SP_ENGINE_H
#define SP_ENGINE_H

#include "sp_ctx.h"

/* Opens the changelog topic <app>-<store>-changelog of every store that
 * has none yet (the executable, after loading a script); from then on
 * stores keep dirty lists and sp_store_flush_changelogs writes them. */
int sp_ctx_open_changelogs(sp_ctx *ctx, const char *app_id, const char **err);
/* A partition goes: its windows and clocks (sp_ctx_drop_partition also
 * drops its stores' state). */
void sp_ctx_partition_remove(sp_ctx *ctx, int32_t partition);
/* The shortest wall-clock period of timers, idle windows and update
 * intervals (the runner then ticks at least that often; 0: none). */
int64_t sp_ctx_wall_timer_min(sp_ctx *ctx);

#endif
