/* The client's ceiling for the benchmarks: consume a topic and produce
 * every record to another with librdkafka alone, nothing in between, with
 * the client settings sproc uses (core/run/sp_run_clients.c: sp_run_make_consumer,
 * sp_run_make_producer), and sproc's wake-up of a stalled prefetch (core/run/sp_prefetch.h:
 * without it librdkafka 2.0 idles for most of each second once its queue is
 * full). A record keeps its key, value, timestamp and headers, as S0's
 * pass-through keeps them in sproc and in Kafka Streams; with --bare only
 * its key and value (what librdkafka does with no per-record work at all).
 * Runs until killed; the harness watches the output.
 *   rdk_pipe BROKERS GROUP IN OUT [--bare] [producer.K=V|consumer.K=V ...]
 * (extra settings as sproc's --set takes them, for runs with other
 * settings than the defaults) */
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_conf.h"
#include "sp_prefetch.h"

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

/* The extra arguments with this prefix. */
static void sets(rd_kafka_conf_t *c, const char *prefix, int argc, char **argv) {
    size_t n = strlen(prefix);
    for (int i = 5; i < argc; i++) {
        char kv[512];
        snprintf(kv, sizeof kv, "%s", argv[i]);
        char *eq = strchr(kv, '=');
        if (!eq || strncmp(kv, prefix, n) != 0) continue;
        *eq = '\0';
        bench_set(c, kv + n, eq + 1);
    }
}

int main(int argc, char **argv) {
    char err[256];
    if (argc < 5) {
        fprintf(stderr, "usage: rdk_pipe BROKERS GROUP IN OUT [--bare] "
                        "[producer.K=V|consumer.K=V ...]\n");
        return 2;
    }
    int bare = 0;
    for (int i = 5; i < argc; i++) bare |= strcmp(argv[i], "--bare") == 0;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    bench_set(pc, "bootstrap.servers", argv[1]);
    bench_set(pc, "partitioner", "murmur2_random");
    bench_set(pc, "enable.idempotence", "true");
    bench_set(pc, "linger.ms", "5");
    bench_set(pc, "queue.buffering.max.messages", "20000");
    sets(pc, "producer.", argc, argv);
    rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof err);
    rd_kafka_conf_t *cc = rd_kafka_conf_new();
    bench_set(cc, "bootstrap.servers", argv[1]);
    bench_set(cc, "group.id", argv[2]);
    bench_set(cc, "enable.auto.commit", "true");
    bench_set(cc, "auto.offset.reset", "earliest");
    bench_set(cc, "partition.assignment.strategy", "cooperative-sticky");
    bench_set(cc, "isolation.level", "read_committed");
    bench_set(cc, "queued.min.messages", "10000");
    bench_set(cc, "queued.max.messages.kbytes", "2048");
    bench_set(cc, "max.partition.fetch.bytes", "131072");
    sets(cc, "consumer.", argc, argv);
    rd_kafka_t *cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof err);
    if (!prod || !cons) {
        fprintf(stderr, "rdk_pipe: %s\n", err);
        return 1;
    }
    rd_kafka_poll_set_consumer(cons);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, argv[3], RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(cons, t);
    rd_kafka_topic_partition_list_destroy(t);
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(cons);
    sp_prefetch *pf = sp_prefetch_create(cons, q, 10000, 2048 * 1024);
    rd_kafka_topic_t *out = rd_kafka_topic_new(prod, argv[4], NULL);
    rd_kafka_message_t *msgs[1024];
    int assigned = 0;
    while (!stop) {
        /* what is queued now (a blocking call waits for a full batch, and
         * would sit out a stalled prefetch before its wake-up) */
        ssize_t n = rd_kafka_consume_batch_queue(q, 0, msgs, 1024);
        if (n <= 0) rd_kafka_poll(prod, 1);
        size_t bytes = 0;
        if (!assigned) {
            /* the assignment, for the prefetch's wake-ups (the default
             * rebalance handling assigns what the group gives) */
            rd_kafka_topic_partition_list_t *a = NULL;
            if (rd_kafka_assignment(cons, &a) == 0 && a->cnt > 0) {
                sp_prefetch_assign(pf, a);
                assigned = 1;
            }
            if (a) rd_kafka_topic_partition_list_destroy(a);
        }
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = msgs[i];
            bytes += m->len;
            rd_kafka_headers_t *h = NULL;
            if (!bare && !m->err && rd_kafka_message_headers(m, &h) == 0 &&
                rd_kafka_header_cnt(h) > 0)
                h = rd_kafka_headers_copy(h);
            else
                h = NULL;
            rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__QUEUE_FULL;
            while (!m->err && e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                e = rd_kafka_producev(prod, RD_KAFKA_V_RKT(out),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_KEY(m->key, m->key_len),
                                      RD_KAFKA_V_VALUE(m->payload, m->len),
                                      RD_KAFKA_V_TIMESTAMP(bare ? 0 : rd_kafka_message_timestamp(m, NULL)),
                                      RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
                if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                    rd_kafka_poll(prod, 1); /* let deliveries drain */
            }
            if (e && h) rd_kafka_headers_destroy(h); /* not taken over */
            rd_kafka_message_destroy(m);
        }
        sp_prefetch_consumed(pf, n > 0 ? (int)n : 0, bytes);
        rd_kafka_poll(prod, 0);
    }
    sp_prefetch_destroy(pf);
    rd_kafka_flush(prod, 10000);
    rd_kafka_queue_destroy(q);
    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);
    rd_kafka_topic_destroy(out);
    rd_kafka_destroy(prod);
    return 0;
}
