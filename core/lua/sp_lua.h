/* sp_lua: the LuaJIT state that runs a user's pipeline. The Lua API comes
 * from the modules embedded in the binary; C calls into it once per batch. */
#ifndef SP_LUA_H
#define SP_LUA_H

#include "sp_ffi.h"

typedef struct sp_lua sp_lua;

/* Errors: a function that fails returns non-zero and points *err at a
 * message that l keeps until its next call that fails (or its destroy). */

sp_lua *sp_lua_create(sp_ctx *ctx);
void sp_lua_destroy(sp_lua *l);
/* The limits of every call into the script: timeout_ms, how long one
 * record may keep it busy before it is interrupted with an error on that
 * record (0: no watchdog; sp_watchdog.h); heap_max, the bytes its Lua heap
 * may hold (0: no cap), past which the call fails. 0, or -1 when the
 * watchdog cannot start. */
int sp_lua_set_limits(sp_lua *l, int64_t timeout_ms, int64_t heap_max);
/* How many times the watchdog interrupted the script. */
int64_t sp_lua_interrupts(const sp_lua *l);
/* Around a wait of sproc's own (for Kafka) that may come inside a call
 * into the script: not the script's time (sp_watchdog_wait). */
void sp_lua_waiting(sp_lua *l, int on);
/* Runs the script and compiles its pipeline against the context. app_id
 * (may be NULL) overrides the script's sproc.app{ id }; default_id is used
 * when neither gives one. Returns 0, or -1 with *err set. */
int sp_lua_load(sp_lua *l, const char *script, const char *app_id,
                const char *default_id, const char **err);
/* Hot reload, in a fresh state: runs the script so that it declares its
 * pipeline and checks it against the state the context holds (0, or -1
 * with *err: the old version keeps running); then, once the context's
 * topology is reset at a batch boundary, compiles it. rollback: a script
 * error on a record makes run_batch return SP_LUA_ROLLBACK (with
 * batch->cur at the record and *err the error) instead of applying the
 * policy. */
int sp_lua_prepare(sp_lua *l, const char *script, const char **err);
int sp_lua_compile(sp_lua *l, const char *app_id, const char *default_id, int rollback,
                   const char **err);
/* Runs the script's sproc.on_reload hook, if any. */
int sp_lua_on_reload(sp_lua *l, const int32_t *parts, int n, const char **err);
/* The files --watch looks at (the script and the modules it loaded from
 * its directory): a NULL-terminated array of strings (free each and it);
 * returns how many, or -1. */
int sp_lua_watched(sp_lua *l, const char *script, char ***files);
/* The topology as sproc describe prints it (free it), NULL on error. */
char *sp_lua_describe_text(sp_lua *l);
/* run_batch from record index from on. */
int sp_lua_run_batch_from(sp_lua *l, int32_t from, const char **err);
/* The application id the loaded pipeline runs as. */
const char *sp_lua_app_id(sp_lua *l);
/* The script asked for processing_guarantee = "exactly_once". */
int sp_lua_exactly_once(sp_lua *l);
/* Runs the context's current batch. Returns 0, SP_LUA_FAILED with *err set
 * when the pipeline must stop (error policy "fail"), or
 * SP_LUA_ROLLBACK (see sp_lua_compile). */
enum { SP_LUA_FAILED = -1, SP_LUA_ROLLBACK = 1 };
int sp_lua_run_batch(sp_lua *l, const char **err);
/* Prints the loaded topology (sproc describe). */
int sp_lua_describe(sp_lua *l, int dot, const char **err);
/* Runs busted over dir with the embedded API (sproc test). Returns an exit
 * code. */
int sp_lua_test(sp_lua *l, int argc, char **argv);
/* Opens the embedded modules in any Lua state (package.preload). */
void sp_lua_preload(void *L);

#endif
