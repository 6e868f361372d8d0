/* The stdout sink: one line per output, "key<TAB>value" when a key is
 * given. Lines are buffered and flushed when the batch ends, before its
 * offsets may be committed. */
#include "sp_ctx.h"
#include "sp_sink.h"

static int stdout_write(sp_sink *s, sp_msg *m, const char **err) {
    FILE *f = s->impl;
    if (m->hdrs) rd_kafka_headers_destroy(m->hdrs);
    if (m->key) {
        fwrite(m->key, 1, m->key_len, f);
        fputc('\t', f);
    }
    if (m->val) fwrite(m->val, 1, m->val_len, f);
    if (fputc('\n', f) == EOF) {
        *err = "cannot write to stdout";
        return SP_EIO;
    }
    return SP_OK;
}

static int stdout_flush(sp_sink *s, int force, const char **err) {
    (void)force;
    if (fflush((FILE *)s->impl) != 0) {
        *err = "cannot write to stdout";
        return SP_EIO;
    }
    return SP_OK;
}

static const sp_sink_ops stdout_ops = {"stdout", stdout_write, stdout_flush,
                                       NULL, NULL};

int sp_sink_stdout_open(sp_sink *s, FILE *f, const char **err) {
    (void)err;
    s->ops = &stdout_ops;
    s->impl = f;
    return SP_OK;
}
