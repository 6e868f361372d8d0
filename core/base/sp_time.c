/* ISO-8601 times for --start and for scripts (sproc.time.parse_iso). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp_ffi.h"
#include "sp_time.h"

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

/* Howard Hinnant's days-from-civil and its inverse, so no time zone or
 * locale is involved. */
int64_t sp_time_days(int y, int m, int d) {
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void sp_time_civil(int64_t days, int *y, int *m, int *d) {
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

size_t sp_time_format_date(int64_t days, char *buf) {
    int y, m, d;
    sp_time_civil(days, &y, &m, &d);
    int n = snprintf(buf, 16, "%04d-%02d-%02d", y, m, d);
    return n < 0 ? 0 : n >= 16 ? 15 : (size_t)n;
}

size_t sp_time_format_ms(int64_t ms, char *buf) {
    int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
    int64_t in_day = ms - days * 86400000;
    size_t n = sp_time_format_date(days, buf);
    int w = snprintf(buf + n, 32 - n, " %02d:%02d:%02d", (int)(in_day / 3600000),
                     (int)(in_day / 60000 % 60), (int)(in_day / 1000 % 60));
    if (w > 0) n += (size_t)w;
    if (in_day % 1000 && (w = snprintf(buf + n, 32 - n, ".%03d", (int)(in_day % 1000))) > 0)
        n += (size_t)w;
    return n;
}

int sp_time_parse(const char *s, int64_t *ms) {
    if (!s) return -1;
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, se = 0, frac = 0;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) ||
        *p++ != '-' || digits(&p, 2, &d))
        return -1;
    /* a day the month does not have is no date (it would be read as the
     * next month's: 2024-02-30 as March 1st) */
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1 ||
        d > days[mo - 1] + (mo == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        return -1;
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
    long long secs = sp_time_days(y, mo, d) * 86400LL + h * 3600LL +
                     mi * 60LL + se - off;
    *ms = secs * 1000 + frac;
    return 0;
}
