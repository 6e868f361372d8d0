/* sp_topics: the topics sproc makes for itself (store changelogs,
 * repartition topics), created where missing through Kafka's admin API. */
#ifndef SP_TOPICS_H
#define SP_TOPICS_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>

/* Creates the named topics that do not exist, each with partitions
 * partitions and the broker's default replication; compact makes them
 * compacted. what ("changelog", "repartition") names them in messages.
 * With check_partitions, an existing one with fewer partitions is an
 * error. Returns 0, or -1 after logging why. */
int sp_topics_ensure(rd_kafka_t *rk, char *const *names, int n, int32_t partitions,
                     int compact, int check_partitions, const char *what);

#endif
