#include "sp_metrics.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sp_metrics {
    struct MHD_Daemon *d;
    struct ev_loop *loop;
    ev_io io_w;
    ev_timer tick_w;
    sp_metrics_source src;
    sp_buf body;
    int port;
};

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version,
                              const char *upload, size_t *upload_len, void **state) {
    (void)version, (void)upload, (void)upload_len, (void)state;
    sp_metrics *m = cls;
    unsigned status = MHD_HTTP_OK;
    const char *type = "text/plain; charset=utf-8";
    sp_buf_reset(&m->body);
    if (strcmp(method, "GET") != 0) {
        status = MHD_HTTP_NOT_FOUND;
        sp_buf_append(&m->body, "GET only\n", 9);
    } else if (strcmp(url, "/metrics") == 0) {
        type = "text/plain; version=0.0.4; charset=utf-8";
        if (m->src.render(m->src.opaque, &m->body) != 0) status = MHD_HTTP_SERVICE_UNAVAILABLE;
    } else if (strcmp(url, "/health/live") == 0) {
        sp_buf_append(&m->body, "live\n", 5);
    } else if (strcmp(url, "/health/ready") == 0) {
        int ok = m->src.ready(m->src.opaque);
        status = ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
        sp_buf_append(&m->body, ok ? "ready\n" : "restoring state\n", ok ? 6 : 16);
    } else {
        status = MHD_HTTP_NOT_FOUND;
        sp_buf_append(&m->body, "/metrics, /health/live, /health/ready\n", 38);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(
        m->body.len, m->body.data ? m->body.data : (char *)"", MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* MHD's epoll descriptor turns readable when a socket needs it. */
static void on_io(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop, (void)revents;
    sp_metrics *m = w->data;
    MHD_run(m->d);
}

/* and its timeouts (idle connections) need a turn now and then */
static void on_tick(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop, (void)revents;
    sp_metrics *m = w->data;
    MHD_run(m->d);
}

sp_metrics *sp_metrics_create(struct ev_loop *loop, const char *listen,
                              const sp_metrics_source *src, char *err, size_t errsize) {
    char host[256] = "127.0.0.1";
    const char *colon = strrchr(listen, ':');
    const char *portstr = colon ? colon + 1 : listen;
    if (colon && colon > listen) {
        size_t n = (size_t)(colon - listen);
        if (n >= sizeof host) n = sizeof host - 1;
        memcpy(host, listen, n);
        host[n] = '\0';
    }
    char *end;
    long port = strtol(portstr, &end, 10);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (*portstr == '\0' || *end || port < 0 || port > 65535 ||
        inet_pton(AF_INET, strcmp(host, "localhost") == 0 ? "127.0.0.1" : host, &sa.sin_addr) != 1) {
        snprintf(err, errsize, "--metrics takes HOST:PORT (an IPv4 address), not '%s'", listen);
        return NULL;
    }
    sp_metrics *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errsize, "out of memory");
        return NULL;
    }
    m->loop = loop;
    m->src = *src;
    sp_buf_init(&m->body);
    m->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL,
                            answer, m, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_END);
    const union MHD_DaemonInfo *fd = m->d ? MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_EPOLL_FD)
                                          : NULL;
    if (!fd) {
        snprintf(err, errsize, "cannot listen on %s:%ld for metrics", host, port);
        sp_metrics_destroy(m);
        return NULL;
    }
    const union MHD_DaemonInfo *bound = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
    m->port = bound ? bound->port : (int)port;
    ev_io_init(&m->io_w, on_io, fd->epoll_fd, EV_READ);
    m->io_w.data = m;
    ev_io_start(loop, &m->io_w);
    ev_timer_init(&m->tick_w, on_tick, 1.0, 1.0);
    m->tick_w.data = m;
    ev_timer_start(loop, &m->tick_w);
    return m;
}

void sp_metrics_destroy(sp_metrics *m) {
    if (!m) return;
    if (m->d) {
        ev_io_stop(m->loop, &m->io_w);
        ev_timer_stop(m->loop, &m->tick_w);
        MHD_stop_daemon(m->d);
    }
    sp_buf_destroy(&m->body);
    free(m);
}

int sp_metrics_port(const sp_metrics *m) { return m->port; }
