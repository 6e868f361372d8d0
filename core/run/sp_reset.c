/* sproc reset: what Kafka's streams application reset tool does, for a script's application. */
#include "sp_run.h"

#include <ftw.h>

/* The plan: the group's new offsets, the internal topics, the state. */
typedef struct plan {
    rd_kafka_topic_partition_list_t *offsets;
    char **topics; /* internal topics that exist */
    int ntopics;
    char *state_dir; /* NULL: none there */
} plan;

/* Each partition of a source topic at the --to position. */
static int plan_offsets(runner *r, const rd_kafka_metadata_t *md, const char *to, plan *p) {
    int64_t at_ms = -1;
    if (strcmp(to, "earliest") != 0 && strcmp(to, "latest") != 0 &&
        sp_time_parse(to, &at_ms) != 0) {
        sp_error("--to takes earliest, latest or an ISO-8601 time, not '%s'", to);
        return -1;
    }
    for (int32_t i = 0; i < r->ctx->nsources; i++) {
        const sp_source *s = &r->ctx->sources[i];
        if (s->kind != 0 || s->internal || s->global) continue;
        for (int t = 0; t < md->topic_cnt; t++) {
            const rd_kafka_metadata_topic_t *mt = &md->topics[t];
            if (mt->err || strcmp(mt->topic, s->name) != 0) continue;
            for (int k = 0; k < mt->partition_cnt; k++) {
                int32_t part = mt->partitions[k].id;
                if (rd_kafka_topic_partition_list_find(p->offsets, mt->topic, part)) continue;
                int64_t lo, hi, at;
                if (sp_topics_watermarks(r->prod, mt->topic, part, &lo, &hi, 30) != 0) {
                    sp_error("cannot read the offsets of %s [%" PRId32 "]", mt->topic, part);
                    return -1;
                }
                at = strcmp(to, "latest") == 0 ? hi : lo;
                if (at_ms >= 0) {
                    rd_kafka_topic_partition_list_t *q = rd_kafka_topic_partition_list_new(1);
                    rd_kafka_topic_partition_list_add(q, mt->topic, part)->offset = at_ms;
                    if (rd_kafka_offsets_for_times(r->prod, q, 10000) == 0 && !q->elems[0].err)
                        at = q->elems[0].offset >= 0 ? q->elems[0].offset : hi;
                    rd_kafka_topic_partition_list_destroy(q);
                }
                rd_kafka_topic_partition_list_add(p->offsets, mt->topic, part)->offset = at;
            }
        }
    }
    return 0;
}

/* The changelogs of the script's stores (not a table's topic, which is
 * someone else's) and its repartition topics, where they exist. */
static int plan_topics(runner *r, const rd_kafka_metadata_t *md, const char *app, plan *p) {
    int n = r->ctx->nstores + r->ctx->nsources;
    p->topics = calloc((size_t)n + 1, sizeof *p->topics);
    if (!p->topics) return -1;
    for (int32_t i = 0; i < r->ctx->nstores; i++) {
        const sp_store *s = r->ctx->stores[i];
        if (s->source) continue;
        char name[1024];
        snprintf(name, sizeof name, "%s-%s-changelog", app, s->name);
        if (sp_run_partitions_of(md, name) >= 0 && !(p->topics[p->ntopics++] = strdup(name)))
            return -1;
    }
    for (int32_t i = 0; i < r->ctx->nsources; i++) {
        const sp_source *s = &r->ctx->sources[i];
        if (!s->internal || sp_run_partitions_of(md, s->name) < 0) continue;
        int dup = 0;
        for (int k = 0; k < p->ntopics; k++) dup |= strcmp(p->topics[k], s->name) == 0;
        if (!dup && !(p->topics[p->ntopics++] = strdup(s->name))) return -1;
    }
    return 0;
}

