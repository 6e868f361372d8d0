/* sp_lua: the LuaJIT state that runs a user's pipeline. The Lua API comes
 * from the modules embedded in the binary; C calls into it once per batch. */
#ifndef SP_LUA_H
#define SP_LUA_H

#include "sp_ffi.h"

typedef struct sp_lua sp_lua;

sp_lua *sp_lua_create(sp_ctx *ctx);
void sp_lua_destroy(sp_lua *l);
/* Runs the script and compiles its pipeline against the context. app_id
 * (may be NULL) overrides the script's sproc.app{ id }; default_id is used
 * when neither gives one. Returns 0, or -1 with *msg (free it) set. */
int sp_lua_load(sp_lua *l, const char *script, const char *app_id,
                const char *default_id, char **msg);
/* The application id the loaded pipeline runs as. */
const char *sp_lua_app_id(sp_lua *l);
/* The script asked for processing_guarantee = "exactly_once". */
int sp_lua_exactly_once(sp_lua *l);
/* Runs the context's current batch. Returns 0, or -1 with *msg set (free
 * it) when the pipeline must stop (error policy "fail"). */
int sp_lua_run_batch(sp_lua *l, char **msg);
/* Prints the loaded topology (sproc describe). */
int sp_lua_describe(sp_lua *l, int dot, char **msg);
/* Runs busted over dir with the embedded API (sproc test). Returns an exit
 * code. */
int sp_lua_test(sp_lua *l, int argc, char **argv);
/* Opens the embedded modules in any Lua state (package.preload). */
void sp_lua_preload(void *L);

#endif
