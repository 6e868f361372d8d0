/* The latency benchmark's load: records of the benchmark's shape (as
 * compare.py's record(i)) produced to a topic at a steady rate, in 1 ms
 * steps, for a number of seconds. A Python producer cannot offer the
 * rates sproc is measured at.
 *   rate_feed BROKERS TOPIC RATE SECONDS FIRST_ID
 * Prints the rate it achieved (records/s) on its last line. */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_conf.h"

#define BASE_MS 1700000000000LL

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: rate_feed BROKERS TOPIC RATE SECONDS FIRST_ID\n");
        return 2;
    }
    double rate = atof(argv[3]), seconds = atof(argv[4]);
    long long first = atoll(argv[5]), total = (long long)(rate * seconds);
    char err[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    bench_set(c, "bootstrap.servers", argv[1]);
    bench_set(c, "linger.ms", "1");
    bench_set(c, "partitioner", "murmur2_random");
    bench_set(c, "queue.buffering.max.messages", "1000000");
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
    if (!p) {
        fprintf(stderr, "rate_feed: %s\n", err);
        return 1;
    }
    rd_kafka_topic_t *t = rd_kafka_topic_new(p, argv[2], NULL);
    static const char *const country[] = {"NL", "DE", "FR", "US"};
    double t0 = now_s();
    long long sent = 0;
    while (sent < total) {
        long long due = (long long)((now_s() - t0) * rate);
        if (due > total) due = total;
        for (; sent < due; sent++) {
            long long i = first + sent;
            char val[160], key[24];
            int vl = snprintf(val, sizeof val,
                              "{\"id\":%lld,\"user\":\"u%06lld\",\"amount\":%lld.%02lld,"
                              "\"country\":\"%s\",\"ok\":%s,\"ts\":%lld}",
                              i, i % 1000000, i % 997, i % 100, country[i % 4],
                              i % 3 == 0 ? "false" : "true", BASE_MS + 2 * i);
            int kl = snprintf(key, sizeof key, "%lld", i % 1000);
            while (rd_kafka_produce(t, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, val,
                                    (size_t)vl, key, (size_t)kl, NULL) != 0)
                rd_kafka_poll(p, 1);
        }
        rd_kafka_poll(p, 0);
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    double took = now_s() - t0;
    rd_kafka_flush(p, 60000);
    printf("%.0f\n", (double)total / took);
    rd_kafka_topic_destroy(t);
    rd_kafka_destroy(p);
    return 0;
}