/* The group's members: 0 when none is active, -1 when it cannot tell. */
static int active_members(runner *r, const char *group) {
    rd_kafka_queue_t *q = rd_kafka_queue_new(r->prod);
    const char *groups[] = {group};
    rd_kafka_DescribeConsumerGroups(r->prod, groups, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    const rd_kafka_DescribeConsumerGroups_result_t *res =
        ev ? rd_kafka_event_DescribeConsumerGroups_result(ev) : NULL;
    int members = -1;
    size_t cnt = 0;
    const rd_kafka_ConsumerGroupDescription_t **d =
        res ? rd_kafka_DescribeConsumerGroups_result_groups(res, &cnt) : NULL;
    if (cnt == 1) {
        const rd_kafka_error_t *e = rd_kafka_ConsumerGroupDescription_error(d[0]);
        /* a group Kafka does not know has no one in it */
        if (!e || rd_kafka_error_code(e) == RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND)
            members = e ? 0 : (int)rd_kafka_ConsumerGroupDescription_member_count(d[0]);
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    return members;
}

/* One admin call's event, NULL (after a message) when none came. */
static rd_kafka_event_t *answer(rd_kafka_queue_t *q, const char *what) {
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    if (!ev || rd_kafka_event_error(ev)) {
        sp_error("%s: %s", what, ev ? rd_kafka_event_error_string(ev) : "no answer within 60 s");
        if (ev) rd_kafka_event_destroy(ev);
        return NULL;
    }
    return ev;
}

static int set_offsets(runner *r, const char *group, rd_kafka_topic_partition_list_t *offsets) {
    rd_kafka_queue_t *q = rd_kafka_queue_new(r->prod);
    rd_kafka_AlterConsumerGroupOffsets_t *a = rd_kafka_AlterConsumerGroupOffsets_new(group, offsets);
    rd_kafka_AlterConsumerGroupOffsets(r->prod, &a, 1, NULL, q);
    rd_kafka_AlterConsumerGroupOffsets_destroy(a);
    rd_kafka_event_t *ev = answer(q, "setting the group's offsets");
    int rc = ev ? 0 : -1;
    const rd_kafka_AlterConsumerGroupOffsets_result_t *res =
        ev ? rd_kafka_event_AlterConsumerGroupOffsets_result(ev) : NULL;
    size_t cnt = 0;
    const rd_kafka_group_result_t **g = res ? rd_kafka_AlterConsumerGroupOffsets_result_groups(res, &cnt)
                                            : NULL;
    for (size_t i = 0; i < cnt; i++) {
        const rd_kafka_topic_partition_list_t *l = rd_kafka_group_result_partitions(g[i]);
        const rd_kafka_error_t *e = rd_kafka_group_result_error(g[i]);
        if (e) {
            sp_error("setting the group's offsets: %s", rd_kafka_error_string(e));
            rc = -1;
        }
        for (int k = 0; l && k < l->cnt; k++)
            if (l->elems[k].err) {
                sp_error("setting the offset of %s [%" PRId32 "]: %s", l->elems[k].topic,
                         l->elems[k].partition, rd_kafka_err2str(l->elems[k].err));
                rc = -1;
            }
    }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    return rc;
}

static int delete_topics(runner *r, plan *p) {
    if (p->ntopics == 0) return 0;
    rd_kafka_DeleteTopic_t **dt = calloc((size_t)p->ntopics, sizeof *dt);
    if (!dt) return -1;
    for (int i = 0; i < p->ntopics; i++) dt[i] = rd_kafka_DeleteTopic_new(p->topics[i]);
    rd_kafka_queue_t *q = rd_kafka_queue_new(r->prod);
    rd_kafka_DeleteTopics(r->prod, dt, (size_t)p->ntopics, NULL, q);
    rd_kafka_event_t *ev = answer(q, "deleting the internal topics");
    int rc = ev ? 0 : -1;
    const rd_kafka_DeleteTopics_result_t *res = ev ? rd_kafka_event_DeleteTopics_result(ev) : NULL;
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr = res ? rd_kafka_DeleteTopics_result_topics(res, &cnt) : NULL;
    for (size_t i = 0; i < cnt; i++)
        if (rd_kafka_topic_result_error(tr[i])) {
            sp_error("deleting topic %s: %s", rd_kafka_topic_result_name(tr[i]),
                     rd_kafka_topic_result_error_string(tr[i]));
            rc = -1;
        }
    if (ev) rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    for (int i = 0; i < p->ntopics; i++) rd_kafka_DeleteTopic_destroy(dt[i]);
    free(dt);
    return rc;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void print_plan(const char *group, const plan *p, int dry_run) {
    printf("%s application %s:\n", dry_run ? "would reset" : "resetting", group);
    for (int i = 0; i < p->offsets->cnt; i++)
        printf("  offset of %s [%" PRId32 "] -> %" PRId64 "\n", p->offsets->elems[i].topic,
               p->offsets->elems[i].partition, p->offsets->elems[i].offset);
    for (int i = 0; i < p->ntopics; i++) printf("  delete topic %s\n", p->topics[i]);
    if (p->state_dir) printf("  delete local state %s\n", p->state_dir);
    fflush(stdout);
}

int sp_reset(const sp_opts *o, const char *to, int dry_run) {
    runner r;
    memset(&r, 0, sizeof r);
    r.o = o;
    plan p = {rd_kafka_topic_partition_list_new(8), NULL, 0, NULL};
    const rd_kafka_metadata_t *md = NULL;
    const char *msg = NULL;
    int rc = 2;
    char *def_id = sp_run_default_app_id(o->script);
    r.ctx = sp_ctx_create();
    r.lua = r.ctx ? sp_lua_create(r.ctx) : NULL;
    if (!def_id || !r.lua || !o->brokers) {
        fprintf(stderr, "sproc reset: %s\n", r.lua ? "give --brokers (or SPROC_BROKERS)" : "out of memory");
        goto done;
    }
    /* Kafka-backed, as a run is: re-keying declares its repartition topics */
    sp_kafka_out_init(&r.ko, r.ctx, NULL);
    if (sp_lua_load(r.lua, o->script, o->app, def_id, &msg) != 0) {
        fprintf(stderr, "sproc: cannot load %s:\n%s\n", o->script, msg);
        goto done;
    }
    rc = 1;
    const char *group = sp_lua_app_id(r.lua);
    r.brokers = strdup(o->brokers);
    if (!r.brokers || sp_run_make_producer(&r) != 0) goto done;
    if (rd_kafka_metadata(r.prod, 1, NULL, &md, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        sp_error("no Kafka broker answered at %s", o->brokers);
        md = NULL;
        goto done;
    }
    int members = active_members(&r, group);
    if (members != 0) {
        if (members < 0)
            sp_error("cannot tell whether group %s has active members", group);
        else
            sp_error("group %s has %d active member%s: stop every process of the application "
                     "first", group, members, members == 1 ? "" : "s");
        goto done;
    }
    char *dir = sp_run_state_dir(&r, group);
    struct stat st;
    if (dir && stat(dir, &st) == 0) p.state_dir = dir;
    else free(dir);
    if (plan_offsets(&r, md, to, &p) != 0 || plan_topics(&r, md, group, &p) != 0) goto done;
    print_plan(group, &p, dry_run);
    if (dry_run) {
        rc = 0;
        goto done;
    }
    if ((p.offsets->cnt > 0 && set_offsets(&r, group, p.offsets) != 0) || delete_topics(&r, &p) != 0)
        goto done;
    if (p.state_dir && nftw(p.state_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        sp_error("cannot delete %s: %s", p.state_dir, strerror(errno));
        goto done;
    }
    printf("done\n");
    rc = 0;
done:
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_partition_list_destroy(p.offsets);
    for (int i = 0; i < p.ntopics; i++) free(p.topics[i]);
    free(p.topics);
    free(p.state_dir);
    if (r.prod) rd_kafka_destroy(r.prod);
    free(r.brokers);
    free(def_id);
    sp_lua_destroy(r.lua);
    sp_ctx_destroy(r.ctx);
    return rc;
}
