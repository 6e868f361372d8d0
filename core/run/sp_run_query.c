/* Interactive queries (GET /state...), answered on the loop's thread
 * between batches, so that a reader sees the state as of the last batch
 * processed here (read-your-writes within a process; no batch half done).
 *
 *   /state                      the stores, their partitions here, the group's members
 *   /state/STORE/KEY            a key's value (kv stores, tables) or its open
 *                               windows (?from=&to= on their start)
 *   /state/STORE?from=&to=&prefix=&limit=
 *                               the entries of the partitions held here, in key order
 *
 * A key's partition is the one Kafka's default partitioner gives it over
 * the store's topic (the Kafka Streams rule: the store's key is the
 * record's key), or ?partition=. Another process's partition is answered
 * with a redirect to it (307), one restoring here with 503. */
#include <math.h>

#include "sp_run.h"

#define QUERY_LIMIT 1000
#define QUERY_LIMIT_MAX 100000

typedef struct req {
    runner *r;
    const sp_metrics_args *args;
    unsigned *status;
    sp_buf *body, *location;
    int rc; /* sp_buf results: nonzero once out of memory */
} req;

static void put(req *q, const char *s) { q->rc |= sp_buf_append(q->body, s, strlen(s)); }
/* a string; bytes that are not UTF-8 as {"b64": ...} */
static void put_str(req *q, const char *s, size_t n) { q->rc |= sp_json_write_text(q->body, s, n); }
static void put_int(req *q, int64_t v) { q->rc |= sp_json_write_int(q->body, v); }
static const char *arg(req *q, const char *name) { return q->args->get(q->args->conn, name); }

/* An error answer: {"error": ..., "partition": p} (p < 0: none). */
static void fail(req *q, unsigned status, int32_t p, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    *q->status = status;
    sp_buf_reset(q->body);
    put(q, "{\"error\":");
    put_str(q, msg, strlen(msg));
    if (p >= 0) {
        put(q, ",\"partition\":");
        q->rc |= sp_json_write_int(q->body, p);
    }
    put(q, "}");
}

/* A stored value as JSON: the Lua API's tags (a table's value carries
 * its source's). */
static void put_value(req *q, const char *v, size_t vl) {
    double d;
    if (vl < 1) {
        put(q, "null");
        return;
    }
    switch (v[0]) {
    case SP_VAL_NUMBER:
        if (vl == 1 + sizeof d) {
            memcpy(&d, v + 1, sizeof d);
            q->rc |= isfinite(d) ? sp_json_write_number(q->body, d) : sp_buf_append(q->body, "null", 4);
            return;
        }
        break;
    case SP_VAL_STRING: put_str(q, v + 1, vl - 1); return;
    case SP_VAL_JSON: q->rc |= sp_json_append_line(q->body, v + 1, vl - 1); return;
    case SP_VAL_TRUE: put(q, "true"); return;
    case SP_VAL_FALSE: put(q, "false"); return;
    }
    put_str(q, v, vl); /* bytes of sproc's own (a join's buffer) */
}

static const char *kind_of(runner *r, int32_t id) {
    sp_store *s = r->ctx->stores[id];
    if (s->global) return "global_table";
    if (s->source) return "table";
    if (sp_window_is_store(r->ctx, id)) return "window";
    return s->kind == SP_STORE_WINDOW ? "window" : "kv";
}

/* A topic a table holds (a stream's store does not follow it). */
static int is_table_topic(runner *r, const char *topic) {
    for (int32_t i = 0; i < r->ctx->nstores; i++)
        if (r->ctx->stores[i]->source && strcmp(r->ctx->stores[i]->source, topic) == 0) return 1;
    return 0;
}

/* The topic a store's partitions follow: a table's, else the first topic
 * of the first task whose records it holds, else the first stream's
 * (a store of the user's that nothing wrote here yet). */
