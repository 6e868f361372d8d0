#include "sp_prefetch.h"

#include <pthread.h>
#include <stdlib.h>

struct sp_prefetch {
    rd_kafka_t *cons;
    rd_kafka_queue_t *q;
    int64_t max_msgs, max_bytes;
    double avg_len; /* payload bytes per message, a moving average */
    int armed;      /* the queue was over half its bound since the last kick */
    int64_t kicks;

    pthread_t thread;
    int started;
    pthread_mutex_t mu; /* guards what follows */
    pthread_cond_t cv;
    int want, stop;
    rd_kafka_topic_partition_list_t *parts;
};

/* The helper: one ListOffsets round to the leaders per wake-up asked for.
 * Its answer does not matter; the request is what wakes the fetchers. */
static void *kicker(void *arg) {
    sp_prefetch *pf = arg;
    pthread_mutex_lock(&pf->mu);
    for (;;) {
        while (!pf->want && !pf->stop) pthread_cond_wait(&pf->cv, &pf->mu);
        if (pf->stop) break;
        pf->want = 0;
        rd_kafka_topic_partition_list_t *l =
            pf->parts->cnt > 0 ? rd_kafka_topic_partition_list_copy(pf->parts) : NULL;
        pthread_mutex_unlock(&pf->mu);
        if (l) {
            for (int i = 0; i < l->cnt; i++) l->elems[i].offset = -1; /* the end */
            rd_kafka_offsets_for_times(pf->cons, l, 1000);
            rd_kafka_topic_partition_list_destroy(l);
        }
        pthread_mutex_lock(&pf->mu);
    }
    pthread_mutex_unlock(&pf->mu);
    return NULL;
}

sp_prefetch *sp_prefetch_create(rd_kafka_t *cons, rd_kafka_queue_t *q,
                                int64_t max_msgs, int64_t max_bytes) {
    sp_prefetch *pf = calloc(1, sizeof *pf);
    if (!pf) goto fail;
    pf->cons = cons;
    pf->q = q;
    pf->max_msgs = max_msgs > 0 ? max_msgs : 1;
    pf->max_bytes = max_bytes > 0 ? max_bytes : 1;
    pf->parts = rd_kafka_topic_partition_list_new(8);
    pthread_mutex_init(&pf->mu, NULL);
    pthread_cond_init(&pf->cv, NULL);
    if (!pf->parts || pthread_create(&pf->thread, NULL, kicker, pf) != 0) goto fail;
    pf->started = 1;
    return pf;
fail:
    sp_prefetch_destroy(pf);
    return NULL;
}

void sp_prefetch_destroy(sp_prefetch *pf) {
    if (!pf) return;
    if (pf->started) {
        pthread_mutex_lock(&pf->mu);
        pf->stop = 1;
        pthread_cond_signal(&pf->cv);
        pthread_mutex_unlock(&pf->mu);
        pthread_join(pf->thread, NULL);
    }
    pthread_cond_destroy(&pf->cv);
    pthread_mutex_destroy(&pf->mu);
    if (pf->parts) rd_kafka_topic_partition_list_destroy(pf->parts);
    free(pf);
}

void sp_prefetch_assign(sp_prefetch *pf,
                        const rd_kafka_topic_partition_list_t *parts) {
    if (!pf) return;
    pthread_mutex_lock(&pf->mu);
    for (int i = 0; i < parts->cnt; i++)
        if (!rd_kafka_topic_partition_list_find(pf->parts, parts->elems[i].topic,
                                                parts->elems[i].partition))
            rd_kafka_topic_partition_list_add(pf->parts, parts->elems[i].topic,
                                              parts->elems[i].partition);
    pthread_mutex_unlock(&pf->mu);
}

void sp_prefetch_revoke(sp_prefetch *pf,
                        const rd_kafka_topic_partition_list_t *parts) {
    if (!pf) return;
    pthread_mutex_lock(&pf->mu);
    for (int i = 0; i < parts->cnt; i++)
        rd_kafka_topic_partition_list_del(pf->parts, parts->elems[i].topic,
                                          parts->elems[i].partition);
    pthread_mutex_unlock(&pf->mu);
}

void sp_prefetch_consumed(sp_prefetch *pf, int n, size_t bytes) {
    if (!pf) return;
    if (n > 0) {
        double len = (double)bytes / n;
        pf->avg_len = pf->avg_len > 0 ? pf->avg_len * 0.9 + len * 0.1 : len;
    }
    int64_t queued = rd_kafka_queue_length(pf->q);
    if (queued * 2 >= pf->max_msgs ||
        (double)queued * pf->avg_len * 2 >= (double)pf->max_bytes) {
        pf->armed = 1;
        return;
    }
    if (!pf->armed) return;
    pf->armed = 0;
    pf->kicks++;
    pthread_mutex_lock(&pf->mu);
    pf->want = 1;
    pthread_cond_signal(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
}

int64_t sp_prefetch_kicks(const sp_prefetch *pf) { return pf ? pf->kicks : 0; }
