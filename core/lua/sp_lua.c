#include "sp_lua.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "sp_embed.h"
#include "sp_watchdog.h"

int luaopen_sproc_native(lua_State *L);

struct sp_lua {
    lua_State *L;
    sp_ctx *ctx;
    int env_ref;  /* the compiled pipeline (runtime env table) */
    int run_ref;  /* runtime.run_batch */
    char *app_id;
    int exactly_once;
    char *err;    /* the last error's message, valid until the next call */
    sp_watchdog *wd; /* sproc.script.timeout.ms; NULL: none */
    /* the Lua heap's cap (sproc.script.heap.max.bytes; 0: none) and,
     * under one, its bytes, counted by a wrapper of LuaJIT's own
     * allocator (which runs bare without a cap) */
    lua_Alloc base_alloc;
    void *base_ud;
    int64_t heap_used, heap_max, gc_floor;
    int heap_refused;
};

static void *heap_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    sp_lua *l = ud;
    int64_t grow = (int64_t)nsize - (int64_t)(ptr ? osize : 0);
    if (grow > 0 && l->heap_used + grow > l->heap_max) {
        l->heap_refused = 1;
        return NULL;
    }
    void *p = l->base_alloc(l->base_ud, ptr, osize, nsize);
    if (p || nsize == 0) l->heap_used += grow;
    return p;
}

/* package.preload loader: upvalue 1 is the sp_embedded entry. */
static int load_embedded(lua_State *L) {
    const sp_embedded *e = lua_touserdata(L, lua_upvalueindex(1));
    if (strcmp(e->name, "sproc.ffi_h") == 0) {
        lua_pushlstring(L, e->data, e->len);
        return 1;
    }
    /* "[sproc]" chunk names let tracebacks tell sproc's frames from the
     * user's, whose chunk names are their real paths. */
    char chunk[128];
    snprintf(chunk, sizeof chunk, "@[sproc]/%s.lua", e->name);
    if (luaL_loadbuffer(L, e->data, e->len, chunk) != 0) return lua_error(L);
    lua_pushstring(L, e->name);
    lua_call(L, 1, 1);
    return 1;
}

void sp_lua_preload(void *vL) {
    lua_State *L = vL;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    for (const sp_embedded *e = sp_embedded_files; e->name; e++) {
        lua_pushlightuserdata(L, (void *)e);
        lua_pushcclosure(L, load_embedded, 1);
        lua_setfield(L, -2, e->name);
    }
    lua_pushcfunction(L, luaopen_sproc_native);
    lua_setfield(L, -2, "sproc.native");
    lua_pop(L, 2);
}

sp_lua *sp_lua_create(sp_ctx *ctx) {
    sp_lua *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->L = luaL_newstate();
    if (!l->L) {
        free(l);
        return NULL;
    }
    l->ctx = ctx;
    l->env_ref = l->run_ref = LUA_NOREF;
    l->base_alloc = lua_getallocf(l->L, &l->base_ud);
    luaL_openlibs(l->L);
    sp_lua_preload(l->L);
    /* Tells sproc.core it runs inside the executable (symbols via ffi.C)
     * and hands it the context. */
    lua_getglobal(l->L, "package");
    lua_getfield(l->L, -1, "loaded");
    lua_newtable(l->L);
    lua_pushlightuserdata(l->L, ctx);
    lua_setfield(l->L, -2, "ctx");
    lua_setfield(l->L, -2, "sproc.host");
    lua_pop(l->L, 2);
    return l;
}

int sp_lua_set_limits(sp_lua *l, int64_t timeout_ms, int64_t heap_max) {
    if (heap_max > 0 && l->heap_max == 0) {
        l->heap_used = (int64_t)lua_gc(l->L, LUA_GCCOUNT, 0) * 1024 + lua_gc(l->L, LUA_GCCOUNTB, 0);
        lua_setallocf(l->L, heap_alloc, l);
    } else if (heap_max == 0 && l->heap_max > 0) {
        lua_setallocf(l->L, l->base_alloc, l->base_ud);
    }
    l->heap_max = heap_max;
    sp_watchdog_destroy(l->wd);
    l->wd = timeout_ms > 0 ? sp_watchdog_create(l->L, &sp_ctx_batch(l->ctx)->cur, timeout_ms) : NULL;
    return timeout_ms > 0 && !l->wd ? -1 : 0;
}

int64_t sp_lua_interrupts(const sp_lua *l) { return sp_watchdog_interrupts(l->wd); }

void sp_lua_waiting(sp_lua *l, int on) {
    if (l && l->wd) sp_watchdog_wait(l->wd, on);
}

void sp_lua_destroy(sp_lua *l) {
    if (!l) return;
    sp_watchdog_destroy(l->wd);
    if (l->L) lua_close(l->L);
    free(l->app_id);
    free(l->err);
    free(l);
}

