#include "sp_members.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sp_members {
    rd_kafka_t *rk;
    char *group;
    rd_kafka_queue_t *q;
    int pending; /* a request is out */
    int again;   /* asked for while one was out */
    sp_member *m;
    int n, described;
};

sp_members *sp_members_create(rd_kafka_t *rk, const char *group) {
    sp_members *ms = calloc(1, sizeof *ms);
    if (!ms) return NULL;
    ms->rk = rk;
    ms->group = strdup(group);
    ms->q = rd_kafka_queue_new(rk);
    if (!ms->group || !ms->q) {
        sp_members_destroy(ms);
        return NULL;
    }
    return ms;
}

void sp_members_free(sp_member *m, int n) {
    for (int i = 0; i < n; i++) {
        free(m[i].address);
        free(m[i].consumer_id);
        if (m[i].parts) rd_kafka_topic_partition_list_destroy(m[i].parts);
    }
    free(m);
}

void sp_members_destroy(sp_members *ms) {
    if (!ms) return;
    if (ms->q) rd_kafka_queue_destroy(ms->q);
    sp_members_free(ms->m, ms->n);
    free(ms->group);
    free(ms);
}

static void ask(rd_kafka_t *rk, const char *group, rd_kafka_queue_t *q, int timeout_ms) {
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
    char e[256];
    if (o) rd_kafka_AdminOptions_set_request_timeout(o, timeout_ms, e, sizeof e);
    const char *groups[] = {group};
    rd_kafka_DescribeConsumerGroups(rk, groups, 1, o, q);
    if (o) rd_kafka_AdminOptions_destroy(o);
}

rd_kafka_queue_t *sp_members_queue(sp_members *ms) { return ms->q; }

void sp_members_refresh(sp_members *ms) {
    if (ms->pending) {
        ms->again = 1;
        return;
    }
    ms->pending = 1;
    ask(ms->rk, ms->group, ms->q, 5000);
}

/* "sproc@HOST:PORT" -> HOST:PORT, with Kafka's view of the host for a
 * member listening on every address */
static char *address_of(const char *client_id, const char *host) {
    size_t pl = strlen(SP_MEMBERS_CLIENT_PREFIX);
    if (!client_id || strncmp(client_id, SP_MEMBERS_CLIENT_PREFIX, pl) != 0) return NULL;
    const char *a = client_id + pl, *colon = strrchr(a, ':');
    if (!colon || colon == a) return NULL;
    if (strncmp(a, "0.0.0.0:", 8) != 0 || !host || !*host) return strdup(a);
    if (*host == '/') host++;
    size_t n = strlen(host) + strlen(colon) + 1;
    char *out = malloc(n);
    if (out) snprintf(out, n, "%s%s", host, colon);
    return out;
}

int sp_members_from_event(rd_kafka_event_t *ev, sp_member **out, int *n, char *err,
                          size_t errsize) {
    *out = NULL;
    *n = 0;
    const rd_kafka_DescribeConsumerGroups_result_t *res =
        ev ? rd_kafka_event_DescribeConsumerGroups_result(ev) : NULL;
    size_t ng = 0;
    const rd_kafka_ConsumerGroupDescription_t **gs =
        res ? rd_kafka_DescribeConsumerGroups_result_groups(res, &ng) : NULL;
    const rd_kafka_error_t *ge = ng == 1 ? rd_kafka_ConsumerGroupDescription_error(gs[0]) : NULL;
    const char *why = !ev ? "no answer in time"
                    : rd_kafka_event_error(ev) ? rd_kafka_event_error_string(ev)
                    : ge ? rd_kafka_error_string(ge)
                    : ng != 1 ? "no description" : NULL;
    size_t nm = why ? 0 : rd_kafka_ConsumerGroupDescription_member_count(gs[0]);
    sp_member *m = why ? NULL : calloc(nm ? nm : 1, sizeof *m);
    if (!why && !m) why = "out of memory";
    for (size_t i = 0; !why && i < nm; i++) {
        const rd_kafka_MemberDescription_t *d = rd_kafka_ConsumerGroupDescription_member(gs[0], i);
        const rd_kafka_MemberAssignment_t *a = rd_kafka_MemberDescription_assignment(d);
        const rd_kafka_topic_partition_list_t *l = a ? rd_kafka_MemberAssignment_partitions(a) : NULL;
        m[i].address = address_of(rd_kafka_MemberDescription_client_id(d),
                                  rd_kafka_MemberDescription_host(d));
        m[i].consumer_id = strdup(rd_kafka_MemberDescription_consumer_id(d));
        m[i].parts = l ? rd_kafka_topic_partition_list_copy(l) : rd_kafka_topic_partition_list_new(0);
        *n = (int)i + 1;
        if (!m[i].consumer_id || !m[i].parts) why = "out of memory";
        else rd_kafka_topic_partition_list_sort(m[i].parts, NULL, NULL);
    }
    if (why) {
        snprintf(err, errsize, "cannot describe the group: %s", why);
        sp_members_free(m, *n);
        *n = 0;
        return -1;
    }
    *out = m;
    return 0;
}

int sp_members_poll(sp_members *ms) {
    if (!ms->pending) return 0;
    rd_kafka_event_t *ev = rd_kafka_queue_poll(ms->q, 0);
    if (!ev) return 0;
    ms->pending = 0;
    sp_member *m;
    int n, changed = 0;
    char err[256];
    if (sp_members_from_event(ev, &m, &n, err, sizeof err) == 0) {
        sp_members_free(ms->m, ms->n);
        ms->m = m;
        ms->n = n;
        ms->described = 1;
        changed = 1;
    }
    rd_kafka_event_destroy(ev);
    if (ms->again) {
        ms->again = 0;
        sp_members_refresh(ms);
    }
    return changed;
}

const sp_member *sp_members_list(const sp_members *ms, int *n) {
    *n = ms && ms->described ? ms->n : 0;
    return ms && ms->described ? ms->m : NULL;
}

const char *sp_members_owner(const sp_members *ms, const char *topic, int32_t partition) {
    for (int i = 0; ms && i < ms->n; i++) {
        const rd_kafka_topic_partition_list_t *l = ms->m[i].parts;
        for (int j = 0; j < l->cnt; j++)
            if (l->elems[j].partition == partition && strcmp(l->elems[j].topic, topic) == 0)
                return ms->m[i].address;
    }
    return NULL;
}

int32_t sp_members_partitions(const sp_members *ms, const char *topic) {
    int32_t most = -1;
    for (int i = 0; ms && i < ms->n; i++) {
        const rd_kafka_topic_partition_list_t *l = ms->m[i].parts;
        for (int j = 0; j < l->cnt; j++)
            if (strcmp(l->elems[j].topic, topic) == 0 && l->elems[j].partition + 1 > most)
                most = l->elems[j].partition + 1;
    }
    return most;
}

int sp_members_describe(rd_kafka_t *rk, const char *group, int timeout_ms, sp_member **out,
                        int *n, char *err, size_t errsize) {
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    if (!q) {
        snprintf(err, errsize, "out of memory");
        return -1;
    }
    ask(rk, group, q, timeout_ms);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    int rc = sp_members_from_event(ev, out, n, err, errsize);
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    return rc;
}
