/* sproc tap: a live sample of the records entering an operator, or
 * leaving it (entering the operators after it), streamed over the
 * metrics endpoint as JSON lines:
 *
 *   GET /tap                       the operators' names
 *   GET /tap/OPERATOR?dir=in|out&rate=N&max=N
 *
 * Nothing runs for an operator nobody taps but one comparison of its
 * allowance (sp_ctx_op_taps), which a timer here refills every 100 ms
 * while someone taps: rate records a second at most, per tap, however
 * fast the pipeline runs. A reader too slow for its rate loses lines
 * (counted), never the pipeline's time. */
#include "sp_run.h"

#define TAP_TICK 0.1
#define TAP_RATE 10
#define TAP_HEARTBEAT 5.0 /* an empty line now and then: a client gone is noticed */

typedef struct sp_run_tapper {
    sp_metrics_stream *s;
    int32_t op;
    int out;
    int64_t rate, max, sent, dropped, tokens;
    double credit;
    struct sp_run_tapper *next;
} sp_run_tapper;

static int32_t op_named(sp_opstats *o, const char *name) {
    for (int32_t i = 0; o && i < o->n; i++)
        if (strcmp(o->name[i], name) == 0) return i;
    return -1;
}

/* Whether a record offered at op goes to t. */
static int wants(const sp_opstats *o, const sp_run_tapper *t, int32_t op) {
    if (!t->out) return op == t->op;
    if (o->parent[op] == t->op) return 1;
    if (op != t->op) return 0;
    for (int32_t j = 0; j < o->n; j++)
        if (o->parent[j] == op) return 0;
    return 1; /* a sink: what leaves it is what it wrote */
}

static void deliver(void *opaque, int32_t op, const char *line, size_t len) {
    runner *r = opaque;
    sp_opstats *o = r->ctx->ops;
    for (sp_run_tapper *t = r->taps; t; t = t->next) {
        if (!wants(o, t, op) || t->tokens <= 0 || (t->max && t->sent >= t->max)) continue;
        t->tokens--;
        if (sp_metrics_stream_write(t->s, line, len) == 0) t->sent++;
        else t->dropped++;
        if (t->max && t->sent >= t->max) sp_metrics_stream_end(t->s);
    }
}

static void refill(runner *r) {
    sp_opstats *o = r->ctx->ops;
    if (!o) return;
    memset(o->taps, 0, sizeof o->taps);
    for (sp_run_tapper *t = r->taps; t; t = t->next) {
        if (t->max && t->sent >= t->max) continue;
        /* a rate under one a tick: a record every few ticks */
        t->credit += (double)t->rate * TAP_TICK;
        t->tokens = (int64_t)t->credit;
        t->credit -= (double)t->tokens;
        for (int32_t j = 0; j < o->n; j++)
            if (wants(o, t, j))
                o->taps[j] = t->tokens > INT32_MAX - o->taps[j] ? INT32_MAX : o->taps[j] + (int32_t)t->tokens;
    }
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop, (void)revents;
    runner *r = w->data;
    refill(r);
    double now = ev_now(r->loop);
    if (now - r->tap_heartbeat < TAP_HEARTBEAT) return;
    r->tap_heartbeat = now;
    for (sp_run_tapper *t = r->taps; t; t = t->next) sp_metrics_stream_write(t->s, "\n", 1);
}

static int answer_list(runner *r, unsigned *status, sp_buf *body) {
    sp_opstats *o = r->ctx->ops;
    int rc = sp_buf_append(body, "{\"operators\":[", 14);
    for (int32_t i = 0; o && i < o->n; i++)
        rc |= (i ? sp_buf_putc(body, ',') : 0) | sp_json_write_string(body, o->name[i], strlen(o->name[i]));
    rc |= sp_buf_append(body, "]}\n", 3);
    *status = rc ? 500 : *status;
    return 0;
}

int sp_run_tap_open(void *opaque, const char *path, const sp_metrics_args *args,
                    sp_metrics_stream *s, unsigned *status, sp_buf *body) {
    runner *r = opaque;
    sp_opstats *o = r->ctx->ops;
    const char *name = path[4] == '/' ? path + 5 : "";
    const char *dir = args->get(args->conn, "dir"), *rate = args->get(args->conn, "rate"),
               *max = args->get(args->conn, "max");
    int32_t op = *name ? op_named(o, name) : -1;
    int64_t most = sp_run_setting_int(r->o, "sproc.tap.max.rate", 1000);
    *status = 200;
    if (!*name) return answer_list(r, status, body);
    if (op < 0 || (dir && strcmp(dir, "in") != 0 && strcmp(dir, "out") != 0)) {
        *status = op < 0 ? 404 : 400;
        sp_buf_append(body, op < 0 ? "no such operator; GET /tap lists them\n" : "dir is in or out\n",
                      op < 0 ? 38 : 17);
        return 0;
    }
    sp_run_tapper *t = calloc(1, sizeof *t);
    if (!t) {
        *status = 500;
        return 0;
    }
    t->s = s;
    t->op = op;
    t->out = dir && strcmp(dir, "out") == 0;
    t->rate = rate ? atoll(rate) : TAP_RATE;
    if (t->rate < 1) t->rate = 1;
    if (t->rate > most) t->rate = most;
    t->max = max ? atoll(max) : 0;
    if (t->max < 0) t->max = 0; /* no end */
    t->next = r->taps;
    r->taps = t;
    o->on_tap = deliver;
    o->tap_opaque = r;
    if (!ev_is_active(&r->tap_w)) {
        ev_timer_init(&r->tap_w, on_tick, TAP_TICK, TAP_TICK);
        r->tap_w.data = r;
        ev_timer_start(r->loop, &r->tap_w);
        r->tap_heartbeat = ev_now(r->loop);
    }
    refill(r);
    sp_info("tap on %s (%s, %" PRId64 " records/s at most)", name, t->out ? "out" : "in", t->rate);
    return 1;
}

void sp_run_tap_closed(void *opaque, sp_metrics_stream *s) {
    runner *r = opaque;
    sp_run_tapper **pp = &r->taps;
    while (*pp && (*pp)->s != s) pp = &(*pp)->next;
    sp_run_tapper *t = *pp;
    if (!t) return;
    *pp = t->next;
    if (r->ctx && r->ctx->ops)
        sp_info("tap on %s closed: %" PRId64 " records sent, %" PRId64 " dropped (reader too slow)",
                r->ctx->ops->name[t->op], t->sent, t->dropped);
    free(t);
    if (r->taps) return;
    ev_timer_stop(r->loop, &r->tap_w);
    if (r->ctx && r->ctx->ops) memset(r->ctx->ops->taps, 0, sizeof r->ctx->ops->taps);
}
