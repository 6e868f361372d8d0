/* The Thrift compact protocol's encoding rules: varints (ULEB128) of
 * zigzag integers, field headers of a 4-bit id delta and a 4-bit type, the
 * boolean value inside the field header, and list headers of a 4-bit size
 * and the element type. */
#include "sp_thrift.h"

int sp_uleb128(sp_buf *b, uint64_t v) {
    uint8_t tmp[10];
    size_t n = 0;
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        tmp[n++] = byte | (v ? 0x80 : 0);
    } while (v);
    return sp_buf_append(b, tmp, n);
}

static uint64_t zigzag(int64_t v) {
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static void put(sp_thrift *t, int rc) {
    if (rc != 0) t->failed = 1;
}

void sp_thrift_init(sp_thrift *t, sp_buf *b) {
    t->b = b;
    t->depth = 0;
    t->last[0] = 0;
    t->failed = 0;
}

void sp_thrift_field(sp_thrift *t, int16_t id, int type) {
    int16_t delta = (int16_t)(id - t->last[t->depth]);
    if (delta > 0 && delta <= 15) {
        put(t, sp_buf_putc(t->b, (char)((delta << 4) | type)));
    } else {
        put(t, sp_buf_putc(t->b, (char)type));
        put(t, sp_uleb128(t->b, zigzag(id)));
    }
    t->last[t->depth] = id;
}

void sp_thrift_i32(sp_thrift *t, int16_t id, int32_t v) {
    sp_thrift_field(t, id, SP_TT_I32);
    put(t, sp_uleb128(t->b, zigzag(v)));
}

void sp_thrift_i64(sp_thrift *t, int16_t id, int64_t v) {
    sp_thrift_field(t, id, SP_TT_I64);
    put(t, sp_uleb128(t->b, zigzag(v)));
}

void sp_thrift_bool(sp_thrift *t, int16_t id, int v) {
    sp_thrift_field(t, id, v ? SP_TT_TRUE : SP_TT_FALSE);
}

void sp_thrift_binary(sp_thrift *t, int16_t id, const void *p, size_t len) {
    sp_thrift_field(t, id, SP_TT_BINARY);
    sp_thrift_elem_binary(t, p, len);
}

void sp_thrift_begin(sp_thrift *t, int16_t id) {
    if (id > 0) sp_thrift_field(t, id, SP_TT_STRUCT);
    if (t->depth + 1 >= SP_THRIFT_DEPTH) {
        t->failed = 1;
        return;
    }
    t->last[++t->depth] = 0;
}

void sp_thrift_end(sp_thrift *t) {
    put(t, sp_buf_putc(t->b, 0));
    if (t->depth > 0) t->depth--;
}

void sp_thrift_list(sp_thrift *t, int16_t id, int elem_type, int32_t n) {
    sp_thrift_field(t, id, SP_TT_LIST);
    if (n < 15) {
        put(t, sp_buf_putc(t->b, (char)((n << 4) | elem_type)));
    } else {
        put(t, sp_buf_putc(t->b, (char)(0xf0 | elem_type)));
        put(t, sp_uleb128(t->b, (uint64_t)n));
    }
}

void sp_thrift_elem_i32(sp_thrift *t, int32_t v) {
    put(t, sp_uleb128(t->b, zigzag(v)));
}

void sp_thrift_elem_binary(sp_thrift *t, const void *p, size_t len) {
    put(t, sp_uleb128(t->b, len));
    put(t, sp_buf_append(t->b, p, len));
}
