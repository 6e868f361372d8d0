#include "sp_metrics.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A stream waits for bytes suspended (MHD's way: no busy polling), and
 * is resumed by a write. */
struct sp_metrics_stream {
    sp_metrics *m;
    struct MHD_Connection *conn;
    sp_buf buf;
    size_t off;
    int suspended, ended;
    sp_metrics_stream *next;
};

#define STREAM_MAX_PENDING (1 << 20)

struct sp_metrics {
    struct MHD_Daemon *d;
    sp_metrics_stream *streams;
    ev_timer kick_w;  /* MHD_run again soon: a stream resumed, or MHD has
                       * more to write (external epoll mode does not wake
                       * the epoll descriptor for either) */
    int closing;      /* no new streams: the endpoint is going away */
    struct ev_loop *loop;
    ev_io io_w;
    ev_timer tick_w;
    sp_metrics_source src;
    sp_buf body, location;
    int port;
    char address[300];
};

static const char *get_arg(void *conn, const char *name) {
    return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    sp_metrics_stream *s = cls;
    size_t left = s->buf.len - s->off;
    if (left == 0) {
        if (s->ended || s->m->closing) return MHD_CONTENT_READER_END_OF_STREAM;
        s->suspended = 1;
        MHD_suspend_connection(s->conn);
        return 0;
    }
    if (left > max) left = max;
    memcpy(out, s->buf.data + s->off, left);
    s->off += left;
    if (s->off == s->buf.len) {
        sp_buf_reset(&s->buf);
        s->off = 0;
    }
    return (ssize_t)left;
}

static void stream_free(void *cls) {
    sp_metrics_stream *s = cls, **pp = &s->m->streams;
    while (*pp && *pp != s) pp = &(*pp)->next;
    if (*pp) *pp = s->next;
    if (s->m->src.stream_closed) s->m->src.stream_closed(s->m->src.opaque, s);
    sp_buf_destroy(&s->buf);
    free(s);
}

static void stream_wake(sp_metrics_stream *s) {
    if (!s->suspended) return;
    s->suspended = 0;
    MHD_resume_connection(s->conn);
    if (!ev_is_active(&s->m->kick_w)) ev_timer_start(s->m->loop, &s->m->kick_w);
}

int sp_metrics_stream_write(sp_metrics_stream *s, const char *p, size_t n) {
    if (s->ended || s->buf.len - s->off + n > STREAM_MAX_PENDING) return -1;
    /* what was read goes, so that the buffer holds what is pending only */
    if (s->off > 0 && s->off >= s->buf.len / 2) {
        memmove(s->buf.data, s->buf.data + s->off, s->buf.len - s->off);
        s->buf.len -= s->off;
        s->off = 0;
    }
    if (sp_buf_append(&s->buf, p, n)) return -1;
    stream_wake(s);
    return 0;
}

void sp_metrics_stream_end(sp_metrics_stream *s) {
    s->ended = 1;
    stream_wake(s);
}

