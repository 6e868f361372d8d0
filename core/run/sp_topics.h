/* sp_topics: the topics sproc makes for itself (store changelogs,
 * repartition topics), created where missing through Kafka's admin API. */
#ifndef SP_TOPICS_H
#define SP_TOPICS_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

/* Creates the named topics that do not exist, each with partitions
 * partitions, the broker's default replication and config ("key=value"
 * lines, or NULL). what ("changelog", "repartition") names them in messages.
 * With check_partitions, an existing one with fewer partitions is an
 * error. Returns 0, or -1 after logging why. */
int sp_topics_ensure(rd_kafka_t *rk, char *const *names, int n, int32_t partitions,
                     const char *config, int check_partitions, const char *what);

/* Creates a topic (replication -1: the cluster's default) with config,
 * "key=value" lines (may be NULL); waits until the metadata has it. 0, or
 * -1 after an error message naming it as a "what" topic. */
int sp_topics_create(rd_kafka_t *rk, const char *name, int32_t partitions, int32_t replication,
                     const char *config, const char *what);
/* A topic's setting key (its value, the broker's default included, in
 * out): 1, 0 when Kafka does not list it, -1 when it cannot be read. */
int sp_topics_config(rd_kafka_t *rk, const char *topic, const char *key, char *out, size_t n);
/* A topic's partitions as a broker says now; -1 when it cannot tell. */
int32_t sp_topics_partitions(rd_kafka_t *rk, const char *topic);
/* A partition's low and high watermarks. A topic created a moment ago (by
 * this process or a peer) may be missing from a broker's metadata or have
 * no leader yet, and librdkafka then caches "unknown topic" for minutes:
 * retries for up to within_s seconds, refreshing that topic's metadata
 * each time. */
rd_kafka_resp_err_t sp_topics_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition,
                                         int64_t *lo, int64_t *hi, double within_s);

#endif
