/* Hive's FileUtils.escapePathName decides the escaping: Spark, Hive,
 * Trino, DuckDB and pyarrow read directories named this way. */
#include <stdlib.h>
#include <string.h>

#include "sp_hive.h"

/* Longest directory name most file systems take. */
#define NAME_MAX_BYTES 255

static int escaped(unsigned char c) {
    return c <= 0x1f || c == 0x7f || strchr("\"#%'*/:=?\\{[]^", c) != NULL;
}

int sp_hive_escape(sp_buf *out, const char *p, size_t n) {
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (escaped(c)) {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            if (sp_buf_append(out, e, 3) != 0) return -1;
        } else if (sp_buf_putc(out, (char)c) != 0) {
            return -1;
        }
    }
    return 0;
}

void sp_hive_destroy(sp_hive *h) {
    if (!h) return;
    free(h->nodes);
    free(h->omit);
    sp_buf_destroy(&h->text);
    free(h);
}

sp_hive *sp_hive_create(const sp_schema *s, const char *spec, const char **err) {
    sp_hive *h = calloc(1, sizeof *h);
    if (!h || !(h->omit = calloc((size_t)s->nnodes, 1)) ||
        !(h->nodes = calloc(strlen(spec) + 1, sizeof *h->nodes))) {
        *err = "out of memory";
        goto fail;
    }
    sp_buf_init(&h->text);
    for (const char *p = spec; *p;) {
        size_t len = strcspn(p, ",");
        int32_t found = -1;
        for (int32_t k = 0; k < s->nodes[0].nkids; k++) {
            const sp_schema_node *nd = &s->nodes[s->nodes[0].kids[k]];
            if (nd->name_len == len && memcmp(nd->name, p, len) == 0) found = s->nodes[0].kids[k];
        }
        if (found < 0) {
            *err = "partition_by: a partition column must be a top-level field of the schema";
            goto fail;
        }
        if (s->nodes[found].type == SP_SCH_STRUCT || s->nodes[found].type == SP_SCH_LIST) {
            *err = "partition_by: a partition column must be of a plain type (not a struct or list)";
            goto fail;
        }
        if (h->omit[found]) {
            *err = "partition_by: a column twice";
            goto fail;
        }
        h->omit[found] = 1;
        h->nodes[h->n++] = found;
        p += len + (p[len] == ',');
    }
    if (h->n == 0 || h->n == s->nodes[0].nkids) {
        *err = h->n ? "partition_by: every column is a partition column: nothing is left "
                      "for the files"
                    : "partition_by: no column";
        goto fail;
    }
    return h;
fail:
    sp_hive_destroy(h);
    return NULL;
}

int sp_hive_path(sp_hive *h, const sp_schema *s, sp_buf *out, const char **err) {
    sp_buf_reset(out);
    for (int32_t i = 0; i < h->n; i++) {
        const sp_schema_node *nd = &s->nodes[h->nodes[i]];
        const sp_value *v = &s->vals[h->nodes[i]];
        size_t start = out->len;
        sp_buf_reset(&h->text);
        if ((i && sp_buf_putc(out, '/') != 0) || sp_hive_escape(out, nd->name, nd->name_len) != 0 ||
            sp_buf_putc(out, '=') != 0 || (v->present && sp_schema_value_text(nd, v, &h->text) != 0))
            goto oom;
        if (h->text.len == 0
                ? sp_buf_append(out, SP_HIVE_DEFAULT, sizeof SP_HIVE_DEFAULT - 1) != 0
                : sp_hive_escape(out, h->text.data, h->text.len) != 0)
            goto oom;
        if (out->len - start - (i > 0) > NAME_MAX_BYTES) {
            *err = "a partition value too long for a directory name";
            return -2;
        }
    }
    return 0;
oom:
    *err = "out of memory";
    return -1;
}
