/* sp_metrics: the HTTP endpoint of a running sproc (libmicrohttpd, driven
 * by the libev loop through its epoll descriptor, so handlers run on the
 * loop's thread between batches and read the counters without locks).
 *
 *   /metrics        Prometheus text format
 *   /health/live    200 while the loop turns (it answers)
 *   /health/ready   200 when every assigned partition's state is restored,
 *                   503 before */
#ifndef SP_METRICS_H
#define SP_METRICS_H

#include <ev.h>

#include "sp_buf.h"

typedef struct sp_metrics sp_metrics;

typedef struct sp_metrics_source {
    void *opaque;
    /* Appends the Prometheus text; 0, or -1 when out of memory. */
    int (*render)(void *opaque, sp_buf *out);
    /* 1 when ready to process. */
    int (*ready)(void *opaque);
} sp_metrics_source;

/* listen: "HOST:PORT" or ":PORT" / "PORT" (then 127.0.0.1). NULL and a
 * message in err on failure. */
sp_metrics *sp_metrics_create(struct ev_loop *loop, const char *listen,
                              const sp_metrics_source *src, char *err, size_t errsize);
void sp_metrics_destroy(sp_metrics *m);
/* The port it listens on (for ":0"). */
int sp_metrics_port(const sp_metrics *m);

#endif
