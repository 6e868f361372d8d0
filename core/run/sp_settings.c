#include "sp_settings.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* sproc's own settings and what their values are. */
typedef struct known {
    const char *key;
    int kind; /* 0 a non-negative integer, 1 any text, 2 a guarantee, 3 an
               * integer >= -1 */
} known;

static const known sproc_keys[] = {
    {"sproc.batch.size", 0},         {"sproc.commit.interval.ms", 0},
    {"sproc.dev.partitions", 0},     {"sproc.state.max.bytes", 0},
    {"sproc.state.dir", 1},          {"sproc.processing.guarantee", 2},
    {"sproc.idle.timeout.ms", 0},    {"sproc.max.task.idle.ms", 3},
    {"sproc.script.timeout.ms", 0},  {"sproc.script.heap.max.bytes", 0},
    {"sproc.repartition.purge.interval.ms", 0},
    {"sproc.query.address", 1},      {"sproc.tap.max.rate", 0},
    {NULL, 0}};

int sp_settings_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 128 || lb > 128) return 1000;
    int prev[129], cur[129];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int d = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < d) d = prev[j] + 1;
            if (cur[j - 1] + 1 < d) d = cur[j - 1] + 1;
            cur[j] = d;
        }
        memcpy(prev, cur, sizeof prev);
    }
    return prev[lb];
}

/* The nearest of names (NUL-separated, ending with an empty one) to key,
 * when close enough to be what was meant; NULL otherwise. */
static const char *nearest(const char *key, const char *names) {
    const char *best = NULL;
    int bestd = 0, limit = (int)strlen(key) / 3;
    if (limit < 2) limit = 2;
    for (const char *n = names; *n; n += strlen(n) + 1) {
        int d = sp_settings_distance(key, n);
        if (!best || d < bestd) best = n, bestd = d;
    }
    return best && bestd <= limit ? best : NULL;
}

/* librdkafka's property names, NUL-separated, from its own table (the
 * first column of rd_kafka_conf_properties_show). */
static char *rdkafka_names(void) {
    char *text = NULL, *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    rd_kafka_conf_properties_show(f);
    fclose(f);
    out = calloc(1, len + 2);
    if (out && text) {
        size_t o = 0;
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
            size_t n = strcspn(line, " |");
            if (n == 0 || line[0] == '-' || strncmp(line, "Property", 8) == 0) continue;
            memcpy(out + o, line, n);
            o += n + 1;
        }
    }
    free(text);
    return out;
}

static char *say(const char *fmt, const char *a, const char *b, const char *c) {
    size_t n = strlen(fmt) + strlen(a) + strlen(b) + strlen(c) + 1;
    char *m = malloc(n);
    if (m) snprintf(m, n, fmt, a, b, c);
    return m;
}

static int check_sproc(const char *key, const char *val, char **msg) {
    for (const known *k = sproc_keys; k->key; k++) {
        if (strcmp(k->key, key) != 0) continue;
        if (k->kind == 0 || k->kind == 3) {
            char *end;
            long long v = strtoll(val, &end, 10);
            if (*val && !*end && v >= (k->kind == 3 ? -1 : 0)) return 0;
            *msg = say("--set %s=%s: a whole number >= %s is wanted", key, val,
                       k->kind == 3 ? "-1" : "0");
            return -1;
        }
        if (k->kind == 2 && strcmp(val, "at_least_once") != 0 && strcmp(val, "exactly_once") != 0) {
            *msg = say("--set %s=%s: at_least_once or exactly_once%s", key, val, "");
            return -1;
        }
        return 0;
    }
    char names[512];
    size_t o = 0;
    for (const known *k = sproc_keys; k->key; k++) {
        size_t n = strlen(k->key) + 1;
        memcpy(names + o, k->key, n);
        o += n;
    }
    names[o] = '\0';
    const char *near = nearest(key, names);
    *msg = say("--set %s: unknown sproc setting%s%s", key, near ? " (did you mean " : "",
               near ? near : "");
    if (*msg && near) {
        char *m = say("%s%s%s", *msg, "?)", "");
        free(*msg);
        *msg = m;
    }
    return -1;
}

/* The Schema Registry's settings, named as Confluent's clients name them:
 * sproc's registry client reads them, librdkafka never sees them. */
static const char *const registry_keys[] = {"schema.registry.url", "basic.auth.user.info",
                                            "schema.registry.ssl.ca.location", NULL};

int sp_settings_registry(const char *key) {
    for (int i = 0; registry_keys[i]; i++)
        if (strcmp(key, registry_keys[i]) == 0) return 1;
    return 0;
}

int sp_settings_check(const char *const *sets, int nsets, char **msg) {
    char errstr[512], kv[1024];
    char *names = NULL;
    int rc = 0;
    *msg = NULL;
    for (int i = 0; i < nsets && rc == 0; i++) {
        snprintf(kv, sizeof kv, "%s", sets[i]);
        char *eq = strchr(kv, '=');
        if (!eq) continue; /* the CLI checks the shape */
        *eq = '\0';
        const char *key = kv, *val = eq + 1;
        if (strncmp(key, "sproc.", 6) == 0) {
            rc = check_sproc(key, val, msg);
            continue;
        }
        if (sp_settings_registry(key)) continue;
        if (strncmp(key, "consumer.", 9) == 0 || strncmp(key, "producer.", 9) == 0) key += 9;
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_res_t r = rd_kafka_conf_set(conf, key, val, errstr, sizeof errstr);
        rd_kafka_conf_destroy(conf);
        if (r == RD_KAFKA_CONF_OK) continue;
        rc = -1;
        if (r == RD_KAFKA_CONF_UNKNOWN) {
            if (!names) names = rdkafka_names();
            const char *near = names ? nearest(key, names) : NULL;
            char hint[256] = "";
            if (near) snprintf(hint, sizeof hint, " (did you mean %s?)", near);
            *msg = say("--set %s: not a librdkafka or sproc setting%s%s", key, hint, "");
        } else {
            *msg = say("--set %s=%s: %s", key, val, errstr);
        }
    }
    free(names);
    if (rc != 0 && !*msg) *msg = strdup("out of memory");
    return rc;
}