/* Keeps the error message on the stack top (popped) as l's last error;
 * one the heap's cap caused says so (the garbage is collected, so that
 * the state can report and close). */
static const char *pop_message(sp_lua *l) {
    const char *m = lua_tostring(l->L, -1);
    free(l->err);
    l->err = NULL;
    if (l->heap_refused) {
        lua_pop(l->L, 1);
        lua_gc(l->L, LUA_GCCOLLECT, 0);
        char buf[256];
        snprintf(buf, sizeof buf, "the script's Lua heap reached its cap of %lld bytes "
                 "(sproc.script.heap.max.bytes): %lld bytes in use after a full collection",
                 (long long)l->heap_max, (long long)l->heap_used);
        l->heap_refused = 0;
        l->err = strdup(buf);
        return l->err ? l->err : "out of memory";
    }
    l->err = strdup(m ? m : "(error object is not a string)");
    lua_pop(l->L, 1);
    return l->err ? l->err : "out of memory";
}

/* Every call into the script: under the watchdog, and, near the heap's
 * cap, followed by a full collection (LuaJIT collects nothing when an
 * allocation fails: garbage would make the cap be reached early). */
static int guarded_pcall(sp_lua *l, int nargs, int nres, int errfunc) {
    if (l->wd) sp_watchdog_enter(l->wd);
    int rc = lua_pcall(l->L, nargs, nres, errfunc);
    if (l->wd) sp_watchdog_leave(l->wd);
    if (l->heap_max > 0 && l->heap_used > l->heap_max / 4 * 3 &&
        l->heap_used > l->gc_floor + l->heap_max / 16) {
        lua_gc(l->L, LUA_GCCOLLECT, 0);
        l->gc_floor = l->heap_used;
    }
    return rc;
}

/* A message for the user: a traceback of the script's frames only (sproc's
 * own modules are "[sproc]/..."), none when the message has one already
 * (the script's error, traced where it was raised). */
static int traceback(lua_State *L) {
    if (!lua_isstring(L, 1)) return 1;
    if (strstr(lua_tostring(L, 1), "\nstack traceback:")) return 1;
    lua_getglobal(L, "debug");
    lua_getfield(L, -1, "traceback");
    lua_pushvalue(L, 1);
    lua_pushinteger(L, 2);
    lua_call(L, 2, 1);
    const char *tb = lua_tostring(L, -1);
    const char *head = strstr(tb, "\nstack traceback:");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, tb, head ? (size_t)(head - tb) : strlen(tb));
    int kept = 0;
    for (const char *line = head ? head + 18 : NULL; line && *line;) {
        const char *end = strchr(line + 1, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        if (!memmem(line, n, "[sproc]", 7) && !memmem(line, n, "[C]: in function 'error'", 24) &&
            !memmem(line, n, "[C]: in function 'xpcall'", 25) && n > 1) {
            if (!kept++) luaL_addstring(&b, "\nstack traceback:");
            luaL_addlstring(&b, line, n);
        }
        line = end;
    }
    luaL_pushresult(&b);
    return 1;
}

/* Calls runtime.<fn>(args already pushed) under a traceback handler. */
static int call_runtime(sp_lua *l, const char *fn, int nargs, int nres) {
    lua_State *L = l->L;
    lua_getglobal(L, "require");
    lua_pushstring(L, "sproc.runtime");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        lua_insert(L, -1 - nargs);
        lua_pop(L, nargs);
        return -1;
    }
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    lua_insert(L, -1 - nargs);
    lua_pushcfunction(L, traceback);
    lua_insert(L, -2 - nargs);
    int base = lua_gettop(L) - nargs - 1;
    int rc = guarded_pcall(l, nargs, nres, base);
    lua_remove(L, base);
    return rc == 0 ? 0 : -1;
}

static void adopt_env(sp_lua *l);

/* The options table of runtime.load/compile: the application ids. */
static void push_ids(lua_State *L, const char *app_id, const char *default_id) {
    lua_newtable(L);
    if (app_id) {
        lua_pushstring(L, app_id);
        lua_setfield(L, -2, "app_id");
    }
    if (default_id) {
        lua_pushstring(L, default_id);
        lua_setfield(L, -2, "default_id");
    }
}

int sp_lua_load(sp_lua *l, const char *script, const char *app_id,
                const char *default_id, const char **err) {
    lua_State *L = l->L;
    lua_pushstring(L, script);
    push_ids(L, app_id, default_id);
    if (call_runtime(l, "host_load", 2, 1) != 0) {
        *err = pop_message(l);
        return -1;
    }
    adopt_env(l);
    return 0;
}