static void store_topic(runner *r, int32_t id, char *out, size_t size) {
    sp_store *s = r->ctx->stores[id];
    const char *t = s->source;
    for (int32_t i = 0; !t && i < r->ctx->ntasks; i++)
        if (s->tasks & ((uint64_t)1 << i)) t = r->ctx->tasks[i];
    for (int32_t i = 0; !t && i < r->ctx->nsources; i++) {
        sp_source *src = &r->ctx->sources[i];
        if (src->kind == 0 && !src->global && !is_table_topic(r, src->name)) t = src->name;
    }
    size_t n = t ? strcspn(t, ",") : 0;
    if (n >= size) n = size - 1;
    memcpy(out, t ? t : "", n);
    out[n] = '\0';
}

/* Held here, and how: 1 ready, 0 restoring (or waiting to read its
 * offsets again), -1 not held. */
static int held(runner *r, int32_t id, const char *topic, int32_t p) {
    if (r->ctx->stores[id]->global) return p == 0 ? 1 : -1;
    int assigned = 0;
    for (sp_tp *tp = r->cons ? r->offs.tps : NULL; tp && !assigned; tp = tp->next)
        assigned = tp->assigned && tp->partition == p && strcmp(tp->topic, topic) == 0;
    if (!assigned) return -1;
    if (r->rs && (sp_restore_is_restoring(r->rs, p) || sp_restore_is_stale(r->rs, p))) return 0;
    return r->stale_partition == p ? 0 : 1;
}

static void put_escaped(sp_buf *b, int *rc, const char *s, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            *rc |= sp_buf_putc(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            *rc |= sp_buf_append(b, e, 3);
        }
    }
}

static void redirect(req *q, const char *owner, const char *store, const char *key,
                     size_t klen, int32_t p) {
    sp_buf *l = q->location;
    int rc = sp_buf_append(l, "http://", 7) | sp_buf_append(l, owner, strlen(owner)) |
             sp_buf_append(l, "/state/", 7);
    put_escaped(l, &rc, store, strlen(store));
    rc |= sp_buf_putc(l, '/');
    put_escaped(l, &rc, key, klen);
    char tail[64];
    /* hop: the owner does not send it on again (members described at
     * different moments could send it back and forth) */
    snprintf(tail, sizeof tail, "?partition=%" PRId32 "&hop=1", p);
    rc |= sp_buf_append(l, tail, strlen(tail));
    const char *names[] = {"from", "to"};
    for (int i = 0; i < 2; i++) {
        const char *v = arg(q, names[i]);
        if (!v) continue;
        rc |= sp_buf_putc(l, '&') | sp_buf_append(l, names[i], strlen(names[i])) | sp_buf_putc(l, '=');
        put_escaped(l, &rc, v, strlen(v));
    }
    q->rc |= rc;
    fail(q, 307, p, "partition %" PRId32 " is at %s", p, owner);
}

/* A time parameter: epoch milliseconds or ISO-8601; def when absent. 0,
 * or -1 when it reads as neither. */
static int time_arg(req *q, const char *name, int64_t def, int64_t *out) {
    const char *v = arg(q, name);
    char *end;
    *out = def;
    if (!v) return 0;
    long long n = strtoll(v, &end, 10);
    if (*v && !*end) {
        *out = n;
        return 0;
    }
    return sp_time_parse(v, out) == 0 ? 0 : -1;
}

typedef struct wctx {
    req *q;
    int any;
} wctx;

static int put_window(void *opaque, const char *key, size_t klen, const char *json, size_t jlen) {
    (void)key, (void)klen;
    wctx *w = opaque;
    w->q->rc |= (w->any ? sp_buf_putc(w->q->body, ',') : 0) | sp_buf_append(w->q->body, json, jlen);
    w->any = 1;
    return 0;
}

