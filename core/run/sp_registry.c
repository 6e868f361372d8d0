/* sp_registry: a Confluent-compatible Schema Registry over HTTP (libcurl):
 * a schema by its id for a record read, a sink's schema registered under
 * its subject for its id. Settings as Confluent's clients name them:
 * schema.registry.url, basic.auth.user.info (USER:PASSWORD) and
 * schema.registry.ssl.ca.location. A request that cannot reach the
 * registry, or that it answers with a 5xx, is tried three times. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sp_registry.h"
#include "sp_json.h"
#include "sp_log.h"

struct sp_registry {
    CURL *c;
    char *url, *userinfo, *ca;
    char *shown; /* the URL in messages: user info in it becomes *** */
    sp_buf body, req;
};

#define TRIES 3

/* url without the password libcurl would take from it
 * (http://user:pass@host/) */
static char *shown_url(const char *url) {
    const char *host = strstr(url, "://");
    host = host ? host + 3 : url;
    const char *at = strchr(host, '@'), *slash = strchr(host, '/');
    if (!at || (slash && slash < at)) return strdup(url);
    size_t pre = (size_t)(host - url), rest = strlen(at);
    char *s = malloc(pre + 3 + rest + 1);
    if (!s) return NULL;
    memcpy(s, url, pre);
    memcpy(s + pre, "***", 3);
    memcpy(s + pre + 3, at, rest + 1);
    return s;
}

sp_registry *sp_registry_create(const char *url, const char *userinfo, const char *ca) {
    sp_registry *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    r->c = curl_easy_init();
    size_t n = strlen(url);
    while (n && url[n - 1] == '/') n--; /* the paths start with one */
    r->url = strndup(url, n);
    r->shown = r->url ? shown_url(r->url) : NULL;
    r->userinfo = userinfo ? strdup(userinfo) : NULL;
    r->ca = ca ? strdup(ca) : NULL;
    sp_buf_init(&r->body);
    sp_buf_init(&r->req);
    if (!r->c || !r->url || !r->shown || (userinfo && !r->userinfo) || (ca && !r->ca)) {
        sp_registry_destroy(r);
        return NULL;
    }
    return r;
}

void sp_registry_destroy(sp_registry *r) {
    if (!r) return;
    if (r->c) curl_easy_cleanup(r->c);
    curl_global_cleanup();
    free(r->url);
    free(r->shown);
    free(r->userinfo);
    free(r->ca);
    sp_buf_destroy(&r->body);
    sp_buf_destroy(&r->req);
    free(r);
}

const char *sp_registry_url(const sp_registry *r) { return r->shown; }

static size_t collect(char *p, size_t size, size_t n, void *buf) {
    return sp_buf_append(buf, p, size * n) == 0 ? size * n : 0;
}

/* The message an answer carries ({"message": ...}), or the body. */
static void message_of(const sp_buf *b, char *out, size_t size) {
    sp_json_index ix;
    sp_json_index_init(&ix);
    const char *e;
    size_t pos;
    int i = -1;
    if (b->len && sp_json_index_parse(&ix, b->data, b->len, &e, &pos) == 0)
        i = sp_json_index_find(&ix, "message", 7);
    if (i >= 0) snprintf(out, size, "%.*s", (int)ix.fields[i].val_len, ix.fields[i].val);
    else snprintf(out, size, "%.*s", (int)(b->len > 300 ? 300 : b->len), b->data ? b->data : "");
    sp_json_index_destroy(&ix);
}

/* path under the URL; post NULL for a GET. The status (0: no answer),
 * the body in r->body; why in err when not 2xx. */
