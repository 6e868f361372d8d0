/* libFuzzer target: the ISO-8601 parser (sp_time_parse, behind --start,
 * sproc.time.parse_iso and timestamp fields of schemas). Accepted text
 * must give a time that
 *  - for a plain date of the calendar, equals what the C library's
 *    timegm says (the parser's own day arithmetic against another);
 *  - written back as YYYY-MM-DDTHH:MM:SS.mmmZ, parses to the same
 *    milliseconds. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fuzz_input.h"
#include "sp_ffi.h"

static int days_in(int y, int m) {
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d[m - 1] + (m == 2 && leap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 256) return 0; /* times are short; long input only slows the search */
    char s[257];
    memcpy(s, data, size);
    s[size] = '\0';
    int64_t ms = 0;
    if (sp_time_parse(s, &ms) != 0) return 0;

    /* the date part alone, against timegm */
    int y, mo, d;
    if (sscanf(s, "%4d-%2d-%2d", &y, &mo, &d) == 3 && mo >= 1 && mo <= 12 && d >= 1 &&
        d <= days_in(y, mo)) {
        char date[11];
        memcpy(date, s, 10);
        date[10] = '\0';
        int64_t day_ms = 0;
        FZ_CHECK(sp_time_parse(date, &day_ms) == 0);
        struct tm tm = {0};
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        FZ_CHECK(day_ms == (int64_t)timegm(&tm) * 1000);
    }

    /* written back in the canonical form (years 0..9999 have one) */
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000));
    int frac = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) return 0;
    char back[64];
    snprintf(back, sizeof back, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
    int64_t again = 0;
    FZ_CHECK(sp_time_parse(back, &again) == 0);
    FZ_CHECK(again == ms);
    return 0;
}
