/* The sinks a script declares: Kafka topics, stdout and file directories,
 * one sink per name, found again by a reloaded script. */
#include <stdlib.h>
#include <string.h>

#include "sp_ctx.h"
#include "sp_sink.h"
#include "sp_store.h"

static sp_sink *new_sink(sp_ctx *ctx, const char *name) {
    sp_sink *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->ctx = ctx;
    s->name = strdup(name);
    if (!s->name) {
        free(s);
        return NULL;
    }
    return s;
}

/* Opens a sink with open(), registering it on success; one exit frees a
 * sink that failed to open. */
static int open_sink(sp_ctx *ctx, const char *name, sp_sink **out,
                     const char **err) {
    sp_sink *s = new_sink(ctx, name);
    if (!s) {
        *err = "out of memory";
        return SP_ENOMEM;
    }
    *out = s;
    return SP_OK;
}

static int finish_sink(sp_ctx *ctx, sp_sink *s, int rc, const char **err) {
    if (rc == SP_OK) rc = sp_ctx_add_sink(ctx, s, err);
    if (rc < 0) {
        if (s->ops && s->ops->destroy) s->ops->destroy(s);
        free(s->name);
        free(s);
    }
    return rc;
}

/* A reloaded script's sinks are the ones it had: same kind, same name. */
int sp_sink_find(sp_ctx *ctx, const char *kind, const char *name) {
    for (int32_t i = 0; i < ctx->nsinks; i++) {
        sp_sink *s = ctx->sinks[i];
        if (s->ops && strcmp(s->name, name) == 0 && strcmp(s->ops->kind, kind) == 0) return i;
    }
    return -1;
}

int sp_sink_kafka(sp_ctx *ctx, const char *topic, const char **err) {
    sp_sink *s;
    if (!topic || !*topic) {
        *err = "a Kafka sink needs a topic";
        return SP_EINVAL;
    }
    /* One sink per topic: outputs to the same topic share its handle. */
    for (int32_t i = 0; i < ctx->nsinks; i++)
        if (ctx->sinks[i]->ops && strcmp(ctx->sinks[i]->ops->kind, "kafka") == 0 &&
            strcmp(ctx->sinks[i]->name, topic) == 0)
            return i;
    int rc = open_sink(ctx, topic, &s, err);
    if (rc < 0) return rc;
    if (ctx->kafka.open)
        rc = ctx->kafka.open(ctx->kafka.opaque, s, err);
    else
        rc = sp_sink_mem_open(s, err);
    return finish_sink(ctx, s, rc, err);
}

int sp_sink_stdout(sp_ctx *ctx, const char **err) {
    sp_sink *s;
    for (int32_t i = 0; i < ctx->nsinks; i++)
        if (strcmp(ctx->sinks[i]->name, "stdout") == 0 && ctx->sinks[i]->ops &&
            strcmp(ctx->sinks[i]->ops->kind, "files") != 0)
            return i;
    int rc = open_sink(ctx, "stdout", &s, err);
    if (rc < 0) return rc;
    rc = ctx->capture_stdout ? sp_sink_mem_open(s, err)
                             : sp_sink_stdout_open(s, stdout, err);
    return finish_sink(ctx, s, rc, err);
}

int sp_sink_files(sp_ctx *ctx, const char *dir, const sp_file_opts *o,
                  const char **err) {
    sp_sink *s;
    if (!dir || !*dir) {
        *err = "a file sink needs a directory";
        return SP_EINVAL;
    }
    int found = sp_sink_find(ctx, "files", dir);
    if (found >= 0) {
        /* a reloaded script may declare the directory's files anew */
        int rc = sp_sink_files_update(ctx->sinks[found], o, err);
        return rc < 0 ? rc : found;
    }
    int rc = open_sink(ctx, dir, &s, err);
    if (rc < 0) return rc;
    rc = sp_sink_files_open(s, o, err);
    return finish_sink(ctx, s, rc, err);
}