static long request(sp_registry *r, const char *path, const sp_buf *post, char *err, size_t errsize) {
    char url[2048], cerr[CURL_ERROR_SIZE];
    snprintf(url, sizeof url, "%s%s", r->url, path);
    long status = 0;
    for (int t = 0; t < TRIES; t++) {
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/vnd.schemaregistry.v1+json");
        h = curl_slist_append(h, "Accept: application/vnd.schemaregistry.v1+json, application/json");
        curl_easy_reset(r->c);
        curl_easy_setopt(r->c, CURLOPT_URL, url);
        curl_easy_setopt(r->c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(r->c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(r->c, CURLOPT_WRITEDATA, &r->body);
        curl_easy_setopt(r->c, CURLOPT_ERRORBUFFER, cerr);
        curl_easy_setopt(r->c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
        curl_easy_setopt(r->c, CURLOPT_TIMEOUT_MS, 30000L);
        if (r->userinfo) {
            curl_easy_setopt(r->c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
            curl_easy_setopt(r->c, CURLOPT_USERPWD, r->userinfo);
        }
        if (r->ca) curl_easy_setopt(r->c, CURLOPT_CAINFO, r->ca);
        if (post) {
            curl_easy_setopt(r->c, CURLOPT_POSTFIELDS, post->data);
            curl_easy_setopt(r->c, CURLOPT_POSTFIELDSIZE, (long)post->len);
        }
        sp_buf_reset(&r->body);
        cerr[0] = '\0';
        CURLcode rc = curl_easy_perform(r->c);
        curl_easy_setopt(r->c, CURLOPT_ERRORBUFFER, NULL); /* cerr goes out of scope */
        curl_slist_free_all(h);
        status = 0;
        if (rc == CURLE_OK) curl_easy_getinfo(r->c, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300) return status;
        if (status >= 400 && status < 500) break; /* asking again changes nothing */
        if (status) message_of(&r->body, cerr, sizeof cerr);
        if (t + 1 < TRIES) usleep(200000u << t);
    }
    if (status >= 400) {
        char msg[512];
        message_of(&r->body, msg, sizeof msg);
        snprintf(err, errsize, "schema registry at %s: %s (HTTP %ld)", r->shown, msg, status);
    } else {
        snprintf(err, errsize, "schema registry at %s: %s", r->shown,
                 status ? "an error answer" : cerr[0] ? cerr : "no answer");
    }
    return status;
}

int sp_registry_check(sp_registry *r, char *err, size_t errsize) {
    long s = request(r, "/subjects", NULL, err, errsize);
    return s >= 200 && s < 300 ? 0 : -1;
}

int sp_registry_fetch(void *opaque, int32_t id, sp_buf *out, char *err, size_t errsize) {
    sp_registry *r = opaque;
    char path[64];
    snprintf(path, sizeof path, "/schemas/ids/%d", (int)id);
    long s = request(r, path, NULL, err, errsize);
    if (s < 200 || s >= 300) return -1;
    sp_json_index ix;
    sp_json_index_init(&ix);
    const char *e;
    size_t pos;
    int i = -1, rc = -1;
    if (sp_json_index_parse(&ix, r->body.data, r->body.len, &e, &pos) == 0)
        i = sp_json_index_find(&ix, "schema", 6);
    if (i >= 0 && ix.fields[i].type == SP_JSON_STRING && sp_buf_reserve(out, ix.fields[i].val_len) == 0) {
        out->len = sp_json_unescape(ix.fields[i].val, ix.fields[i].val_len, out->data);
        rc = 0;
    } else {
        snprintf(err, errsize, "schema registry at %s: no schema in its answer for id %d", r->shown, (int)id);
    }
    sp_json_index_destroy(&ix);
    return rc;
}

int sp_registry_register(void *opaque, const char *subject, const char *schema, size_t len,
                         int32_t *id, char *err, size_t errsize) {
    sp_registry *r = opaque;
    char path[1024], *esc = curl_easy_escape(r->c, subject, 0);
    snprintf(path, sizeof path, "/subjects/%s/versions", esc ? esc : subject);
    curl_free(esc);
    sp_buf_reset(&r->req);
    int rc = sp_buf_append(&r->req, "{\"schema\":", 10) | sp_json_write_string(&r->req, schema, len) |
             sp_buf_putc(&r->req, '}');
    if (rc) {
        snprintf(err, errsize, "out of memory");
        return -1;
    }
    long s = request(r, path, &r->req, err, errsize);
    if (s < 200 || s >= 300) return -1;
    sp_json_index ix;
    sp_json_index_init(&ix);
    const char *e;
    size_t pos;
    int i = -1;
    rc = -1;
    if (sp_json_index_parse(&ix, r->body.data, r->body.len, &e, &pos) == 0)
        i = sp_json_index_find(&ix, "id", 2);
    if (i >= 0 && ix.fields[i].type == SP_JSON_NUMBER) {
        *id = (int32_t)sp_json_number(ix.fields[i].val, ix.fields[i].val_len);
        rc = 0;
    } else {
        snprintf(err, errsize, "schema registry at %s: no id in its answer for subject %s", r->shown, subject);
    }
    sp_json_index_destroy(&ix);
    return rc;
}
