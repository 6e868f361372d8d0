/* What the benchmarks' C programs share: a client setting that must take
 * (a benchmark run with a setting ignored would measure something else). */
#ifndef BENCH_CONF_H
#define BENCH_CONF_H

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>

static inline void bench_set(rd_kafka_conf_t *c, const char *k, const char *v) {
    char err[256];
    if (rd_kafka_conf_set(c, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s: %s\n", k, err);
        exit(2);
    }
}

#endif
