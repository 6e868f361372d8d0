/* ISO-8601 times (--start). */
#include "sp_ffi.h"
#include "sp_test.h"

static long long ms(const char *s) {
    int64_t v = -42;
    return sp_time_parse(s, &v) == 0 ? v : -42;
}

int main(void) {
    SP_CHECK_INT(ms("1970-01-01T00:00:00Z"), 0);
    SP_CHECK_INT(ms("2016-01-01T00:00:00Z"), 1451606400000LL);
    SP_CHECK_INT(ms("2016-01-01 00:00:00"), 1451606400000LL); /* no zone: UTC */
    SP_CHECK_INT(ms("2016-01-01"), 1451606400000LL);
    SP_CHECK_INT(ms("2016-02-29T12:30:15.250Z"), 1456749015250LL);
    SP_CHECK_INT(ms("2016-01-01T01:00:00+01:00"), 1451606400000LL);
    SP_CHECK_INT(ms("2015-12-31T19:00:00-0500"), 1451606400000LL);
    SP_CHECK_INT(ms("1969-12-31T23:59:59Z"), -1000);
    SP_CHECK_INT(ms("2016-13-01"), -42);
    SP_CHECK_INT(ms("2024-02-30"), -42); /* no such day (it once read as March 1st) */
    SP_CHECK_INT(ms("2023-02-29"), -42);
    SP_CHECK_INT(ms("2000-02-29"), 951782400000LL);
    SP_CHECK_INT(ms("1900-02-29"), -42);
    SP_CHECK_INT(ms("2023-04-31T00:00:00Z"), -42);
    SP_CHECK_INT(ms("yesterday"), -42);
    SP_CHECK_INT(ms("2016-01-01T10"), -42);
    SP_CHECK_INT(ms("2016-01-01Tx"), -42);
    return sp_test_summary();
}