/* Keeps the compiled env (on the stack top) and reads its settings. */
static void adopt_env(sp_lua *l) {
    lua_State *L = l->L;
    lua_getfield(L, -1, "app_id");
    free(l->app_id);
    l->app_id = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "sproc");
    lua_pop(L, 1);
    lua_getfield(L, -1, "guarantee");
    l->exactly_once = lua_tostring(L, -1) && strcmp(lua_tostring(L, -1), "exactly_once") == 0;
    lua_pop(L, 1);
    if (l->env_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, l->env_ref);
    l->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (l->run_ref == LUA_NOREF) {
        lua_getglobal(L, "require");
        lua_pushstring(L, "sproc.runtime");
        lua_call(L, 1, 1);
        lua_getfield(L, -1, "run_batch");
        l->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_pop(L, 1);
    }
}

int sp_lua_prepare(sp_lua *l, const char *script, const char **err) {
    lua_State *L = l->L;
    /* no traceback of sproc's frames: the message has the script's own */
    lua_getglobal(L, "require");
    lua_pushstring(L, "sproc.runtime");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        *err = pop_message(l);
        return -1;
    }
    lua_getfield(L, -1, "host_prepare");
    lua_remove(L, -2);
    lua_pushstring(L, script);
    if (guarded_pcall(l, 1, 0, 0) != 0) {
        *err = pop_message(l);
        return -1;
    }
    return 0;
}

int sp_lua_compile(sp_lua *l, const char *app_id, const char *default_id, int rollback,
                   const char **err) {
    lua_State *L = l->L;
    push_ids(L, app_id, default_id);
    lua_pushboolean(L, rollback);
    lua_setfield(L, -2, "rollback");
    if (call_runtime(l, "host_compile", 1, 1) != 0) {
        *err = pop_message(l);
        return -1;
    }
    adopt_env(l);
    return 0;
}

int sp_lua_on_reload(sp_lua *l, const int32_t *parts, int n, const char **err) {
    lua_State *L = l->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, l->env_ref);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, parts[i]);
        lua_rawseti(L, -2, i + 1);
    }
    if (call_runtime(l, "on_reload", 2, 1) != 0 || !lua_isnil(L, -1)) {
        *err = pop_message(l);
        return -1;
    }
    lua_pop(L, 1);
    return 0;
}

int sp_lua_watched(sp_lua *l, const char *script, char ***files) {
    lua_State *L = l->L;
    lua_pushstring(L, script);
    if (call_runtime(l, "watched", 1, 1) != 0) {
        lua_pop(L, 1);
        return -1;
    }
    int n = (int)lua_objlen(L, -1);
    char **f = calloc((size_t)n + 1, sizeof *f);
    for (int i = 0; f && i < n; i++) {
        lua_rawgeti(L, -1, i + 1);
        f[i] = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    *files = f;
    return f ? n : -1;
}

char *sp_lua_describe_text(sp_lua *l) {
    lua_State *L = l->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, l->env_ref);
    lua_pushboolean(L, 0);
    if (call_runtime(l, "describe", 2, 1) != 0) {
        lua_pop(L, 1);
        return NULL;
    }
    char *out = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
    lua_pop(L, 1);
    return out;
}

const char *sp_lua_app_id(sp_lua *l) { return l->app_id; }
int sp_lua_exactly_once(sp_lua *l) { return l->exactly_once; }

int sp_lua_run_batch(sp_lua *l, const char **err) { return sp_lua_run_batch_from(l, 0, err); }

int sp_lua_run_batch_from(sp_lua *l, int32_t from, const char **err) {
    lua_State *L = l->L;
    lua_pushcfunction(L, traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, l->run_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, l->env_ref);
    lua_pushinteger(L, from);
    if (guarded_pcall(l, 2, 2, -4) != 0) {
        /* only sproc's own code can get here: user errors are handled by
         * the policy inside run_batch */
        *err = pop_message(l);
        lua_pop(L, 1);
        return SP_LUA_FAILED;
    }
    int rc = SP_OK;
    if (!lua_isnil(L, -2)) {
        rc = lua_toboolean(L, -1) ? SP_LUA_ROLLBACK : SP_LUA_FAILED;
        lua_pop(L, 1);
        *err = pop_message(l);
    } else {
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    return rc;
}

int sp_lua_describe(sp_lua *l, int dot, const char **err) {
    lua_State *L = l->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, l->env_ref);
    lua_pushboolean(L, dot);
    if (call_runtime(l, "describe", 2, 1) != 0) {
        *err = pop_message(l);
        return -1;
    }
    fputs(lua_tostring(L, -1), stdout);
    lua_pop(L, 1);
    return 0;
}

int sp_lua_test(sp_lua *l, int argc, char **argv) {
    lua_State *L = l->L;
    /* busted reads its command line from the global arg */
    lua_newtable(L);
    lua_pushstring(L, "sproc test");
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
    const char *boot =
        "require 'busted.runner'({ standalone = false })\n";
    if (luaL_loadbuffer(L, boot, strlen(boot), "=sproc test") != 0 ||
        lua_pcall(L, 0, 0, 0) != 0) {
        fprintf(stderr, "sproc test: %s\n", lua_tostring(L, -1));
        return 1;
    }
    return 0;
}
