/* sp_thrift: the Thrift compact protocol, write side only: what the
 * Parquet writer needs for its page headers and file footer. Fields are
 * written in increasing id order inside each struct, as the protocol's
 * delta encoding of field ids expects. */
#ifndef SP_THRIFT_H
#define SP_THRIFT_H

#include <stddef.h>
#include <stdint.h>

#include "sp_buf.h"

enum {
    SP_TT_TRUE = 1, SP_TT_FALSE = 2, SP_TT_BYTE = 3, SP_TT_I16 = 4,
    SP_TT_I32 = 5, SP_TT_I64 = 6, SP_TT_DOUBLE = 7, SP_TT_BINARY = 8,
    SP_TT_LIST = 9, SP_TT_STRUCT = 12
};

#define SP_THRIFT_DEPTH 16

typedef struct sp_thrift {
    sp_buf *b;
    int16_t last[SP_THRIFT_DEPTH]; /* last field id of each open struct */
    int depth;
    int failed; /* out of memory or nesting too deep: sticky */
} sp_thrift;

void sp_thrift_init(sp_thrift *t, sp_buf *b);
void sp_thrift_field(sp_thrift *t, int16_t id, int type);
void sp_thrift_i32(sp_thrift *t, int16_t id, int32_t v);
void sp_thrift_i64(sp_thrift *t, int16_t id, int64_t v);
void sp_thrift_bool(sp_thrift *t, int16_t id, int v);
void sp_thrift_binary(sp_thrift *t, int16_t id, const void *p, size_t len);
/* A struct field (id > 0), or a struct element of a list (id 0). */
void sp_thrift_begin(sp_thrift *t, int16_t id);
void sp_thrift_end(sp_thrift *t);
void sp_thrift_list(sp_thrift *t, int16_t id, int elem_type, int32_t n);
/* List elements. */
void sp_thrift_elem_i32(sp_thrift *t, int32_t v);
void sp_thrift_elem_binary(sp_thrift *t, const void *p, size_t len);
/* Unsigned LEB128, as the protocol (and Parquet's RLE headers) use. */
int sp_uleb128(sp_buf *b, uint64_t v);

#endif
