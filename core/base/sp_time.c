/* ISO-8601 times for --start and for scripts (sproc.time.parse_iso). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "sp_ffi.h"

static int digits(const char **p, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i])) return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * civil-from-days inverse), so no time zone or locale is involved. */
static long long days_from_civil(int y, int m, int d) {
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int sp_time_parse(const char *s, int64_t *ms) {
    if (!s) return -1;
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, se = 0, frac = 0;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) ||
        *p++ != '-' || digits(&p, 2, &d))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31) return -1;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi)) return -1;
        if (*p == ':') {
            p++;
            if (digits(&p, 2, &se)) return -1;
            if (*p == '.' || *p == ',') {
                p++;
                int n = 0, scale = 100;
                if (!isdigit((unsigned char)*p)) return -1;
                while (isdigit((unsigned char)*p)) {
                    if (n < 3) frac += (*p - '0') * scale;
                    scale /= 10;
                    n++;
                    p++;
                }
            }
        }
        if (h > 23 || mi > 59 || se > 60) return -1;
    }
    long long off = 0; /* no zone: UTC */
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
        if (digits(&p, 2, &oh)) return -1;
        if (*p == ':') p++;
        if (isdigit((unsigned char)*p) && digits(&p, 2, &om)) return -1;
        off = sign * (oh * 3600LL + om * 60LL);
    }
    if (*p) return -1;
    long long secs = days_from_civil(y, mo, d) * 86400LL + h * 3600LL +
                     mi * 60LL + se - off;
    *ms = secs * 1000 + frac;
    return 0;
}
