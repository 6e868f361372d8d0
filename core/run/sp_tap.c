/* sproc tap: prints a live sample of an operator's records, from every
 * process of a running application at once (each samples the partitions
 * it holds), one JSON object a line, until --max lines or a signal. */
#include <curl/curl.h>

#include "sp_query.h"
#include "sp_run.h"

typedef struct topts {
    sp_query_target t;
    const char *op, *rate, *max;
    int out;
} topts;

typedef struct feed {
    sp_buf line; /* a line not yet whole */
    long long *left; /* lines still wanted (shared; < 0: no end) */
} feed;

static int usage(const char *why) {
    fprintf(stderr,
            "sproc tap: %s\n"
            "usage: sproc tap SCRIPT.lua|--app ID [OPERATOR] [--out] [--rate N] [--max N]\n"
            "                 [--brokers LIST | --at HOST:PORT]\n"
            "  records entering OPERATOR (--out: leaving it), N a second at most per\n"
            "  process (default 10); without OPERATOR, the operators' names\n",
            why);
    return 2;
}

static int parse(int argc, char **argv, topts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        size_t n = strlen(a);
        if (a[0] != '-' || !a[1]) {
            if (!o->t.script && !o->t.app && !o->op && n > 4 && !strcmp(a + n - 4, ".lua")) o->t.script = a;
            else if (!o->op) o->op = a;
            else return usage("too many arguments");
            continue;
        }
        if (!strcmp(a, "--out")) {
            o->out = 1;
            continue;
        }
        int took = sp_query_target_opt(&o->t, a, v);
        if (took == 0 && (!strcmp(a, "--rate") || !strcmp(a, "--max"))) {
            took = v ? 1 : -1;
            if (v) *(a[2] == 'r' ? &o->rate : &o->max) = v;
        }
        if (took < 0) return usage("an option without its value");
        if (!took) return usage("unknown option");
        i++;
    }
    const char *why;
    return sp_query_target_check(&o->t, &why) ? usage(why) : 0;
}

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig, stop = 1; }

/* Whole lines out (the empty ones are the process's heartbeats). */
static size_t take(char *p, size_t size, size_t n, void *opaque) {
    feed *f = opaque;
    size_t len = size * n;
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '\n') {
            if (sp_buf_putc(&f->line, p[i])) return 0;
            continue;
        }
        if (f->line.len && *f->left != 0) {
            fwrite(f->line.data, 1, f->line.len, stdout);
            fputc('\n', stdout);
            if (*f->left > 0) --*f->left;
        }
        sp_buf_reset(&f->line);
    }
    fflush(stdout);
    return *f->left == 0 ? 0 : len; /* enough: the transfers stop */
}

static CURL *open_tap(CURLM *multi, const topts *o, const char *addr, feed *f, sp_buf *url) {
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    char *e = o->op ? curl_easy_escape(c, o->op, 0) : NULL;
    sp_buf_reset(url);
    sp_buf_append(url, "http://", 7);
    sp_buf_append(url, addr, strlen(addr));
    sp_buf_append(url, "/tap/", 5);
    if (e) sp_buf_append(url, e, strlen(e));
    char q[128];
    long long rate = o->rate ? atoll(o->rate) : 10, max = o->max ? atoll(o->max) : 0;
    snprintf(q, sizeof q, "?dir=%s&rate=%lld&max=%lld", o->out ? "out" : "in", rate, max > 0 ? max : 0);
    sp_buf_append(url, q, strlen(q));
    sp_buf_putc(url, '\0');
    curl_free(e);
    curl_easy_setopt(c, CURLOPT_URL, url->data);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, take);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_PRIVATE, (char *)addr);
    curl_multi_add_handle(multi, c);
    return c;
}

int sp_tap(int argc, char **argv) {
    topts o;
    memset(&o, 0, sizeof o);
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    char **addrs = sp_query_addresses(&o.t);
    if (!addrs) return 1;
    int n = 0;
    while (addrs[n]) n++;
    if (!o.op) n = 1; /* the names: every process has the same */
    long long left = o.max ? atoll(o.max) : -1;
    if (left == 0) left = -1;
    feed *fs = calloc((size_t)n, sizeof *fs);
    CURL **cs = calloc((size_t)n, sizeof *cs);
    sp_buf url;
    sp_buf_init(&url);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *multi = curl_multi_init();
    rc = !fs || !cs || !multi;
    for (int i = 0; !rc && i < n; i++) {
        sp_buf_init(&fs[i].line);
        fs[i].left = &left;
        cs[i] = open_tap(multi, &o, addrs[i], &fs[i], &url);
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int running = 1;
    while (!rc && running && !stop && left != 0) {
        if (curl_multi_perform(multi, &running) != CURLM_OK) break;
        CURLMsg *msg;
        int q;
        while ((msg = curl_multi_info_read(multi, &q))) {
            char *addr = NULL;
            long status = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &addr);
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            if (msg->msg == CURLMSG_DONE && msg->data.result != CURLE_OK &&
                msg->data.result != CURLE_WRITE_ERROR) {
                if (status == 404)
                    fprintf(stderr, "sproc tap: %s has no operator named %s (sproc tap without "
                            "one lists them)\n", addr, o.op);
                else
                    fprintf(stderr, "sproc tap: %s: %s\n", addr, curl_easy_strerror(msg->data.result));
                rc = 1;
            }
        }
        if (running) curl_multi_poll(multi, NULL, 0, 1000, NULL);
    }
    for (int i = 0; cs && i < n; i++) {
        if (!cs[i]) continue;
        curl_multi_remove_handle(multi, cs[i]);
        curl_easy_cleanup(cs[i]);
        sp_buf_destroy(&fs[i].line);
    }
    if (multi) curl_multi_cleanup(multi);
    curl_global_cleanup();
    sp_buf_destroy(&url);
    free(cs);
    free(fs);
    sp_query_free_addresses(addrs);
    return rc;
}
