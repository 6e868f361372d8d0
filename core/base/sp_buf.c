#include "sp_buf.h"

#include <stdlib.h>
#include <string.h>

void sp_buf_init(sp_buf *b) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void sp_buf_destroy(sp_buf *b) {
    free(b->data);
    sp_buf_init(b);
}

int sp_buf_reserve(sp_buf *b, size_t n) {
    if (b->len + n <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int sp_buf_append(sp_buf *b, const void *p, size_t n) {
    if (sp_buf_reserve(b, n) != 0) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int sp_buf_putc(sp_buf *b, char c) {
    if (sp_buf_reserve(b, 1) != 0) return -1;
    b->data[b->len++] = c;
    return 0;
}
