/* sproc capture: a slice of a topic into a fixture file that sproc.testing
 * pipes as it came, so that a spec replays production data. One JSON
 * object a line, in the order read: partition, offset, timestamp, key,
 * value and headers; a key or value that is not UTF-8 is written in
 * base64 (key_b64, value_b64), a null one left out (a tombstone's value
 * is null). */
#include "sp_run.h"

typedef struct capture {
    const char *topic, *brokers, *from, *to, *key, *out;
    int32_t parts[256];
    int nparts;
    int64_t max;
    const char *sets[64];
    int nsets;
} capture;

static int usage(const char *why) {
    fprintf(stderr,
            "sproc capture: %s\n"
            "usage: sproc capture TOPIC --brokers HOST:PORT [--partition N]... [--from OFFSET|TIME]\n"
            "                     [--to OFFSET|TIME] [--key KEY] [--max N] [--out FILE] [--set K=V]...\n",
            why);
    return 2;
}

static int parse(int argc, char **argv, capture *c) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (a[0] != '-') {
            if (c->topic) return usage("one topic");
            c->topic = a;
            takes = 0;
        } else if (!v) {
            return usage("an option without its value");
        } else if (!strcmp(a, "--brokers") || !strcmp(a, "--bootstrap-server")) {
            c->brokers = v;
        } else if (!strcmp(a, "--partition")) {
            int32_t p = (int32_t)atoi(v), dup = 0;
            for (int k = 0; k < c->nparts; k++) dup |= c->parts[k] == p;
            if (!dup && c->nparts == 256) return usage("at most 256 partitions");
            if (!dup) c->parts[c->nparts++] = p;
        } else if (!strcmp(a, "--from")) {
            c->from = v;
        } else if (!strcmp(a, "--to")) {
            c->to = v;
        } else if (!strcmp(a, "--key")) {
            c->key = v;
        } else if (!strcmp(a, "--max")) {
            c->max = atoll(v);
        } else if (!strcmp(a, "--out")) {
            c->out = v;
        } else if (!strcmp(a, "--set") && c->nsets < 64 && strchr(v, '=')) {
            c->sets[c->nsets++] = v;
        } else {
            return usage("unknown option");
        }
        i += takes;
    }
    if (!c->topic) return usage("which topic?");
    if (!c->brokers) return usage("--brokers is needed (a fixture comes from a real topic)");
    return 0;
}

/* A bound: an offset (digits), or the first offset at or after an
 * ISO-8601 time; dflt when not given. -1 on a bad bound. */
static int64_t bound(rd_kafka_t *rk, const char *topic, int32_t part, const char *b,
                     int64_t dflt, int64_t hi) {
    char *end;
    int64_t ms;
    if (!b) return dflt;
    long long off = strtoll(b, &end, 10);
    if (*b && !*end) return off < hi ? off : hi;
    if (sp_time_parse(b, &ms) != 0) return -1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, part)->offset = ms;
    int64_t at = -1; /* a lookup that failed is an error, not the end */
    if (rd_kafka_offsets_for_times(rk, l, 10000) == 0 && !l->elems[0].err)
        at = l->elems[0].offset >= 0 ? l->elems[0].offset : hi; /* nothing after the time */
    rd_kafka_topic_partition_list_destroy(l);
    return at;
}

/* Appends p as a JSON string field, or in base64 when it is not UTF-8. */
static int put_bytes(sp_buf *b, const char *name, const void *p, size_t n) {
    size_t at = b->len;
    int rc = sp_buf_putc(b, ',') || sp_json_write_string(b, name, strlen(name)) ||
             sp_buf_putc(b, ':');
    if (rc) return -1;
    rc = sp_json_write_string(b, p ? p : "", n);
    if (rc != SP_JSON_EUTF8) return rc;
    b->len = at;
    char field[64];
    snprintf(field, sizeof field, "%s_b64", name);
    if (sp_buf_putc(b, ',') || sp_json_write_string(b, field, strlen(field)) || sp_buf_putc(b, ':'))
        return -1;
    return sp_json_write_base64(b, p, n);
}

static int write_record(FILE *f, sp_buf *b, const rd_kafka_message_t *m) {
    char head[128];
    sp_buf_reset(b);
    int n = snprintf(head, sizeof head, "{\"partition\":%" PRId32 ",\"offset\":%" PRId64
                     ",\"timestamp\":%" PRId64, m->partition, m->offset,
                     rd_kafka_message_timestamp(m, NULL));
    int rc = sp_buf_append(b, head, (size_t)n);
    if (!rc && m->key) rc = put_bytes(b, "key", m->key, m->key_len);
    if (!rc) rc = m->payload ? put_bytes(b, "value", m->payload, m->len)
                             : sp_buf_append(b, ",\"value\":null", 13);
    rd_kafka_headers_t *h = NULL;
    if (!rc && rd_kafka_message_headers(m, &h) == 0 && rd_kafka_header_cnt(h) > 0) {
        const char *name;
        const void *val;
        size_t vlen;
        /* name and value pairs, in order (a name may come twice); a value
         * that is not UTF-8 as {"b64": ...}, a null one as null */
        rc = sp_buf_append(b, ",\"headers\":[", 12);
        for (size_t i = 0; !rc && rd_kafka_header_get_all(h, i, &name, &val, &vlen) == 0; i++) {
            rc = (i && sp_buf_putc(b, ',')) || sp_buf_putc(b, '[') ||
                 sp_json_write_string(b, name, strlen(name)) || sp_buf_putc(b, ',');
            if (!rc && !val) {
                rc = sp_buf_append(b, "null", 4);
            } else if (!rc) {
                size_t at = b->len;
                int w = sp_json_write_string(b, val, vlen);
                if (w == SP_JSON_EUTF8) {
                    b->len = at;
                    rc = sp_buf_putc(b, '{') || put_bytes(b, "b", val, vlen) ||
                         sp_buf_putc(b, '}');
                    /* put_bytes wrote ",\"b_b64\":...": drop its comma */
                    if (!rc) memmove(b->data + at + 1, b->data + at + 2, b->len - at - 2), b->len--;
                } else {
                    rc = w;
                }
            }
            if (!rc) rc = sp_buf_putc(b, ']');
        }
        if (!rc) rc = sp_buf_putc(b, ']');
    }
    if (!rc) rc = sp_buf_append(b, "}\n", 2);
    return rc || fwrite(b->data, 1, b->len, f) != b->len ? -1 : 0;
}

