/* sp_hive: Hive-style partition directories (Spark's partitionBy): a
 * row's values of the partition columns name its directory,
 * "pickup_date=2024-01-02/vendor=2", escaped as Hive escapes path names,
 * and the columns are left out of the files (readers take them from the
 * path). */
#ifndef SP_HIVE_H
#define SP_HIVE_H

#include <stdint.h>

#include "sp_buf.h"
#include "sp_schema.h"

/* Hive's directory name of a null or empty value. */
#define SP_HIVE_DEFAULT "__HIVE_DEFAULT_PARTITION__"

typedef struct sp_hive {
    int32_t *nodes; /* the partition columns' schema nodes, in path order */
    int32_t n;
    uint8_t *omit;  /* per schema node: 1 for a partition column */
    sp_buf text;    /* a value's text before escaping */
} sp_hive;

/* The partition columns of spec ("a,b": top-level fields of s of a plain
 * type). NULL with *err set when one is not such a field. */
sp_hive *sp_hive_create(const sp_schema *s, const char *spec, const char **err);
void sp_hive_destroy(sp_hive *h);
/* The directory of the row s converted last, into out (reset first).
 * Returns 0, or with *err set -1 when out of memory and -2 for a value
 * too long for a directory name. */
int sp_hive_path(sp_hive *h, const sp_schema *s, sp_buf *out, const char **err);
/* Appends text escaped as Hive escapes a path name (exposed for tests). */
int sp_hive_escape(sp_buf *out, const char *p, size_t n);

#endif
