/* sp_log: one line per event on stderr, plain or JSON lines. librdkafka's
 * own log lines are routed here too, so a user reads one stream. */
#ifndef SP_LOG_H
#define SP_LOG_H

enum { SP_LOG_ERROR = 0, SP_LOG_WARN = 1, SP_LOG_INFO = 2, SP_LOG_DEBUG = 3 };

void sp_log_set_level(int level);
void sp_log_set_json(int json);
/* Redraws the one-line progress display (a terminal's stderr only); log
 * lines clear it first. An empty line removes it. */
void sp_log_progress(const char *line);
int sp_log_level(void);
void sp_log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* With fields: kv is NULL or a NULL-terminated list of key, value
 * strings that JSON lines carry as fields of their own (a value of digits
 * as a number); text lines show only the message. */
void sp_log_kv(int level, const char *const *kv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A field every JSON line carries from now on (value NULL: no more). */
void sp_log_set_field(const char *key, const char *value);

#define sp_error(...) sp_log(SP_LOG_ERROR, __VA_ARGS__)
#define sp_warn(...) sp_log(SP_LOG_WARN, __VA_ARGS__)
#define sp_info(...) sp_log(SP_LOG_INFO, __VA_ARGS__)
#define sp_debug(...) sp_log(SP_LOG_DEBUG, __VA_ARGS__)

#endif
