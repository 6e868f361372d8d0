/* sp_members: which process of an application holds which partitions, and
 * where its HTTP endpoint answers, for interactive queries. The consumer
 * group is the one source of truth: each process's group client.id is
 * "sproc@HOST:PORT" (its --metrics address), and Kafka's description of
 * the group (DescribeConsumerGroups) lists every member's client.id and
 * assignment. No topic of our own, and nothing to clean up after a kill:
 * a dead member leaves the description when the group drops it. */
#ifndef SP_MEMBERS_H
#define SP_MEMBERS_H

#include <librdkafka/rdkafka.h>

#define SP_MEMBERS_CLIENT_PREFIX "sproc@"

typedef struct sp_member {
    char *address;    /* HOST:PORT; NULL: a member that does not say */
    char *consumer_id;
    rd_kafka_topic_partition_list_t *parts;
} sp_member;

typedef struct sp_members sp_members;

/* Follows group (of the consumer rk) in the background. */
sp_members *sp_members_create(rd_kafka_t *rk, const char *group);
void sp_members_destroy(sp_members *ms);
/* The queue its answers come to (for an I/O event). */
rd_kafka_queue_t *sp_members_queue(sp_members *ms);
/* Asks Kafka for the group's description (at most one request at a time;
 * one more follows when asked while one is out). */
void sp_members_refresh(sp_members *ms);
/* Takes an answer in when one came; 1 when the list changed. */
int sp_members_poll(sp_members *ms);
/* The members as last described (n: how many); NULL before the first. */
const sp_member *sp_members_list(const sp_members *ms, int *n);
/* The address of the member holding topic's partition, or NULL. */
const char *sp_members_owner(const sp_members *ms, const char *topic, int32_t partition);
/* How many partitions of topic the group holds (its highest + 1), or -1. */
int32_t sp_members_partitions(const sp_members *ms, const char *topic);

/* A description answer as a list (its strings copied): 0, or -1 with a
 * message in err. The address of a member bound to 0.0.0.0 is taken from
 * the host Kafka saw it connect from. */
int sp_members_from_event(rd_kafka_event_t *ev, sp_member **out, int *n, char *err,
                          size_t errsize);
void sp_members_free(sp_member *m, int n);
/* The group's members, asked and waited for (sproc query): 0, or -1. */
int sp_members_describe(rd_kafka_t *rk, const char *group, int timeout_ms, sp_member **out,
                        int *n, char *err, size_t errsize);

#endif
