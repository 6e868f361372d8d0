/* sp_json: JSON values parsed once into a flat index of their top-level
 * fields, so Lua reads fields by name through the FFI without building a
 * table per record; and a writer that appends JSON to an sp_buf.
 * The index never copies input: fields point into the caller's buffer. */
#ifndef SP_JSON_H
#define SP_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "sp_buf.h"
#include "sp_ffi.h" /* SP_JSON_* */

typedef struct sp_json_field {
    const char *key;   /* key bytes between the quotes, still escaped */
    const char *val;   /* strings: bytes between the quotes (escaped);
                          others: the whole raw value text */
    uint32_t key_len;
    uint32_t val_len;
    uint8_t type;        /* SP_JSON_* */
    uint8_t key_escaped; /* 1 when the key contains a backslash escape */
    uint8_t val_escaped; /* 1 when a string value contains an escape */
} sp_json_field;

typedef struct sp_json_index {
    sp_json_field *fields;
    uint32_t n;
    uint32_t cap;
    uint8_t root_type; /* type of the whole value (SP_JSON_*) */
} sp_json_index;

void sp_json_index_init(sp_json_index *ix);
void sp_json_index_destroy(sp_json_index *ix);

/* Validates the whole text (strict RFC 8259, nesting depth <= 64, any
 * surrounding whitespace; strings UTF-8 with paired surrogate escapes,
 * numbers within a double's range) and indexes the top-level fields when the root
 * is an object, its elements (without keys) when it is an array (n = 0
 * for any other root). Duplicate keys are kept in
 * order; lookups return the last, as most decoders do.
 * Returns 0, or -1 with *err set to a static message and *err_pos to the
 * byte offset of the problem. */
int sp_json_index_parse(sp_json_index *ix, const char *text, size_t len,
                        const char **err, size_t *err_pos);

/* Index of the field named name (compared after unescaping the key), or -1. */
int sp_json_index_find(const sp_json_index *ix, const char *name, size_t len);

/* Unescapes JSON string contents (the bytes between quotes) into out,
 * which must hold len bytes (unescaping never grows text). \uXXXX
 * becomes UTF-8, surrogate pairs combined. Returns the output length. */
size_t sp_json_unescape(const char *in, size_t len, char *out);

/* Parses a JSON number token (as validated by the index). */
double sp_json_number(const char *p, size_t len);
/* A plain decimal ("-73.928642", "12": sign, at most 15 digits, a point)
 * as mantissa and decimals, for Clinger's fast path; -1 for anything else
 * (exponents, longer mantissas), which needs strtod. */
int sp_json_decimal(const char *p, size_t len, uint64_t *mant, int *frac, int *neg);
/* 10^k for k = 0..22: exact doubles. */
extern const double sp_pow10[23];

/* --- writer: appends to an sp_buf; returns 0 or -1 (out of memory) --- */

/* Quoted, escaped JSON string (control characters as \u00XX; UTF-8 copied
 * as it is); SP_JSON_EUTF8, with nothing written, when s is not UTF-8. */
#define SP_JSON_EUTF8 (-2)
int sp_json_write_string(sp_buf *b, const char *s, size_t len);
/* The length of the UTF-8 sequence at s (RFC 3629), or 0 when it is not
 * one. */
size_t sp_utf8_len(const char *s, const char *end);
/* Shortest text that reads back to the same double; integral values
 * within 2^53 without exponent or fraction; NaN and infinities as null
 * (JSON has no such numbers). */
int sp_json_write_number(sp_buf *b, double v);
/* Bytes as a quoted base64 string (RFC 4648, padded): for what is not
 * UTF-8. */
int sp_json_write_base64(sp_buf *b, const void *p, size_t n);
/* Valid JSON text appended on one line: its newlines (outside strings,
 * where JSON allows no raw control character) become spaces, for
 * formats of a record a line. */
int sp_json_append_line(sp_buf *b, const char *json, size_t len);
/* A JSON string of bytes that are UTF-8, else {"b64": "..."}. */
int sp_json_write_text(sp_buf *b, const char *s, size_t len);
int sp_json_write_int(sp_buf *b, int64_t v);

#endif
