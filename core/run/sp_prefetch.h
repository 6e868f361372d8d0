/* sp_prefetch: keeps the consumer's prefetch flowing within its memory
 * bound.
 *
 * librdkafka 2.0 stops fetching once the consumer queue holds
 * queued.min.messages or queued.max.messages.kbytes, and decides again
 * only when the broker thread wakes up: after a second at the latest, by
 * which time a pipeline faster than the fetches has emptied the queue and
 * sat idle for most of it (measured: 550k records/s against 880k with an
 * unbounded queue). Any request to a broker wakes its thread, so when the
 * queue has drained to half its bound, a helper thread asks the assigned
 * partitions' leaders for their end offsets (ListOffsets, cheap for the
 * broker); the broker thread then finds the queue under its bound and
 * fetches again while the other half is processed. The main thread never
 * waits for it. */
#ifndef SP_PREFETCH_H
#define SP_PREFETCH_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sp_prefetch sp_prefetch;

/* max_msgs, max_bytes: the consumer's queued.min.messages and
 * queued.max.messages.kbytes * 1024. NULL when out of memory. */
sp_prefetch *sp_prefetch_create(rd_kafka_t *cons, rd_kafka_queue_t *q,
                                int64_t max_msgs, int64_t max_bytes);
/* Stops the helper thread; call before the consumer is closed. */
void sp_prefetch_destroy(sp_prefetch *pf);
/* The partitions the helper asks about follow the assignment. */
void sp_prefetch_assign(sp_prefetch *pf,
                        const rd_kafka_topic_partition_list_t *parts);
void sp_prefetch_revoke(sp_prefetch *pf,
                        const rd_kafka_topic_partition_list_t *parts);
/* After each batch taken from the queue: n messages of bytes payload. */
void sp_prefetch_consumed(sp_prefetch *pf, int n, size_t bytes);
/* Wake-ups asked for so far (for tests and metrics). */
int64_t sp_prefetch_kicks(const sp_prefetch *pf);

#endif
