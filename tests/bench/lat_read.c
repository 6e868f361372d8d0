/* The latency benchmark's reading side: the LogAppendTime of every input
 * record of ids FIRST..FIRST+COUNT-1 (rate_feed's records), then of every
 * output carrying one of those ids (its first field, {"id":N,...}); prints
 * the number of outputs and the p50, p99 and p999 of output time minus
 * input time in ms. Python took a minute and a half for 10 M records.
 *   lat_read BROKERS IN OUT FIRST COUNT */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The id of a record's value, or -1. */
static long long id_of(const rd_kafka_message_t *m) {
    const char *p = m->payload;
    if (!p || m->len < 7 || memcmp(p, "{\"id\":", 6) != 0) return -1;
    return strtoll(p + 6, NULL, 10);
}

/* Reads a topic to the end offsets it has now; fn is called per record. */
static int read_topic(const char *brokers, const char *topic,
                      void (*fn)(const rd_kafka_message_t *, void *), void *arg) {
    char err[256];
    int rc = -1;
    int64_t left = 0;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *t = NULL;
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "bootstrap.servers", brokers, err, sizeof err) ||
        rd_kafka_conf_set(c, "group.id", "lat-read", err, sizeof err) ||
        rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof err)) {
        rd_kafka_conf_destroy(c);
        fprintf(stderr, "lat_read: %s\n", err);
        return -1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "lat_read: %s\n", err);
        return -1;
    }
    t = rd_kafka_topic_new(rk, topic, NULL);
    if (rd_kafka_metadata(rk, 0, t, &md, 10000) || md->topic_cnt != 1) {
        snprintf(err, sizeof err, "no metadata for %s", topic);
        goto done;
    }
    int np = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
    for (int p = 0; p < np; p++) {
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000)) {
            snprintf(err, sizeof err, "no offsets for %s", topic);
            rd_kafka_topic_partition_list_destroy(l);
            goto done;
        }
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = lo;
        left += hi - lo;
    }
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    while (left > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 10000);
        if (!m) break;
        if (!m->err) {
            fn(m, arg);
            left--;
        }
        rd_kafka_message_destroy(m);
    }
    if (left == 0) rc = 0; else snprintf(err, sizeof err, "%s ended early", topic);
done:
    if (rc) fprintf(stderr, "lat_read: %s\n", err);
    if (md) rd_kafka_metadata_destroy(md);
    if (t) rd_kafka_topic_destroy(t);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

typedef struct state {
    long long first, count;
    int64_t *sent;   /* LogAppendTime by id - first; -1 unseen */
    int64_t *lat;
    long long nlat;
} state;

static void on_input(const rd_kafka_message_t *m, void *arg) {
    state *s = arg;
    long long id = id_of(m) - s->first;
    if (id >= 0 && id < s->count) s->sent[id] = rd_kafka_message_timestamp(m, NULL);
}

static void on_output(const rd_kafka_message_t *m, void *arg) {
    state *s = arg;
    long long id = id_of(m) - s->first;
    if (id >= 0 && id < s->count && s->sent[id] >= 0 && s->nlat < s->count)
        s->lat[s->nlat++] = rd_kafka_message_timestamp(m, NULL) - s->sent[id];
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: lat_read BROKERS IN OUT FIRST COUNT\n");
        return 2;
    }
    state s = {atoll(argv[4]), atoll(argv[5]), NULL, NULL, 0};
    s.sent = malloc((size_t)s.count * sizeof *s.sent);
    s.lat = malloc((size_t)s.count * sizeof *s.lat);
    if (!s.sent || !s.lat) {
        free(s.sent);
        free(s.lat);
        return 1;
    }
    for (long long i = 0; i < s.count; i++) s.sent[i] = -1;
    int rc = 1;
    if (read_topic(argv[1], argv[2], on_input, &s) == 0 &&
        read_topic(argv[1], argv[3], on_output, &s) == 0) {
        rc = 0;
        qsort(s.lat, (size_t)s.nlat, sizeof *s.lat, cmp64);
        const double q[] = {0.5, 0.99, 0.999};
        printf("%lld", s.nlat);
        for (int i = 0; i < 3; i++) {
            long long at = (long long)(q[i] * (double)s.nlat);
            if (at >= s.nlat) at = s.nlat - 1;
            printf(" %lld", s.nlat ? (long long)s.lat[at] : 0LL);
        }
        printf("\n");
    }
    free(s.sent);
    free(s.lat);
    return rc;
}