static void answer_key(req *q, int32_t id, const char *store, const char *key, size_t klen) {
    runner *r = q->r;
    char topic[512];
    store_topic(r, id, topic, sizeof topic);
    int32_t n = sp_members_partitions(r->members, topic);
    if (n <= 0) n = r->src_partitions > 0 ? r->src_partitions : 1;
    const char *pa = arg(q, "partition");
    int32_t p = r->ctx->stores[id]->global ? 0 : pa ? (int32_t)atoi(pa) : sp_partition_for(key, klen, n);
    int64_t from, to;
    int h = held(r, id, topic, p);
    if (h < 0) {
        const char *owner = sp_members_owner(r->members, topic, p);
        if (owner && strcmp(owner, r->query_self) != 0 && !arg(q, "hop")) {
            redirect(q, owner, store, key, klen, p);
        } else {
            if (r->members) sp_members_refresh(r->members);
            fail(q, 503, p, "partition %" PRId32 " of %s is not held here and its owner is not known",
                 p, topic);
        }
    } else if (h == 0) {
        fail(q, 503, p, "partition %" PRId32 " is restoring", p);
    } else if (time_arg(q, "from", INT64_MIN, &from) != 0 || time_arg(q, "to", INT64_MAX, &to) != 0) {
        fail(q, 400, -1, "from and to take epoch milliseconds or an ISO-8601 time");
    } else if (sp_window_is_store(r->ctx, id)) {
        put(q, "{\"key\":");
        put_str(q, key, klen);
        put(q, ",\"partition\":");
        put_int(q, p);
        put(q, ",\"windows\":[");
        wctx w = {q, 0};
        if (sp_window_query(r->ctx, id, p, key, klen, from, to, put_window, &w) != SP_OK) q->rc = 1;
        put(q, "]}");
    } else {
        const char *v;
        size_t vl;
        int64_t ts;
        if (sp_store_get_ts(r->ctx, id, p, key, klen, &v, &vl, &ts) != 1) {
            fail(q, 404, p, "no key '%.*s' in %s (partition %" PRId32 ")", (int)(klen > 200 ? 200 : klen),
                 key, store, p);
            return;
        }
        put(q, "{\"key\":");
        put_str(q, key, klen);
        put(q, ",\"value\":");
        put_value(q, v, vl);
        put(q, ",\"partition\":");
        put_int(q, p);
        put(q, ",\"ts\":");
        put_int(q, ts);
        put(q, "}");
    }
}

/* A partition's next entry of a range, copied (another partition's read
 * may move what a store hands out). */
typedef struct cursor {
    int32_t p;
    sp_buf key, val;
    int has, strict;
} cursor;

static int in_range(req *q, const char *k, size_t kl) {
    const char *to = arg(q, "to"), *prefix = arg(q, "prefix");
    if (prefix && (kl < strlen(prefix) || memcmp(k, prefix, strlen(prefix)) != 0)) return 0;
    if (to) {
        size_t tl = strlen(to);
        int c = memcmp(k, to, kl < tl ? kl : tl);
        if (c > 0 || (c == 0 && kl > tl)) return 0;
    }
    return 1;
}

static void advance(req *q, int32_t id, cursor *c) {
    const char *k, *v;
    size_t kl, vl;
    /* after an empty key, "" (not NULL, which is the first key again) */
    c->has = sp_store_next(q->r->ctx, id, c->p,
                           c->key.len || c->strict ? (c->key.data ? c->key.data : "") : NULL,
                           c->key.len, c->strict, &k, &kl, &v, &vl) == 1 &&
             in_range(q, k, kl);
    c->strict = 1;
    if (!c->has) return;
    sp_buf_reset(&c->key);
    sp_buf_reset(&c->val);
    q->rc |= sp_buf_append(&c->key, k, kl) | sp_buf_append(&c->val, v, vl);
}

