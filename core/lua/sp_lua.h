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
/* Hot reload, in a fresh state: runs the script so that it declares its
 * pipeline and checks it against the state the context holds (0, or -1
 * with *msg: the old version keeps running); then, once the context's
 * topology is reset at a batch boundary, compiles it. rollback: a script
 * error on a record makes run_batch return "rollback:<message>" (with
 * batch->cur at the record) instead of applying the policy. */
int sp_lua_prepare(sp_lua *l, const char *script, char **msg);
int sp_lua_compile(sp_lua *l, const char *app_id, const char *default_id, int rollback,
                   char **msg);
/* Runs the script's sproc.on_reload hook, if any. */
int sp_lua_on_reload(sp_lua *l, const int32_t *parts, int n, char **msg);
/* The files --watch looks at (the script and the modules it loaded from
 * its directory): a NULL-terminated array of strings (free each and it);
 * returns how many, or -1. */
int sp_lua_watched(sp_lua *l, const char *script, char ***files);
/* The topology as sproc describe prints it (free it), NULL on error. */
char *sp_lua_describe_text(sp_lua *l);
/* run_batch from record index from on. */
int sp_lua_run_batch_from(sp_lua *l, int32_t from, char **msg);
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
