/* Lua C functions of libsproc (module "sproc.native"). JSON encoding walks
 * Lua tables, which the FFI cannot see, so it is a classic C function: one
 * call per value, straight into a reused buffer. */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>

#include "sp_buf.h"
#include "sp_json.h"

#define MAX_DEPTH 64

static sp_buf enc_buf; /* one Lua state per process uses this module */

/* A table is an array when its keys are exactly 1..n. */
static int array_len(lua_State *L, int idx) {
    int n = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TNUMBER) {
            lua_pop(L, 1);
            return -1;
        }
        lua_Number k = lua_tonumber(L, -1);
        if (k < 1 || floor(k) != k) {
            lua_pop(L, 1);
            return -1;
        }
        if (k > max) max = (int)k;
        n++;
    }
    return (n == max && n > 0) ? n : -1;
}

static int is_null(lua_State *L, int idx) {
    /* cjson.null is a light userdata NULL */
    return lua_type(L, idx) == LUA_TLIGHTUSERDATA && !lua_touserdata(L, idx);
}

static int encode(lua_State *L, sp_buf *b, int idx, int depth);

static int encode_table(lua_State *L, sp_buf *b, int idx, int depth) {
    if (depth > MAX_DEPTH) return luaL_error(L, "json: nesting too deep (cycle?)");
    int n = array_len(L, idx);
    if (n > 0) {
        sp_buf_putc(b, '[');
        for (int i = 1; i <= n; i++) {
            if (i > 1) sp_buf_putc(b, ',');
            lua_rawgeti(L, idx, i);
            encode(L, b, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
        }
        return sp_buf_putc(b, ']');
    }
    int first = 1;
    sp_buf_putc(b, '{');
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int kt = lua_type(L, -2);
        if (kt != LUA_TSTRING && kt != LUA_TNUMBER)
            return luaL_error(L, "json: cannot encode a %s key",
                              lua_typename(L, kt));
        if (!first) sp_buf_putc(b, ',');
        first = 0;
        size_t kl;
        /* tolstring would turn a number key on the stack into a string and
         * confuse lua_next: convert a copy. */
        lua_pushvalue(L, -2);
        const char *k = lua_tolstring(L, -1, &kl);
        if (sp_json_write_string(b, k, kl) == SP_JSON_EUTF8)
            return luaL_error(L, "json: a key is not valid UTF-8");
        lua_pop(L, 1);
        sp_buf_putc(b, ':');
        encode(L, b, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
    }
    return sp_buf_putc(b, '}');
}

static int encode(lua_State *L, sp_buf *b, int idx, int depth) {
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return sp_buf_append(b, "null", 4);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? sp_buf_append(b, "true", 4)
                                     : sp_buf_append(b, "false", 5);
    case LUA_TNUMBER:
        return sp_json_write_number(b, lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        int rc = sp_json_write_string(b, s, len);
        if (rc == SP_JSON_EUTF8) return luaL_error(L, "json: a string is not valid UTF-8");
        return rc;
    }
    case LUA_TTABLE:
        if (luaL_getmetafield(L, idx, "__sproc_json")) {
            /* a record's JSON view: its raw text */
            lua_pushvalue(L, idx);
            lua_call(L, 1, 1);
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            int rc = s ? sp_buf_append(b, s, len) : sp_buf_append(b, "null", 4);
            lua_pop(L, 1);
            return rc;
        }
        return encode_table(L, b, idx, depth);
    default:
        if (is_null(L, idx)) return sp_buf_append(b, "null", 4);
        return luaL_error(L, "json: cannot encode a %s",
                          luaL_typename(L, idx));
    }
}

static int l_json_encode(lua_State *L) {
    luaL_checkany(L, 1);
    sp_buf_reset(&enc_buf);
    encode(L, &enc_buf, 1, 0);
    lua_pushlstring(L, enc_buf.data ? enc_buf.data : "", enc_buf.len);
    return 1;
}

int luaopen_sproc_native(lua_State *L) {
    static const luaL_Reg fns[] = {{"json_encode", l_json_encode},
                                   {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    return 1;
}
