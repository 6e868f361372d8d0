/* sp_metrics: the HTTP endpoint of a running sproc (libmicrohttpd, driven
 * by the libev loop through its epoll descriptor, so handlers run on the
 * loop's thread between batches and read the counters without locks).
 *
 *   /metrics        Prometheus text format
 *   /health/live    200 while the loop turns (it answers)
 *   /health/ready   200 when every assigned partition's state is restored,
 *                   503 before
 *   /state...       interactive queries (run/sp_run_query.c), JSON
 *   /tap/...        a live sample of an operator's records (run/sp_run_tap.c),
 *                   streamed as JSON lines */
#ifndef SP_METRICS_H
#define SP_METRICS_H

#include <ev.h>

#include "sp_buf.h"

typedef struct sp_metrics sp_metrics;

/* A request's query parameters: get gives one (NULL: absent). */
typedef struct sp_metrics_args {
    void *conn;
    const char *(*get)(void *conn, const char *name);
} sp_metrics_args;

/* A streamed response: what is written goes out as the client reads it. */
typedef struct sp_metrics_stream sp_metrics_stream;

typedef struct sp_metrics_source {
    void *opaque;
    /* Appends the Prometheus text; 0, or -1 when out of memory. */
    int (*render)(void *opaque, sp_buf *out);
    /* 1 when ready to process. */
    int (*ready)(void *opaque);
    /* Answers a GET of /state or below (path: the URL's path, decoded):
     * the status, a JSON body and, for a redirect, the location (left
     * empty otherwise). NULL: no queries. */
    void (*query)(void *opaque, const char *path, const sp_metrics_args *args,
                  unsigned *status, sp_buf *body, sp_buf *location);
    /* Takes a GET of /tap or below as the stream s (returns 1; s lives
     * until stream_closed), or answers it with a status and a body as
     * query does (0). NULL: no streams. */
    int (*stream)(void *opaque, const char *path, const sp_metrics_args *args,
                  sp_metrics_stream *s, unsigned *status, sp_buf *body);
    /* s's client went away, or it ended: s is freed after this. */
    void (*stream_closed)(void *opaque, sp_metrics_stream *s);
} sp_metrics_source;

/* listen: "HOST:PORT" or ":PORT" / "PORT" (then 127.0.0.1). NULL and a
 * message in err on failure. */
sp_metrics *sp_metrics_create(struct ev_loop *loop, const char *listen,
                              const sp_metrics_source *src, char *err, size_t errsize);
void sp_metrics_destroy(sp_metrics *m);
/* The port it listens on (for ":0"), and "HOST:PORT" with it. */
int sp_metrics_port(const sp_metrics *m);
const char *sp_metrics_address(const sp_metrics *m);

/* Queues bytes on a stream: 0, or -1 when a slow reader left too much
 * waiting (the bytes are dropped). */
int sp_metrics_stream_write(sp_metrics_stream *s, const char *p, size_t n);
/* Ends the stream once what is queued is read. */
void sp_metrics_stream_end(sp_metrics_stream *s);

#endif
