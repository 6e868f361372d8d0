/* The Kafka sink of the executable: outputs go to librdkafka's producer;
 * each holds a reference on its input segment until Kafka acknowledges it
 * (sp_kafka_out_delivered, from the delivery report callback). */
#ifndef SP_KAFKA_OUT_H
#define SP_KAFKA_OUT_H

#include "sp_ctx.h"

typedef struct sp_kafka_out {
    rd_kafka_t *producer;
    /* Called for every topic a sink opens (the dev cluster creates it). */
    void (*on_topic)(void *opaque, const char *topic);
    void *opaque;
    /* Reads a consumed record again (for a dead letter that must hold it):
     * the message, or NULL. */
    rd_kafka_message_t *(*fetch)(void *opaque, const char *topic, int32_t partition,
                                 int64_t offset);
    /* Around a wait for room in the producer's queue (on 1, then 0). */
    void (*waiting)(void *opaque, int on);
    sp_ctx *ctx;
    char *fatal;            /* set when a delivery failed under "fail" */
    /* exactly-once: an output that failed fails its transaction, which is
     * aborted and made again (sp_run_recover_txn); the first failure */
    int txn;
    char txn_failed[512];
    int64_t delivery_errors;
    /* end-to-end latency: record timestamp to output acknowledged, in ms,
     * counted into the buckets of SP_LATENCY_BOUNDS (and +Inf) */
    int64_t lat_buckets[13];
    int64_t lat_count;
    double lat_sum_ms;
    int64_t now_ms; /* the wall clock for a poll's acknowledgements, or 0 */
} sp_kafka_out;

/* Plugs the Kafka sinks of ctx into ko; producer may come later (set
 * ko->producer before the first write). */
#define SP_LATENCY_BOUNDS {1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}
#define SP_LATENCY_NBOUNDS 12

void sp_kafka_out_init(sp_kafka_out *ko, sp_ctx *ctx, rd_kafka_t *producer);
void sp_kafka_out_destroy(sp_kafka_out *ko);
/* Another producer for the outputs (the one before is about to go). */
void sp_kafka_out_set_producer(sp_kafka_out *ko, rd_kafka_t *producer);
/* Serves the producer's acknowledgements (rd_kafka_poll), reading the
 * clock for their latency once rather than once per output. */
int sp_kafka_out_poll(sp_kafka_out *ko, int timeout_ms);
/* For rd_kafka_conf_set_dr_msg_cb: the opaque is the sp_kafka_out. */
void sp_kafka_out_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m,
                            void *opaque);

#endif