/* A GET of /tap...: a stream when the source takes it. */
static enum MHD_Result answer_stream(sp_metrics *m, struct MHD_Connection *c, const char *url,
                                     unsigned *status) {
    sp_metrics_args args = {c, get_arg};
    if (m->closing) {
        *status = MHD_HTTP_SERVICE_UNAVAILABLE;
        sp_buf_append(&m->body, "{\"error\":\"stopping\"}", 20);
        return MHD_YES;
    }
    sp_metrics_stream *s = calloc(1, sizeof *s);
    if (!s) return MHD_NO;
    s->m = m;
    s->conn = c;
    sp_buf_init(&s->buf);
    if (!m->src.stream(m->src.opaque, url, &args, s, status, &m->body)) {
        sp_buf_destroy(&s->buf);
        free(s);
        return MHD_YES; /* answered in body */
    }
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384,
                                                               stream_read, s, stream_free);
    if (!r) {
        stream_free(s);
        return MHD_NO;
    }
    s->next = m->streams;
    m->streams = s;
    MHD_add_response_header(r, "Content-Type", "application/x-ndjson");
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    *status = 0;
    return rc;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version,
                              const char *upload, size_t *upload_len, void **state) {
    (void)version, (void)upload, (void)upload_len, (void)state;
    sp_metrics *m = cls;
    unsigned status = MHD_HTTP_OK;
    const char *type = "text/plain; charset=utf-8";
    sp_buf_reset(&m->body);
    sp_buf_reset(&m->location);
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
    } else if (m->src.query && strncmp(url, "/state", 6) == 0 && (url[6] == '\0' || url[6] == '/')) {
        sp_metrics_args args = {c, get_arg};
        type = "application/json";
        m->src.query(m->src.opaque, url, &args, &status, &m->body, &m->location);
    } else if (m->src.stream && strncmp(url, "/tap", 4) == 0 && (url[4] == '\0' || url[4] == '/')) {
        type = "application/json";
        enum MHD_Result rc = answer_stream(m, c, url, &status);
        if (rc != MHD_YES || status == 0) return rc;
    } else {
        status = MHD_HTTP_NOT_FOUND;
        sp_buf_append(&m->body, "/metrics, /health/live, /health/ready, /state, /tap\n", 52);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(
        m->body.len, m->body.data ? m->body.data : (char *)"", MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    if (m->location.len && sp_buf_putc(&m->location, '\0') == 0)
        MHD_add_response_header(r, "Location", m->location.data);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* MHD's epoll descriptor turns readable when a socket needs it. */
/* A turn of MHD, and another soon when it says it has more to do now
 * (a stream's next chunk). */
static void run_mhd(sp_metrics *m) {
    MHD_run(m->d);
    MHD_UNSIGNED_LONG_LONG to;
    if (MHD_get_timeout(m->d, &to) == MHD_YES && to == 0 && !ev_is_active(&m->kick_w))
        ev_timer_start(m->loop, &m->kick_w);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop, (void)revents;
    run_mhd(w->data);
}

/* and its timeouts (idle connections) need a turn now and then */
static void on_tick(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop, (void)revents;
    run_mhd(w->data);
}

static void on_kick(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop, (void)revents;
    run_mhd(w->data);
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
    sp_buf_init(&m->location);
    m->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME, (uint16_t)port, NULL, NULL,
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
    snprintf(m->address, sizeof m->address, "%s:%d", host, m->port);
    ev_io_init(&m->io_w, on_io, fd->epoll_fd, EV_READ);
    m->io_w.data = m;
    ev_io_start(loop, &m->io_w);
    ev_timer_init(&m->tick_w, on_tick, 1.0, 1.0);
    m->tick_w.data = m;
    ev_timer_start(loop, &m->tick_w);
    ev_timer_init(&m->kick_w, on_kick, 0.0, 0.0);
    m->kick_w.data = m;
    return m;
}

void sp_metrics_destroy(sp_metrics *m) {
    if (!m) return;
    if (m->d) {
        /* no new stream (a tap asked for while sproc stopped would
         * suspend at once), and the suspended ones resumed to end: MHD
         * aborts a stop with connections suspended */
        m->closing = 1;
        for (int round = 0, suspended = 1; round < 10 && suspended; round++) {
            for (sp_metrics_stream *s = m->streams; s; s = s->next) sp_metrics_stream_end(s);
            MHD_run(m->d);
            suspended = 0;
            for (sp_metrics_stream *s = m->streams; s; s = s->next) suspended |= s->suspended;
        }
        ev_io_stop(m->loop, &m->io_w);
        ev_timer_stop(m->loop, &m->kick_w);
        ev_timer_stop(m->loop, &m->tick_w);
        MHD_stop_daemon(m->d);
    }
    sp_buf_destroy(&m->body);
    sp_buf_destroy(&m->location);
    free(m);
}

int sp_metrics_port(const sp_metrics *m) { return m->port; }

const char *sp_metrics_address(const sp_metrics *m) { return m->address; }
