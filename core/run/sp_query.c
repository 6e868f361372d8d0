/* sproc query: a store of a running application, from the command line.
 * The processes are found through the consumer group (sp_members.h), or
 * one is named with --at. A key is asked of one process, which answers or
 * redirects to the one holding it; a range is asked of every process and
 * their entries merged in key order. */
#include <curl/curl.h>

#include "sp_query.h"
#include "sp_run.h"

typedef struct qopts {
    sp_query_target t;
    const char *store, *key;
    const char *from, *to, *prefix, *limit, *partition;
} qopts;

int sp_query_target_opt(sp_query_target *t, const char *a, const char *v) {
    const char **slot = NULL;
    if (!strcmp(a, "--app")) slot = &t->app;
    else if (!strcmp(a, "--brokers") || !strcmp(a, "--bootstrap-server")) slot = &t->brokers;
    else if (!strcmp(a, "--at")) slot = &t->at;
    else if (!strcmp(a, "--set") && v && strchr(v, '=') && t->nsets < 64) slot = &t->sets[t->nsets++];
    else return 0;
    if (!v) return -1;
    *slot = v;
    return 1;
}

int sp_query_target_check(sp_query_target *t, const char **why) {
    if (!t->brokers) t->brokers = getenv("SPROC_BROKERS");
    *why = !t->at && !t->script && !t->app ? "give SCRIPT.lua, --app ID or --at HOST:PORT"
         : !t->at && !t->brokers ? "give --brokers (or SPROC_BROKERS), or --at HOST:PORT"
         : NULL;
    return *why ? -1 : 0;
}

static int usage(const char *why) {
    fprintf(stderr,
            "sproc query: %s\n"
            "usage: sproc query SCRIPT.lua|--app ID STORE [KEY] [--brokers LIST | --at HOST:PORT]\n"
            "                   [--from X] [--to Y] [--prefix P] [--limit N] [--partition N]\n"
            "  with KEY: its value, or its open windows (--from/--to: their start, epoch ms\n"
            "  or ISO-8601); without: the entries from X to Y (keys, both included)\n",
            why);
    return 2;
}

static int parse(int argc, char **argv, qopts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **slot = NULL;
        if (a[0] != '-' || !a[1]) {
            size_t n = strlen(a);
            if (!o->t.script && !o->t.app && !o->store && n > 4 && !strcmp(a + n - 4, ".lua")) o->t.script = a;
            else if (!o->store) o->store = a;
            else if (!o->key) o->key = a;
            else return usage("too many arguments");
            continue;
        }
        int took = sp_query_target_opt(&o->t, a, v);
        if (took < 0) return usage("an option without its value");
        if (took) {
            i++;
            continue;
        }
        if (!strcmp(a, "--from")) slot = &o->from;
        else if (!strcmp(a, "--to")) slot = &o->to;
        else if (!strcmp(a, "--prefix")) slot = &o->prefix;
        else if (!strcmp(a, "--limit")) slot = &o->limit;
        else if (!strcmp(a, "--partition")) slot = &o->partition;
        else return usage("unknown option");
        if (!v) return usage("an option without its value");
        *slot = v;
        i++;
    }
    const char *why;
    if (!o->store) return usage("which store?");
    return sp_query_target_check(&o->t, &why) ? usage(why) : 0;
}

/* The application id: --app, else the script's (loaded as a run loads it). */
static char *app_id(const sp_query_target *o) {
    if (o->app) return strdup(o->app);
    char *def = sp_run_default_app_id(o->script), *id = NULL;
    sp_ctx *ctx = sp_ctx_create();
    sp_lua *l = ctx ? sp_lua_create(ctx) : NULL;
    const char *msg = NULL;
    if (def && l && sp_lua_load(l, o->script, NULL, def, &msg) == 0) id = strdup(sp_lua_app_id(l));
    else if (msg) fprintf(stderr, "sproc: cannot load %s:\n%s\n", o->script, msg);
    sp_lua_destroy(l);
    if (ctx) sp_ctx_destroy(ctx);
    free(def);
    return id;
}

