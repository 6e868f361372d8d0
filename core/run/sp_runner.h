/* sp_runner: runs a pipeline against Kafka: the libev loop, the consumer
 * and producer, rebalances, commits, bounded runs and shutdown. */
#ifndef SP_RUNNER_H
#define SP_RUNNER_H

typedef struct sp_opts {
    const char *script;
    const char *brokers;   /* NULL: the embedded dev cluster */
    const char *app;       /* NULL: the script's, else its file name */
    const char *start;     /* earliest, latest or an ISO-8601 time */
    int until_end;
    int watch;
    const char *metrics;    /* HOST:PORT of the metrics endpoint, or NULL */
    int quiet;              /* no progress line */
    double connect_timeout; /* seconds; <= 0 waits forever */
    const char **sets;      /* key=value */
    int nsets;
} sp_opts;

/* Returns the process exit code: 0, 1 (runtime failure) or 2 (script). */
int sp_run(const sp_opts *o);

/* Parses an ISO-8601 time ("2016-01-01T00:00:00Z", "2016-01-01 00:00:00",
 * "2016-01-01", with optional fraction and zone; no zone means UTC) into
 * epoch milliseconds. Returns 0, or -1 when it is not such a time. */
int sp_time_parse_ll(const char *s, long long *ms);

#endif
