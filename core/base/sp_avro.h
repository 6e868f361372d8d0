/* sp_avro: Avro's binary encoding, by a schema given as Avro's JSON.
 * A datum decodes to JSON text, so that the JSON index and the Lua views
 * read its fields as they read a JSON record's (no table per record); a
 * JSON value encodes to a datum. Written here rather than taken from
 * avro-c because sproc needs neither avro-c's value objects nor its
 * schema resolution: only bytes to JSON text and back, in one pass.
 *
 * JSON of a datum: records as objects, arrays, maps as objects, a union
 * as the value of its branch (null as null), enums as their symbol,
 * bytes and fixed as a string when UTF-8 and {"b64": "..."} otherwise,
 * NaN and infinities as null. Logical types: decimal as a number with its
 * scale (unscaled values of up to 16 bytes), date as "YYYY-MM-DD",
 * time-millis, timestamp-millis and timestamp-micros as their integers,
 * uuid as its string. Encoding takes the same JSON, and also an
 * ISO-8601 string for date and the timestamps, a string for a decimal. */
#ifndef SP_AVRO_H
#define SP_AVRO_H

#include <stddef.h>
#include <stdint.h>

#include "sp_buf.h"

typedef struct sp_avro_schema sp_avro_schema;

/* Nesting of schemas and of data (JSON's own limit is 64). */
#define SP_AVRO_DEPTH 32

/* 0 and the schema, or -1 with a message in err. */
int sp_avro_parse(const char *json, size_t len, sp_avro_schema **out, char *err, size_t errsize);
void sp_avro_destroy(sp_avro_schema *s);
/* One datum (all of p, n bytes) as JSON text appended to out: 0, or -1
 * with a message in err (out then holds a part). */
int sp_avro_decode(const sp_avro_schema *s, const char *p, size_t n, sp_buf *out, char *err,
                   size_t errsize);
/* A JSON value as one datum appended to out: 0, or -1 with a message. */
int sp_avro_encode(const sp_avro_schema *s, const char *json, size_t len, sp_buf *out, char *err,
                   size_t errsize);

#endif