static int cmp_key(const sp_buf *a, const sp_buf *b) {
    int c = memcmp(a->data, b->data, a->len < b->len ? a->len : b->len);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* The kv entries of the partitions held here, merged in key order. */
static int range_kv(req *q, int32_t id, const int32_t *parts, int np, int64_t limit) {
    cursor *cs = calloc((size_t)np + 1, sizeof *cs);
    if (!cs) return q->rc = 1, 0;
    const char *from = arg(q, "from"), *prefix = arg(q, "prefix");
    const char *start = from && (!prefix || strcmp(from, prefix) > 0) ? from : prefix;
    for (int i = 0; i < np; i++) {
        cs[i].p = parts[i];
        sp_buf_init(&cs[i].key);
        sp_buf_init(&cs[i].val);
        if (start) q->rc |= sp_buf_append(&cs[i].key, start, strlen(start));
        advance(q, id, &cs[i]);
    }
    int64_t n = 0;
    int more = 0;
    for (;;) {
        cursor *best = NULL;
        for (int i = 0; i < np; i++)
            if (cs[i].has && (!best || cmp_key(&cs[i].key, &best->key) < 0)) best = &cs[i];
        if (!best) break;
        if (n == limit) {
            more = 1;
            break;
        }
        put(q, n++ ? ",{\"key\":" : "{\"key\":");
        put_str(q, best->key.data, best->key.len);
        put(q, ",\"value\":");
        put_value(q, best->val.data, best->val.len);
        put(q, ",\"partition\":");
        put_int(q, best->p);
        put(q, "}");
        advance(q, id, best);
    }
    for (int i = 0; i < np; i++) {
        sp_buf_destroy(&cs[i].key);
        sp_buf_destroy(&cs[i].val);
    }
    free(cs);
    return more;
}

/* An aggregation's windows of the partitions held here: each key's in
 * time order, keys in byte order. */
typedef struct went {
    char *key;
    size_t klen;
    char *json;
    size_t jlen;
    int32_t p;
    int64_t seq;
} went;

typedef struct wlist {
    req *q;
    int32_t p;
    went *e;
    size_t n, cap;
} wlist;

static int collect_window(void *opaque, const char *key, size_t klen, const char *json, size_t jlen) {
    wlist *l = opaque;
    if (!in_range(l->q, key, klen)) return 0;
    const char *from = arg(l->q, "from");
    if (from) {
        size_t fl = strlen(from);
        int c = memcmp(key, from, klen < fl ? klen : fl);
        if (c < 0 || (c == 0 && klen < fl)) return 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        went *e = realloc(l->e, cap * sizeof *e);
        if (!e) return l->q->rc = 1;
        l->e = e;
        l->cap = cap;
    }
    went *e = &l->e[l->n];
    e->key = malloc(klen + 1);
    e->json = malloc(jlen + 1);
    if (!e->key || !e->json) {
        free(e->key);
        free(e->json);
        return l->q->rc = 1;
    }
    memcpy(e->key, key, klen);
    memcpy(e->json, json, jlen);
    e->klen = klen;
    e->jlen = jlen;
    e->p = l->p;
    e->seq = (int64_t)l->n++;
    return 0;
}

static int cmp_went(const void *a, const void *b) {
    const went *x = a, *y = b;
    int c = memcmp(x->key, y->key, x->klen < y->klen ? x->klen : y->klen);
    if (c) return c;
    if (x->klen != y->klen) return x->klen < y->klen ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static int range_windows(req *q, int32_t id, const int32_t *parts, int np, int64_t limit) {
    wlist l = {q, 0, NULL, 0, 0};
    for (int i = 0; i < np; i++) {
        l.p = parts[i];
        if (sp_window_query(q->r->ctx, id, parts[i], NULL, 0, INT64_MIN, INT64_MAX, collect_window, &l) != SP_OK)
            q->rc = 1;
    }
    if (l.n) qsort(l.e, l.n, sizeof *l.e, cmp_went);
    for (size_t i = 0; i < l.n && (int64_t)i < limit; i++) {
        put(q, i ? ",{\"key\":" : "{\"key\":");
        put_str(q, l.e[i].key, l.e[i].klen);
        put(q, ",\"value\":");
        q->rc |= sp_buf_append(q->body, l.e[i].json, l.e[i].jlen);
        put(q, ",\"partition\":");
        put_int(q, l.e[i].p);
        put(q, "}");
    }
    int more = (int64_t)l.n > limit;
    for (size_t i = 0; i < l.n; i++) {
        free(l.e[i].key);
        free(l.e[i].json);
    }
    free(l.e);
    return more;
}

static void put_list(req *q, const int32_t *v, int n) {
    put(q, "[");
    for (int i = 0; i < n; i++) {
        if (i) put(q, ",");
        put_int(q, v[i]);
    }
    put(q, "]");
}

/* The partitions of a store held here (whether it has entries in them
 * or not), split into ready and restoring. */
static void local_parts(runner *r, int32_t id, int32_t *ready, int *nr, int32_t *restoring,
                        int *ns, int max) {
    char topic[512];
    store_topic(r, id, topic, sizeof topic);
    *nr = *ns = 0;
    for (int32_t p = 0; p < 1024 && (*nr < max && *ns < max); p++) {
        int h = held(r, id, topic, p);
        if (h == 1) ready[(*nr)++] = p;
        else if (h == 0) restoring[(*ns)++] = p;
    }
}

/* Where the partitions of topic not held here are: {"HOST:PORT":[...]} */
static void put_elsewhere(req *q, const char *topic) {
    int n;
    const sp_member *m = sp_members_list(q->r->members, &n);
    put(q, "{");
    int first = 1;
    for (int i = 0; i < n; i++) {
        if (!m[i].address || strcmp(m[i].address, q->r->query_self) == 0) continue;
        int32_t ps[1024];
        int np = 0;
        for (int j = 0; j < m[i].parts->cnt && np < 1024; j++)
            if (strcmp(m[i].parts->elems[j].topic, topic) == 0) ps[np++] = m[i].parts->elems[j].partition;
        if (!np) continue;
        if (!first) put(q, ",");
        first = 0;
        put_str(q, m[i].address, strlen(m[i].address));
        put(q, ":");
        put_list(q, ps, np);
    }
    put(q, "}");
}

static void answer_range(req *q, int32_t id, const char *store) {
    runner *r = q->r;
    const char *ls = arg(q, "limit");
    int64_t limit = ls ? strtoll(ls, NULL, 10) : QUERY_LIMIT;
    if (limit < 0 || limit > QUERY_LIMIT_MAX) limit = QUERY_LIMIT_MAX;
    int32_t ready[1024], restoring[1024];
    int nr, ns;
    local_parts(r, id, ready, &nr, restoring, &ns, 1024);
    char topic[512];
    store_topic(r, id, topic, sizeof topic);
    put(q, "{\"store\":");
    put_str(q, store, strlen(store));
    put(q, ",\"entries\":[");
    int more = sp_window_is_store(r->ctx, id) ? range_windows(q, id, ready, nr, limit)
                                              : range_kv(q, id, ready, nr, limit);
    put(q, "],\"more\":");
    put(q, more ? "true" : "false");
    put(q, ",\"partitions\":");
    put_list(q, ready, nr);
    put(q, ",\"restoring\":");
    put_list(q, restoring, ns);
    put(q, ",\"elsewhere\":");
    if (r->ctx->stores[id]->global) put(q, "{}");
    else put_elsewhere(q, topic);
    put(q, "}");
}

static void answer_list(req *q) {
    runner *r = q->r;
    put(q, "{\"self\":");
    put_str(q, r->query_self, strlen(r->query_self));
    put(q, ",\"stores\":[");
    for (int32_t id = 0; id < r->ctx->nstores; id++) {
        int32_t ready[1024], restoring[1024];
        int nr, ns;
        local_parts(r, id, ready, &nr, restoring, &ns, 1024);
        const char *name = r->ctx->stores[id]->name;
        char topic[512];
        store_topic(r, id, topic, sizeof topic);
        put(q, id ? ",{\"name\":" : "{\"name\":");
        put_str(q, name, strlen(name));
        put(q, ",\"kind\":\"");
        put(q, kind_of(r, id));
        put(q, "\",\"topic\":");
        put_str(q, topic, strlen(topic));
        put(q, ",\"partitions\":");
        put_list(q, ready, nr);
        put(q, ",\"restoring\":");
        put_list(q, restoring, ns);
        put(q, "}");
    }
    put(q, "],\"members\":[");
    int n;
    const sp_member *m = sp_members_list(r->members, &n);
    for (int i = 0; i < n; i++) {
        put(q, i ? ",{\"address\":" : "{\"address\":");
        if (m[i].address) put_str(q, m[i].address, strlen(m[i].address));
        else put(q, "null");
        put(q, ",\"partitions\":{");
        const rd_kafka_topic_partition_list_t *l = m[i].parts;
        for (int j = 0; j < l->cnt; j++) {
            int first = j == 0 || strcmp(l->elems[j].topic, l->elems[j - 1].topic) != 0;
            if (first && j) put(q, "],");
            if (first) {
                put_str(q, l->elems[j].topic, strlen(l->elems[j].topic));
                put(q, ":[");
            } else {
                put(q, ",");
            }
            put_int(q, l->elems[j].partition);
        }
        put(q, l->cnt ? "]}}" : "}}");
    }
    put(q, "]}");
}

void sp_run_query(void *opaque, const char *path, const sp_metrics_args *args,
                  unsigned *status, sp_buf *body, sp_buf *location) {
    req q = {opaque, args, status, body, location, 0};
    *status = 200;
    const char *rest = path + 6; /* after "/state" */
    if (*rest == '/') rest++;
    size_t sl = strcspn(rest, "/");
    char store[512];
    if (sl == 0) {
        answer_list(&q);
    } else if (sl >= sizeof store) {
        fail(&q, 404, -1, "no such store");
    } else {
        memcpy(store, rest, sl);
        store[sl] = '\0';
        int32_t id = sp_store_find(q.r->ctx, store);
        if (id < 0) fail(&q, 404, -1, "no store named '%s'", store);
        else if (rest[sl] == '/' && rest[sl + 1]) answer_key(&q, id, store, rest + sl + 1, strlen(rest + sl + 1));
        else answer_range(&q, id, store);
    }
    if (q.rc) fail(&q, 500, -1, "out of memory");
}

/* The group's members: described again at each rebalance here, every few
 * seconds (others' rebalances), and when a query finds no owner. */
static void on_members(struct ev_loop *loop, ev_io *w, int revents) {
    (void)loop, (void)revents;
    runner *r = w->data;
    sp_run_drain_fd(r->members_fd[0]);
    while (r->members && sp_members_poll(r->members)) {}
}

static void on_members_tick(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop, (void)revents;
    runner *r = w->data;
    if (r->members) sp_members_refresh(r->members);
}

int sp_run_start_members(runner *r) {
    /* not on the embedded dev cluster: with the group described there the
     * consumer never joined it (librdkafka 2.0.2's mock cluster, the word
     * count of test_metrics); one process there holds every partition */
    if (!r->metrics || !r->cons || r->mock) return 0;
    r->members = sp_members_create(r->cons, sp_lua_app_id(r->lua));
    rd_kafka_queue_t *q = r->members ? sp_members_queue(r->members) : NULL;
    if (!q || sp_run_open_io_event(r, q, r->members_fd) != 0) {
        sp_error("interactive queries: out of memory");
        return -1;
    }
    ev_io_init(&r->members_w, on_members, r->members_fd[0], EV_READ);
    r->members_w.data = r;
    ev_io_start(r->loop, &r->members_w);
    ev_timer_init(&r->members_tick_w, on_members_tick, 0.5, 5.0);
    r->members_tick_w.data = r;
    ev_timer_start(r->loop, &r->members_tick_w);
    return 0;
}

void sp_run_stop_members(runner *r) {
    if (!r->members) return;
    ev_io_stop(r->loop, &r->members_w);
    ev_timer_stop(r->loop, &r->members_tick_w);
    sp_members_destroy(r->members);
    r->members = NULL;
    for (int i = 0; i < 2; i++)
        if (r->members_fd[i] >= 0) close(r->members_fd[i]);
    r->members_fd[0] = r->members_fd[1] = -1;
}
