/* Calendar arithmetic for dates and times in UTC (proleptic Gregorian),
 * shared by the ISO-8601 parser, schemas and Hive-style partition paths.
 * sp_time_parse itself is in the FFI header (scripts call it). */
#ifndef SP_TIME_H
#define SP_TIME_H

#include <stddef.h>
#include <stdint.h>

/* Days since 1970-01-01 of a date. */
int64_t sp_time_days(int y, int m, int d);
/* The date of a day since 1970-01-01. */
void sp_time_civil(int64_t days, int *y, int *m, int *d);
/* "YYYY-MM-DD" of a day into buf (at least 16 bytes); its length. */
size_t sp_time_format_date(int64_t days, char *buf);
/* "YYYY-MM-DD HH:MM:SS[.mmm]" (UTC) of epoch ms into buf (at least 32
 * bytes); its length. */
size_t sp_time_format_ms(int64_t ms, char *buf);

#endif
