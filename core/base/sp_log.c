#include "sp_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "sp_buf.h"
#include "sp_json.h"

static int log_level = SP_LOG_INFO;
static int log_json = 0;
static int progress_shown = 0; /* a progress line waits on the terminal */
static const char *level_names[] = {"error", "warn", "info", "debug"};

void sp_log_set_level(int level) { log_level = level; }
void sp_log_set_json(int json) { log_json = json; }

void sp_log_progress(const char *line) {
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
    progress_shown = line[0] != '\0';
}
int sp_log_level(void) { return log_level; }

/* the fields every JSON line carries (sp_log_set_field) */
#define SP_LOG_MAX_FIELDS 8
static char *fields[SP_LOG_MAX_FIELDS][2];

void sp_log_set_field(const char *key, const char *value) {
    int i = 0;
    while (i < SP_LOG_MAX_FIELDS && fields[i][0] && strcmp(fields[i][0], key) != 0) i++;
    if (i == SP_LOG_MAX_FIELDS) return;
    if (!fields[i][0] && !(fields[i][0] = strdup(key))) return;
    free(fields[i][1]);
    fields[i][1] = value ? strdup(value) : NULL;
}

static void vlog(int level, const char *const *kv, const char *fmt, va_list ap);

void sp_log(int level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(level, NULL, fmt, ap);
    va_end(ap);
}

void sp_log_kv(int level, const char *const *kv, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(level, kv, fmt, ap);
    va_end(ap);
}

/* "key":value, the value a number when it is one */
static void add_field(sp_buf *b, const char *key, const char *value) {
    sp_buf_append(b, ",", 1);
    sp_json_write_string(b, key, strlen(key));
    sp_buf_append(b, ":", 1);
    size_t n = strlen(value), i = value[0] == '-';
    while (i < n && value[i] >= '0' && value[i] <= '9') i++;
    if (n > 0 && n < 19 && i == n && !(n == 1 && value[0] == '-'))
        sp_buf_append(b, value, n);
    else if (sp_json_write_string(b, value, n) == SP_JSON_EUTF8)
        sp_buf_append(b, "\"?\"", 3);
}

static void vlog(int level, const char *const *kv, const char *fmt, va_list ap) {
    if (level > log_level) return;
    char msg[4096];
    vsnprintf(msg, sizeof msg, fmt, ap);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03dZ", (int)(tv.tv_usec / 1000));

    if (!log_json) {
        if (progress_shown) fputs("\r\033[K", stderr);
        fprintf(stderr, "%s sproc %s: %s\n", when, level_names[level], msg);
        return;
    }
    /* JSON lines need the message escaped; one buffer per call is fine at
     * logging rates. */
    sp_buf b;
    sp_buf_init(&b);
    sp_buf_append(&b, "{\"time\":\"", 9);
    sp_buf_append(&b, when, strlen(when));
    sp_buf_append(&b, "\",\"level\":\"", 11);
    sp_buf_append(&b, level_names[level], strlen(level_names[level]));
    sp_buf_append(&b, "\",\"msg\":", 8);
    if (sp_json_write_string(&b, msg, strlen(msg)) == SP_JSON_EUTF8) {
        /* a message quoting bad input: its bytes that are not UTF-8 as '?' */
        size_t n = strlen(msg);
        char *clean = malloc(n + 1);
        if (clean) {
            const char *end = msg + n;
            for (size_t i = 0; i < n;) {
                size_t k = sp_utf8_len(msg + i, end);
                if (k) memcpy(clean + i, msg + i, k); else clean[i] = '?', k = 1;
                i += k;
            }
            clean[n] = '\0';
            sp_json_write_string(&b, clean, n);
            free(clean);
        }
    }
    for (int i = 0; i < SP_LOG_MAX_FIELDS && fields[i][0]; i++)
        if (fields[i][1]) add_field(&b, fields[i][0], fields[i][1]);
    for (int i = 0; kv && kv[i] && kv[i + 1]; i += 2) add_field(&b, kv[i], kv[i + 1]);
    sp_buf_append(&b, "}\n", 2);
    fwrite(b.data, 1, b.len, stderr);
    sp_buf_destroy(&b);
}
