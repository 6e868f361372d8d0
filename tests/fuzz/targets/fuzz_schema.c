/* libFuzzer target: schema specs and the conversion of JSON values
 * under them. The input is a spec on its first line, then JSON values,
 * one a line. Each value that converts must
 *  - convert the same with the index given as without it;
 *  - render (sp_schema_write_json) as valid UTF-8 JSON that converts
 *    again, under the same schema, to the same rendering: what a sink
 *    writes says what the schema read. */
#include <string.h>

#include "fuzz_input.h"
#include "sp_schema.h"

static void render(const sp_schema *s, sp_buf *out) {
    sp_buf_reset(out);
    FZ_CHECK(sp_schema_write_json(s, out) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data, *end = text + size;
    const char *nl = memchr(text, '\n', size);
    size_t slen = nl ? (size_t)(nl - text) : size;
    char *spec = strndup(text, slen);
    FZ_CHECK(spec);
    const char *err = NULL;
    sp_schema *s = sp_schema_create(spec, &err);
    free(spec);
    if (!s) {
        FZ_CHECK(err && *err);
        return 0;
    }
    FZ_CHECK(s->ncolumns > 0);
    char path[16]; /* short on purpose: paths are cut, not overrun */
    for (int32_t c = 0; c < s->ncolumns; c++) sp_schema_path(s, c, path, sizeof path);

    sp_buf first, again;
    sp_buf_init(&first);
    sp_buf_init(&again);
    sp_json_index ix;
    sp_json_index_init(&ix);
    for (const char *p = nl ? nl + 1 : end; p < end;) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        if (!e) e = end;
        size_t len = (size_t)(e - p);
        /* the record's own copy: ASan then sees reads past its end */
        char *rec = malloc(len ? len : 1);
        FZ_CHECK(rec);
        memcpy(rec, p, len);
        p = e + 1;
        if (sp_schema_convert(s, rec, len, NULL, &err) != 0) {
            FZ_CHECK(err && *err);
            free(rec);
            continue;
        }
        render(s, &first);
        const char *perr;
        size_t pos;
        FZ_CHECK(sp_json_index_parse(&ix, rec, len, &perr, &pos) == 0);
        FZ_CHECK(sp_schema_convert(s, rec, len, &ix, &err) == 0);
        render(s, &again);
        FZ_CHECK(again.len == first.len && memcmp(again.data, first.data, first.len) == 0);
        free(rec);

        FZ_CHECK(fz_utf8_valid(first.data, first.len));
        FZ_CHECK(sp_json_index_parse(&ix, first.data, first.len, &perr, &pos) == 0);
        char *out = malloc(first.len);
        FZ_CHECK(out);
        memcpy(out, first.data, first.len);
        if (sp_schema_convert(s, out, first.len, NULL, &err) != 0) {
            fprintf(stderr, "rendered %.*s\ndoes not convert back: %s\n", (int)first.len,
                    out, err);
            FZ_CHECK(0);
        }
        render(s, &again);
        if (again.len != first.len || memcmp(again.data, first.data, first.len) != 0) {
            fprintf(stderr, "rendered %.*s\nconverts back to %.*s\n", (int)first.len, out,
                    (int)again.len, again.data);
            FZ_CHECK(0);
        }
        free(out);
    }
    sp_json_index_destroy(&ix);
    sp_buf_destroy(&first);
    sp_buf_destroy(&again);
    sp_schema_destroy(s);
    return 0;
}