char **sp_query_addresses(const sp_query_target *o) {
    char **out = calloc(65, sizeof *out);
    if (!out) return NULL;
    if (o->at) {
        out[0] = strdup(o->at);
        return out;
    }
    char *group = app_id(o), err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", o->brokers, err, sizeof err);
    for (int i = 0; i < o->nsets; i++) {
        char kv[512];
        snprintf(kv, sizeof kv, "%s", o->sets[i]);
        char *eq = strchr(kv, '=');
        if (!eq) continue; /* cut short: not a setting librdkafka has */
        *eq = '\0';
        if (strncmp(kv, "sproc.", 6) != 0 && rd_kafka_conf_set(conf, kv, eq + 1, err, sizeof err))
            fprintf(stderr, "sproc query: %s\n", err);
    }
    rd_kafka_t *rk = group ? rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err) : NULL;
    if (!rk) rd_kafka_conf_destroy(conf);
    sp_member *m = NULL;
    int n = 0, k = 0;
    int described = rk && sp_members_describe(rk, group, 10000, &m, &n, err, sizeof err) == 0;
    if (group && !described) fprintf(stderr, "sproc query: %s (brokers %s)\n", err, o->brokers);
    for (int i = 0; i < n && k < 64; i++)
        if (m[i].address) out[k++] = strdup(m[i].address);
    if (described && k == 0)
        fprintf(stderr, n ? "sproc query: no process of application %s answers queries (is it "
                            "started with --metrics?)\n"
                          : "sproc query: application %s has no running process\n",
                group);
    sp_members_free(m, n);
    if (rk) rd_kafka_destroy(rk);
    free(group);
    if (k == 0) {
        free(out);
        out = NULL;
    }
    return out;
}

static size_t collect(char *p, size_t size, size_t n, void *buf) {
    return sp_buf_append(buf, p, size * n) == 0 ? size * n : 0;
}

/* GET url: the status (0: no answer, with why in body) and the body. */
static long get(CURL *c, const char *url, sp_buf *body) {
    char err[CURL_ERROR_SIZE] = "";
    long status = 0;
    sp_buf_reset(body);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    CURLcode done = curl_easy_perform(c);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL); /* err is going */
    if (done == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    } else {
        sp_buf_reset(body);
        sp_buf_append(body, err, strlen(err));
    }
    return status;
}

static void add_param(CURL *c, sp_buf *url, const char *name, const char *v) {
    if (!v) return;
    char *e = curl_easy_escape(c, v, 0);
    sp_buf_putc(url, strchr(url->data, '?') ? '&' : '?');
    sp_buf_append(url, name, strlen(name));
    sp_buf_putc(url, '=');
    if (e) sp_buf_append(url, e, strlen(e));
    sp_buf_putc(url, '\0');
    url->len--;
    curl_free(e);
}

static void make_url(CURL *c, sp_buf *url, const char *addr, const qopts *o) {
    char *s = curl_easy_escape(c, o->store, 0), *k = o->key ? curl_easy_escape(c, o->key, 0) : NULL;
    sp_buf_reset(url);
    sp_buf_append(url, "http://", 7);
    sp_buf_append(url, addr, strlen(addr));
    sp_buf_append(url, "/state/", 7);
    if (s) sp_buf_append(url, s, strlen(s));
    if (k) sp_buf_putc(url, '/'), sp_buf_append(url, k, strlen(k));
    sp_buf_putc(url, '\0');
    url->len--;
    add_param(c, url, "from", o->from);
    add_param(c, url, "to", o->to);
    add_param(c, url, "prefix", o->prefix);
    add_param(c, url, "partition", o->partition);
    add_param(c, url, "limit", o->key ? NULL : o->limit);
    curl_free(s);
    curl_free(k);
}

/* The "error" of an answer, or the whole body. */
static void say_error(const sp_buf *body, long status, const char *addr) {
    sp_json_index ix;
    sp_json_index_init(&ix);
    const char *err;
    size_t pos;
    int i = -1;
    if (sp_json_index_parse(&ix, body->data ? body->data : "", body->len, &err, &pos) == 0)
        i = sp_json_index_find(&ix, "error", 5);
    if (i >= 0)
        fprintf(stderr, "sproc query: %.*s (HTTP %ld from %s)\n", (int)ix.fields[i].val_len,
                ix.fields[i].val, status, addr);
    else
        fprintf(stderr, "sproc query: %s: %.*s\n", addr, (int)body->len, body->data ? body->data : "");
    sp_json_index_destroy(&ix);
}

typedef struct entry {
    char *key; /* unescaped */
    size_t klen;
    size_t seq; /* arrival: a key's windows stay in their time order */
    char *text; /* the entry's JSON */
    size_t tlen;
} entry;