int sp_capture(int argc, char **argv) {
    capture c;
    memset(&c, 0, sizeof c);
    int rc = parse(argc, argv, &c);
    if (rc) return rc;
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    FILE *f = NULL;
    rd_kafka_topic_partition_list_t *l = NULL;
    int64_t *ends = NULL;
    sp_buf b;
    sp_buf_init(&b);
    rc = 1;
    if (rd_kafka_conf_set(conf, "bootstrap.servers", c.brokers, err, sizeof err) ||
        rd_kafka_conf_set(conf, "group.id", "sproc-capture", err, sizeof err) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err) ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof err))
        goto fail;
    for (int i = 0; i < c.nsets; i++) {
        char k[256];
        const char *eq = strchr(c.sets[i], '=');
        snprintf(k, sizeof k, "%.*s", (int)(eq - c.sets[i]), c.sets[i]);
        if (rd_kafka_conf_set(conf, k, eq + 1, err, sizeof err)) goto fail;
    }
    if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err))) goto fail;
    conf = NULL;
    int32_t nall = sp_topics_partitions(rk, c.topic);
    if (nall <= 0) {
        snprintf(err, sizeof err, "topic %s not found", c.topic);
        goto fail;
    }
    if (c.nparts == 0)
        for (int32_t p = 0; p < nall && p < 256; p++) c.parts[c.nparts++] = p;
    l = rd_kafka_topic_partition_list_new(c.nparts);
    ends = calloc((size_t)c.nparts, sizeof *ends);
    if (!ends) {
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    int open = 0;
    for (int i = 0; i < c.nparts; i++) {
        int64_t lo, hi;
        if (sp_topics_watermarks(rk, c.topic, c.parts[i], &lo, &hi, 10) != 0) {
            snprintf(err, sizeof err, "cannot read the offsets of %s [%" PRId32 "]", c.topic,
                     c.parts[i]);
            goto fail;
        }
        int64_t from = bound(rk, c.topic, c.parts[i], c.from, lo, hi);
        int64_t to = bound(rk, c.topic, c.parts[i], c.to, hi, hi);
        if (from < 0 || to < 0) {
            snprintf(err, sizeof err, "--from and --to take an offset or an ISO-8601 time "
                     "(or the offset of a time could not be read)");
            goto fail;
        }
        if (from < lo) from = lo;
        ends[i] = to;
        if (from < to) open++;
        else ends[i] = -1;
        rd_kafka_topic_partition_list_add(l, c.topic, c.parts[i])->offset = from;
    }
    if (rd_kafka_assign(rk, l)) {
        snprintf(err, sizeof err, "cannot read %s", c.topic);
        goto fail;
    }
    if (!(f = c.out ? fopen(c.out, "w") : stdout)) {
        snprintf(err, sizeof err, "cannot write %s: %s", c.out, strerror(errno));
        goto fail;
    }
    int64_t written = 0;
    size_t klen = c.key ? strlen(c.key) : 0;
    double quiet_until = sp_clock_s() + 30;
    while (open > 0 && (!c.max || written < c.max) && sp_clock_s() < quiet_until) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
        if (!m) continue;
        int i = 0;
        while (i < c.nparts && c.parts[i] != m->partition) i++;
        if (i == c.nparts || ends[i] < 0) {
            rd_kafka_message_destroy(m);
            continue;
        }
        quiet_until = sp_clock_s() + 30;
        int64_t at = m->err ? m->offset : m->offset + 1;
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            snprintf(err, sizeof err, "%s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            goto fail;
        }
        if (!m->err && m->offset < ends[i] &&
            (!c.key || (m->key && m->key_len == klen && memcmp(m->key, c.key, klen) == 0))) {
            if (write_record(f, &b, m) != 0) {
                rd_kafka_message_destroy(m);
                snprintf(err, sizeof err, "cannot write the fixture");
                goto fail;
            }
            written++;
        }
        if (at >= ends[i]) {
            ends[i] = -1;
            open--;
        }
        rd_kafka_message_destroy(m);
    }
    if (open > 0 && (!c.max || written < c.max)) {
        snprintf(err, sizeof err, "no record for 30 s before the end of the slice");
        goto fail;
    }
    if (fflush(f) != 0) {
        snprintf(err, sizeof err, "cannot write the fixture");
        goto fail;
    }
    fprintf(stderr, "sproc capture: %" PRId64 " records of %s%s%s\n", written, c.topic,
            c.out ? " into " : "", c.out ? c.out : "");
    rc = 0;
fail:
    if (rc) fprintf(stderr, "sproc capture: %s\n", err);
    if (f && f != stdout) fclose(f);
    if (conf) rd_kafka_conf_destroy(conf);
    if (l) rd_kafka_topic_partition_list_destroy(l);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    free(ends);
    sp_buf_destroy(&b);
    return rc;
}
