/* sp_schema: declared record schemas (Spark's StructType) applied to JSON
 * values. A conversion fills one value slot per schema node, so the
 * Parquet writer appends columns and the JSON writer renders the
 * canonical value without building anything per record. */
#ifndef SP_SCHEMA_H
#define SP_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "sp_buf.h"
#include "sp_json.h"

enum {
    SP_SCH_STRING = 0, SP_SCH_INT64 = 1, SP_SCH_DOUBLE = 2,
    SP_SCH_BOOLEAN = 3, SP_SCH_TIMESTAMP = 4, SP_SCH_STRUCT = 5,
    SP_SCH_DATE = 6, SP_SCH_DECIMAL = 7, SP_SCH_LIST = 8
};

/* decimal(p,s) is held unscaled in an int64 */
#define SP_SCHEMA_DECIMAL_MAX_PRECISION 18

#define SP_SCHEMA_DEPTH 16

typedef struct sp_schema_node {
    char *name;
    size_t name_len;
    int type;
    int nullable;
    int32_t *kids;   /* struct: child node indexes, in declared order */
    int32_t nkids;
    int32_t parent;  /* -1 for the root */
    int32_t column;  /* leaf: column index (leaves in depth-first order) */
    int16_t max_def; /* optional nodes on the path, this one included (a
                        list's repeated level counts as one) */
    int16_t max_rep; /* leaves: 1 under a list, else 0 */
    int16_t depth;   /* top-level fields: 1 (node 0 is the root) */
    int16_t precision, scale; /* decimal */
} sp_schema_node;

/* A converted value. Strings point into the converted text or into the
 * schema's scratch, valid until the next conversion. */
typedef struct sp_value {
    uint8_t present; /* 0: null */
    uint8_t def;     /* leaves: Parquet definition level */
    uint32_t len;    /* strings */
    union {
        int64_t i;   /* int64, timestamp (epoch ms), boolean, date (days
                        since 1970-01-01), decimal (unscaled) */
        double d;
        const char *s;
    } v;
} sp_value;

/* A list's converted elements (one per element, each with its
 * definition level). */
typedef struct sp_items {
    sp_value *v;
    uint32_t n, cap;
} sp_items;

typedef struct sp_schema {
    sp_schema_node *nodes; /* pre-order; node 0 is the root struct */
    int32_t nnodes;
    int32_t *leaves;       /* node index of each column */
    int32_t ncolumns;
    sp_value *vals;        /* one per node, filled by a conversion */
    sp_items *items;       /* one per node: a list's element node holds
                              the elements; its value in vals is unused */
    int32_t nlists;
    sp_json_index ix[SP_SCHEMA_DEPTH];
    sp_buf scratch;        /* unescaped strings */
    char errbuf[256];
} sp_schema;

/* Parses a spec: fields separated by ',', each "name:type" with type one
 * of string, int64, double, boolean, timestamp, date, decimal(p,s) (p at
 * most 18), struct{...} or list<T> (T one of the types before struct:
 * a list's elements are nullable, lists do not nest); a '!' after the
 * type makes the field not nullable. Names may not contain ':', ',',
 * '{', '}' or '!'. Returns NULL with *err set on a bad spec. A list is a node with one child, its element ("element"). */
sp_schema *sp_schema_create(const char *spec, const char **err);
void sp_schema_destroy(sp_schema *s);

/* Converts a JSON value (top: its index when the caller parsed it
 * already, else NULL). Missing fields and nulls of nullable fields are
 * null, other fields ignored. Returns 0, or -1 with *err naming the field
 * and the value that does not convert. */
int sp_schema_convert(sp_schema *s, const char *text, size_t len,
                      const sp_json_index *top, const char **err);
/* The converted value as canonical JSON: declared fields in order, nulls
 * written, timestamps as epoch milliseconds, dates as "YYYY-MM-DD",
 * decimals as numbers with their scale's digits. */
int sp_schema_write_json(const sp_schema *s, sp_buf *out);
/* Dotted path of a column ("pickup.lat") into buf. */
void sp_schema_path(const sp_schema *s, int32_t column, char *buf, size_t n);
/* A leaf value as text: what JSON holds (without quotes) for strings,
 * numbers, booleans and dates; timestamps as "YYYY-MM-DD HH:MM:SS[.mmm]"
 * (Hive's partition values). Returns 0, or -1 when out of memory. */
int sp_schema_value_text(const sp_schema_node *nd, const sp_value *v, sp_buf *out);

#endif
