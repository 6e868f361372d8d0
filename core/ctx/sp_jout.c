/* A script's flat table (names to strings, numbers and booleans: most
 * outputs) as JSON, written field by field from Lua through the FFI. The
 * C encoder walks a table through the Lua API, a call LuaJIT cannot
 * compile through: the code after it in a record's path ran interpreted,
 * and its text came back as a Lua string only to be copied again. */
#include "sp_ctx.h"
#include "sp_ffi.h"
#include "sp_json.h"

static sp_buf *slot_buf(sp_ctx *ctx, int32_t slot) {
    return &ctx->jout[slot ? 1 : 0];
}

void sp_jout_begin(sp_ctx *ctx, int32_t slot) {
    sp_buf *b = slot_buf(ctx, slot);
    sp_buf_reset(b);
    sp_buf_putc(b, '{');
}

/* ,"name": (a name that is not UTF-8: SP_JSON_EUTF8) */
static int name(sp_buf *b, const char *n, size_t nlen) {
    if (b->len > 1 && sp_buf_putc(b, ',') != 0) return -1;
    int rc = sp_json_write_string(b, n, nlen);
    return rc != 0 ? rc : sp_buf_putc(b, ':');
}

int sp_jout_string(sp_ctx *ctx, int32_t slot, const char *n, size_t nlen, const char *s,
                   size_t len) {
    sp_buf *b = slot_buf(ctx, slot);
    int rc = name(b, n, nlen);
    return rc != 0 ? rc : sp_json_write_string(b, s, len);
}

int sp_jout_number(sp_ctx *ctx, int32_t slot, const char *n, size_t nlen, double v) {
    sp_buf *b = slot_buf(ctx, slot);
    int rc = name(b, n, nlen);
    return rc != 0 ? rc : sp_json_write_number(b, v);
}

int sp_jout_bool(sp_ctx *ctx, int32_t slot, const char *n, size_t nlen, int v) {
    sp_buf *b = slot_buf(ctx, slot);
    int rc = name(b, n, nlen);
    return rc != 0 ? rc : sp_buf_append(b, v ? "true" : "false", v ? 4 : 5);
}

const char *sp_jout_end(sp_ctx *ctx, int32_t slot, size_t *len) {
    sp_buf *b = slot_buf(ctx, slot);
    if (sp_buf_putc(b, '}') != 0) return NULL;
    *len = b->len;
    return b->data;
}
