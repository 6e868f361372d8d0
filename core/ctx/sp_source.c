/* Sources and their topics: what the pipeline reads (Kafka topics and
 * patterns, files, timers, the core's own topics of repartitions and
 * window results), numbered as Lua's entries are, and which task's stream
 * time each moves. */
#include "sp_ctx.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "sp_log.h"

int32_t sp_topic_id(sp_ctx *ctx, const char *name) {
    for (int32_t i = 0; i < ctx->ntopics; i++)
        if (strcmp(ctx->topics[i], name) == 0) return i;
    char **t = realloc(ctx->topics, (ctx->ntopics + 1) * sizeof *t);
    if (!t) return SP_ENOMEM;
    ctx->topics = t;
    if (!(t[ctx->ntopics] = strdup(name))) return SP_ENOMEM;
    return ctx->ntopics++;
}

int32_t sp_topic_count(sp_ctx *ctx) { return ctx->ntopics; }

const char *sp_topic_name(sp_ctx *ctx, int32_t id) {
    if (id < 0 || id >= ctx->ntopics) return NULL;
    return ctx->topics[id];
}

static int add_source(sp_ctx *ctx, int kind, const char *name,
                      const char **err) {
    int32_t topic = sp_topic_id(ctx, name);
    sp_source *s = realloc(ctx->sources, (ctx->nsources + 1) * sizeof *s);
    if (topic < 0 || !s) {
        if (s) ctx->sources = s;
        *err = "out of memory";
        return SP_ENOMEM;
    }
    ctx->sources = s;
    /* every field not named here starts at zero (global, internal, ...) */
    s[ctx->nsources] = (sp_source){.kind = kind, .name = strdup(name), .topic = topic,
                                   .task = sp_ctx_task(ctx, name)};
    if (!s[ctx->nsources].name || s[ctx->nsources].task == SP_ENOMEM) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    ctx->nsources++;
    sp_ctx_forget_topic_tasks(ctx);
    return topic;
}

int sp_topic_internal(sp_ctx *ctx, int32_t topic) {
    for (int32_t i = 0; i < ctx->nsources; i++)
        if (ctx->sources[i].internal && ctx->sources[i].topic == topic) return 1;
    return 0;
}

int sp_ctx_add_source(sp_ctx *ctx, int kind, const char *name, const char **err) {
    return add_source(ctx, kind, name, err);
}

int sp_source_set_task(sp_ctx *ctx, int32_t source, int32_t task, const char **err) {
    if (source < 0 || source >= ctx->nsources || task < 0 || task >= ctx->ntasks) {
        *err = task == SP_EINVAL ? "too many sources (63 at most)" : "no such source or task";
        return SP_EINVAL;
    }
    ctx->sources[source].task = task;
    sp_ctx_forget_topic_tasks(ctx);
    return SP_OK;
}

int sp_source_internal(sp_ctx *ctx, const char *topic, const char **err) {
    int t = add_source(ctx, 0, topic, err);
    if (t >= 0) ctx->sources[ctx->nsources - 1].internal = 1;
    /* what goes there is not an output either */
    for (int32_t i = 0; t >= 0 && i < ctx->nsinks; i++)
        if (strcmp(ctx->sinks[i]->name, topic) == 0) ctx->sinks[i]->internal = 1;
    return t;
}

int sp_source_set_global(sp_ctx *ctx, int32_t source, const char **err) {
    if (source < 0 || source >= ctx->nsources || ctx->sources[source].kind != 0) {
        *err = "a global table reads one topic";
        return SP_EINVAL;
    }
    ctx->sources[source].global = 1;
    return SP_OK;
}

int sp_source_copartition(sp_ctx *ctx, const char *topics, const char **err) {
    char **c = realloc(ctx->copart, (size_t)(ctx->ncopart + 1) * sizeof *c);
    if (c) ctx->copart = c;
    if (!c || !(c[ctx->ncopart] = strdup(topics))) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    ctx->ncopart++;
    return SP_OK;
}

int sp_source_kafka(sp_ctx *ctx, const char *topic, int is_pattern,
                    const char **err) {
    if (!topic || !*topic) {
        *err = "a Kafka source needs a topic";
        return SP_EINVAL;
    }
    return add_source(ctx, is_pattern ? 1 : 0, topic, err);
}

int sp_source_file(sp_ctx *ctx, const char *path, const char **err) {
    if (!path || !*path) {
        *err = "a file source needs a path";
        return SP_EINVAL;
    }
    return add_source(ctx, 2, path, err);
}

int sp_source_timer(sp_ctx *ctx, int64_t every_ms, int wall, const char **err) {
    char name[64];
    if (every_ms <= 0) {
        *err = "a timer needs every > 0 milliseconds";
        return SP_EINVAL;
    }
    snprintf(name, sizeof name, "[timer %d]", ctx->ntimers + 1);
    int topic = add_source(ctx, 3, name, err);
    if (topic < 0) return topic;
    int rc = sp_ctx_timer_add(ctx, topic, every_ms, wall, err);
    return rc < 0 ? rc : topic;
}

int sp_source_matches(sp_ctx *ctx, int32_t source, int32_t topic) {
    const char *name = sp_topic_name(ctx, topic);
    if (!name || source < 0 || source >= ctx->nsources) return 0;
    sp_source *s = &ctx->sources[source];
    if (s->kind != 1) return s->topic == topic;
    /* Kafka matches a subscription pattern against the whole name. */
    if (!s->re_ok) {
        size_t n = strlen(s->name) + 8;
        char *anchored = malloc(n);
        if (!anchored) return 0;
        snprintf(anchored, n, "^(%s)$", s->name);
        s->re_ok = regcomp(&s->re, anchored, REG_EXTENDED | REG_NOSUB) == 0 ? 1 : -1;
        free(anchored);
    }
    return s->re_ok == 1 && regexec(&s->re, name, 0, NULL, 0) == 0;
}

int32_t sp_source_for(sp_ctx *ctx, int32_t topic) {
    for (int32_t i = 0; i < ctx->nsources; i++)
        if (sp_source_matches(ctx, i, topic)) return i;
    return -1;
}