static int cmp_entry(const void *a, const void *b) {
    const entry *x = a, *y = b;
    int c = memcmp(x->key, y->key, x->klen < y->klen ? x->klen : y->klen);
    if (c) return c;
    if (x->klen != y->klen) return x->klen < y->klen ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* A range's entries from one answer, added to es. */
static int take_entries(const sp_buf *body, entry **es, size_t *n, size_t *cap) {
    sp_json_index ix, ex;
    sp_json_index_init(&ix);
    sp_json_index_init(&ex);
    const char *err;
    size_t pos;
    int rc = -1, i = -1;
    if (sp_json_index_parse(&ix, body->data, body->len, &err, &pos) == 0)
        i = sp_json_index_find(&ix, "entries", 7);
    if (i >= 0 && sp_json_index_parse(&ex, ix.fields[i].val, ix.fields[i].val_len, &err, &pos) == 0) {
        rc = 0;
        for (uint32_t j = 0; j < ex.n && rc == 0; j++) {
            sp_json_index one;
            sp_json_index_init(&one);
            const sp_json_field *f = &ex.fields[j];
            int k = sp_json_index_parse(&one, f->val, f->val_len, &err, &pos) == 0
                        ? sp_json_index_find(&one, "key", 3) : -1;
            if (*n == *cap) {
                size_t nc = *cap ? *cap * 2 : 256;
                entry *e = realloc(*es, nc * sizeof *e);
                if (!e) rc = -1;
                else *es = e, *cap = nc;
            }
            if (rc == 0 && k >= 0) {
                entry *e = &(*es)[*n];
                e->key = malloc(one.fields[k].val_len + 1);
                e->text = malloc(f->val_len + 1);
                if (e->key && e->text) {
                    e->klen = sp_json_unescape(one.fields[k].val, one.fields[k].val_len, e->key);
                    e->seq = *n;
                    memcpy(e->text, f->val, f->val_len);
                    e->tlen = f->val_len;
                    (*n)++;
                } else {
                    free(e->key);
                    free(e->text);
                    rc = -1;
                }
            }
            sp_json_index_destroy(&one);
        }
    }
    sp_json_index_destroy(&ix);
    sp_json_index_destroy(&ex);
    return rc;
}

static int query_key(CURL *c, char **addrs, const qopts *o, sp_buf *url, sp_buf *body) {
    long status = 0;
    int i;
    for (i = 0; addrs[i]; i++) {
        make_url(c, url, addrs[i], o);
        status = get(c, url->data, body);
        if (status) break; /* a process that answers; others only when it does not */
    }
    if (status == 200) {
        printf("%.*s\n", (int)body->len, body->data);
        return 0;
    }
    say_error(body, status, addrs[i] ? addrs[i] : addrs[0]);
    return 1;
}

static int query_range(CURL *c, char **addrs, const qopts *o, sp_buf *url, sp_buf *body) {
    entry *es = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (int i = 0; addrs[i]; i++) {
        make_url(c, url, addrs[i], o);
        long status = get(c, url->data, body);
        if (status != 200) {
            say_error(body, status, addrs[i]);
            rc = 1;
        } else if (take_entries(body, &es, &n, &cap) != 0) {
            fprintf(stderr, "sproc query: %s answered what is not a range\n", addrs[i]);
            rc = 1;
        }
    }
    if (n) qsort(es, n, sizeof *es, cmp_entry);
    long long limit = o->limit ? atoll(o->limit) : 1000;
    for (size_t i = 0; i < n; i++) {
        if ((long long)i < limit) printf("%.*s\n", (int)es[i].tlen, es[i].text);
        free(es[i].key);
        free(es[i].text);
    }
    free(es);
    return rc;
}

int sp_query(int argc, char **argv) {
    qopts o;
    memset(&o, 0, sizeof o);
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    char **addrs = sp_query_addresses(&o.t);
    if (!addrs) return 1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    sp_buf url, body;
    sp_buf_init(&url);
    sp_buf_init(&body);
    rc = !c ? 1 : o.key ? query_key(c, addrs, &o, &url, &body) : query_range(c, addrs, &o, &url, &body);
    sp_buf_destroy(&url);
    sp_buf_destroy(&body);
    if (c) curl_easy_cleanup(c);
    curl_global_cleanup();
    sp_query_free_addresses(addrs);
    return rc;
}

void sp_query_free_addresses(char **addrs) {
    for (int i = 0; addrs && addrs[i]; i++) free(addrs[i]);
    free(addrs);
}
